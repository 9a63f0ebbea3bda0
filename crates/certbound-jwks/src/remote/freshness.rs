//! When to fetch, how long a key set stays fresh, and how long it may be served stale — pure
//! functions of times and header values, so they are tested without a network or a clock.

use std::time::Duration;

use tokio::time::Instant;

/// The furthest ahead any deadline is put: 100 years. A configured lifetime, stale age or
/// cooldown of `Duration::MAX` means "practically never", not a panic on `Instant` overflow —
/// and deadlines stay far enough from the end of `Instant`'s range for timers to add to them.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `t + d`, saturated at `t + FAR_FUTURE`: never panics, whatever `d` is.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    let d = d.min(FAR_FUTURE);
    // `t + 100 years` cannot overflow on any platform tokio supports; should it, the deadline
    // is `t` itself — an expiry comes early (a refetch) rather than never.
    t.checked_add(d).unwrap_or(t)
}

/// The cache and retry policy of a [`RemoteJwks`](super::RemoteJwks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CachePolicy {
    /// Lower bound of the freshness lifetime (also used for `no-cache` / `no-store`).
    pub min_ttl: Duration,
    /// Upper bound of the freshness lifetime.
    pub max_ttl: Duration,
    /// Freshness lifetime when the response has no usable `max-age`.
    pub default_ttl: Duration,
    /// How long past its expiry a set keeps being served while fetches fail.
    pub max_stale: Duration,
    /// Minimum time between two fetches triggered by unknown `kid`s (measured from the start of
    /// the previous fetch of any kind).
    pub cooldown: Duration,
    /// First retry delay after a failed fetch; doubles per consecutive failure.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
}

