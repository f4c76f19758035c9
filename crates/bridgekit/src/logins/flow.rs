//! Login flows as a step protocol: the bridge's [`LoginProcess`] answers each step with the
//! next one — ask for fields, show something and wait, or done — and the framework walks the
//! user through them (in the management room today, over the provisioning API next).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::bridge::BridgeError;
use crate::ids::{LoginId, RemoteUserId};

/// One way of logging in that a bridge offers (`password`, `qr`, `token`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginFlow {
    /// Its ID, typed after `login` (`login password`).
    pub id: String,
    /// Its name, shown to users.
    pub name: String,
    /// What it does, in one line.
    pub description: String,
}

impl LoginFlow {
    /// A flow with this ID, name and description.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            description: description.into(),
        }
    }
}

/// What kind of value a login field takes: it says how to ask for it and whether it is a
/// secret (typed secrets are redacted from the chat right after they are read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldKind {
    /// A user name or nick.
    Username,
    /// A password (secret).
    Password,
    /// A phone number in international format.
    PhoneNumber,
    /// An e-mail address.
    Email,
    /// A one-time code sent to the user (secret).
    Code,
    /// An access token or cookie (secret).
    Token,
    /// A URL.
    Url,
    /// A server or domain name.
    Domain,
    /// Anything else.
    Text,
}

impl FieldKind {
    /// Whether values of this kind are secrets.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            FieldKind::Password | FieldKind::Code | FieldKind::Token
        )
    }

    /// The kind's name in the provisioning API (bridgev2's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Username => "username",
            FieldKind::Password => "password",
            FieldKind::PhoneNumber => "phone_number",
            FieldKind::Email => "email",
            FieldKind::Code => "2fa_code",
            FieldKind::Token => "token",
            FieldKind::Url => "url",
            FieldKind::Domain => "domain",
            FieldKind::Text => "text",
        }
    }
}

/// One value a login step asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginField {
    /// Its ID: the key of its value in [`LoginInput`].
    pub id: String,
    /// What to call it when asking ("your nick").
    pub name: String,
    /// What kind of value it is.
    pub kind: FieldKind,
}

impl LoginField {
    /// A field with this ID, name and kind.
    pub fn new(id: impl Into<String>, name: impl Into<String>, kind: FieldKind) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            kind,
        }
    }
}

/// What a step shows while the network works (the user acts elsewhere: scans a QR code,
/// types a code into their phone).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Display {
    /// A code to type elsewhere.
    Code(String),
    /// Data to show as a QR code.
    Qr(String),
    /// Nothing but the instructions.
    Nothing,
}

/// Where a browser keeps one value a cookie step asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieSource {
    /// A cookie of this domain.
    Cookie {
        /// The cookie's domain.
        domain: String,
    },
    /// The site's local storage.
    LocalStorage,
    /// A header of requests to URLs matching the regex.
    RequestHeader {
        /// Which requests.
        url_regex: String,
    },
    /// The body of requests to URLs matching the regex.
    RequestBody {
        /// Which requests.
        url_regex: String,
    },
}

/// One value a cookie step asks for: its name (the key of its value in [`LoginInput`]) and
/// where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieField {
    /// The cookie's (or storage key's, or header's) name.
    pub name: String,
    /// Where the browser keeps it.
    pub source: CookieSource,
}

impl CookieField {
    /// The value `name`, found at `source`.
    pub fn new(name: impl Into<String>, source: CookieSource) -> Self {
        Self {
            name: name.into(),
            source,
        }
    }
}

/// A remote account the user just logged into.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewLogin {
    /// The login's ID, unique in the bridge (usually the remote account's ID).
    pub id: LoginId,
    /// The remote account's user ID, as its messages name their sender.
    pub remote_id: RemoteUserId,
    /// The remote account's display name, if known.
    pub remote_name: Option<String>,
    /// What the bridge keeps to reconnect it (session, server, nick…).
    pub metadata: Value,
}

impl NewLogin {
    /// A login `id` as the remote account `remote_id`.
    pub fn new(id: LoginId, remote_id: RemoteUserId) -> Self {
        Self {
            id,
            remote_id,
            remote_name: None,
            metadata: Value::Null,
        }
    }

    /// Records the remote account's display name.
    pub fn with_remote_name(mut self, name: impl Into<String>) -> Self {
        self.remote_name = Some(name.into());
        self
    }

    /// Attaches what the bridge needs to reconnect the login.
    pub fn with_metadata(mut self, metadata: &impl serde::Serialize) -> Result<Self, BridgeError> {
        self.metadata = serde_json::to_value(metadata)?;
        Ok(self)
    }
}

/// The next step of a login.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LoginStep {
    /// Ask the user for these fields; their answers go to [`LoginProcess::submit`].
    Input {
        /// What to tell the user first (may be empty).
        instructions: String,
        /// The fields, asked in order.
        fields: Vec<LoginField>,
    },
    /// Values a browser logged into the network's website holds (cookies, local storage,
    /// request headers): a login manager's webview extracts them, a user in the management
    /// room pastes each. They go to [`LoginProcess::submit`], keyed by name.
    Cookies {
        /// What to tell the user first (may be empty).
        instructions: String,
        /// The page to log in on.
        url: String,
        /// The user agent the webview should claim, if it matters.
        user_agent: Option<String>,
        /// The values to extract.
        fields: Vec<CookieField>,
    },
    /// Show this and wait: the framework calls [`LoginProcess::wait`].
    Display {
        /// What the user should do.
        instructions: String,
        /// What to show.
        display: Display,
    },
    /// Logged in.
    Complete(NewLogin),
}

/// The user's answers to an input step, by field ID.
pub type LoginInput = BTreeMap<String, String>;

/// One user's login in progress. The framework calls [`start`](Self::start), then
/// [`submit`](Self::submit) or [`wait`](Self::wait) as each step asks, until a step is
/// [`LoginStep::Complete`]; [`cancel`](Self::cancel) when the user gives up or the login
/// times out. An `Err` ends the login with that message to the user.
#[async_trait::async_trait]
pub trait LoginProcess: Send + 'static {
    /// The first step.
    async fn start(&mut self) -> Result<LoginStep, BridgeError>;

    /// The user's answers to the last [`LoginStep::Input`].
    async fn submit(&mut self, _input: LoginInput) -> Result<LoginStep, BridgeError> {
        Err("this login step takes no input".into())
    }

    /// Waits for the network after a [`LoginStep::Display`].
    async fn wait(&mut self) -> Result<LoginStep, BridgeError> {
        Err("this login step has nothing to wait for".into())
    }

    /// The login was cancelled or timed out: release what it holds.
    async fn cancel(&mut self) {}
}
