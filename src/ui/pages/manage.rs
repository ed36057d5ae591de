//! Managing a repository from its pages: deleting a tag or a manifest after
//! a confirmation step, and its settings (visibility, immutable tags,
//! retention). Also what the namespace page (`namespace.rs`) shares with
//! it: the policy view and the forms that change a policy.
//!
//! Controls are shown only to viewers allowed, and every change is checked
//! on the server whatever the page showed: a delete by the same rights the
//! registry gives (`Principal::repository_actions`, read through
//! [`RepositoryHeader`]), a policy change by `admin::Admin::execute` run as
//! the viewer. A repository the viewer may not pull is no page at all.

use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::input::{parse_form, parse_query};
use super::super::{UiError, UiState, Viewer, format, paths, render, see_other};
use super::layout::Layout;
use super::repository::RepositoryHeader;
use crate::admin::{self, Command, NewRetention};
use crate::oci::name::{lies_within, namespace_of};
use crate::oci::pattern::{TagRule, first_covered};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::policy::retention::governing;

/// The fixed sentence for a `?done=` notice after a change; anything else
/// in the query shows nothing (a query string is never echoed).
pub fn notice(done: &str) -> Option<&'static str> {
    match done {
        "tag-deleted" => Some("The tag was deleted. The manifest and its other tags stay."),
        "manifest-deleted" => Some("The manifest and its tags were deleted."),
        "visibility-set" => Some("The visibility is saved."),
        "rule-added" => Some("The immutable-tag rule was added."),
        "rule-removed" => Some("The immutable-tag rule was removed."),
        "retention-set" => Some("The retention policy is saved."),
        "retention-removed" => Some("The retention policy was removed."),
        "quota-set" => Some("The quota is saved."),
        "quota-removed" => Some("The quota was removed: the namespace has no limit."),
        _ => None,
    }
}

/// The query of a page a change redirects to.
#[derive(Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

impl DoneQuery {
    pub fn done(&self) -> &str {
        &self.done
    }
}

// ---------------------------------------------------------------------------
// Deleting a tag or a manifest
// ---------------------------------------------------------------------------

/// `?tag=` or `?digest=`, the query of the confirmation page and the
/// fields of its form.
#[derive(Deserialize, Default)]
pub struct DeleteTarget {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    digest: String,
}

