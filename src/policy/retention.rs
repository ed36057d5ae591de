//! Retention: which tags of a repository a policy lets go. A policy on a
//! repository (`team/app`) or a namespace (`team`) keeps the newest
//! `keep_last` tags by push time and/or those pushed within `keep_days`,
//! and never touches tags matching its `exclude` patterns; the collector
//! untags the rest (`gc.rs`) and collects what they held. Pure.

use super::{PolicyError, PolicyResult, check_path, check_tag_pattern};
use crate::metadata::RetentionPolicy;
use crate::oci::name::lies_within;
use crate::oci::pattern::glob_matches;

/// Whether a policy can be stored: a valid path, at least one limit, and
/// exclusions that are tag patterns.
pub fn check(policy: &RetentionPolicy) -> PolicyResult<()> {
    check_path(&policy.path)?;
    if policy.keep_last.is_none() && policy.keep_days.is_none() {
        return Err(PolicyError::Invalid(
            "give keep_last, keep_days or both".into(),
        ));
    }
    policy.exclude.iter().try_for_each(|p| check_tag_pattern(p))
}

/// The policy that governs `repository`: of those covering it, the most
/// specific (longest path).
pub fn governing<'p>(
    policies: &'p [RetentionPolicy],
    repository: &str,
) -> Option<&'p RetentionPolicy> {
    policies
        .iter()
        .filter(|p| lies_within(repository, &p.path))
        .max_by_key(|p| p.path.len())
}

/// Of one repository's `(tag, pushed_at)` pairs, the tags `policy` drops at
/// time `now` (seconds). A tag is kept when it is among the newest
/// `keep_last`, or pushed within `keep_days`, or excluded; with neither
/// limit set nothing is dropped.
pub fn expired<'a>(
    policy: &RetentionPolicy,
    tags: &'a [(String, i64)],
    now: i64,
) -> Vec<&'a (String, i64)> {
    if policy.keep_last.is_none() && policy.keep_days.is_none() {
        return Vec::new();
    }
    let mut by_age: Vec<&(String, i64)> = tags.iter().collect();
    // Newest first; ties broken by name so the verdict is stable.
    by_age.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_age
        .into_iter()
        .enumerate()
        .filter(|(rank, (tag, pushed_at))| {
            let recent_enough = policy.keep_last.is_some_and(|n| (*rank as u64) < n);
            let young_enough = policy
                .keep_days
                .is_some_and(|days| now - pushed_at < (days as i64) * 24 * 3600);
            let excluded = policy.exclude.iter().any(|p| glob_matches(p, tag));
            !(recent_enough || young_enough || excluded)
        })
        .map(|(_, tag)| tag)
        .collect()
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

    fn policy(
        path: &str,
        keep_last: Option<u64>,
        keep_days: Option<u64>,
        exclude: &[&str],
    ) -> RetentionPolicy {
        RetentionPolicy {
            path: path.into(),
            keep_last,
            keep_days,
            exclude: exclude.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let policy = policy("team", Some(2), None, &[]);
        assert_eq!(names(expired(&policy, &tags(), 31 * DAY)), ["a", "b", "v1"]);
    }

    #[test]
    fn days_and_exclusions_add_to_what_is_kept() {
        let keeping = policy("team", Some(1), Some(15), &["v*"]);
        // now = day 31: within 15 days are b (day 20), c and latest (day 30).
        assert_eq!(names(expired(&keeping, &tags(), 31 * DAY)), ["a"]);
        let nothing = policy("team", None, None, &[]);
        assert!(expired(&nothing, &tags(), 31 * DAY).is_empty());
    }

    #[test]
    fn the_most_specific_policy_governs_a_repository() {
        let policies = [
            policy("team", Some(1), None, &[]),
            policy("team/app", Some(5), None, &[]),
        ];
        assert_eq!(governing(&policies, "team/app").unwrap().path, "team/app");
        assert_eq!(governing(&policies, "team/db").unwrap().path, "team");
        assert_eq!(governing(&policies, "team").unwrap().path, "team");
        assert!(governing(&policies, "teamx/app").is_none());
    }

    #[test]
    fn a_stored_policy_has_a_limit_and_tag_pattern_exclusions() {
        assert!(check(&policy("team", Some(1), None, &["v*"])).is_ok());
        assert!(check(&policy("team", None, None, &[])).is_err());
        assert!(check(&policy("team", Some(1), None, &["v/1"])).is_err());
        assert!(check(&policy("Team", Some(1), None, &[])).is_err());
    }
}
