//! Manifests, tags, the catalog and referrers. Manifests are stored byte for
//! byte; every blob and child they name must already be in the repository,
//! which the metadata store checks in the same transaction that stores them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Registry, RegistryError, RegistryResult};
use crate::metadata::{
    DeleteOutcome, DeletionPreview, EventAction, NewEventOwned, NewManifest, Origin, Page,
    PutManifestOutcome, Referrer, StoredManifest,
};
use crate::oci::manifest::{self, MAX_MANIFEST_BYTES};
use crate::oci::{Algorithm, Digest, Reference, RepositoryName, Tag};

/// The most names one page of tags or repositories holds, whatever `n` asks.
pub const MAX_PAGE: u32 = 10_000;
/// The fewest candidate names read per statement while filling a page of
/// the catalog a caller filters by visibility.
const CATALOG_SCAN_BATCH: u32 = 200;

#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<Tag>,
}

/// A page of names; `next_last` is set when another page follows.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The page is `window` of these: a tag list's page is a window into
    /// the list kept in memory, so a request copies no name.
    names: Arc<Vec<String>>,
    window: std::ops::Range<usize>,
    pub next_last: Option<String>,
    pub page_size: u32,
}

impl ListPage {
    pub fn names(&self) -> &[String] {
        &self.names[self.window.clone()]
    }
}

/// The refusal to delete a manifest that `indexes` list.
fn listed_by(reference: &Reference, indexes: Vec<Digest>) -> RegistryError {
    let Reference::Digest(digest) = reference else {
        // Deleting a tag never deletes the manifest, so nothing can be in its way.
        return RegistryError::Internal(format!("tag {reference} reported as listed by an index"));
    };
    let (noun, listed) = named(&indexes, "index", "indexes");
    RegistryError::InUse {
        message: format!(
            "manifest {digest} is listed by {noun} {listed}: delete the tag by name instead, or delete the {noun} first"
        ),
        digest: digest.clone(),
        referenced_by: indexes,
    }
}

