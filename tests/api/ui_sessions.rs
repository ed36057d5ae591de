//! Signing in to the web UI and out again: the session cookie's attributes,
//! sessions ended on the server (sign-out, a password change), the CSRF
//! token on every form that changes something, cross-site posts refused,
//! and the failed-login limiter shared with `/token`.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::secured_backend_tests;
use crate::support::*;
use crate::ui_support::{WebClient, csrf};

secured_backend_tests!(
    signing_in_sets_a_cookie_only_this_site_sends_and_no_script_reads,
    a_wrong_password_shows_the_form_again_with_401,
    next_leads_only_to_a_page_of_this_site,
    signing_out_ends_the_session_on_the_server,
    a_password_change_ends_every_session_of_the_user,
    a_form_without_the_sessions_token_is_refused,
    a_post_from_another_origin_is_refused,
    failed_sign_ins_are_limited_as_logins_are,
    an_access_token_does_not_sign_in,
);

/// The `Set-Cookie` header of `response` that sets cookie `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set: {:?}", response.headers()))
}

fn attributes(cookie: &str) -> Vec<String> {
    cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn assert_private_cookie(cookie: &str, secure: bool) {
    let attributes = attributes(cookie);
    for wanted in ["httponly", "samesite=lax", "path=/"] {
        assert!(attributes.iter().any(|a| a == wanted), "{wanted}: {cookie}");
    }
    assert_eq!(
        attributes.iter().any(|a| a == "secure"),
        secure,
        "Secure when and only when served over TLS: {cookie}"
    );
}

async fn signing_in_sets_a_cookie_only_this_site_sends_and_no_script_reads(app: TestApp) {
    let web = WebClient::new(&app);
    let form = web.get("/sign-in").await;
    assert_eq!(form.status(), StatusCode::OK);
    assert_private_cookie(&set_cookie(&form, "berth_sign_in"), false);
    let token = csrf(&form.text().await.unwrap());

    let signed_in = web
        .post_form(
            "/sign-in",
            &[
                ("csrf", &token),
                ("user", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&signed_in, "location"), "/");
    let session = set_cookie(&signed_in, "berth_session");
    assert_private_cookie(&session, false);
    let max_age: i64 = attributes(&session)
        .iter()
        .find_map(|a| a.strip_prefix("max-age=")?.parse().ok())
        .expect("the session cookie lasts as long as the session");
    assert!((12 * 3600 - 60..=12 * 3600).contains(&max_age), "{session}");
    assert!(
        attributes(&set_cookie(&signed_in, "berth_sign_in")).contains(&"max-age=0".to_string()),
        "the sign-in form's cookie is done with"
    );

    let home = web.page("/").await;
    assert!(
        home.contains("Signed in as <strong>admin</strong>"),
        "{home}"
    );
    assert!(home.contains("action=\"/sign-out\""), "{home}");
    // Signed in, the sign-in page sends the browser on.
    let again = web.get("/sign-in?next=/account").await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&again, "location"), "/account");
}

async fn a_wrong_password_shows_the_form_again_with_401(app: TestApp) {
    let web = WebClient::new(&app);
    let refused = web.try_sign_in("admin", "not-the-password").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());
    let page = refused.text().await.unwrap();
    assert!(page.contains("incorrect user name or password"), "{page}");
    assert!(page.contains("value=\"admin\""), "the name is kept: {page}");
    // No user by that name reads the same.
    let unknown = web.try_sign_in("nobody", "not-the-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("incorrect user name or password")
    );
    assert!(!web.page("/").await.contains("Signed in as"));
}

