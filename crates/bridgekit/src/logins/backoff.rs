//! Pacing towards the remote network: reconnect delays with jitter, and the stagger of
//! reconnecting every stored login at startup, so a bridge with thousands of logins does not
//! flood its network after a restart or an outage.

use std::time::Duration;

/// First pause before a reconnect.
const FIRST: Duration = Duration::from_secs(1);
/// Longest pause before a reconnect.
const LONGEST: Duration = Duration::from_secs(300);

/// How many stored logins connect per second at startup.
pub(crate) const STARTUP_CONNECTS_PER_SECOND: u32 = 10;

/// The pause before reconnect attempt `attempt` (0 for the first): doubling from 1 s to
/// 5 min, with full jitter (anywhere from zero to the cap), so a network outage does not
/// bring every login back at the same instant.
pub fn reconnect_delay(attempt: u32) -> Duration {
    let cap = FIRST.saturating_mul(1u32 << attempt.min(16)).min(LONGEST);
    let r = getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / u32::MAX as f64;
    cap.mul_f64(r)
}

/// When the `n`th stored login (from 0) may connect at startup, after the first.
pub(crate) fn startup_offset(n: usize) -> Duration {
    let slot = Duration::from_secs(1) / STARTUP_CONNECTS_PER_SECOND;
    let r = getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / u32::MAX as f64;
    slot.mul_f64(n as f64 + r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_a_cap_and_are_spread() {
        for attempt in 0..40 {
            let cap = FIRST.saturating_mul(1u32 << attempt.min(16)).min(LONGEST);
            assert!(reconnect_delay(attempt) <= cap);
        }
        assert!(reconnect_delay(30) <= LONGEST);
        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| reconnect_delay(8)).collect();
        assert!(spread.len() > 10, "jitter spreads the reconnects");
        assert!(startup_offset(100) >= Duration::from_secs(10));
        assert!(startup_offset(100) < Duration::from_millis(10_100));
    }
}
