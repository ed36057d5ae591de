//! The browse pages as a visitor sees them: the repositories they may pull
//! with platforms, tag counts and push times; a repository's tags with each
//! platform's size and a pull command; a manifest's configuration, layers
//! and annotations; and every pushed string shown as text, never markup.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_PASSWORD, TestApp};
use crate::support::*;
use crate::ui_support::WebClient;
use crate::{backend_tests, secured_backend_tests};

secured_backend_tests!(
    the_home_page_lists_pullable_repositories_with_their_platforms,
    an_index_shows_each_platform_with_its_size_and_a_pull_command,
    pushed_markup_in_labels_and_annotations_renders_as_text,
    private_repositories_are_invisible_to_strangers,
    tag_pages_filter_and_page,
);

mod open {
    use super::*;

    backend_tests!(with_authentication_off_pages_browse_and_forms_work);
}

const HOSTILE: &str = "<script>alert('owned')</script><b>bold</b>";

/// An admin token for everything on `repository`.
async fn admin_token(app: &TestApp, repository: &str) -> String {
    token(
        app,
        Some(("admin", ADMIN_PASSWORD)),
        &[&format!("repository:{repository}:pull,push,delete")],
    )
    .await
}

/// Pushes an image of `architecture` with `labels`; returns (manifest bytes, its digest).
async fn push_platform_image(
    app: &TestApp,
    repository: &str,
    architecture: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) -> (Vec<u8>, String) {
    let config = json!({
        "architecture": architecture, "os": "linux", "created": "2026-11-30T10:00:00Z",
        "config": {"Entrypoint": ["/server"], "Cmd": ["--port", "8080"], "Env": ["MODE=prod"],
                   "ExposedPorts": {"8080/tcp": {}}, "Labels": labels},
        "history": [{"created_by": "COPY server /server"}],
    })
    .to_string();
    let layer = vec![architecture.len() as u8; 5000];
    push_blob(app, repository, config.as_bytes()).await;
    push_blob(app, repository, &layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
        "annotations": annotations,
    })
    .to_string()
    .into_bytes();
    let digest = sha256(&manifest);
    let pushed = put_manifest(app, repository, &digest, OCI_MANIFEST, &manifest).await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    (manifest, digest)
}

/// Pushes a two-platform index tagged `tag`; returns the two image digests.
async fn push_index(app: &mut TestApp, repository: &str, tag: &str) -> (String, String) {
    app.bearer = Some(admin_token(app, repository).await);
    let (amd, amd_digest) =
        push_platform_image(app, repository, "amd64", json!({}), json!({})).await;
    let (arm, arm_digest) =
        push_platform_image(app, repository, "arm64", json!({}), json!({})).await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    })
    .to_string();
    let pushed = put_manifest(
        app,
        repository,
        tag,
        "application/vnd.oci.image.index.v1+json",
        index.as_bytes(),
    )
    .await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    app.bearer = None;
    (amd_digest, arm_digest)
}

async fn admin(app: &TestApp) -> WebClient {
    let web = WebClient::new(app);
    web.sign_in("admin", ADMIN_PASSWORD).await;
    web
}

