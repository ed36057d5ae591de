//! A repository's pages: its tags, its untagged manifests, and one
//! manifest (by tag or digest) with its platforms, layers and referrers.
//! Every row comes from `registry`'s browse queries (metadata only, never
//! blob storage); a repository the viewer may not pull is answered exactly
//! like one that does not exist.

use axum::http::Uri;
use axum::response::Response;
use serde::Deserialize;

use super::super::format::{absolute, relative, short_digest, size};
use super::super::input::parse_query;
use super::super::{UiError, UiState, Viewer, paths, render};
use super::layout::Layout;
use super::manage::notice;
use crate::admin;
use crate::auth::scope::Actions;
use crate::metadata::unix_now;
use crate::oci::image::Platform;
use crate::oci::name::namespace_of;
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::policy::visibility::is_public;
use crate::registry::{ImageEntry, ManifestDetail, RegistryError, TagSort, TagSummary};

/// Rows per page of tags or untagged manifests.
const PAGE_ROWS: u32 = 50;

/// A moment, as pages show it: relative, with the exact UTC time on hover.
pub struct When {
    pub relative: String,
    pub absolute: String,
}

impl When {
    pub fn at(unix_seconds: i64, now: i64) -> When {
        When {
            relative: relative(unix_seconds, now),
            absolute: absolute(unix_seconds),
        }
    }
}

/// The heading and tabs every page of a repository shows, and what the
/// viewer may do there (which decides the controls shown; the server
/// checks again on every change).
pub struct RepositoryHeader {
    pub name: String,
    pub namespace: String,
    pub public: bool,
    pub may_delete: bool,
    pub may_manage: bool,
    /// `tags`, `untagged`, `settings` or `manifest`: which tab is current.
    pub tab: &'static str,
    pub url: String,
    pub untagged_url: String,
    pub settings_url: String,
}

impl RepositoryHeader {
    /// The header of `name` for `viewer`, or `NotFound` when they may not
    /// pull it (whether or not it exists).
    pub async fn load(
        state: &UiState,
        viewer: &Viewer,
        name: &RepositoryName,
        tab: &'static str,
    ) -> Result<RepositoryHeader, UiError> {
        let public_paths = state.policies.public_paths().await?;
        let actions = if viewer.open {
            Actions::ALL
        } else {
            viewer
                .principal
                .repository_actions(name.as_str(), &public_paths)
        };
        if !actions.contains(Actions::PULL) {
            return Err(not_found());
        }
        let name = name.as_str();
        Ok(RepositoryHeader {
            name: name.to_string(),
            namespace: namespace_of(name).to_string(),
            public: is_public(name, &public_paths),
            may_delete: actions.contains(Actions::DELETE),
            may_manage: admin::may_manage(&viewer.actor(), name),
            tab,
            url: paths::repository(name),
            untagged_url: paths::untagged(name),
            settings_url: paths::settings(name),
        })
    }
}

/// What a viewer sees for a repository they may not pull, or that does not exist.
pub fn not_found() -> UiError {
    UiError::NotFound("there is no such repository, or you may not see it".into())
}

/// A registry "not found" is the page's "not found": never "you may not".
fn unknown(error: RegistryError) -> UiError {
    match error {
        RegistryError::RepositoryUnknown | RegistryError::ManifestUnknown => not_found(),
        e => e.into(),
    }
}

pub fn platform_label(platform: Option<&Platform>) -> String {
    platform.map_or_else(|| "unknown platform".to_string(), Platform::to_string)
}

/// An image a row runs as, as the page shows it.
pub struct ImageView {
    pub platform: String,
    pub size: String,
    pub url: String,
}

fn image_views(repository: &str, images: &[ImageEntry]) -> Vec<ImageView> {
    images
        .iter()
        .map(|image| ImageView {
            platform: platform_label(image.platform.as_ref()),
            size: image.size.map(size).unwrap_or_default(),
            url: paths::manifest(repository, &image.digest),
        })
        .collect()
}

