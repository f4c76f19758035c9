//! The load generator's parts, shared by its binary and by the crash tests: a fake
//! homeserver that matches echoes to their sources, and readings of a process's CPU and RSS.

pub mod fake_hs;
pub mod prefill;
pub mod proc_stats;