async fn the_home_page_lists_pullable_repositories_with_their_platforms(mut app: TestApp) {
    push_index(&mut app, "admin/web", "1.0").await;
    let home = admin(&app).await.page("/").await;
    assert!(home.contains(r#"href="/r/admin/web""#), "{home}");
    assert!(
        home.contains("linux/amd64") && home.contains("linux/arm64"),
        "{home}"
    );
    assert!(home.contains("private"), "{home}");
    let by_name = admin(&app).await.page("/?q=web&sort=name").await;
    assert!(by_name.contains("admin/web"));
    let none = admin(&app).await.page("/?q=nothing-like-it").await;
    assert!(!none.contains(r#"href="/r/admin/web""#));
    // Anonymous visitors see no private repository.
    let anonymous = WebClient::new(&app).page("/").await;
    assert!(!anonymous.contains("admin/web"), "{anonymous}");
}

async fn an_index_shows_each_platform_with_its_size_and_a_pull_command(mut app: TestApp) {
    let (amd, arm) = push_index(&mut app, "admin/web", "1.0").await;
    let web = admin(&app).await;
    let page = web.page("/r/admin/web").await;
    let host = app
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(
        page.contains(&format!("docker pull {host}/admin/web:1.0")),
        "{page}"
    );
    assert!(
        page.contains("linux/amd64") && page.contains("linux/arm64"),
        "{page}"
    );
    // Config (a few hundred bytes) and a 5,000-byte layer.
    assert!(page.contains("5.") && page.contains(" kB"), "{page}");
    let tag = web.page("/r/admin/web/-/tags/1.0").await;
    assert!(
        tag.contains(&format!("/r/admin/web/-/manifests/{amd}")),
        "{tag}"
    );
    assert!(
        tag.contains(&format!("/r/admin/web/-/manifests/{arm}")),
        "{tag}"
    );
    let image = web.page(&format!("/r/admin/web/-/manifests/{arm}")).await;
    assert!(image.contains("linux/arm64"), "{image}");
    assert!(
        image.contains("/server") && image.contains("8080/tcp"),
        "{image}"
    );
    assert!(image.contains("COPY server /server"), "{image}");
    assert!(
        image.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{image}"
    );
    // Children of a tagged index are not "untagged".
    let untagged = web.page("/r/admin/web/-/untagged").await;
    assert!(untagged.contains("No untagged manifests"), "{untagged}");
}

async fn pushed_markup_in_labels_and_annotations_renders_as_text(mut app: TestApp) {
    app.bearer = Some(admin_token(&app, "admin/evil").await);
    let (_, digest) = push_platform_image(
        &app,
        "admin/evil",
        "amd64",
        json!({ "org.example.evil": HOSTILE, HOSTILE: "key" }),
        json!({ "org.opencontainers.image.description": HOSTILE }),
    )
    .await;
    app.bearer = None;
    let response = admin(&app)
        .await
        .get(&format!("/r/admin/evil/-/manifests/{digest}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = header(&response, "content-security-policy").to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<b>bold"), "{page}");
    assert!(
        page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"),
        "{page}"
    );
    assert_eq!(
        page.matches("alert(").count(),
        3,
        "label value, label key, annotation"
    );
}

async fn private_repositories_are_invisible_to_strangers(mut app: TestApp) {
    push_index(&mut app, "admin/secret", "1.0").await;
    create_user(&app, "mallory", "mallory-password").await;
    let stranger = WebClient::new(&app);
    stranger.sign_in("mallory", "mallory-password").await;
    let missing = stranger.get("/r/admin/nothing").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing_text = missing.text().await.unwrap();
    for path in [
        "/r/admin/secret",
        "/r/admin/secret/-/tags/1.0",
        "/r/admin/secret/-/untagged",
    ] {
        let response = stranger.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        // The same answer as for a repository that does not exist.
        assert_eq!(response.text().await.unwrap(), missing_text, "{path}");
        assert_eq!(
            WebClient::new(&app).get(path).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert!(!stranger.page("/").await.contains("admin/secret"));
}

async fn tag_pages_filter_and_page(mut app: TestApp) {
    app.bearer = Some(admin_token(&app, "admin/many").await);
    let manifest = push_image_blobs(&app, "admin/many", "many").await;
    for n in 0..60 {
        let tag = format!("v{n:02}");
        let pushed = put_manifest(&app, "admin/many", &tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(pushed.status(), StatusCode::CREATED);
    }
    app.bearer = None;
    let web = admin(&app).await;
    let first = web.page("/r/admin/many?sort=name").await;
    assert!(first.contains(">v00<") && first.contains(">v49<") && !first.contains(">v50<"));
    let next = first
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("cursor="))
        .expect("a next-page link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = web.page(&next).await;
    assert!(
        second.contains(">v50<") && second.contains(">v59<") && !second.contains(">v49<"),
        "{next}: {second}"
    );
    let filtered = web.page("/r/admin/many?q=v5").await;
    assert!(filtered.contains(">v55<") && !filtered.contains(">v44<"));
    let bad = web.get("/r/admin/many?cursor=garbage").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// `auth.mode = "none"`: no sign-in, everything visible, and management
/// forms work without a session's token (the same-origin check stays).
async fn with_authentication_off_pages_browse_and_forms_work(app: TestApp) {
    let digest = push_image(&app, "team/app", "1.0").await;
    let put = put_manifest(
        &app,
        "team/app",
        "2.0",
        OCI_MANIFEST,
        &push_image_blobs(&app, "team/app", "team/app:1.0").await,
    )
    .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let web = WebClient::new(&app);
    let home = web.page("/").await;
    assert!(
        home.contains("team/app") && home.contains("linux/amd64"),
        "{home}"
    );
    let deleted = web
        .post_form("/r/team/app/-/delete", &[("tag", "1.0"), ("csrf", "")])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    let page = web.page("/r/team/app").await;
    assert!(!page.contains(">1.0<") && page.contains(">2.0<"), "{page}");
    assert!(page.contains(&digest[7..19]), "{page}");
}