/// A tag or an untagged manifest in the repository's table.
pub struct ManifestRow {
    pub label: String,
    pub url: String,
    pub digest: String,
    pub digest_url: String,
    pub short_digest: String,
    pub images: Vec<ImageView>,
    pub pushed: When,
    pub pull: String,
    pub delete_url: String,
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    sort: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "repository.html")]
struct RepositoryPage {
    layout: Layout,
    repo: RepositoryHeader,
    notice: Option<&'static str>,
    untagged: bool,
    query: String,
    sort: &'static str,
    rows: Vec<ManifestRow>,
    next_page: Option<String>,
}

/// `base?name=value&...` with the values encoded, the empty ones left out.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(name, value);
        any = true;
    }
    if any {
        format!("{base}?{}", query.finish())
    } else {
        base.to_string()
    }
}

fn tag_row(name: &str, host: &str, tag: TagSummary, now: i64) -> ManifestRow {
    ManifestRow {
        url: paths::tag(name, &tag.tag),
        digest_url: paths::manifest(name, &tag.digest),
        short_digest: short_digest(&tag.digest),
        images: image_views(name, &tag.images),
        pushed: When::at(tag.pushed_at, now),
        pull: format!("docker pull {host}/{name}:{}", tag.tag),
        delete_url: with_query(&paths::delete(name), &[("tag", &tag.tag)]),
        label: tag.tag,
        digest: tag.digest,
    }
}

/// `/r/<name>`: the repository's tags, filtered and a page at a time.
pub async fn tags(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    host: &str,
    uri: &Uri,
) -> Result<Response, UiError> {
    let repo = RepositoryHeader::load(state, viewer, name, "tags").await?;
    let query: ListQuery = parse_query(uri)?;
    let (sort, order) = match query.sort.as_deref() {
        Some("name") => ("name", TagSort::Name),
        _ => ("recent", TagSort::Recent),
    };
    let page = state
        .registry
        .browse_tags(
            name,
            &query.q,
            order,
            query.cursor.as_deref(),
            Some(PAGE_ROWS),
        )
        .await
        .map_err(unknown)?;
    let now = unix_now();
    let rows = page
        .items
        .into_iter()
        .map(|tag| tag_row(name.as_str(), host, tag, now))
        .collect();
    let next_page = page.next.map(|cursor| {
        with_query(
            &repo.url,
            &[("q", &query.q), ("sort", sort), ("cursor", &cursor)],
        )
    });
    render(&RepositoryPage {
        layout: Layout::for_viewer(viewer),
        notice: query.done.as_deref().and_then(notice),
        repo,
        untagged: false,
        query: query.q,
        sort,
        rows,
        next_page,
    })
}

/// `/r/<name>/-/untagged`: manifests no tag or index holds, newest first.
pub async fn untagged(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    uri: &Uri,
) -> Result<Response, UiError> {
    let repo = RepositoryHeader::load(state, viewer, name, "untagged").await?;
    let query: ListQuery = parse_query(uri)?;
    let page = state
        .registry
        .browse_untagged(name, query.cursor.as_deref(), Some(PAGE_ROWS))
        .await
        .map_err(unknown)?;
    let now = unix_now();
    let name = name.as_str();
    let rows = page
        .items
        .into_iter()
        .map(|m| ManifestRow {
            label: short_digest(&m.digest),
            url: paths::manifest(name, &m.digest),
            digest_url: paths::manifest(name, &m.digest),
            short_digest: short_digest(&m.digest),
            images: image_views(name, &m.images),
            pushed: When::at(m.pushed_at, now),
            pull: String::new(),
            delete_url: with_query(&paths::delete(name), &[("digest", &m.digest)]),
            digest: m.digest,
        })
        .collect();
    let next_page = page
        .next
        .map(|cursor| with_query(&repo.untagged_url, &[("cursor", &cursor)]));
    render(&RepositoryPage {
        layout: Layout::for_viewer(viewer),
        notice: query.done.as_deref().and_then(notice),
        repo,
        untagged: true,
        query: String::new(),
        sort: "recent",
        rows,
        next_page,
    })
}

pub struct TagLink {
    pub label: String,
    pub url: String,
}

