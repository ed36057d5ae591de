//! Tag lists answered from memory while they are current.
//!
//! Listing a repository's tags decodes every name from the database; with a
//! thousand tags that is nearly all of a request's cost. Each instance keeps
//! the sorted names per repository under the [`TagsVersion`] they were read
//! at. The database bumps that version in the same transaction as any tag
//! name is added or removed, whichever instance or code path does it, so a
//! request reads the version (one indexed row) and answers from memory only
//! when it matches: the cache is exact, not "fresh enough".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::metadata::TagsVersion;

/// Repositories whose lists are kept; beyond it the cache starts over.
const MAX_REPOSITORIES: usize = 512;
/// Names kept over all repositories (a few MiB at most); a larger list is
/// served but not kept.
const MAX_NAMES: usize = 200_000;

#[derive(Default)]
pub(super) struct TagLists(Mutex<Lists>);

#[derive(Default)]
struct Lists {
    by_repository: HashMap<String, (TagsVersion, Arc<Vec<String>>)>,
    names: usize,
}

impl TagLists {
    /// The names of `repository` if they were read at exactly `version`.
    pub(super) fn get(&self, repository: &str, version: TagsVersion) -> Option<Arc<Vec<String>>> {
        let lists = self.0.lock().expect("tag list cache poisoned");
        match lists.by_repository.get(repository) {
            Some((kept, names)) if *kept == version => Some(names.clone()),
            _ => None,
        }
    }

    /// Keeps `names`, read after `version` was: they are at least that new.
    pub(super) fn put(&self, repository: &str, version: TagsVersion, names: Arc<Vec<String>>) {
        if names.len() > MAX_NAMES {
            return;
        }
        let mut lists = self.0.lock().expect("tag list cache poisoned");
        if let Some((kept, _)) = lists.by_repository.get(repository)
            && kept.repository_id == version.repository_id
            && kept.counter > version.counter
        {
            // A slower request must not replace a newer list.
            return;
        }
        if let Some((_, old)) = lists.by_repository.remove(repository) {
            lists.names -= old.len();
        }
        if lists.by_repository.len() >= MAX_REPOSITORIES || lists.names + names.len() > MAX_NAMES {
            *lists = Lists::default();
        }
        lists.names += names.len();
        lists
            .by_repository
            .insert(repository.to_string(), (version, names));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(repository_id: i64, counter: i64) -> TagsVersion {
        TagsVersion {
            repository_id,
            counter,
        }
    }

    #[test]
    fn answers_only_for_the_exact_version() {
        let lists = TagLists::default();
        let names = Arc::new(vec!["a".to_string(), "b".to_string()]);
        lists.put("r", version(1, 3), names.clone());
        assert_eq!(lists.get("r", version(1, 3)), Some(names));
        assert_eq!(lists.get("r", version(1, 4)), None);
        // The same name, created again: another repository.
        assert_eq!(lists.get("r", version(2, 3)), None);
        assert_eq!(lists.get("other", version(1, 3)), None);
    }

    #[test]
    fn an_older_read_never_replaces_a_newer_one() {
        let lists = TagLists::default();
        lists.put("r", version(1, 5), Arc::new(vec!["new".to_string()]));
        lists.put("r", version(1, 4), Arc::new(vec!["old".to_string()]));
        assert!(lists.get("r", version(1, 5)).is_some());
        assert_eq!(lists.get("r", version(1, 4)), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let lists = TagLists::default();
        for n in 0..MAX_REPOSITORIES * 2 {
            lists.put(
                &format!("r{n}"),
                version(n as i64, 0),
                Arc::new(vec!["t".into()]),
            );
        }
        let kept = lists.0.lock().unwrap();
        assert!(kept.by_repository.len() <= MAX_REPOSITORIES);
        assert_eq!(kept.names, kept.by_repository.len());
        drop(kept);
        lists.put(
            "huge",
            version(9, 0),
            Arc::new(vec![String::new(); MAX_NAMES + 1]),
        );
        assert_eq!(lists.get("huge", version(9, 0)), None);
    }
}
