//! Who may do what with the bridge (`bridge.permissions`): a level per Matrix user, server
//! or everyone, the most specific match winning.

use std::collections::BTreeMap;

use ruma::UserId;

/// What a Matrix user may do, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Permission {
    /// Nothing: the bridge ignores them.
    None,
    /// Their messages may be relayed (through the bridge's relay, not their own account).
    Relay,
    /// They may run commands (`help`, `ping`, the bridge's own), not log in.
    Commands,
    /// They may log in with their own remote account.
    User,
    /// Everything, including other users' logins.
    Admin,
}

impl Permission {
    /// Reads a level as written in the config.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "none" => Permission::None,
            "relay" => Permission::Relay,
            "commands" => Permission::Commands,
            "user" => Permission::User,
            "admin" => Permission::Admin,
            _ => return None,
        })
    }

    /// The level's name, as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Relay => "relay",
            Permission::Commands => "commands",
            Permission::User => "user",
            Permission::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configured levels: by user ID (`@alice:example.org`), by server name
/// (`example.org`) and for everyone (`*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    rules: BTreeMap<String, Permission>,
}

impl Permissions {
    /// The default when `bridge.permissions` is not set: users of `server_name` may log in,
    /// everyone else may run commands (as before logins existed).
    pub fn default_for(server_name: &str) -> Self {
        let rules = BTreeMap::from([
            ("*".to_owned(), Permission::Commands),
            (server_name.to_owned(), Permission::User),
        ]);
        Self { rules }
    }

    /// Levels from `(who, level)` pairs; `who` is `*`, a server name or a user ID.
    pub fn from_rules(rules: impl IntoIterator<Item = (String, Permission)>) -> Self {
        Self {
            rules: rules.into_iter().collect(),
        }
    }

    /// What `user` may do: their own rule, else their server's, else everyone's, else
    /// nothing.
    pub fn of(&self, user: &UserId) -> Permission {
        self.rules
            .get(user.as_str())
            .or_else(|| self.rules.get(user.server_name().as_str()))
            .or_else(|| self.rules.get("*"))
            .copied()
            .unwrap_or(Permission::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_rule_wins() {
        let p = Permissions::from_rules([
            ("*".into(), Permission::Relay),
            ("example.org".into(), Permission::User),
            ("@boss:example.org".into(), Permission::Admin),
            ("@troll:example.org".into(), Permission::None),
        ]);
        let user = |s: &str| UserId::parse(s).unwrap();
        assert_eq!(p.of(&user("@boss:example.org")), Permission::Admin);
        assert_eq!(p.of(&user("@alice:example.org")), Permission::User);
        assert_eq!(p.of(&user("@troll:example.org")), Permission::None);
        assert_eq!(p.of(&user("@eve:elsewhere.org")), Permission::Relay);
        assert!(Permission::Admin > Permission::User && Permission::User > Permission::Commands);
        assert_eq!(
            Permissions::from_rules([]).of(&user("@a:b.c")),
            Permission::None
        );
        let default = Permissions::default_for("example.org");
        assert_eq!(default.of(&user("@alice:example.org")), Permission::User);
        assert_eq!(
            default.of(&user("@eve:elsewhere.org")),
            Permission::Commands
        );
    }
}
