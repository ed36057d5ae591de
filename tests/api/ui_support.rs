//! A browser stand-in for the web UI's tests: a reqwest client with its own
//! cookie jar that follows no redirects (so a test sees each `303`), and
//! helpers to sign in, read a page's CSRF token and post a form.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode};

use crate::harness::TestApp;

pub struct WebClient {
    pub base: String,
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl WebClient {
    /// A browser with no cookies yet, for `app`.
    pub fn new(app: &TestApp) -> WebClient {
        Self::with_builder(&app.base, reqwest::Client::builder())
    }

    /// A browser built on `builder` (say, one trusting a test CA), for the
    /// site at `base`.
    pub fn with_builder(base: &str, builder: reqwest::ClientBuilder) -> WebClient {
        let jar = Arc::new(Jar::default());
        let client = builder
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        WebClient {
            base: base.to_string(),
            client,
            jar,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `GET path`, asserting `200`; the page's HTML.
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Posts `fields` as a form, as a browser on this site would (with its
    /// `Origin`).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .header("origin", &self.base)
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Fills in and sends the sign-in form; the response (a `303` when it
    /// worked).
    pub async fn try_sign_in(&self, user: &str, password: &str) -> Response {
        let form = self.page("/sign-in").await;
        let csrf = csrf(&form);
        self.post_form(
            "/sign-in",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }

    /// Signs in, asserting that it worked.
    pub async fn sign_in(&self, user: &str, password: &str) {
        let response = self.try_sign_in(user, password).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::SEE_OTHER, "sign in as {user}: {body}");
    }

    /// The value of the cookie `name` the jar would send to this site.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    /// The CSRF token of `html`'s first form.
    pub fn csrf(&self, html: &str) -> String {
        csrf(html)
    }

    /// The session's CSRF token, read from `path`'s first form.
    pub async fn csrf_of(&self, path: &str) -> String {
        csrf(&self.page(path).await)
    }
}

/// The value of the first `csrf` hidden field in `html`.
pub fn csrf(html: &str) -> String {
    field_value(html, "csrf").unwrap_or_else(|| panic!("no csrf field in: {html}"))
}

/// The value of the first input named `name` in `html`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}
