//! Which events an endpoint hears, and the check every endpoint's settings
//! pass (from the config file or `/api/v1`) before they are stored.

use crate::metadata::{EndpointSpec, EventAction, StoredEvent};
use crate::oci::name::namespace_of;
use crate::oci::pattern::glob_matches;

/// The longest an endpoint may take to answer.
pub const MAX_TIMEOUT_MS: i64 = 60_000;

/// Headers Berth sets itself, which an endpoint's extra headers may not replace.
const RESERVED_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The reference registry's action names, each standing for Berth's events
/// it covers, so `actions = ["push"]` means what it meant there.
fn expand(action: &str) -> Option<&'static [EventAction]> {
    use EventAction::*;
    Some(match action {
        "push" => &[ManifestPushed, TagMoved],
        "delete" => &[TagDeleted, ManifestDeleted],
        "mount" => &[BlobMounted],
        "pull" => &[ManifestPulled],
        "create" => &[RepositoryCreated],
        "manifest.pushed" => &[ManifestPushed],
        "tag.moved" => &[TagMoved],
        "tag.deleted" => &[TagDeleted],
        "manifest.deleted" => &[ManifestDeleted],
        "blob.mounted" => &[BlobMounted],
        "manifest.pulled" => &[ManifestPulled],
        "repository.created" => &[RepositoryCreated],
        _ => return None,
    })
}

