//! Per-user logins: each Matrix user logs into their own remote account, and the bridge runs
//! one network client per login.
//!
//! A bridge with logins offers [`LoginFlow`]s ([`Bridge::login_flows`](crate::Bridge::login_flows)),
//! walks a user through one as a [`LoginProcess`]
//! ([`Bridge::start_login`](crate::Bridge::start_login)), and makes a [`NetworkClient`] for each
//! stored login ([`Bridge::load_login`](crate::Bridge::load_login)). The framework does the
//! rest: the `login`, `logout`, `relogin`, `list-logins` and `cancel` commands in the
//! management room, storing users and logins (both backends, moved by `migrate-store`),
//! reconnecting every login at startup at a measured pace, routing a user's Matrix events in
//! a portal to their login there, and keeping each login's [`LoginState`](crate::store::LoginState)
//! — stored, in the `bridgekit_logins` gauge, and told to the user once when they must act.
//!
//! A bridge without logins (the echo bridge) writes none of this: every method has a default.
//! Users of a login bridge who have no login in a portal are handled by the bridge's own
//! handlers, which may relay them or refuse.

mod backoff;
mod client;
pub(crate) mod commands;
mod contacts;
mod flow;
mod permissions;
pub(crate) mod registry;
pub(crate) mod relay;
pub(crate) mod route;

pub use backoff::reconnect_delay;
pub use client::{LoginContext, NetworkClient};
pub use contacts::{Contact, OpenedChat};
pub use flow::{
    CookieField, CookieSource, Display, FieldKind, LoginField, LoginFlow, LoginInput, LoginProcess,
    LoginStep, NewLogin,
};
pub use permissions::{Permission, Permissions};