impl DeleteTarget {
    /// Exactly one of the two, parsed.
    fn reference(&self) -> Result<Reference, UiError> {
        match (self.tag.is_empty(), self.digest.is_empty()) {
            (false, true) => self
                .tag
                .parse::<Tag>()
                .map(Reference::Tag)
                .map_err(|_| UiError::Invalid("that is not a tag name".into())),
            (true, false) => self
                .digest
                .parse::<Digest>()
                .map(Reference::Digest)
                .map_err(|_| UiError::Invalid("that is not a digest".into())),
            _ => Err(UiError::Invalid(
                "say which to delete: a tag or a digest".into(),
            )),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "manage_delete.html")]
struct ConfirmDeletePage {
    layout: Layout,
    repo: RepositoryHeader,
    /// `Some(tag)` when deleting a tag, `None` for the manifest by digest.
    tag: Option<String>,
    digest: String,
    short_digest: String,
    /// The manifest's tags, without the one being deleted.
    other_tags: Vec<String>,
    /// How many of them the list leaves out.
    more_tags: u64,
    /// Indexes that list the manifest (a delete by digest is refused), with
    /// their pages.
    listed_by: Vec<(String, String)>,
    /// The immutable rule that refuses this delete, as a sentence.
    immutable: Option<String>,
    action: String,
    cancel: String,
    manifest_url: String,
}

impl ConfirmDeletePage {
    fn refused(&self) -> bool {
        self.immutable.is_some() || (self.tag.is_none() && !self.listed_by.is_empty())
    }
}

/// The header of a repository the viewer may delete in: `NotFound` when
/// they may not pull it, `Forbidden` when they may pull but not delete.
async fn deleter(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
) -> Result<RepositoryHeader, UiError> {
    let header = RepositoryHeader::load(state, viewer, name, "delete").await?;
    if !header.may_delete {
        return Err(UiError::Forbidden(
            "you may not delete tags or manifests in this repository".into(),
        ));
    }
    Ok(header)
}

/// `GET /r/<name>/-/delete?tag=T` or `?digest=D`: what would go, and the
/// form that deletes it.
pub async fn confirm_delete(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    uri: &Uri,
) -> Result<Response, UiError> {
    let target: DeleteTarget = parse_query(uri)?;
    let reference = target.reference()?;
    let repo = deleter(state, viewer, name).await?;
    let preview = state.registry.deletion_preview(name, &reference).await?;
    let rules = state.policies.immutable_tags().await?;
    let tag = match &reference {
        Reference::Tag(tag) => Some(tag.as_str().to_string()),
        Reference::Digest(_) => None,
    };
    // A tag delete asks only about that tag; a manifest delete about all of its.
    let guarded: Vec<&str> = match &tag {
        Some(tag) => vec![tag.as_str()],
        None => preview.tags.iter().map(String::as_str).collect(),
    };
    let immutable = first_covered(&rules, name.as_str(), guarded).map(|(tag, rule)| {
        format!("The tag `{tag}` is immutable by {rule}: it cannot be deleted.")
    });
    let other_tags: Vec<String> = preview
        .tags
        .iter()
        .filter(|t| Some(t.as_str()) != tag.as_deref())
        .cloned()
        .collect();
    let others_in_all = preview.tag_count - u64::from(tag.is_some());
    let digest = preview.digest.to_string();
    render(&ConfirmDeletePage {
        layout: Layout::for_viewer(viewer),
        more_tags: others_in_all.saturating_sub(other_tags.len() as u64),
        other_tags,
        listed_by: preview
            .listed_by
            .iter()
            .map(|index| {
                (
                    index.to_string(),
                    paths::manifest(name.as_str(), index.as_str()),
                )
            })
            .collect(),
        immutable,
        action: paths::delete(name.as_str()),
        cancel: match &tag {
            Some(tag) => paths::tag(name.as_str(), tag),
            None => paths::manifest(name.as_str(), &digest),
        },
        manifest_url: paths::manifest(name.as_str(), &digest),
        short_digest: format::short_digest(&digest),
        digest,
        tag,
        repo,
    })
}

/// `POST /r/<name>/-/delete` (csrf, and tag or digest): a tag removes only
/// the tag, a digest the manifest and its tags; then back to the
/// repository with a notice. An immutable tag is a 403 page, a manifest an
/// index lists a 409 page, each with the registry's reason.
pub async fn delete(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    request: Request,
) -> Result<Response, UiError> {
    let form: DeleteTarget = parse_form(request).await?;
    viewer.check_csrf(&form.csrf)?;
    let reference = form.reference()?;
    deleter(state, viewer, name).await?;
    state
        .registry
        .delete_manifest(&viewer.origin, name, &reference)
        .await?;
    let done = match reference {
        Reference::Tag(_) => "tag-deleted",
        Reference::Digest(_) => "manifest-deleted",
    };
    Ok(see_other(&format!(
        "{}?done={done}",
        paths::repository(name.as_str())
    )))
}

// ---------------------------------------------------------------------------
// Policies: what the settings pages of a repository and a namespace show
// ---------------------------------------------------------------------------

/// The policies of one repository or namespace as its settings page shows
/// them, and whether the viewer gets the forms that change them.
pub struct PolicyView {
    /// The repository (`team/app`) or namespace (`team`).
    pub path: String,
    /// `repository` or `namespace`, for sentences.
    pub kind: &'static str,
    /// Where the forms post: `<actions><action>`.
    pub actions: String,
    /// The viewer may change these policies (the server checks again).
    pub manages: bool,
    pub public: bool,
    /// What makes it public, when not the path itself: its namespace.
    pub public_via: Option<PathLink>,
    /// Immutable-tag rules that apply (a repository) or that lie within it
    /// (a namespace).
    pub rules: Vec<RuleRow>,
    /// Retention policies likewise.
    pub retention: Vec<RetentionRow>,
    /// The path's own retention policy, if it has one.
    pub own_retention: bool,
    /// What the forms held, when the page is shown again after a refusal.
    pub draft: Draft,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
}

/// Another path's settings page.
pub struct PathLink {
    pub path: String,
    pub url: String,
}

pub struct RuleRow {
    pub pattern: String,
    /// Set on this page's path (so its remove form is here), else where.
    pub own: bool,
    pub set_on: PathLink,
}

pub struct RetentionRow {
    pub own: bool,
    pub set_on: PathLink,
    pub keep_last: String,
    pub keep_days: String,
    pub exclude: Vec<String>,
    /// Whether it is the one the collector applies, as a short sentence.
    pub note: &'static str,
}

/// The values of the policy forms, as typed.
#[derive(Default)]
pub struct Draft {
    pub pattern: String,
    pub keep_last: String,
    pub keep_days: String,
    pub exclude: String,
    pub limit: String,
}

/// The settings page of `path`: a namespace's for one name component, else
/// the repository's.
fn settings_url(path: &str) -> String {
    if path.contains('/') {
        paths::settings(path)
    } else {
        paths::namespace(path)
    }
}

fn link(path: &str) -> PathLink {
    PathLink {
        path: path.to_string(),
        url: settings_url(path),
    }
}

fn number(value: Option<u64>) -> String {
    value.map_or(String::new(), |n| n.to_string())
}

impl PolicyView {
    /// What applies to repository `path`: the rules and retention policies
    /// set on it or on a path it lies within.
    pub async fn of_repository(
        state: &UiState,
        viewer: &Viewer,
        path: &str,
    ) -> Result<PolicyView, UiError> {
        Self::load(
            state,
            viewer,
            path,
            "repository",
            paths::actions(path),
            |p| lies_within(path, p),
        )
        .await
    }