/// `digests` for a message, with the noun that fits their number:
/// ("index", "sha256:a") or ("indexes", "sha256:a, sha256:b").
pub(super) fn named(
    digests: &[Digest],
    one: &'static str,
    several: &'static str,
) -> (&'static str, String) {
    let listed = digests
        .iter()
        .map(Digest::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    (if digests.len() == 1 { one } else { several }, listed)
}

fn list_page(page: Page, page_size: u32) -> ListPage {
    let next_last = if page.more {
        page.names.last().cloned()
    } else {
        None
    };
    ListPage {
        window: 0..page.names.len(),
        names: Arc::new(page.names),
        next_last,
        page_size,
    }
}

impl Registry {
    /// Stores a manifest under `reference` (a tag, or a digest that must match
    /// the body) and any `extra_tags` (the `?tag=` query of a push by digest).
    pub async fn put_manifest(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: Vec<Tag>,
    ) -> RegistryResult<PushedManifest> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge(MAX_MANIFEST_BYTES));
        }
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of_bytes(algorithm, &body);
        if let Reference::Digest(expected) = reference
            && *expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        let parsed = manifest::parse(&body, content_type)?;
        let mut tags = extra_tags;
        if let Reference::Tag(tag) = reference {
            tags.insert(0, tag.clone());
        }
        tags.dedup();
        let subject = parsed.subject.clone();
        let facts = self.image_facts(repository, parsed.kind, &body).await;
        let new = NewManifest {
            digest: digest.clone(),
            payload: body,
            parsed,
            facts,
        };
        match self
            .metadata
            .put_manifest(origin, repository, new, &tags)
            .await?
        {
            PutManifestOutcome::Stored => Ok(PushedManifest {
                digest,
                subject,
                tags,
            }),
            PutManifestOutcome::MissingReference(missing) => {
                Err(RegistryError::ManifestReferenceUnknown(missing))
            }
            PutManifestOutcome::ImmutableTag { tag, rule } => Err(RegistryError::Denied(format!(
                "tag `{tag}` is immutable in {repository} by {rule}: it cannot be moved to another manifest"
            ))),
        }
    }

    /// A manifest by tag or digest. With `pulled_by`, the read is a pull
    /// (a `GET`), recorded as an event while an endpoint asks for pulls.
    pub async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        pulled_by: Option<&Origin>,
    ) -> RegistryResult<StoredManifest> {
        let found = match reference {
            Reference::Digest(d) => self.metadata.manifest_by_digest(repository, d).await?,
            Reference::Tag(t) => self.metadata.manifest_by_tag(repository, t).await?,
        };
        let manifest = found.ok_or(RegistryError::ManifestUnknown)?;
        if let Some(origin) = pulled_by {
            let tag = match reference {
                Reference::Tag(t) => Some(t),
                Reference::Digest(_) => None,
            };
            self.record_pull(
                origin,
                repository,
                tag,
                &manifest.digest,
                &manifest.media_type,
                manifest.payload.len(),
            )
            .await;
        }
        Ok(manifest)
    }

    /// Records a manifest pull as an event, while an endpoint asks for
    /// pulls. A pull is served even when it cannot be recorded.
    pub async fn record_pull(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        tag: Option<&Tag>,
        digest: &Digest,
        media_type: &str,
        size: usize,
    ) {
        if !self.pull_events.load(Ordering::Relaxed) {
            return;
        }
        let event = NewEventOwned {
            action: EventAction::ManifestPulled,
            repository: repository.to_string(),
            digest: Some(digest.to_string()),
            media_type: Some(media_type.to_string()),
            size: Some(size as u64),
            tag: tag.map(Tag::to_string),
        };
        if let Err(e) = self.events.record_event(origin.clone(), event).await {
            tracing::warn!(error = %e, repository = %repository, "could not record a pull event");
        }
    }

    /// By digest: deletes the manifest and its tags. By tag: deletes the tag only.
    pub async fn delete_manifest(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> RegistryResult<()> {
        let outcome = match reference {
            Reference::Digest(d) => self.metadata.delete_manifest(origin, repository, d).await?,
            Reference::Tag(t) => self.metadata.delete_tag(origin, repository, t).await?,
        };
        match outcome {
            DeleteOutcome::Deleted => Ok(()),
            DeleteOutcome::NotFound => Err(RegistryError::ManifestUnknown),
            DeleteOutcome::ReferencedBy(indexes) => Err(listed_by(reference, indexes)),
            DeleteOutcome::Immutable { tag, rule } => Err(RegistryError::Denied(format!(
                "tag `{tag}` is immutable in {repository} by {rule}: it cannot be deleted"
            ))),
        }
    }

    /// What deleting `reference` would touch (the manifest's tags, the
    /// indexes that list it), for a page to show before it asks to confirm.
    pub async fn deletion_preview(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> RegistryResult<DeletionPreview> {
        self.metadata
            .deletion_preview(repository, reference)
            .await?
            .ok_or(RegistryError::ManifestUnknown)
    }

    /// A page of the repository's tags in byte order, from the per-instance
    /// cache when the database's tag version still matches it.
    pub async fn list_tags(
        &self,
        repository: &RepositoryName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> RegistryResult<ListPage> {
        let page_size = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let version = self
            .metadata
            .tags_version(repository)
            .await?
            .ok_or(RegistryError::RepositoryUnknown)?;
        let names = match self.tag_lists.get(repository.as_str(), version) {
            Some(names) => names,
            None => {
                // Repository rows are never deleted: the id read with the version still names it.
                let names = Arc::new(self.metadata.all_tags(version).await?);
                self.tag_lists
                    .put(repository.as_str(), version, names.clone());
                names
            }
        };
        let start = last.map_or(0, |last| {
            names.partition_point(|name| name.as_str() <= last)
        });
        let end = start.saturating_add(page_size as usize).min(names.len());
        let more = page_size > 0 && end < names.len();
        Ok(ListPage {
            next_last: more.then(|| names[end - 1].clone()),
            window: start..end,
            names,
            page_size,
        })
    }

    pub async fn list_repositories(
        &self,
        n: Option<u32>,
        last: Option<&str>,
    ) -> RegistryResult<ListPage> {
        let page_size = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        if page_size == 0 {
            return Ok(list_page(
                Page {
                    names: vec![],
                    more: false,
                },
                0,
            ));
        }
        Ok(list_page(
            self.metadata.list_repositories(last, page_size).await?,
            page_size,
        ))
    }

    /// Like [`Self::list_repositories`], keeping only names `visible` accepts
    /// (the catalog shows each caller what they may pull).
    pub async fn list_visible_repositories(
        &self,
        n: Option<u32>,
        last: Option<&str>,
        visible: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> RegistryResult<ListPage> {
        let page_size = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut names = Vec::new();
        let mut cursor = last.map(str::to_string);
        if page_size == 0 {
            return Ok(list_page(Page { names, more: false }, 0));
        }
        // Enough rows for the page when most are visible, without reading a
        // whole MAX_PAGE for a page of 50; more batches when they are not.
        let batch = (page_size + 1).clamp(CATALOG_SCAN_BATCH, MAX_PAGE);
        loop {
            let page = self
                .metadata
                .list_repositories(cursor.as_deref(), batch)
                .await?;
            cursor = page.names.last().cloned();
            names.extend(page.names.into_iter().filter(|name| visible(name)));
            if names.len() > page_size as usize || !page.more {
                break;
            }
        }
        let more = names.len() > page_size as usize;
        names.truncate(page_size as usize);
        Ok(list_page(Page { names, more }, page_size))
    }

    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> RegistryResult<Vec<Referrer>> {
        Ok(self
            .metadata
            .referrers(repository, subject, artifact_type)
            .await?)
    }
}
