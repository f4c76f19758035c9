//! What a config key is, and [`Source`], which reads one from the environment or the file.
//!
//! Each section module (`homeserver.rs`, `appservice.rs`, …) defines its keys once, as
//! constants next to the code that parses them, and lists them in its `KEYS`.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::{ConfigError, env_var_for};

/// One config key: its dotted name and what to tell an operator about it.
pub(crate) struct Key {
    /// The dotted name, e.g. `homeserver.url`.
    pub(crate) name: &'static str,
    /// What the key is for, shown in errors.
    pub(crate) help: &'static str,
}

/// A key with a literal default, used when the key is absent.
pub(crate) struct WithDefault<T: 'static> {
    /// The key.
    pub(crate) key: Key,
    /// Its value when absent.
    pub(crate) default: T,
}

/// A [`WithDefault`] whose help ends in `(default <value>)`, written from the default itself:
/// `with_default!("store.cache_mb", "store page cache in MiB", 16)`. An optional note follows
/// the default inside the parentheses: `(default info; RUST_LOG wins)`.
macro_rules! with_default {
    ($name:literal, $help:literal, $default:literal $(; $note:literal)?) => {
        $crate::config::key::WithDefault {
            key: $crate::config::key::Key {
                name: $name,
                help: concat!($help, " (default ", $default, $("; ", $note,)? ")"),
            },
            default: $default,
        }
    };
}
pub(crate) use with_default;

/// The file's keys and the environment, for reading one key at a time.
pub(crate) struct Source<'a> {
    pub(crate) root: Mapping,
    pub(crate) path: &'a Path,
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Source<'_> {
    /// The key's value: the environment override, else the file's value as text.
    pub(crate) fn raw(&self, key: &'static Key) -> Result<Option<String>, ConfigError> {
        let name = key.name;
        if let Some(value) = (self.env)(&env_var_for(name)) {
            return Ok(Some(value));
        }
        let mut node = Some(&self.root);
        let mut parts = name.split('.').peekable();
        while let Some(part) = parts.next() {
            let value = node.and_then(|m| m.get(part));
            if parts.peek().is_none() {
                return match value {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Number(n)) => Ok(Some(n.to_string())),
                    Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                    Some(other) => {
                        Err(self.invalid(key, &format!("{other:?}"), "expected a single value"))
                    }
                };
            }
            node = value.and_then(Value::as_mapping);
        }
        Ok(None)
    }

    /// The key's value; absent or blank is [`ConfigError::Missing`].
    pub(crate) fn required(&self, key: &'static Key) -> Result<String, ConfigError> {
        match self.raw(key)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConfigError::Missing {
                path: self.path.to_owned(),
                key: key.name,
                env: env_var_for(key.name),
                help: key.help,
            }),
        }
    }

    /// [`ConfigError::Invalid`] for `key`.
    pub(crate) fn invalid(&self, key: &'static Key, value: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.name,
            value: value.to_owned(),
            reason: reason.to_owned(),
            help: key.help,
        }
    }

    /// The key's text, or its default.
    pub(crate) fn text(
        &self,
        key: &'static WithDefault<&'static str>,
    ) -> Result<String, ConfigError> {
        Ok(self
            .raw(&key.key)?
            .unwrap_or_else(|| key.default.to_owned()))
    }

    /// The key as a whole number, or its default.
    pub(crate) fn number(&self, key: &'static WithDefault<u64>) -> Result<u64, ConfigError> {
        match self.raw(&key.key)? {
            None => Ok(key.default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| self.invalid(&key.key, &v, "expected a whole number")),
        }
    }

    /// The key as true or false, or its default.
    pub(crate) fn flag(&self, key: &'static WithDefault<bool>) -> Result<bool, ConfigError> {
        match self.raw(&key.key)?.as_deref().map(str::trim) {
            None => Ok(key.default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(self.invalid(&key.key, other, "expected true or false")),
        }
    }

    /// The key as a required path, relative to the config file's directory.
    pub(crate) fn path_value(&self, key: &'static Key) -> Result<PathBuf, ConfigError> {
        let value = PathBuf::from(self.required(key)?);
        let base = self.path.parent().unwrap_or(Path::new("."));
        Ok(if value.is_absolute() {
            value
        } else {
            base.join(value)
        })
    }

    /// Rejects keys that are not declared, so typos do not pass silently.
    pub(crate) fn check_unknown(&self) -> Result<(), ConfigError> {
        fn walk(prefix: &str, map: &Mapping, out: &mut Vec<String>) {
            for (k, v) in map {
                let k = k
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{k:?}"));
                let full = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                match v.as_mapping() {
                    Some(inner)
                        if super::keys().any(|key| key.name.starts_with(&format!("{full}."))) =>
                    {
                        walk(&full, inner, out)
                    }
                    _ => out.push(full),
                }
            }
        }
        let mut found = Vec::new();
        walk("", &self.root, &mut found);
        match found
            .into_iter()
            .find(|k| !super::keys().any(|key| key.name == k))
        {
            None => Ok(()),
            Some(key) => Err(ConfigError::Unknown {
                path: self.path.to_owned(),
                key,
                known: super::keys().map(|k| k.name).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}