pub struct ChildView {
    pub stored: bool,
    pub url: String,
    pub platform: String,
    pub digest: String,
    pub short_digest: String,
    pub media_type: String,
    pub size: String,
}

pub struct StepView {
    pub created_by: String,
    pub comment: Option<String>,
    pub size: String,
}

pub struct ConfigView {
    pub entrypoint: Option<String>,
    pub cmd: Option<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub ports: Vec<String>,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub history: Vec<StepView>,
}

pub struct LayerView {
    pub digest: String,
    pub short_digest: String,
    pub media_type: String,
    pub size: String,
}

pub struct ReferrerView {
    pub url: String,
    pub digest: String,
    pub short_digest: String,
    pub size: String,
    pub annotations: Vec<(String, String)>,
}

pub struct ReferrerGroup {
    pub kind: &'static str,
    pub artifact_type: String,
    pub items: Vec<ReferrerView>,
}

pub struct ManifestView {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub pushed: When,
    pub size: String,
    pub tags: Vec<TagLink>,
    pub platform: Option<String>,
    pub created: Option<When>,
    pub pull: Option<String>,
    pub may_delete: bool,
    pub by_tag: bool,
    pub delete_url: String,
    pub children: Vec<ChildView>,
    pub config: Option<ConfigView>,
    pub layers: Vec<LayerView>,
    pub referrers: Vec<ReferrerGroup>,
    pub annotations: Vec<(String, String)>,
}

#[derive(askama::Template)]
#[template(path = "manifest.html")]
struct ManifestPage {
    layout: Layout,
    repo: RepositoryHeader,
    title: String,
    m: ManifestView,
}

/// What a referrer's artifact type says it is, for grouping.
fn referrer_kind(artifact_type: &str) -> &'static str {
    let t = artifact_type.to_ascii_lowercase();
    if t.contains("signature") || t.contains("cosign") || t.contains("notary") || t.contains("sig")
    {
        "Signatures"
    } else if t.contains("spdx")
        || t.contains("cyclonedx")
        || t.contains("sbom")
        || t.contains("syft")
    {
        "SBOMs"
    } else if t.contains("in-toto")
        || t.contains("attestation")
        || t.contains("provenance")
        || t.contains("dsse")
    {
        "Attestations"
    } else {
        "Other artifacts"
    }
}