    /// What is set on namespace `path` and on the repositories within it.
    pub async fn of_namespace(
        state: &UiState,
        viewer: &Viewer,
        path: &str,
    ) -> Result<PolicyView, UiError> {
        Self::load(
            state,
            viewer,
            path,
            "namespace",
            paths::namespace_actions(path),
            |p| lies_within(p, path),
        )
        .await
    }

    async fn load(
        state: &UiState,
        viewer: &Viewer,
        path: &str,
        kind: &'static str,
        actions: String,
        shown: impl Fn(&str) -> bool,
    ) -> Result<PolicyView, UiError> {
        let public_via = state.policies.public_via(path).await?;
        // Rules and policies are the namespace's business, as on `/api/v1`:
        // someone who may only pull a public repository sees none.
        let member = admin::may_see_namespace(&viewer.actor(), namespace_of(path));
        let shown = |p: &str| member && shown(p);
        let rules = state
            .policies
            .immutable_tags()
            .await?
            .into_iter()
            .filter(|rule: &TagRule| shown(&rule.path))
            .map(|rule| RuleRow {
                own: rule.path == path,
                set_on: link(&rule.path),
                pattern: rule.pattern,
            })
            .collect();
        let policies = state.policies.retention_policies().await?;
        let applied = governing(&policies, path).map(|p| p.path.clone());
        let retention: Vec<RetentionRow> = policies
            .iter()
            .filter(|policy| shown(&policy.path))
            .map(|policy| RetentionRow {
                own: policy.path == path,
                set_on: link(&policy.path),
                keep_last: number(policy.keep_last),
                keep_days: number(policy.keep_days),
                exclude: policy.exclude.clone(),
                note: match (kind, applied.as_deref() == Some(&policy.path)) {
                    ("repository", true) => "applies",
                    ("repository", false) => "overridden by a more specific policy",
                    _ if policy.path == path => "applies to repositories without their own",
                    _ => "applies to that repository",
                },
            })
            .collect();
        let own = policies.iter().find(|p| p.path == path);
        Ok(PolicyView {
            path: path.to_string(),
            kind,
            actions,
            manages: admin::may_manage(&viewer.actor(), path),
            public: public_via.is_some(),
            public_via: public_via.filter(|via| via != path).map(|via| link(&via)),
            rules,
            own_retention: own.is_some(),
            draft: Draft {
                keep_last: number(own.and_then(|p| p.keep_last)),
                keep_days: number(own.and_then(|p| p.keep_days)),
                exclude: own.map_or(String::new(), |p| p.exclude.join(", ")),
                ..Draft::default()
            },
            retention,
            notice: None,
            error: None,
        })
    }
}

// ---------------------------------------------------------------------------
// Policy forms
// ---------------------------------------------------------------------------

/// Every field any policy form sends; each action reads its own.
#[derive(Deserialize, Default)]
pub struct PolicyForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    public: String,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    keep_last: String,
    #[serde(default)]
    keep_days: String,
    #[serde(default)]
    exclude: String,
    #[serde(default)]
    pub limit: String,
}

