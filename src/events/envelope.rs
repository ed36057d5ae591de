//! What a receiver is sent for one event: the reference registry's envelope
//! (its field names exactly, one event per request, so that the id a
//! receiver drops duplicates by is the request's `webhook-id` too) or a
//! CloudEvents 1.0 event in structured JSON.

use serde_json::{Map, Value, json};

use crate::metadata::{EventAction, EventFormat, StoredEvent};

/// The reference registry's media type for its envelope.
pub const REFERENCE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";
pub const CLOUDEVENTS_MEDIA_TYPE: &str = "application/cloudevents+json";

/// Facts about the sending instance that every event carries.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where clients reach this registry (`public_url`), for `target.url`.
    pub public_url: Option<String>,
    /// `host:port` of this instance.
    pub addr: String,
    /// Made at start-up, as the reference registry does.
    pub instance_id: String,
}

fn rfc3339_ms(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// The reference's `action`: Berth's own events are named by the action
/// they are in the reference's vocabulary.
fn reference_action(action: &str) -> &str {
    match EventAction::parse(action) {
        Some(EventAction::ManifestPushed | EventAction::TagMoved) => "push",
        Some(EventAction::TagDeleted | EventAction::ManifestDeleted) => "delete",
        Some(EventAction::BlobMounted) => "mount",
        Some(EventAction::ManifestPulled) => "pull",
        Some(EventAction::RepositoryCreated) => "create",
        Some(EventAction::Test) | None => "test",
    }
}

fn insert(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_string(), value);
    }
}

/// `target`: what the event is about. A delete names only the repository,
/// the digest and the tag, as in the reference.
fn target(event: &StoredEvent, source: &Source) -> Value {
    let mut target = Map::new();
    let deleted = matches!(
        EventAction::parse(&event.action),
        Some(EventAction::TagDeleted | EventAction::ManifestDeleted)
    );
    if !deleted {
        insert(
            &mut target,
            "mediaType",
            event.media_type.clone().map(Value::from),
        );
        insert(&mut target, "size", event.size.map(Value::from));
        insert(&mut target, "length", event.size.map(Value::from));
    }
    insert(&mut target, "digest", event.digest.clone().map(Value::from));
    target.insert("repository".into(), event.repository.clone().into());
    if !deleted && let Some(digest) = &event.digest {
        let base = source.public_url.clone().or_else(|| {
            event
                .request_host
                .as_ref()
                .map(|host| format!("http://{host}"))
        });
        let kind = if event.action == EventAction::BlobMounted.as_str() {
            "blobs"
        } else {
            "manifests"
        };
        insert(
            &mut target,
            "url",
            base.map(|b| Value::from(format!("{b}/v2/{}/{kind}/{digest}", event.repository))),
        );
    }
    insert(&mut target, "tag", event.tag.clone().map(Value::from));
    insert(
        &mut target,
        "fromRepository",
        event.from_repository.clone().map(Value::from),
    );
    Value::Object(target)
}

fn request(event: &StoredEvent) -> Value {
    json!({
        "id": event.request_id.clone().unwrap_or_default(),
        "addr": event.request_addr.clone().unwrap_or_default(),
        "host": event.request_host.clone().unwrap_or_default(),
        "method": event.request_method.clone().unwrap_or_default(),
        "useragent": event.user_agent.clone().unwrap_or_default(),
    })
}

/// One event in the reference registry's shape.
pub fn reference_event(event: &StoredEvent, source: &Source) -> Value {
    json!({
        "id": event.id,
        "timestamp": rfc3339_ms(event.created_ms),
        "action": reference_action(&event.action),
        "target": target(event, source),
        "request": request(event),
        "actor": {"name": event.actor.clone().unwrap_or_default()},
        "source": {"addr": source.addr, "instanceID": source.instance_id},
    })
}

/// The body and its `Content-Type` for an endpoint of `format`.
pub fn render(
    format: EventFormat,
    event: &StoredEvent,
    source: &Source,
) -> (Vec<u8>, &'static str) {
    let body = match format {
        EventFormat::Reference => json!({"events": [reference_event(event, source)]}),
        EventFormat::Cloudevents => {
            let subject = match (&event.tag, &event.digest) {
                (Some(tag), _) => format!("{}:{tag}", event.repository),
                (None, Some(digest)) => format!("{}@{digest}", event.repository),
                (None, None) => event.repository.clone(),
            };
            json!({
                "specversion": "1.0",
                "id": event.id,
                "source": source
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("berth://{}", source.addr)),
                "type": format!("io.berth.{}", event.action),
                "time": rfc3339_ms(event.created_ms),
                "subject": subject,
                "datacontenttype": "application/json",
                "data": {
                    "action": event.action,
                    "target": target(event, source),
                    "request": request(event),
                    "actor": {"name": event.actor.clone().unwrap_or_default()},
                    "instanceID": source.instance_id,
                },
            })
        }
    };
    let media_type = match format {
        EventFormat::Reference => REFERENCE_MEDIA_TYPE,
        EventFormat::Cloudevents => CLOUDEVENTS_MEDIA_TYPE,
    };
    (body.to_string().into_bytes(), media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed() -> StoredEvent {
        StoredEvent {
            seq: 7,
            id: "0b1c".into(),
            action: "tag.moved".into(),
            repository: "alice/web".into(),
            digest: Some("sha256:ab".into()),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            size: Some(527),
            tag: Some("latest".into()),
            from_repository: None,
            actor: Some("alice".into()),
            request_id: Some("r1".into()),
            request_addr: Some("10.0.0.2:5555".into()),
            request_host: Some("registry.example".into()),
            request_method: Some("PUT".into()),
            user_agent: Some("docker/27".into()),
            created_ms: 1_700_000_000_123,
            only_endpoint: None,
        }
    }

    fn source() -> Source {
        Source {
            public_url: Some("https://registry.example".into()),
            addr: "host:5000".into(),
            instance_id: "i-1".into(),
        }
    }

    #[test]
    fn the_reference_envelope_has_its_field_names() {
        let (body, media_type) = render(EventFormat::Reference, &pushed(), &source());
        assert_eq!(media_type, REFERENCE_MEDIA_TYPE);
        let body: Value = serde_json::from_slice(&body).unwrap();
        let event = &body["events"][0];
        assert_eq!(event["action"], "push");
        assert_eq!(event["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(event["target"]["length"], 527);
        assert_eq!(event["target"]["tag"], "latest");
        assert_eq!(
            event["target"]["url"],
            "https://registry.example/v2/alice/web/manifests/sha256:ab"
        );
        assert_eq!(event["request"]["useragent"], "docker/27");
        assert_eq!(event["actor"]["name"], "alice");
        assert_eq!(event["source"]["instanceID"], "i-1");
    }

    #[test]
    fn a_delete_names_only_the_repository_digest_and_tag() {
        let mut event = pushed();
        event.action = "tag.deleted".into();
        let value = reference_event(&event, &source());
        let target = value["target"].as_object().unwrap();
        let mut keys: Vec<&str> = target.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["digest", "repository", "tag"]);
        assert_eq!(value["action"], "delete");
    }

    #[test]
    fn cloudevents_are_structured() {
        let (body, media_type) = render(EventFormat::Cloudevents, &pushed(), &source());
        assert_eq!(media_type, CLOUDEVENTS_MEDIA_TYPE);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["type"], "io.berth.tag.moved");
        assert_eq!(body["subject"], "alice/web:latest");
        assert_eq!(body["data"]["target"]["digest"], "sha256:ab");
    }
}