/// Checks `spec` and puts its action list in Berth's own names.
pub fn check(spec: &mut EndpointSpec) -> Result<(), String> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !name_ok {
        return Err(format!(
            "`{}` is not a webhook name: use 1 to 64 lowercase letters, digits, `-`, `_` or `.`",
            spec.name
        ));
    }
    if !spec.namespace.is_empty() && namespace_of(&spec.namespace) != spec.namespace {
        return Err(format!("`{}` is not a namespace", spec.namespace));
    }
    match url::Url::parse(&spec.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => return Err(format!("`{}` is not an http(s) URL", spec.url)),
    }
    if spec.secret.len() < 16 || spec.secret.len() > 256 || spec.secret.contains(char::is_control) {
        return Err("the secret must have 16 to 256 printable characters".into());
    }
    for pattern in &spec.repositories {
        let plain = pattern.replace('*', "x");
        if pattern.is_empty() || plain.parse::<crate::oci::RepositoryName>().is_err() {
            return Err(format!(
                "`{pattern}` is not a repository pattern such as `team/*`"
            ));
        }
    }
    let mut actions: Vec<String> = Vec::new();
    for action in &spec.actions {
        let Some(expanded) = expand(action) else {
            return Err(format!(
                "`{action}` is not an event: use push, delete, mount, pull, create, or manifest.pushed, tag.moved, tag.deleted, manifest.deleted, blob.mounted, manifest.pulled, repository.created"
            ));
        };
        for action in expanded {
            let action = action.as_str().to_string();
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
    }
    spec.actions = actions;
    for media_type in &spec.ignore_media_types {
        if crate::oci::text::refusal(media_type, 255).is_some()
            || crate::oci::media_type::MediaType::parse(media_type).is_err()
        {
            return Err(format!("`{media_type}` is not a media type"));
        }
    }
    for (name, value) in &spec.headers {
        let lower = name.to_ascii_lowercase();
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || axum::http::HeaderValue::from_str(value).is_err()
        {
            return Err(format!("`{name}` is not a valid header with its value"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(format!("`{name}` is set by Berth itself"));
        }
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&spec.timeout_ms) {
        return Err(format!(
            "the timeout must be between 1ms and {}s",
            MAX_TIMEOUT_MS / 1000
        ));
    }
    Ok(())
}

/// Whether endpoint `id` with `spec` is to receive `event`.
pub fn wants(id: i64, spec: &EndpointSpec, event: &StoredEvent) -> bool {
    if let Some(only) = event.only_endpoint {
        return only == id;
    }
    let Some(action) = EventAction::parse(&event.action) else {
        return false;
    };
    if action == EventAction::Test {
        return false;
    }
    if !spec.namespace.is_empty() && namespace_of(&event.repository) != spec.namespace {
        return false;
    }
    if !spec.repositories.is_empty()
        && !spec
            .repositories
            .iter()
            .any(|p| glob_matches(p, &event.repository))
    {
        return false;
    }
    let listed = if spec.actions.is_empty() {
        // Pulls are many: only an endpoint that names them hears them.
        action != EventAction::ManifestPulled
    } else {
        spec.actions.iter().any(|a| a == action.as_str())
    };
    let ignored = event.media_type.as_deref().is_some_and(|m| {
        spec.ignore_media_types
            .iter()
            .any(|i| i.eq_ignore_ascii_case(m))
    });
    listed && !ignored
}

/// Whether any of `specs` asks for pulls.
pub fn any_wants_pulls<'a>(specs: impl IntoIterator<Item = &'a EndpointSpec>) -> bool {
    specs.into_iter().any(|s| {
        s.actions
            .iter()
            .any(|a| a == EventAction::ManifestPulled.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::EventFormat;

    fn spec() -> EndpointSpec {
        EndpointSpec {
            namespace: String::new(),
            name: "ci".into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret: "a-secret-of-enough-length".into(),
            format: EventFormat::Reference,
            repositories: vec![],
            actions: vec![],
            ignore_media_types: vec![],
            headers: vec![],
            timeout_ms: 5000,
        }
    }

    fn event(action: EventAction, repository: &str) -> StoredEvent {
        StoredEvent {
            seq: 1,
            id: "e".into(),
            action: action.as_str().into(),
            repository: repository.into(),
            digest: None,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            size: None,
            tag: None,
            from_repository: None,
            actor: None,
            request_id: None,
            request_addr: None,
            request_host: None,
            request_method: None,
            user_agent: None,
            created_ms: 0,
            only_endpoint: None,
        }
    }

    #[test]
    fn filters_by_pattern_action_and_media_type() {
        let mut s = spec();
        s.repositories = vec!["team/*".into()];
        s.actions = vec!["push".into()];
        check(&mut s).unwrap();
        assert_eq!(s.actions, ["manifest.pushed", "tag.moved"]);
        assert!(wants(
            1,
            &s,
            &event(EventAction::ManifestPushed, "team/app")
        ));
        assert!(wants(1, &s, &event(EventAction::TagMoved, "team/app")));
        assert!(!wants(
            1,
            &s,
            &event(EventAction::ManifestPushed, "other/app")
        ));
        assert!(!wants(1, &s, &event(EventAction::TagDeleted, "team/app")));
        s.ignore_media_types = vec!["application/vnd.oci.image.manifest.v1+json".into()];
        assert!(!wants(
            1,
            &s,
            &event(EventAction::ManifestPushed, "team/app")
        ));
    }

    #[test]
    fn pulls_only_when_asked_and_tests_only_for_their_endpoint() {
        let mut s = spec();
        assert!(!wants(1, &s, &event(EventAction::ManifestPulled, "a/b")));
        assert!(wants(1, &s, &event(EventAction::ManifestDeleted, "a/b")));
        s.actions = vec!["pull".into()];
        check(&mut s).unwrap();
        assert!(wants(1, &s, &event(EventAction::ManifestPulled, "a/b")));
        assert!(any_wants_pulls([&s]));
        let mut test = event(EventAction::Test, "a/b");
        test.only_endpoint = Some(2);
        assert!(!wants(1, &s, &test));
        assert!(wants(2, &s, &test));
    }

    #[test]
    fn namespace_endpoints_hear_only_their_namespace() {
        let mut s = spec();
        s.namespace = "team".into();
        check(&mut s).unwrap();
        assert!(wants(
            1,
            &s,
            &event(EventAction::ManifestPushed, "team/app")
        ));
        assert!(!wants(
            1,
            &s,
            &event(EventAction::ManifestPushed, "teamx/app")
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        let cases: [fn(&mut EndpointSpec); 7] = [
            |s| s.name = "Bad Name".into(),
            |s| s.url = "ftp://x/".into(),
            |s| s.secret = "short".into(),
            |s| s.repositories = vec!["Team/*".into()],
            |s| s.actions = vec!["explode".into()],
            |s| s.headers = vec![("Webhook-Signature".into(), "x".into())],
            |s| s.timeout_ms = 0,
        ];
        for case in cases {
            let mut s = spec();
            case(&mut s);
            assert!(check(&mut s).is_err(), "{s:?}");
        }
    }
}
