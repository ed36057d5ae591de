//! Browsing: the rows the web UI's pages and `/api/v1`'s repository
//! endpoints show (the same rows for both), read from metadata only.
//! Pages are keyset-paginated with opaque cursors; which repositories a
//! caller may see is the caller's test (`Auth::pull_check`), applied here
//! to each candidate so a page is always full when more rows exist.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Registry, RegistryError, RegistryResult};
use crate::metadata::{
    ManifestListing, ManifestRecord, RepositoryAfter, RepositoryListing, RepositoryOrder, TagAfter,
    TagListing, TagOrder,
};
use crate::oci::image::{ConfigSummary, Descriptor, IMAGE_CONFIG_TYPES, Platform, descriptors};
use crate::oci::manifest::is_index_type;
use crate::oci::{Reference, RepositoryName, Tag};

pub use crate::metadata::{RepositoryOrder as RepositorySort, TagOrder as TagSort};

/// The most rows one page holds.
pub const MAX_BROWSE_PAGE: u32 = 1000;

/// Candidates read per statement while filling a page of repositories.
const SCAN_BATCH: u32 = 500;

/// Statements one page of repositories may make before it is answered short.
const MAX_SCAN_BATCHES: u32 = 10;

/// A page of rows; `next` is the cursor of the following page, if any.
#[derive(Debug, Clone, Serialize)]
pub struct BrowsePage<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A repository as the repositories page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RepositorySummary {
    pub name: String,
    /// Unix seconds of the last manifest or tag pushed.
    pub last_pushed_at: Option<i64>,
    pub tag_count: u64,
    /// Bytes of its distinct blobs.
    pub size: u64,
    pub platforms: Vec<Platform>,
}

/// An image a tag or manifest row runs as: the manifest itself, or an index's child.
#[derive(Debug, Clone, Serialize)]
pub struct ImageEntry {
    pub digest: String,
    pub media_type: String,
    pub platform: Option<Platform>,
    /// Config and layers (compressed).
    pub size: Option<u64>,
}

/// A tag as the repository page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TagSummary {
    pub tag: String,
    /// Unix seconds when the tag was last set.
    pub pushed_at: i64,
    pub digest: String,
    pub media_type: String,
    pub images: Vec<ImageEntry>,
}

/// An untagged manifest as the repository page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSummary {
    pub digest: String,
    pub media_type: String,
    pub pushed_at: i64,
    pub images: Vec<ImageEntry>,
}

/// A child of an index, as the index lists it.
#[derive(Debug, Clone, Serialize)]
pub struct IndexChild {
    pub digest: String,
    pub media_type: String,
    pub platform: Option<Platform>,
    /// The child's content size when it is stored here, else the index entry's size.
    pub size: u64,
    /// Whether this repository holds the child (an index may list more).
    pub stored: bool,
    pub artifact_type: Option<String>,
}

/// A manifest whose subject is the one shown: a signature, an SBOM, an attestation.
#[derive(Debug, Clone, Serialize)]
pub struct ReferrerSummary {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
}

/// Everything the manifest page shows.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestDetail {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub pushed_at: i64,
    /// An image's config and layers, or the sum of an index's stored children.
    pub size: Option<u64>,
    pub tags: Vec<String>,
    pub annotations: BTreeMap<String, String>,
    pub platform: Option<Platform>,
    /// The image's created time (unix seconds), from its config.
    pub created: Option<i64>,
    pub config: Option<ConfigSummary>,
    pub config_descriptor: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<IndexChild>,
    pub referrers: Vec<ReferrerSummary>,
}