async fn next_leads_only_to_a_page_of_this_site(app: TestApp) {
    for (next, location) in [
        ("/account", "/account"),
        ("/r/alice/web?tab=1", "/r/alice/web?tab=1"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
    ] {
        let web = WebClient::new(&app);
        let form = web
            .page(&format!("/sign-in?next={}", urlencode(next)))
            .await;
        let response = web
            .post_form(
                "/sign-in",
                &[
                    ("csrf", &csrf(&form)),
                    ("user", "admin"),
                    ("password", ADMIN_PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(header(&response, "location"), location, "{next}");
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A client that sends exactly `cookie` and keeps nothing: a copy of a
/// stolen or old cookie.
async fn home_with_cookie(app: &TestApp, cookie: &str) -> String {
    app.client
        .get(app.url("/"))
        .header("cookie", format!("berth_session={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn signing_out_ends_the_session_on_the_server(app: TestApp) {
    let web = WebClient::new(&app);
    web.sign_in("admin", ADMIN_PASSWORD).await;
    let cookie = web.cookie("berth_session").expect("signed in");
    assert!(
        home_with_cookie(&app, &cookie)
            .await
            .contains("Signed in as")
    );

    let token = web.csrf_of("/").await;
    let out = web.post_form("/sign-out", &[("csrf", &token)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&out, "location"), "/");
    assert!(attributes(&set_cookie(&out, "berth_session")).contains(&"max-age=0".to_string()));
    assert_eq!(web.cookie("berth_session"), None);
    // The old cookie, replayed, is no one's.
    let home = home_with_cookie(&app, &cookie).await;
    assert!(!home.contains("Signed in as"), "{home}");
    assert!(home.contains("href=\"/sign-in\""), "{home}");
    // So is a made-up one.
    assert!(
        !home_with_cookie(&app, "made-up")
            .await
            .contains("Signed in as")
    );
}

async fn a_password_change_ends_every_session_of_the_user(app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    let (laptop, phone, admin) = (
        WebClient::new(&app),
        WebClient::new(&app),
        WebClient::new(&app),
    );
    laptop.sign_in("alice", "alice-password").await;
    phone.sign_in("alice", "alice-password").await;
    admin.sign_in("admin", ADMIN_PASSWORD).await;
    assert!(phone.page("/").await.contains("Signed in as <strong>alice"));

    let changed = app
        .client
        .put(app.url("/api/v1/users/alice/password"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"password": "a-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    for browser in [&laptop, &phone] {
        let home = browser.page("/").await;
        assert!(!home.contains("Signed in as"), "{home}");
    }
    // Someone else's session is theirs to keep.
    assert!(admin.page("/").await.contains("Signed in as <strong>admin"));
    laptop.sign_in("alice", "a-new-password").await;
}

async fn a_form_without_the_sessions_token_is_refused(app: TestApp) {
    let web = WebClient::new(&app);
    web.sign_in("admin", ADMIN_PASSWORD).await;
    for fields in [vec![], vec![("csrf", "not-the-token")]] {
        let refused = web.post_form("/sign-out", &fields).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{fields:?}");
        let page = refused.text().await.unwrap();
        assert!(page.contains("this form has expired"), "{page}");
    }
    assert!(
        web.page("/").await.contains("Signed in as"),
        "still signed in"
    );

    // The sign-in form has its token too, bound to the browser that
    // fetched it: another browser's (or a guessed) token signs no one in.
    let stranger = WebClient::new(&app);
    let theirs = csrf(&stranger.page("/sign-in").await);
    let victim = WebClient::new(&app);
    for token in [theirs.as_str(), ""] {
        let forced = victim
            .post_form(
                "/sign-in",
                &[
                    ("csrf", token),
                    ("user", "admin"),
                    ("password", ADMIN_PASSWORD),
                ],
            )
            .await;
        assert_eq!(forced.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(victim.cookie("berth_session"), None);
}

async fn a_post_from_another_origin_is_refused(app: TestApp) {
    let web = WebClient::new(&app);
    web.sign_in("admin", ADMIN_PASSWORD).await;
    let token = web.csrf_of("/").await;
    let from_elsewhere = [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ];
    for (name, value) in from_elsewhere {
        let refused = web
            .client
            .post(web.url("/sign-out"))
            .header(name, value)
            .form(&[("csrf", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        let page = refused.text().await.unwrap();
        assert!(page.contains("another"), "{page}");
    }
    assert!(
        web.page("/").await.contains("Signed in as"),
        "still signed in"
    );
    // Same-origin (the browser says so) and header-less posts go through.
    let out = web
        .client
        .post(web.url("/sign-out"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
}

async fn failed_sign_ins_are_limited_as_logins_are(app: TestApp) {
    let web = WebClient::new(&app);
    // The limiter's default: 10 failures of one name from one address.
    for _ in 0..10 {
        let refused = web.try_sign_in("admin", "wrong-password").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = web.try_sign_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let seconds: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=300).contains(&seconds));
    let page = limited.text().await.unwrap();
    assert!(page.contains("try again in"), "{page}");
    // The same counter as `/token`'s.
    let token = request_token(&app, Some(("admin", ADMIN_PASSWORD)), &[]).await;
    assert_eq!(token.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn an_access_token_does_not_sign_in(app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"scopes": ["repository:alice/*:pull"]}))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let secret = created["secret"].as_str().unwrap();
    let web = WebClient::new(&app);
    let refused = web.try_sign_in("alice", secret).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let page = refused.text().await.unwrap();
    assert!(page.contains("sign in with your password"), "{page}");
    assert_eq!(web.cookie("berth_session"), None);
}

#[tokio::test]
async fn under_tls_the_cookies_are_secure() {
    let temp = tempfile::tempdir().unwrap();
    let pair =
        berth::tls::self_signed::generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()])
            .unwrap();
    let (cert_file, key_file) = (
        temp.path().join("server.crt"),
        temp.path().join("server.key"),
    );
    std::fs::write(&cert_file, &pair.server_chain_pem).unwrap();
    std::fs::write(&key_file, &pair.server_key_pem).unwrap();
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.auth.enabled = true;
        config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        config.tls = Some(berth::tls::TlsConfig {
            cert_file,
            key_file,
            handshake_timeout: std::time::Duration::from_secs(10),
        });
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let ca = reqwest::Certificate::from_pem(pair.ca_cert_pem.as_bytes()).unwrap();
    let web = WebClient::with_builder(
        &app.base,
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca),
    );
    let form = web.get("/sign-in").await;
    assert_private_cookie(&set_cookie(&form, "berth_sign_in"), true);
    let token = csrf(&form.text().await.unwrap());
    let signed_in = web
        .post_form(
            "/sign-in",
            &[
                ("csrf", &token),
                ("user", "admin"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_private_cookie(&set_cookie(&signed_in, "berth_session"), true);
    assert!(web.page("/").await.contains("Signed in as"));
}

/// Behind a proxy that serves `https://` (`public_url`), Berth itself
/// speaks plain HTTP, but the browser is on TLS: the cookies are `Secure`
/// so a stray `http://` request never carries them.
#[tokio::test]
async fn behind_an_https_proxy_the_cookies_are_secure() {
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.auth.enabled = true;
        config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        config.public_url = Some("https://registry.example".into());
    })
    .await;
    assert!(app.base.starts_with("http://"), "{}", app.base);
    let form = WebClient::new(&app).get("/sign-in").await;
    assert_eq!(form.status(), StatusCode::OK);
    assert_private_cookie(&set_cookie(&form, "berth_sign_in"), true);
}

#[tokio::test]
async fn with_authentication_off_there_is_no_sign_in() {
    let app = TestApp::start(Backend::Sqlite).await;
    let web = WebClient::new(&app);
    assert_eq!(web.get("/sign-in").await.status(), StatusCode::NOT_FOUND);
    assert!(!web.page("/").await.contains("href=\"/sign-in\""));
}