impl PolicyForm {
    /// What the page shows in its forms if the change is refused.
    pub fn draft(&self, view: &mut PolicyView) {
        let retention =
            !self.keep_last.is_empty() || !self.keep_days.is_empty() || !self.exclude.is_empty();
        view.draft.pattern = self.pattern.clone();
        view.draft.limit = self.limit.clone();
        if retention {
            view.draft.keep_last = self.keep_last.clone();
            view.draft.keep_days = self.keep_days.clone();
            view.draft.exclude = self.exclude.clone();
        }
    }
}

fn count(text: &str, what: &str) -> Result<Option<u64>, UiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| UiError::Invalid(format!("{what} must be a whole number, such as 10")))
}

/// The command a policy form asks for on `path`, and the notice of its
/// success; `NotFound` for an action no form has.
pub fn policy_command(
    path: &str,
    action: &str,
    form: &PolicyForm,
) -> Result<(Command, &'static str), UiError> {
    let path = path.to_string();
    Ok(match action {
        "set-visibility" => {
            let public = match form.public.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(UiError::Invalid("choose public or private".into())),
            };
            (Command::SetVisibility { path, public }, "visibility-set")
        }
        "add-immutable" | "remove-immutable" => {
            let immutable = action == "add-immutable";
            let pattern = form.pattern.trim().to_string();
            let command = Command::SetImmutableTags {
                path,
                pattern,
                immutable,
            };
            (
                command,
                if immutable {
                    "rule-added"
                } else {
                    "rule-removed"
                },
            )
        }
        "set-retention" => {
            let keep_last = count(&form.keep_last, "the number of tags to keep")?;
            let keep_days = count(&form.keep_days, "the number of days")?;
            if keep_last.is_none() && keep_days.is_none() {
                return Err(UiError::Invalid(
                    "give a number of tags to keep, a number of days, or both".into(),
                ));
            }
            let exclude = form
                .exclude
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            let policy = NewRetention {
                keep_last,
                keep_days,
                exclude,
            };
            (
                Command::SetRetention(policy.for_path(path)),
                "retention-set",
            )
        }
        "remove-retention" => (Command::RemoveRetention { path }, "retention-removed"),
        _ => return Err(UiError::NotFound("there is no such page".into())),
    })
}

/// How a refused change is answered: a value that cannot be used (or a
/// rule no longer there) shows the settings page again with the reason and
/// what was typed; anything else (not allowed, say) is the error page.
pub fn refusal_status(error: &UiError) -> Option<StatusCode> {
    match error {
        UiError::Invalid(_) => Some(StatusCode::BAD_REQUEST),
        UiError::NotFound(_) => Some(StatusCode::NOT_FOUND),
        _ => None,
    }
}

/// Runs `command` as the viewer; a refusal as a [`UiError`].
pub async fn execute(state: &UiState, viewer: &Viewer, command: Command) -> Result<(), UiError> {
    state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
        .map(drop)
        .map_err(UiError::from)
}

// ---------------------------------------------------------------------------
// The repository's settings page
// ---------------------------------------------------------------------------

#[derive(askama::Template)]
#[template(path = "manage_settings.html")]
struct SettingsPage {
    layout: Layout,
    repo: RepositoryHeader,
    policies: PolicyView,
    namespace_url: String,
}

async fn settings_page(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
) -> Result<SettingsPage, UiError> {
    let repo = RepositoryHeader::load(state, viewer, name, "settings").await?;
    let policies = PolicyView::of_repository(state, viewer, name.as_str()).await?;
    Ok(SettingsPage {
        layout: Layout::for_viewer(viewer),
        namespace_url: paths::namespace(&repo.namespace),
        repo,
        policies,
    })
}

