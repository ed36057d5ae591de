//! Retention policies: which tags of a repository a policy lets go. Pure;
//! the collector applies the verdict (see `gc.rs`).

use serde::Serialize;

use crate::oci::pattern::glob_matches;

/// A policy for a repository (`team/app`) or a namespace (`team`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    pub path: String,
    /// Keep the newest N tags by push time.
    pub keep_last: Option<u64>,
    /// Keep tags pushed within D days.
    pub keep_days: Option<u64>,
    /// Tags matching these patterns are always kept.
    pub exclude: Vec<String>,
}

impl RetentionPolicy {
    pub fn applies_to(&self, repository: &str) -> bool {
        crate::oci::name::lies_within(repository, &self.path)
    }

    /// Of one repository's `(tag, pushed_at)` pairs, the tags this policy
    /// drops at time `now` (seconds). A tag is kept when it is among the
    /// newest `keep_last`, or pushed within `keep_days`, or excluded; with
    /// neither limit set nothing is dropped.
    pub fn expired<'a>(&self, tags: &'a [(String, i64)], now: i64) -> Vec<&'a (String, i64)> {
        if self.keep_last.is_none() && self.keep_days.is_none() {
            return Vec::new();
        }
        let mut by_age: Vec<&(String, i64)> = tags.iter().collect();
        // Newest first; ties broken by name so the verdict is stable.
        by_age.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_age
            .into_iter()
            .enumerate()
            .filter(|(rank, (tag, pushed_at))| {
                let recent_enough = self.keep_last.is_some_and(|n| (*rank as u64) < n);
                let young_enough = self
                    .keep_days
                    .is_some_and(|days| now - pushed_at < (days as i64) * 24 * 3600);
                let excluded = self.exclude.iter().any(|p| glob_matches(p, tag));
                !(recent_enough || young_enough || excluded)
            })
            .map(|(_, tag)| tag)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;

    fn tags() -> Vec<(String, i64)> {
        vec![
            ("a".into(), 10 * DAY),
            ("b".into(), 20 * DAY),
            ("v1".into(), 5 * DAY),
            ("c".into(), 30 * DAY),
            ("latest".into(), 30 * DAY),
        ]
    }

    fn names(list: Vec<&(String, i64)>) -> Vec<&str> {
        let mut names: Vec<&str> = list.into_iter().map(|(t, _)| t.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let policy = RetentionPolicy {
            path: "team".into(),
            keep_last: Some(2),
            keep_days: None,
            exclude: vec![],
        };
        assert_eq!(names(policy.expired(&tags(), 31 * DAY)), ["a", "b", "v1"]);
    }

    #[test]
    fn days_and_exclusions_add_to_what_is_kept() {
        let policy = RetentionPolicy {
            path: "team".into(),
            keep_last: Some(1),
            keep_days: Some(15),
            exclude: vec!["v*".into()],
        };
        // now = day 31: within 15 days are b (day 20), c and latest (day 30).
        assert_eq!(names(policy.expired(&tags(), 31 * DAY)), ["a"]);
        let nothing = RetentionPolicy {
            path: "team".into(),
            keep_last: None,
            keep_days: None,
            exclude: vec![],
        };
        assert!(nothing.expired(&tags(), 31 * DAY).is_empty());
    }

    #[test]
    fn policies_cover_their_path_and_below() {
        let policy = RetentionPolicy {
            path: "team".into(),
            keep_last: Some(1),
            keep_days: None,
            exclude: vec![],
        };
        assert!(policy.applies_to("team"));
        assert!(policy.applies_to("team/app"));
        assert!(!policy.applies_to("teamx/app"));
    }
}
