//! Small concurrency utilities shared by several layers (the blob store's
//! staging epochs, the registry's upload sessions).
//!
//! Depends on nothing in the crate, so any layer may use it without the
//! calls between layers changing direction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Entries a [`KeyedLocks`] map may hold before its dead ones are pruned.
const PRUNE_PAST: usize = 1024;

/// One shared value per key (typically a lock), alive while someone holds
/// it: every caller asking for a key while another still holds its value
/// gets that same value, so they contend on one lock.
///
/// Only [`Weak`]s are kept, so a key nobody holds costs a dead entry at
/// most, and those are pruned when the map grows past 1,024 entries: the
/// map stays about as large as the number of keys in use.
pub struct KeyedLocks<T>(Mutex<HashMap<String, Weak<T>>>);

impl<T> Default for KeyedLocks<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Default> KeyedLocks<T> {
    /// The live value for `key`, or a new one (`T::default()`) when nobody
    /// holds one.
    pub fn get(&self, key: &str) -> Arc<T> {
        // The map holds only weak references and is consistent after any
        // insert or prune, so a panic elsewhere poisons nothing worth refusing.
        let mut values = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = values.get(key).and_then(Weak::upgrade) {
            return value;
        }
        if values.len() >= PRUNE_PAST {
            values.retain(|_, value| value.strong_count() > 0);
        }
        let value = Arc::new(T::default());
        values.insert(key.to_string(), Arc::downgrade(&value));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Counters = KeyedLocks<Mutex<u64>>;

    fn entries(locks: &Counters) -> usize {
        locks.0.lock().unwrap().len()
    }

    #[test]
    fn one_key_shares_one_value_while_it_is_held() {
        let locks = Counters::default();
        let first = locks.get("a");
        *first.lock().unwrap() = 7;
        let second = locks.get("a");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(*second.lock().unwrap(), 7);
        let other = locks.get("b");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(*other.lock().unwrap(), 0);
    }

    #[test]
    fn a_key_nobody_holds_gets_a_new_value() {
        let locks = Counters::default();
        let first = locks.get("a");
        *first.lock().unwrap() = 7;
        drop(first);
        assert_eq!(*locks.get("a").lock().unwrap(), 0);
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_what_is_held() {
        let locks = Counters::default();
        let held = locks.get("held");
        *held.lock().unwrap() = 7;
        for i in 0..10 * PRUNE_PAST {
            drop(locks.get(&format!("key-{i}")));
            assert!(entries(&locks) <= PRUNE_PAST + 1);
        }
        assert!(Arc::ptr_eq(&held, &locks.get("held")));
        assert_eq!(*locks.get("held").lock().unwrap(), 7);
    }
}