fn annotations(json: Option<&str>) -> BTreeMap<String, String> {
    json.and_then(|text| serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect()
}

/// `limit` within bounds: 0 or absent means the default.
fn page_size(limit: Option<u32>, default: u32) -> u32 {
    match limit {
        None | Some(0) => default,
        Some(n) => n.min(MAX_BROWSE_PAGE),
    }
}

/// The name a cursor resumes after: a cursor is the client's to send, so
/// what it holds is checked like any name before it reaches a query.
fn cursor_name<N: std::str::FromStr>(name: &str) -> RegistryResult<String> {
    name.parse::<N>()
        .map(|_| name.to_string())
        .map_err(|_| RegistryError::CursorInvalid)
}

fn repository_cursor(
    order: RepositoryOrder,
    cursor: Option<&str>,
) -> RegistryResult<RepositoryAfter> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(RepositoryAfter::Start);
    };
    match (order, cursor.split_once(':')) {
        (RepositoryOrder::Name, Some(("n", name))) => {
            Ok(RepositoryAfter::Name(cursor_name::<RepositoryName>(name)?))
        }
        (RepositoryOrder::Recent, Some(("r", rest))) => {
            let (at, name) = rest.split_once(':').ok_or(RegistryError::CursorInvalid)?;
            let pushed_at = at.parse().map_err(|_| RegistryError::CursorInvalid)?;
            Ok(RepositoryAfter::Recent {
                pushed_at,
                name: cursor_name::<RepositoryName>(name)?,
            })
        }
        _ => Err(RegistryError::CursorInvalid),
    }
}

/// Where a page of repositories that ended at `row` resumes.
fn repository_after(order: RepositoryOrder, row: &RepositoryListing) -> RepositoryAfter {
    match order {
        RepositoryOrder::Name => RepositoryAfter::Name(row.name.clone()),
        RepositoryOrder::Recent => RepositoryAfter::Recent {
            pushed_at: row.last_pushed_at.unwrap_or(i64::MIN),
            name: row.name.clone(),
        },
    }
}

/// The cursor [`repository_cursor`] reads back as `after`; none at the start.
fn repository_cursor_text(after: &RepositoryAfter) -> Option<String> {
    match after {
        RepositoryAfter::Start => None,
        RepositoryAfter::Name(name) => Some(format!("n:{name}")),
        RepositoryAfter::Recent { pushed_at, name } => Some(format!("r:{pushed_at}:{name}")),
    }
}

fn tag_cursor(order: TagOrder, cursor: Option<&str>) -> RegistryResult<TagAfter> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(TagAfter::Start);
    };
    match (order, cursor.split_once(':')) {
        (TagOrder::Name, Some(("n", name))) => Ok(TagAfter::Name(cursor_name::<Tag>(name)?)),
        (TagOrder::Recent, Some(("r", rest))) => {
            let (at, name) = rest.split_once(':').ok_or(RegistryError::CursorInvalid)?;
            let pushed_at = at.parse().map_err(|_| RegistryError::CursorInvalid)?;
            Ok(TagAfter::Recent {
                pushed_at,
                name: cursor_name::<Tag>(name)?,
            })
        }
        _ => Err(RegistryError::CursorInvalid),
    }
}

fn untagged_cursor(cursor: Option<&str>) -> RegistryResult<Option<(i64, i64)>> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let parsed = cursor
        .strip_prefix("u:")
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)));
    parsed.map(Some).ok_or(RegistryError::CursorInvalid)
}

fn image_entry(listing: &ManifestListing) -> ImageEntry {
    ImageEntry {
        digest: listing.digest.clone(),
        media_type: listing.media_type.clone(),
        platform: listing.platform.clone(),
        size: listing.size,
    }
}

/// What a listed manifest runs as: itself, or an index's stored children by platform.
fn images_of(
    listing: &ManifestListing,
    children: &HashMap<i64, Vec<ManifestListing>>,
) -> Vec<ImageEntry> {
    if is_index_type(&listing.media_type) {
        let mut images: Vec<ImageEntry> = children
            .get(&listing.id)
            .map(|c| c.iter().map(image_entry).collect())
            .unwrap_or_default();
        // Attestations and other artifacts an index carries have no platform: images first.
        images.sort_by(|a, b| {
            (a.platform.is_none(), &a.platform).cmp(&(b.platform.is_none(), &b.platform))
        });
        images
    } else {
        vec![image_entry(listing)]
    }
}

