//! The suite's HTTP client (upstream uses `reggie`): requests written as path
//! templates (`/v2/<name>/blobs/<digest>`), replies read whole, and, when it
//! holds credentials, Bearer challenges answered the way Docker answers them.

use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use reqwest::header::{HeaderMap, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// Replaces `<name>` unless a request names another repository.
    default_name: String,
    credentials: Option<(String, String)>,
    /// The last token fetched, sent with every request as Docker sends its token.
    token: Mutex<Option<String>>,
}

/// A request being built; nothing is sent until [`Client::send`].
pub struct Request {
    method: Method,
    path: String,
    name: Option<String>,
    reference: Option<String>,
    digest: Option<String>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// Fills `<name>` with `name` instead of the client's default repository.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Fills `<reference>`.
    pub fn reference(mut self, reference: &str) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Fills `<digest>`.
    pub fn digest(mut self, digest: &str) -> Self {
        self.digest = Some(digest.into());
        self
    }

    /// Adds a query parameter to those the path may already carry.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body; `Content-Length` follows from it.
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = Some(body.to_vec());
        self
    }
}

/// A response, its body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header's value, empty when absent (as Go's `Header().Get`).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Path and query of `Location`, whether it is relative or absolute
    /// (upstream `GetRelativeLocation`).
    pub fn relative_location(&self) -> String {
        let base = Url::parse("http://registry.invalid/").unwrap();
        match base.join(self.header("location")) {
            Ok(url) => match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            },
            Err(_) => String::new(),
        }
    }

    /// `Location` as sent (upstream `GetAbsoluteLocation`).
    pub fn absolute_location(&self) -> &str {
        self.header("location")
    }

    /// The body as the spec's error list (upstream `Errors`).
    pub fn errors(&self) -> Result<Vec<ErrorInfo>, String> {
        #[derive(Deserialize)]
        struct Body {
            errors: Vec<ErrorInfo>,
        }
        let body: Body = serde_json::from_slice(&self.body).map_err(|e| e.to_string())?;
        if body.errors.is_empty() {
            return Err("body was valid json but could not be parsed".into());
        }
        Ok(body.errors)
    }

    /// The body as JSON of type `T`, or a panic naming the body.
    #[track_caller]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not the JSON expected ({e}): {self:?}"))
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(600).collect();
        write!(f, "{} {:?} {body}", self.status.as_u16(), self.headers)
    }
}

/// One entry of the spec's error body; the suite checks only its code.
#[derive(Debug, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
}

/// A `WWW-Authenticate: Bearer ...` challenge.
#[derive(Debug, PartialEq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scopes: Vec<String>,
}

impl Challenge {
    fn parse(value: &str) -> Option<Self> {
        let (scheme, params) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service, mut scopes) = (None, None, Vec::new());
        for (key, value) in auth_params(params) {
            match key.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                // Several scopes share one value, space separated.
                "scope" => {
                    scopes.extend(value.split(' ').filter(|s| !s.is_empty()).map(String::from))
                }
                _ => {}
            }
        }
        Some(Self {
            realm: realm?,
            service,
            scopes,
        })
    }
}

/// `key="value", key=token, ...` (RFC 9110 auth-params).
fn auth_params(params: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            return found;
        };
        let key = key.trim().to_string();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            text.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => text.push(c),
                }
            }
            value = text;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value = after[..end].trim().to_string();
            rest = &after[end..];
        }
        found.push((key, value));
    }
}

impl Client {
    pub fn new(base: &str, default_name: &str, credentials: Option<(&str, &str)>) -> Self {
        Self {
            // Redirects are followed, as Go's client follows them.
            http: reqwest::Client::new(),
            base: Url::parse(base).expect("the registry's base URL"),
            default_name: default_name.into(),
            credentials: credentials.map(|(user, password)| (user.into(), password.into())),
            token: Mutex::new(None),
        }
    }

