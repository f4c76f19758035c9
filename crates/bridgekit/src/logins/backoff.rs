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

/// A token bucket: `rate` sends a second on average, up to `burst` at once. Written by hand
/// (a dozen lines) rather than pulling in a rate-limiting crate and its dependencies.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: f64,
    burst: f64,
    /// Tokens left, and when they were counted.
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl Pace {
    pub(crate) fn new(rate: f64) -> Self {
        let burst = (rate * 2.0).max(1.0);
        Self {
            rate,
            burst,
            state: std::sync::Mutex::new((burst, std::time::Instant::now())),
        }
    }

    /// Takes a token at `now`; returns how long to wait before using it.
    fn take(&self, now: std::time::Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, counted) = *state;
        let refilled = (tokens + now.saturating_duration_since(counted).as_secs_f64() * self.rate)
            .min(self.burst);
        let left = refilled - 1.0;
        *state = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.rate)
        }
    }

    /// Waits until the next send may go.
    pub(crate) async fn wait(&self) {
        let delay = self.take(std::time::Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_lets_a_burst_through_then_spaces_sends_at_the_rate() {
        let pace = Pace::new(5.0);
        let start = std::time::Instant::now();
        *pace.state.lock().unwrap() = (10.0, start);
        let waits: Vec<Duration> = (0..12).map(|_| pace.take(start)).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
        // Past the burst, each send waits one more fifth of a second.
        assert_eq!(waits[10].as_millis(), 200);
        assert_eq!(waits[11].as_millis(), 400);
        // A second later, five tokens came back (minus the two owed).
        let later = start + Duration::from_secs(1);
        let waits: Vec<Duration> = (0..4).map(|_| pace.take(later)).collect();
        assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
        assert_eq!(waits[3].as_millis(), 200);
    }

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
