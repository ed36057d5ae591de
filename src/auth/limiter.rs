//! Failed-login limits: after too many failures in a window, a user name or
//! a client address is refused (429 with `Retry-After`) until the window
//! passes. Counted in this process; with several instances each counts its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_user: 10,
            per_address: 30,
            window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

struct Window {
    started: Instant,
    failures: u32,
}

pub struct LoginLimiter {
    limits: Limits,
    windows: Mutex<HashMap<Key, Window>>,
}

impl LoginLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait if `user` (when given) or `address` is locked out.
    pub fn retry_after(&self, user: Option<&str>, address: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let windows = self.windows.lock().expect("limiter lock");
        let mut keys = Vec::new();
        if let Some(user) = user {
            keys.push((Key::User(user.to_string()), self.limits.per_user));
        }
        if let Some(address) = address {
            keys.push((Key::Address(address), self.limits.per_address));
        }
        keys.into_iter()
            .filter_map(|(key, limit)| {
                let window = windows.get(&key)?;
                let ends = window.started + self.limits.window;
                (window.failures >= limit && ends > now).then(|| (ends - now).as_secs().max(1))
            })
            .max()
    }

    pub fn record_failure(&self, user: Option<&str>, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("limiter lock");
        if windows.len() > 100_000 {
            windows.retain(|_, w| w.started + self.limits.window > now);
        }
        let keys = user
            .map(|u| Key::User(u.to_string()))
            .into_iter()
            .chain(address.map(Key::Address));
        for key in keys {
            let window = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if window.started + self.limits.window <= now {
                *window = Window {
                    started: now,
                    failures: 0,
                };
            }
            window.failures += 1;
        }
    }

    /// A successful password login clears that user's count.
    pub fn record_success(&self, user: &str) {
        self.windows
            .lock()
            .expect("limiter lock")
            .remove(&Key::User(user.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_only_that_key() {
        let limiter = LoginLimiter::new(Limits {
            per_user: 2,
            per_address: 3,
            window: Duration::from_secs(60),
        });
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let owner: IpAddr = "10.0.0.2".parse().unwrap();
        limiter.record_failure(Some("alice"), Some(attacker));
        assert_eq!(limiter.retry_after(Some("alice"), Some(attacker)), None);
        limiter.record_failure(Some("alice"), Some(attacker));
        assert!(limiter.retry_after(Some("alice"), Some(owner)).is_some());
        assert_eq!(limiter.retry_after(None, Some(owner)), None);
        assert_eq!(limiter.retry_after(None, Some(attacker)), None);
        limiter.record_failure(Some("bob"), Some(attacker));
        assert!(limiter.retry_after(None, Some(attacker)).unwrap() <= 60);
        limiter.record_success("alice");
        assert_eq!(limiter.retry_after(Some("alice"), Some(owner)), None);
    }
}