impl Registry {
    /// A page of the repositories `visible` accepts, holding a manifest,
    /// whose names contain `search`.
    pub async fn browse_repositories(
        &self,
        search: &str,
        order: RepositoryOrder,
        cursor: Option<&str>,
        limit: Option<u32>,
        visible: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> RegistryResult<BrowsePage<RepositorySummary>> {
        let limit = page_size(limit, 50) as usize;
        let mut after = repository_cursor(order, cursor)?;
        let mut rows = Vec::new();
        let mut scanned = 0u32;
        let mut scan_stopped = false;
        loop {
            let batch = self
                .metadata
                .list_repository_page(
                    search,
                    order,
                    after.clone(),
                    SCAN_BATCH.max(limit as u32 + 1),
                )
                .await?;
            let exhausted = batch.len() < SCAN_BATCH.max(limit as u32 + 1) as usize;
            if let Some(last) = batch.last() {
                after = repository_after(order, last);
            }
            scanned += 1;
            rows.extend(batch.into_iter().filter(|row| visible(&row.name)));
            if rows.len() > limit || exhausted {
                break;
            }
            if scanned == MAX_SCAN_BATCHES {
                // A caller who may see few of many repositories gets a
                // short page and a cursor where the scan stopped, so no
                // request (an anonymous one least) reads every row.
                scan_stopped = true;
                break;
            }
        }
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| repository_after(order, last))
        } else if scan_stopped {
            Some(after)
        } else {
            None
        };
        let next = next.as_ref().and_then(repository_cursor_text);
        self.summarize_repositories(rows, next).await
    }

    /// A page of `rows` with their tag counts, sizes and platforms.
    async fn summarize_repositories(
        &self,
        rows: Vec<RepositoryListing>,
        next: Option<String>,
    ) -> RegistryResult<BrowsePage<RepositorySummary>> {
        let mut stats = self
            .metadata
            .repository_stats(rows.iter().map(|r| r.id).collect())
            .await?;
        let items = rows
            .into_iter()
            .map(|row| {
                let stats = stats.remove(&row.id).unwrap_or_default();
                RepositorySummary {
                    name: row.name,
                    last_pushed_at: row.last_pushed_at,
                    tag_count: stats.tag_count,
                    size: stats.size,
                    platforms: stats.platforms,
                }
            })
            .collect();
        Ok(BrowsePage { items, next })
    }

    /// One repository as the repositories page lists it.
    pub async fn repository_summary(
        &self,
        repository: &RepositoryName,
    ) -> RegistryResult<RepositorySummary> {
        let row = self
            .metadata
            .repository_listing(repository.as_str())
            .await?
            .ok_or(RegistryError::RepositoryUnknown)?;
        let mut page = self.summarize_repositories(vec![row], None).await?;
        page.items.pop().ok_or(RegistryError::RepositoryUnknown)
    }

    async fn existing_repository(&self, repository: &RepositoryName) -> RegistryResult<i64> {
        self.metadata
            .repository_id(repository.as_str())
            .await?
            .ok_or(RegistryError::RepositoryUnknown)
    }

    /// A page of `repository`'s tags whose names contain `search`.
    pub async fn browse_tags(
        &self,
        repository: &RepositoryName,
        search: &str,
        order: TagOrder,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> RegistryResult<BrowsePage<TagSummary>> {
        let id = self.existing_repository(repository).await?;
        let limit = page_size(limit, 50);
        let after = tag_cursor(order, cursor)?;
        let (mut tags, children) = self
            .metadata
            .list_tag_page(id, search, order, after, limit + 1)
            .await?;
        let more = tags.len() > limit as usize;
        tags.truncate(limit as usize);
        let next = if more {
            tags.last().map(|last: &TagListing| match order {
                TagOrder::Name => format!("n:{}", last.name),
                TagOrder::Recent => format!("r:{}:{}", last.pushed_at, last.name),
            })
        } else {
            None
        };
        let items = tags
            .into_iter()
            .map(|tag| TagSummary {
                images: images_of(&tag.manifest, &children),
                tag: tag.name,
                pushed_at: tag.pushed_at,
                digest: tag.manifest.digest,
                media_type: tag.manifest.media_type,
            })
            .collect();
        Ok(BrowsePage { items, next })
    }

    /// A page of `repository`'s untagged manifests, newest first.
    pub async fn browse_untagged(
        &self,
        repository: &RepositoryName,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> RegistryResult<BrowsePage<ManifestSummary>> {
        let id = self.existing_repository(repository).await?;
        let limit = page_size(limit, 50);
        let after = untagged_cursor(cursor)?;
        let (mut manifests, children) = self
            .metadata
            .list_untagged_page(id, after, limit + 1)
            .await?;
        let more = manifests.len() > limit as usize;
        manifests.truncate(limit as usize);
        let next = if more {
            manifests
                .last()
                .map(|m| format!("u:{}:{}", m.pushed_at, m.id))
        } else {
            None
        };
        let items = manifests
            .iter()
            .map(|m| ManifestSummary {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                pushed_at: m.pushed_at,
                images: images_of(m, &children),
            })
            .collect();
        Ok(BrowsePage { items, next })
    }

    /// One manifest of `repository`, by tag or digest, with what it names and its referrers.
    pub async fn manifest_detail(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> RegistryResult<ManifestDetail> {
        let id = self.existing_repository(repository).await?;
        let (digest, tag) = match reference {
            Reference::Digest(d) => (Some(d.to_string()), None),
            Reference::Tag(t) => (None, Some(t.to_string())),
        };
        let record: ManifestRecord = self
            .metadata
            .manifest_record(id, digest, tag)
            .await?
            .ok_or(RegistryError::ManifestUnknown)?;
        let found = descriptors(&record.payload);
        let stored: HashMap<&str, &ManifestListing> = record
            .children
            .iter()
            .map(|c| (c.digest.as_str(), c))
            .collect();
        let manifests: Vec<IndexChild> = found
            .manifests
            .iter()
            .map(|entry| {
                let child = stored.get(entry.digest.as_str());
                IndexChild {
                    digest: entry.digest.clone(),
                    media_type: entry.media_type.clone(),
                    platform: entry
                        .platform
                        .clone()
                        .or_else(|| child.and_then(|c| c.platform.clone())),
                    size: child.and_then(|c| c.size).unwrap_or(entry.size),
                    stored: child.is_some(),
                    artifact_type: entry.artifact_type.clone(),
                }
            })
            .collect();
        let size = if is_index_type(&record.listing.media_type) {
            Some(record.children.iter().filter_map(|c| c.size).sum())
        } else {
            record.listing.size
        };
        let subject = record.listing.digest.parse().map_err(|_| {
            RegistryError::Internal(format!("stored digest {}", record.listing.digest))
        })?;
        let referrers = self
            .metadata
            .referrers(repository, &subject, None)
            .await?
            .into_iter()
            .map(|r| ReferrerSummary {
                digest: r.digest.to_string(),
                media_type: r.media_type,
                artifact_type: r.artifact_type,
                size: r.size,
                annotations: annotations(r.annotations.as_deref()),
            })
            .collect();
        Ok(ManifestDetail {
            digest: record.listing.digest,
            media_type: record.listing.media_type,
            // The referrers API falls back to the config's media type; for
            // an image that is no artifact type a reader should see.
            artifact_type: record
                .artifact_type
                .filter(|t| !IMAGE_CONFIG_TYPES.contains(&t.as_str())),
            pushed_at: record.listing.pushed_at,
            size,
            tags: record.tags,
            annotations: annotations(record.annotations.as_deref()),
            platform: record.listing.platform,
            created: record.created,
            config: record
                .summary
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok()),
            config_descriptor: found.config,
            layers: found.layers,
            manifests,
            referrers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        assert_eq!(
            repository_cursor(RepositoryOrder::Recent, Some("r:17:alice/web")).unwrap(),
            RepositoryAfter::Recent {
                pushed_at: 17,
                name: "alice/web".into()
            }
        );
        assert_eq!(
            repository_cursor(RepositoryOrder::Name, None).unwrap(),
            RepositoryAfter::Start
        );
        for bad in ["x", "r:17:alice", "n:", "n:Not/A/Name", "r:17:a\u{0}b"] {
            let order = if bad == "r:17:alice" {
                RepositoryOrder::Name
            } else {
                RepositoryOrder::Recent
            };
            assert!(repository_cursor(order, Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(untagged_cursor(Some("u:5:9")).unwrap(), Some((5, 9)));
        assert!(untagged_cursor(Some("u:5")).is_err());
        assert!(tag_cursor(TagOrder::Recent, Some("r:notanumber:x")).is_err());
        assert!(tag_cursor(TagOrder::Name, Some("n:bad tag")).is_err());
        assert_eq!(
            tag_cursor(TagOrder::Name, Some("n:v1.2")).unwrap(),
            TagAfter::Name("v1.2".into())
        );
    }
}
