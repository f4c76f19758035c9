//! Per-user logins, in-process, on a scripted network where every account is in one group
//! chat: logging in from the management room (`chat`), from a login manager over the
//! provisioning API (`provisioning`), and speaking through a portal's relay (`relay`).

mod chat;
mod double_puppet;
mod provisioning;
mod relay;
mod scene;