    /// A request for `path`, in which `<name>` (the default repository unless
    /// [`Request::name`] says otherwise), `<reference>` and `<digest>` are filled in.
    pub fn request(&self, method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.into(),
            name: None,
            reference: None,
            digest: None,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn url(&self, request: &Request) -> Url {
        let mut path = request.path.replace(
            "<name>",
            request.name.as_deref().unwrap_or(&self.default_name),
        );
        if let Some(reference) = &request.reference {
            path = path.replace("<reference>", reference);
        }
        if let Some(digest) = &request.digest {
            path = path.replace("<digest>", digest);
        }
        let mut url = self.base.join(&path).expect("a request path");
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        url
    }

    /// Sends `request`. With credentials, a 401 carrying a Bearer challenge
    /// is answered as Docker answers it: a token for the challenged scopes
    /// from the realm, with Basic credentials, and the request again with it
    /// (again if that brings a new challenge, as a mount's may).
    pub async fn send(&self, request: Request) -> Reply {
        let url = self.url(&request);
        let mut token = self.token.lock().unwrap().clone();
        let mut answered = Vec::new();
        loop {
            let reply = self.execute(&request, &url, token.as_deref()).await;
            let Some((user, password)) = &self.credentials else {
                return reply;
            };
            if reply.status != StatusCode::UNAUTHORIZED || answered.len() == 3 {
                return reply;
            }
            let Some(challenge) = Challenge::parse(reply.header("www-authenticate")) else {
                return reply;
            };
            // A challenge answered already would only bring the same token.
            if answered.contains(&challenge) {
                return reply;
            }
            let Some(fresh) = self.fetch_token(&challenge, user, password).await else {
                return reply;
            };
            *self.token.lock().unwrap() = Some(fresh.clone());
            token = Some(fresh);
            answered.push(challenge);
        }
    }

    async fn execute(&self, request: &Request, url: &Url, token: Option<&str>) -> Reply {
        let mut builder = self
            .http
            .request(request.method.clone(), url.clone())
            .header(USER_AGENT, "distribution-spec-conformance-tests");
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        // Go sends `Content-Length: 0` on a POST, PUT or PATCH without a body.
        let body = request.body.clone().or_else(|| {
            matches!(request.method, Method::POST | Method::PUT | Method::PATCH).then(Vec::new)
        });
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {url}: {e}", request.method));
        let (status, headers) = (response.status(), response.headers().clone());
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{} {url}: reading the body: {e}", request.method));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Docker's token request: `GET <realm>?service=..&scope=..&scope=..&account=<user>`.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        user: &str,
        password: &str,
    ) -> Option<String> {
        #[derive(Deserialize)]
        struct Issued {
            token: Option<String>,
            access_token: Option<String>,
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &challenge.service {
            query.push(("service", service));
        }
        query.extend(challenge.scopes.iter().map(|s| ("scope", s.as_str())));
        query.push(("account", user));
        let response = self
            .http
            .get(&challenge.realm)
            .query(&query)
            .basic_auth(user, Some(password))
            .header("accept", "application/json")
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let issued: Issued = response.json().await.ok()?;
        issued.token.or(issued.access_token)
    }
}

mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_with_every_scope() {
        let challenge = Challenge::parse(
            r#"Bearer realm="http://127.0.0.1:5000/token",service="berth",scope="repository:a/b:pull,push repository:c/d:pull",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(challenge.realm, "http://127.0.0.1:5000/token");
        assert_eq!(challenge.service.as_deref(), Some("berth"));
        assert_eq!(
            challenge.scopes,
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
        assert!(Challenge::parse(r#"Basic realm="x""#).is_none());
        assert!(Challenge::parse(r#"Bearer service="no realm""#).is_none());
    }

    /// A mount's two challenges, as a registry sends them when the token
    /// lacks pull on `from`: first for the repository, then for both.
    #[tokio::test]
    async fn a_second_challenge_gets_a_wider_token() {
        use axum::extract::{Query, RawQuery};
        use axum::http::{HeaderMap, StatusCode as Status};
        use axum::response::IntoResponse;
        use axum::routing::{get, post};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let realm = format!("{base}/token");
        let mount = move |headers: HeaderMap| {
            let realm = realm.clone();
            async move {
                let challenge = |scope: &str, error: &str| {
                    let value =
                        format!(r#"Bearer realm="{realm}",service="test",scope="{scope}"{error}"#);
                    (Status::UNAUTHORIZED, [("www-authenticate", value)]).into_response()
                };
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    None => challenge("repository:a/b:pull,push", ""),
                    Some("Bearer one") => challenge(
                        "repository:a/b:pull,push repository:c/d:pull",
                        r#",error="insufficient_scope""#,
                    ),
                    Some("Bearer both") => Status::CREATED.into_response(),
                    Some(_) => Status::FORBIDDEN.into_response(),
                }
            }
        };
        let token = |RawQuery(query): RawQuery,
                     Query(params): Query<Vec<(String, String)>>,
                     headers: HeaderMap| async move {
            assert!(
                headers.contains_key("authorization"),
                "no Basic credentials"
            );
            let scopes = params.iter().filter(|(k, _)| k == "scope").count();
            assert!(query.unwrap().contains("account=user"));
            let token = if scopes == 2 { "both" } else { "one" };
            axum::Json(serde_json::json!({"token": token}))
        };
        let app = axum::Router::new()
            .route("/v2/a/b/blobs/uploads/", post(mount))
            .route("/token", get(token));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let client = Client::new(&base, "a/b", Some(("user", "secret")));
        let request = client
            .request(Method::POST, "/v2/<name>/blobs/uploads/")
            .query("mount", "sha256:0")
            .query("from", "c/d");
        assert_eq!(client.send(request).await.status, StatusCode::CREATED);
        // The wider token is kept for the requests that follow.
        assert_eq!(client.token.lock().unwrap().as_deref(), Some("both"));
    }
}