/// `GET /r/<name>/-/settings`: visibility, immutable tags and retention,
/// with forms for those who may change them.
pub async fn settings(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    uri: &Uri,
) -> Result<Response, UiError> {
    let query: DoneQuery = parse_query(uri)?;
    let mut page = settings_page(state, viewer, name).await?;
    page.policies.notice = notice(&query.done);
    render(&page)
}

/// `POST /r/<name>/-/<action>`: one of the settings forms.
pub async fn act(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    action: &str,
    request: Request,
) -> Result<Response, UiError> {
    let form: PolicyForm = parse_form(request).await?;
    viewer.check_csrf(&form.csrf)?;
    // A repository the viewer may not pull has no settings to change.
    RepositoryHeader::load(state, viewer, name, "settings").await?;
    let result = match policy_command(name.as_str(), action, &form) {
        Err(no_such_form @ UiError::NotFound(_)) => return Err(no_such_form),
        Err(invalid) => Err(invalid),
        Ok((command, done)) => execute(state, viewer, command).await.map(|()| done),
    };
    match result {
        Ok(done) => Ok(see_other(&format!(
            "{}?done={done}",
            paths::settings(name.as_str())
        ))),
        Err(error) => {
            let Some(status) = refusal_status(&error) else {
                return Err(error);
            };
            let mut page = settings_page(state, viewer, name).await?;
            form.draft(&mut page.policies);
            page.policies.error = Some(error.to_string());
            Ok((status, render(&page)?).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> PolicyForm {
        let encoded = serde_urlencoded::to_string(fields).unwrap();
        serde_urlencoded::from_str(&encoded).unwrap()
    }

    #[test]
    fn notices_are_fixed_sentences() {
        assert!(notice("tag-deleted").unwrap().contains("other tags stay"));
        assert_eq!(notice("<script>"), None);
        assert_eq!(notice(""), None);
    }

    #[test]
    fn a_delete_names_a_tag_or_a_digest() {
        let target = |tag: &str, digest: &str| DeleteTarget {
            csrf: String::new(),
            tag: tag.into(),
            digest: digest.into(),
        };
        assert!(matches!(
            target("v1", "").reference(),
            Ok(Reference::Tag(_))
        ));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            target("", &digest).reference(),
            Ok(Reference::Digest(_))
        ));
        for (tag, digest) in [
            ("", ""),
            ("v1", digest.as_str()),
            ("a b", ""),
            ("", "sha256:zz"),
        ] {
            assert!(
                matches!(target(tag, digest).reference(), Err(UiError::Invalid(_))),
                "{tag} {digest}"
            );
        }
    }

    #[test]
    fn forms_become_commands() {
        let (command, done) =
            policy_command("team/app", "set-visibility", &form(&[("public", "true")])).unwrap();
        assert!(matches!(
            command,
            Command::SetVisibility { public: true, .. }
        ));
        assert_eq!(done, "visibility-set");
        assert!(matches!(
            policy_command("team", "set-visibility", &form(&[("public", "yes")])),
            Err(UiError::Invalid(_))
        ));

        let retention = form(&[
            ("keep_last", " 5 "),
            ("keep_days", ""),
            ("exclude", "release-*, v1.*  latest,"),
        ]);
        let (command, _) = policy_command("team", "set-retention", &retention).unwrap();
        let Command::SetRetention(policy) = command else {
            panic!("{command:?}");
        };
        assert_eq!(policy.path, "team");
        assert_eq!((policy.keep_last, policy.keep_days), (Some(5), None));
        assert_eq!(policy.exclude, ["release-*", "v1.*", "latest"]);
        for fields in [
            &[("keep_last", "")][..],
            &[("keep_last", "-1")],
            &[("keep_days", "x")],
        ] {
            assert!(matches!(
                policy_command("team", "set-retention", &form(fields)),
                Err(UiError::Invalid(_))
            ));
        }

        let (command, done) =
            policy_command("team", "remove-immutable", &form(&[("pattern", " v* ")])).unwrap();
        assert!(matches!(
            command,
            Command::SetImmutableTags { ref pattern, immutable: false, .. } if pattern == "v*"
        ));
        assert_eq!(done, "rule-removed");
        assert!(matches!(
            policy_command("team", "set-quota", &form(&[])),
            Err(UiError::NotFound(_))
        ));
    }
}
