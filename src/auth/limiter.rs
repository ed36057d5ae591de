//! Failed-login limits. A failure counts against the user name *from that
//! client address* and against the address alone; after too many in a
//! window that pair or that address is refused (429 with `Retry-After`)
//! until the window passes. Never against the user name alone: then anyone
//! anywhere could lock any account, the administrator's too, with a few
//! wrong passwords. IPv6 addresses count by their /64, since one host is
//! routinely given a whole /64 to pick addresses from.
//!
//! Counted in this process (with several instances each counts its own), in
//! a table of bounded size: windows that have passed are dropped as new
//! failures come in, and when the table is full the entry that failed least
//! recently goes, so strangers cannot grow it without bound.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashlink::LruCache;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures of one user name from one address (or IPv6 /64).
    pub per_user_at_address: u32,
    /// Failures from one address (or IPv6 /64), whatever the names.
    pub per_address: u32,
    pub window: Duration,
    /// Counters kept at most.
    pub max_tracked: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_user_at_address: 10,
            per_address: 30,
            window: Duration::from_secs(300),
            max_tracked: 100_000,
        }
    }
}

/// Where a login comes from, as it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Origin {
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
    /// No address known (no connection information): all such logins count together.
    Unknown,
}

impl Origin {
    fn of(address: Option<IpAddr>) -> Origin {
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`.
        match address.map(|a| a.to_canonical()) {
            Some(IpAddr::V4(v4)) => Origin::V4(v4),
            Some(IpAddr::V6(v6)) => Origin::V6Prefix((u128::from(v6) >> 64) as u64),
            None => Origin::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A user name (by hash: a name sent by a stranger may be of any
    /// length, and every key is kept in memory) from one origin.
    UserAt([u8; 16], Origin),
    Address(Origin),
}

fn user_at(user: &str, origin: Origin) -> Key {
    let hash = Sha256::digest(user.as_bytes());
    let mut short = [0; 16];
    short.copy_from_slice(&hash[..16]);
    Key::UserAt(short, origin)
}

struct Window {
    started: Instant,
    failures: u32,
}

pub struct LoginLimiter {
    limits: Limits,
    windows: Mutex<LruCache<Key, Window>>,
}

impl LoginLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            windows: Mutex::new(LruCache::new(limits.max_tracked.max(1))),
        }
    }

    fn keys(&self, user: Option<&str>, address: Option<IpAddr>) -> Vec<(Key, u32)> {
        let origin = Origin::of(address);
        let mut keys = vec![(Key::Address(origin), self.limits.per_address)];
        if let Some(user) = user {
            keys.push((user_at(user, origin), self.limits.per_user_at_address));
        }
        keys
    }

    /// Seconds to wait if `user` (when given) from `address`, or `address`
    /// itself, is locked out.
    pub fn retry_after(&self, user: Option<&str>, address: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let windows = self.windows.lock().expect("limiter lock");
        self.keys(user, address)
            .into_iter()
            .filter_map(|(key, limit)| {
                let window = windows.peek(&key)?;
                let ends = window.started + self.limits.window;
                (window.failures >= limit && ends > now).then(|| (ends - now).as_secs().max(1))
            })
            .max()
    }

    pub fn record_failure(&self, user: Option<&str>, address: Option<IpAddr>) {
        let now = Instant::now();
        let passed = |window: &Window| window.started + self.limits.window <= now;
        let mut windows = self.windows.lock().expect("limiter lock");
        // The least recently failed come first: drop those whose window has
        // passed, so that live counters are not the ones a full table evicts.
        while windows.iter().next().is_some_and(|(_, w)| passed(w)) {
            windows.remove_lru();
        }
        for (key, _) in self.keys(user, address) {
            match windows.get_mut(&key) {
                Some(window) if !passed(window) => window.failures += 1,
                // A new window; a full table drops its least recently failed entry.
                _ => {
                    windows.insert(
                        key,
                        Window {
                            started: now,
                            failures: 1,
                        },
                    );
                }
            }
        }
    }

    /// A successful password login clears that user's count from that
    /// address (not the address's own: one good account must not reset
    /// the guesses made at others).
    pub fn record_success(&self, user: &str, address: Option<IpAddr>) {
        self.windows
            .lock()
            .expect("limiter lock")
            .remove(&user_at(user, Origin::of(address)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_user_at_address: u32, per_address: u32) -> LoginLimiter {
        LoginLimiter::new(Limits {
            per_user_at_address,
            per_address,
            window: Duration::from_secs(60),
            max_tracked: 1000,
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_stranger_locks_only_their_own_address() {
        let limiter = limiter(2, 3);
        let (attacker, owner) = (ip("10.0.0.1"), ip("10.0.0.2"));
        limiter.record_failure(Some("alice"), attacker);
        assert_eq!(limiter.retry_after(Some("alice"), attacker), None);
        limiter.record_failure(Some("alice"), attacker);
        assert!(limiter.retry_after(Some("alice"), attacker).unwrap() <= 60);
        assert_eq!(limiter.retry_after(Some("alice"), owner), None);
        assert_eq!(limiter.retry_after(Some("bob"), attacker), None);
        assert_eq!(limiter.retry_after(None, attacker), None);
        // The address's own limit covers every name from it.
        limiter.record_failure(Some("bob"), attacker);
        assert!(limiter.retry_after(None, attacker).is_some());
        assert!(limiter.retry_after(Some("carol"), attacker).is_some());
        assert_eq!(limiter.retry_after(Some("carol"), owner), None);
    }

    #[test]
    fn success_clears_that_user_at_that_address_only() {
        let limiter = limiter(2, 5);
        let (home, work) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for address in [home, home, work, work] {
            limiter.record_failure(Some("alice"), address);
        }
        limiter.record_success("alice", home);
        assert_eq!(limiter.retry_after(Some("alice"), home), None);
        assert!(limiter.retry_after(Some("alice"), work).is_some());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limiter = limiter(2, 100);
        limiter.record_failure(Some("alice"), ip("2001:db8:1:2::1"));
        limiter.record_failure(Some("alice"), ip("2001:db8:1:2:ffff::9"));
        assert!(
            limiter
                .retry_after(Some("alice"), ip("2001:db8:1:2::77"))
                .is_some()
        );
        assert_eq!(
            limiter.retry_after(Some("alice"), ip("2001:db8:1:3::1")),
            None
        );
        limiter.record_failure(Some("bob"), ip("::ffff:192.0.2.1"));
        limiter.record_failure(Some("bob"), ip("192.0.2.1"));
        assert!(limiter.retry_after(Some("bob"), ip("192.0.2.1")).is_some());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_live_counters() {
        let limiter = LoginLimiter::new(Limits {
            per_user_at_address: 2,
            per_address: 1000,
            window: Duration::from_secs(60),
            max_tracked: 100,
        });
        let attacker = ip("10.0.0.1");
        limiter.record_failure(Some("alice"), attacker);
        limiter.record_failure(Some("alice"), attacker);
        for n in 0..10_000u32 {
            let address = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n));
            limiter.record_failure(Some(&format!("user{n}")), Some(address));
        }
        assert!(limiter.windows.lock().unwrap().len() <= 100);
        // A flood of other names evicts old counters, never fails a login.
        assert_eq!(limiter.retry_after(Some("someone"), ip("10.9.9.9")), None);
    }

    #[test]
    fn passed_windows_are_dropped() {
        let limiter = LoginLimiter::new(Limits {
            per_user_at_address: 1,
            per_address: 1,
            window: Duration::ZERO,
            max_tracked: 100,
        });
        for n in 0..50u32 {
            limiter.record_failure(Some("alice"), Some(IpAddr::V4(Ipv4Addr::from(n))));
        }
        assert!(limiter.windows.lock().unwrap().len() <= 2);
        assert_eq!(limiter.retry_after(Some("alice"), ip("0.0.0.1")), None);
    }
}