/// A command line as a shell would take it back (JSON arrays in configs).
fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn manifest_view(
    name: &str,
    host: &str,
    detail: ManifestDetail,
    by_tag: Option<&Tag>,
    may_delete: bool,
    now: i64,
) -> ManifestView {
    let pull = match by_tag {
        Some(tag) => Some(format!("docker pull {host}/{name}:{tag}")),
        None => Some(format!("docker pull {host}/{name}@{}", detail.digest)),
    };
    let delete_url = match by_tag {
        Some(tag) => with_query(&paths::delete(name), &[("tag", tag.as_str())]),
        None => with_query(&paths::delete(name), &[("digest", &detail.digest)]),
    };
    // Each history step that made a layer is the next layer, in order.
    let mut layer_sizes = detail.layers.iter().map(|l| l.size);
    let config = detail.config.map(|config| ConfigView {
        entrypoint: config.entrypoint.as_deref().map(command_line),
        cmd: config.cmd.as_deref().map(command_line),
        working_dir: config.working_dir,
        user: config.user,
        ports: config.exposed_ports,
        env: config.env,
        labels: config.labels.into_iter().collect(),
        history: config
            .history
            .into_iter()
            .map(|step| StepView {
                size: if step.empty_layer {
                    "0 B".to_string()
                } else {
                    layer_sizes.next().map(size).unwrap_or_default()
                },
                created_by: step.created_by,
                comment: step.comment,
            })
            .collect(),
    });
    let mut groups: Vec<ReferrerGroup> = Vec::new();
    for referrer in detail.referrers {
        let artifact_type = referrer
            .artifact_type
            .clone()
            .unwrap_or_else(|| referrer.media_type.clone());
        let view = ReferrerView {
            url: paths::manifest(name, &referrer.digest),
            short_digest: short_digest(&referrer.digest),
            size: size(referrer.size),
            annotations: referrer.annotations.into_iter().collect(),
            digest: referrer.digest,
        };
        match groups.iter_mut().find(|g| g.artifact_type == artifact_type) {
            Some(group) => group.items.push(view),
            None => groups.push(ReferrerGroup {
                kind: referrer_kind(&artifact_type),
                artifact_type,
                items: vec![view],
            }),
        }
    }
    groups.sort_by(|a, b| (a.kind, &a.artifact_type).cmp(&(b.kind, &b.artifact_type)));
    ManifestView {
        pushed: When::at(detail.pushed_at, now),
        size: detail.size.map(size).unwrap_or_default(),
        tags: detail
            .tags
            .iter()
            .map(|t| TagLink {
                label: t.clone(),
                url: paths::tag(name, t),
            })
            .collect(),
        platform: detail.platform.as_ref().map(Platform::to_string),
        created: detail.created.map(|at| When::at(at, now)),
        pull,
        may_delete,
        by_tag: by_tag.is_some(),
        delete_url,
        children: detail
            .manifests
            .into_iter()
            .map(|child| ChildView {
                stored: child.stored,
                url: paths::manifest(name, &child.digest),
                platform: match (&child.platform, &child.artifact_type) {
                    (Some(p), _) => p.to_string(),
                    (None, Some(t)) => t.clone(),
                    (None, None) => "unknown platform".into(),
                },
                short_digest: short_digest(&child.digest),
                digest: child.digest,
                media_type: child.media_type,
                size: size(child.size),
            })
            .collect(),
        config,
        layers: detail
            .layers
            .into_iter()
            .map(|layer| LayerView {
                short_digest: short_digest(&layer.digest),
                digest: layer.digest,
                media_type: layer.media_type,
                size: size(layer.size),
            })
            .collect(),
        referrers: groups,
        annotations: detail.annotations.into_iter().collect(),
        digest: detail.digest,
        media_type: detail.media_type,
        artifact_type: detail.artifact_type,
    }
}

async fn show_manifest(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    host: &str,
    reference: Reference,
) -> Result<Response, UiError> {
    let tab = if matches!(reference, Reference::Tag(_)) {
        "tags"
    } else {
        "manifest"
    };
    let repo = RepositoryHeader::load(state, viewer, name, tab).await?;
    let detail = state
        .registry
        .manifest_detail(name, &reference)
        .await
        .map_err(unknown)?;
    let (title, tag) = match &reference {
        Reference::Tag(tag) => (format!("{}:{tag}", name.as_str()), Some(tag)),
        Reference::Digest(digest) => (
            format!("{}@{}", name.as_str(), short_digest(digest.as_str())),
            None,
        ),
    };
    let m = manifest_view(
        name.as_str(),
        host,
        detail,
        tag,
        repo.may_delete,
        unix_now(),
    );
    render(&ManifestPage {
        layout: Layout::for_viewer(viewer),
        repo,
        title,
        m,
    })
}

/// `/r/<name>/-/tags/<tag>`.
pub async fn tag(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    host: &str,
    tag: &Tag,
) -> Result<Response, UiError> {
    show_manifest(state, viewer, name, host, Reference::Tag(tag.clone())).await
}

/// `/r/<name>/-/manifests/<digest>`.
pub async fn manifest(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    host: &str,
    digest: &Digest,
) -> Result<Response, UiError> {
    show_manifest(state, viewer, name, host, Reference::Digest(digest.clone())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_as_a_shell_line() {
        let words = ["/bin/sh".to_string(), "-c".into(), "echo hi".into()];
        assert_eq!(command_line(&words), "/bin/sh -c 'echo hi'");
    }

    #[test]
    fn referrers_group_by_what_they_are() {
        assert_eq!(
            referrer_kind("application/vnd.dev.cosign.artifact.sig.v1+json"),
            "Signatures"
        );
        assert_eq!(referrer_kind("application/spdx+json"), "SBOMs");
        assert_eq!(
            referrer_kind("application/vnd.in-toto+json"),
            "Attestations"
        );
        assert_eq!(referrer_kind("application/x-thing"), "Other artifacts");
    }
}