impl CachePolicy {
    /// The freshness lifetime of a response: `max-age` (RFC 9111 §5.2.2.1) minus `Age`
    /// (§5.1), clamped to `[min_ttl, max_ttl]`. `no-cache`/`no-store` mean `min_ttl`: a key set
    /// is needed on every request, so it is kept for the shortest allowed time rather than not at
    /// all. Without a usable `max-age`, `default_ttl` (also clamped).
    pub fn ttl<'a>(
        &self,
        cache_control: impl IntoIterator<Item = &'a str>,
        age: Option<&str>,
    ) -> Duration {
        let lifetime = match parse_cache_control(cache_control) {
            Directive::NoCache => Duration::ZERO,
            Directive::MaxAge(secs) => {
                let age = age.and_then(|a| a.trim().parse::<u64>().ok()).unwrap_or(0);
                Duration::from_secs(secs.saturating_sub(age))
            }
            Directive::None => self.default_ttl,
        };
        lifetime.clamp(self.min_ttl, self.max_ttl)
    }

    /// When the background task refreshes a set fetched at `fetched_at` with lifetime `ttl`:
    /// after 90 % of the lifetime, so the new set normally arrives before the old one expires.
    pub fn refresh_at(&self, fetched_at: Instant, ttl: Duration) -> Instant {
        later(fetched_at, ttl.saturating_sub(ttl / 10))
    }

    /// The delay before the next attempt after `failures` consecutive failed fetches (≥ 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }

    /// Whether an unknown-kid refresh may fetch now, given how long ago the last fetch started
    /// (`None`: never).
    pub fn cooldown_over(&self, since_last_attempt: Option<Duration>) -> bool {
        since_last_attempt.is_none_or(|elapsed| elapsed >= self.cooldown)
    }

    /// When a set fetched at `now` with lifetime `ttl` expires, and until when it may be
    /// served stale.
    pub fn lifetimes(&self, now: Instant, ttl: Duration) -> (Instant, Instant) {
        (
            later(now, ttl),
            later(now, ttl.saturating_add(self.max_stale)),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    None,
    NoCache,
    MaxAge(u64),
}

/// The directive that decides the lifetime. `no-store`/`no-cache` win over `max-age`; of several
/// `max-age`s (invalid per RFC 9111 §4.2.1) the smallest is taken; malformed ones are ignored.
fn parse_cache_control<'a>(values: impl IntoIterator<Item = &'a str>) -> Directive {
    let mut result = Directive::None;
    for directive in values.into_iter().flat_map(|v| v.split(',')) {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Directive::NoCache;
        }
        if name.eq_ignore_ascii_case("max-age") {
            if let Some(secs) = value.and_then(|v| v.parse::<u64>().ok()) {
                result = match result {
                    Directive::MaxAge(prev) => Directive::MaxAge(prev.min(secs)),
                    _ => Directive::MaxAge(secs),
                };
            }
        }
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    fn policy() -> CachePolicy {
        CachePolicy {
            min_ttl: Duration::from_secs(MIN),
            max_ttl: Duration::from_secs(3600),
            default_ttl: Duration::from_secs(600),
            max_stale: Duration::from_secs(86_400),
            cooldown: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }

    fn ttl(cc: &[&str], age: Option<&str>) -> u64 {
        policy().ttl(cc.iter().copied(), age).as_secs()
    }

    #[test]
    fn max_age_is_honoured_and_clamped() {
        assert_eq!(ttl(&["public, max-age=120"], None), 120);
        assert_eq!(ttl(&["max-age=\"300\""], None), 300);
        assert_eq!(ttl(&["MAX-AGE=300"], None), 300);
        assert_eq!(ttl(&["max-age=5"], None), MIN, "raised to the minimum");
        assert_eq!(
            ttl(&["max-age=999999"], None),
            3600,
            "lowered to the maximum"
        );
        assert_eq!(
            ttl(&["max-age=99999999999999999999999"], None),
            600,
            "unparsable: default"
        );
    }

    #[test]
    fn age_is_subtracted() {
        assert_eq!(ttl(&["max-age=300"], Some("100")), 200);
        assert_eq!(ttl(&["max-age=300"], Some("1000")), MIN);
        assert_eq!(ttl(&["max-age=300"], Some("junk")), 300);
    }

    #[test]
    fn absent_or_malformed_means_default() {
        assert_eq!(ttl(&[], None), 600);
        assert_eq!(ttl(&["public"], None), 600);
        assert_eq!(ttl(&["max-age=", "max-age=abc", "max-age=-5"], None), 600);
    }

    #[test]
    fn no_cache_means_minimum_and_several_max_ages_take_the_smallest() {
        assert_eq!(ttl(&["no-cache"], None), MIN);
        assert_eq!(ttl(&["max-age=600, no-store"], None), MIN);
        assert_eq!(ttl(&["max-age=900", "max-age=300"], None), 300);
    }

    #[test]
    fn refresh_happens_before_expiry() {
        let t0 = Instant::now();
        let p = policy();
        assert_eq!(
            p.refresh_at(t0, Duration::from_secs(600)),
            t0 + Duration::from_secs(540)
        );
        assert!(p.refresh_at(t0, Duration::from_secs(1)) < t0 + Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn cooldown() {
        let p = policy();
        assert!(p.cooldown_over(None));
        assert!(!p.cooldown_over(Some(Duration::from_secs(29))));
        assert!(p.cooldown_over(Some(Duration::from_secs(30))));
        let forever = CachePolicy {
            cooldown: Duration::MAX,
            ..p
        };
        assert!(forever.cooldown_over(None));
        assert!(!forever.cooldown_over(Some(Duration::MAX - Duration::from_nanos(1))));
        assert!(forever.cooldown_over(Some(Duration::MAX)));
    }

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let p = CachePolicy {
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::MAX,
            default_ttl: Duration::MAX,
            max_stale: Duration::MAX,
            cooldown: Duration::MAX,
            backoff_initial: Duration::MAX,
            backoff_max: Duration::MAX,
        };
        let ttl = p.ttl([], None);
        assert_eq!(ttl, Duration::MAX);
        assert_eq!(
            p.ttl(["max-age=18446744073709551615"], None),
            Duration::from_secs(u64::MAX)
        );
        let (expires, stale) = p.lifetimes(t0, ttl);
        assert_eq!(expires, t0 + FAR_FUTURE);
        assert_eq!(stale, t0 + FAR_FUTURE);
        assert_eq!(p.refresh_at(t0, ttl), t0 + FAR_FUTURE);
        assert_eq!(p.backoff(u32::MAX), Duration::MAX);
        assert_eq!(later(t0, p.backoff(7)), t0 + FAR_FUTURE);
        // Ordinary values are exact.
        assert_eq!(
            later(t0, Duration::from_secs(5)),
            t0 + Duration::from_secs(5)
        );
        let (expires, stale) = policy().lifetimes(t0, Duration::from_secs(600));
        assert_eq!(expires, t0 + Duration::from_secs(600));
        assert_eq!(stale, t0 + Duration::from_secs(600 + 86_400));
    }
}
