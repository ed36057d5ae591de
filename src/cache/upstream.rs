//! One upstream registry as the cache talks to it: the Distribution API's
//! reads, Docker's token flow (tokens kept per scope until they expire) or
//! Basic credentials, bounded timeouts and a bounded number of requests at
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::settings::{CacheConfig, ProxyConfig};
use crate::oci::manifest::{ACCEPTED_MANIFEST_TYPES, MAX_MANIFEST_BYTES};
use crate::storage::ByteStream;

/// The most a token answer or a tag list may hold.
const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// A token is used until this long before the upstream says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// Why the upstream gave no answer the cache can use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// It has no such manifest, blob or repository.
    #[error("not found upstream")]
    NotFound,
    /// It answered with a status that is not an answer (429, 5xx, a 401
    /// after logging in).
    #[error("the upstream answered {status}")]
    Refused {
        status: u16,
        /// `Retry-After`, when it said (a 429 does).
        retry_after: Option<String>,
    },
    /// No answer: refused connection, DNS, TLS, timeout, a broken body.
    #[error("the upstream is unreachable: {0}")]
    Unreachable(String),
    /// An answer the cache will not keep: a digest that does not match, a
    /// manifest too large or of a type Berth does not serve.
    #[error("the upstream sent an unusable answer: {0}")]
    Invalid(String),
}

impl UpstreamError {
    /// A word for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::NotFound => "not_found",
            UpstreamError::Refused { status: 429, .. } => "rate_limited",
            UpstreamError::Refused { .. } => "refused",
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Invalid(_) => "invalid",
        }
    }
}

pub type UpstreamResult<T> = Result<T, UpstreamError>;

/// How the upstream wants to be authenticated, learnt from its first 401.
#[derive(Debug, Clone)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// A manifest as the upstream served it.
pub struct FetchedManifest {
    pub media_type: String,
    pub payload: Bytes,
}

/// A blob's body on its way.
pub struct FetchedBlob {
    pub size: Option<u64>,
    pub body: ByteStream,
    /// Held while the body streams: it counts against the upstream's limit.
    pub permit: OwnedSemaphorePermit,
}

pub struct Upstream {
    proxy: ProxyConfig,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    request_timeout: Duration,
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by scope, with when to stop using them.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.proxy.upstream.as_str())
            .finish_non_exhaustive()
    }
}

fn unreachable(error: reqwest::Error) -> UpstreamError {
    // The error's chain says why (refused, timed out, certificate); the URL
    // it names is the configured upstream's, never a credential.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    UpstreamError::Unreachable(text)
}

impl Upstream {
    pub fn new(proxy: ProxyConfig, cache: &CacheConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(cache.connect_timeout)
            .read_timeout(cache.request_timeout)
            .user_agent(concat!(
                "berth/",
                env!("CARGO_PKG_VERSION"),
                " (pull-through cache)"
            ))
            // Blobs are often served from elsewhere (a CDN); reqwest drops
            // the Authorization header when a redirect leaves the host.
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Upstream {
            proxy,
            client,
            permits: Arc::new(Semaphore::new(cache.upstream_concurrency as usize)),
            request_timeout: cache.request_timeout,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn url(&self) -> &str {
        self.proxy.upstream.as_str().trim_end_matches('/')
    }

    /// A permit to send one request, waiting at most the request timeout.
    async fn permit(&self) -> UpstreamResult<OwnedSemaphorePermit> {
        tokio::time::timeout(self.request_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                UpstreamError::Unreachable(
                    "too many requests to this upstream are in flight".into(),
                )
            })?
            .map_err(|_| UpstreamError::Unreachable("shutting down".into()))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().expect("token cache");
        tokens
            .get(scope)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        self.proxy.credentials.as_ref().map(|(user, password)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {encoded}")
        })
    }

    /// The `Authorization` to send for `scope`, as far as known without asking.
    fn authorization(&self, scope: &str) -> Option<String> {
        let challenge = self.challenge.lock().expect("challenge").clone();
        match challenge? {
            Challenge::Basic => self.basic(),
            Challenge::Bearer { .. } => self.cached_token(scope).map(|t| format!("Bearer {t}")),
        }
    }

    /// Fetches a token for `scope` from the realm, logging in when
    /// credentials are configured, and keeps it until it expires.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> UpstreamResult<String> {
        let mut url = url::Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| UpstreamError::Invalid(format!("token realm `{realm}` is not a URL")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self.client.get(url).timeout(self.request_timeout);
        if let Some(basic) = self.basic() {
            request = request.header(header::AUTHORIZATION, basic);
        }
        let response = request.send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(UpstreamError::Refused {
                status: response.status().as_u16(),
                retry_after: retry_after(response.headers()),
            });
        }
        let body = read_limited(response, MAX_DOCUMENT_BYTES).await?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("token answer: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::Invalid("token answer without a token".into()))?;
        // The specification's default lifetime is 60 s.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(1));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        let mut tokens = self.tokens.lock().expect("token cache");
        if tokens.len() > 10_000 {
            tokens.retain(|_, (_, until)| Instant::now() < *until);
        }
        tokens.insert(scope.to_string(), (token.clone(), until));
        Ok(token)
    }

    /// Sends a request for `path` (after `/v2/`) needing pull on `name`,
    /// authenticating as the upstream asks: at most one login per request.
    async fn send(
        &self,
        method: Method,
        name: &str,
        path: &str,
        accept: Option<&str>,
        whole_body_timeout: bool,
    ) -> UpstreamResult<reqwest::Response> {
        let scope = format!("repository:{name}:pull");
        let url = format!("{}/v2/{path}", self.url());
        let mut logged_in = false;
        loop {
            let mut request = self.client.request(method.clone(), &url);
            if whole_body_timeout {
                request = request.timeout(self.request_timeout);
            }
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(authorization) = self.authorization(&scope) {
                request = request.header(header::AUTHORIZATION, authorization);
            }
            let response = request.send().await.map_err(unreachable)?;
            if response.status() != StatusCode::UNAUTHORIZED || logged_in {
                return Ok(response);
            }
            logged_in = true;
            match parse_challenge(response.headers()) {
                Some(Challenge::Bearer { realm, service }) => {
                    self.fetch_token(&realm, service.as_deref(), &scope).await?;
                    *self.challenge.lock().expect("challenge") =
                        Some(Challenge::Bearer { realm, service });
                }
                Some(Challenge::Basic) if self.proxy.credentials.is_some() => {
                    *self.challenge.lock().expect("challenge") = Some(Challenge::Basic);
                }
                _ => return Ok(response),
            }
        }
    }

    /// The name `rest` (the part after the local namespace) has upstream.
    pub fn upstream_name(&self, rest: &str) -> String {
        match &self.proxy.upstream_namespace {
            Some(prefix) => format!("{prefix}/{rest}"),
            // Docker Hub's official images are `library/<name>`, which
            // `docker pull alpine` spells without it.
            None if !rest.contains('/') && is_docker_hub(&self.proxy.upstream) => {
                format!("library/{rest}")
            }
            None => rest.to_string(),
        }
    }

    /// A manifest request (`GET` or `HEAD`) by tag or digest, accepting
    /// every manifest type Berth serves; the permit is held until the
    /// caller has read what it needs.
    async fn manifest_request(
        &self,
        method: Method,
        name: &str,
        reference: &str,
    ) -> UpstreamResult<(OwnedSemaphorePermit, reqwest::Response)> {
        let permit = self.permit().await?;
        let accept = ACCEPTED_MANIFEST_TYPES.join(", ");
        let path = format!("{name}/manifests/{reference}");
        let response = self.send(method, name, &path, Some(&accept), true).await?;
        Ok((permit, answered(response)?))
    }

    /// A manifest by tag or digest, with the media type it was served as.
    pub async fn manifest(&self, name: &str, reference: &str) -> UpstreamResult<FetchedManifest> {
        let (_permit, response) = self.manifest_request(Method::GET, name, reference).await?;
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let payload = read_limited(response, MAX_MANIFEST_BYTES).await?;
        Ok(FetchedManifest {
            media_type,
            payload,
        })
    }

    /// The digest a tag names upstream now, by `HEAD` (which Docker Hub does
    /// not count against its pull limit).
    pub async fn manifest_digest(&self, name: &str, reference: &str) -> UpstreamResult<String> {
        let (_permit, response) = self.manifest_request(Method::HEAD, name, reference).await?;
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| UpstreamError::Invalid("HEAD without Docker-Content-Digest".into()))
    }

    /// A blob's size, by `HEAD`.
    pub async fn blob_size(&self, name: &str, digest: &str) -> UpstreamResult<Option<u64>> {
        let _permit = self.permit().await?;
        let response = self
            .send(
                Method::HEAD,
                name,
                &format!("{name}/blobs/{digest}"),
                None,
                true,
            )
            .await?;
        Ok(answered(response)?.content_length())
    }

    /// A blob's body, streamed; each read must come within the request timeout.
    pub async fn blob(&self, name: &str, digest: &str) -> UpstreamResult<FetchedBlob> {
        let permit = self.permit().await?;
        let response = self
            .send(
                Method::GET,
                name,
                &format!("{name}/blobs/{digest}"),
                None,
                false,
            )
            .await?;
        let response = answered(response)?;
        let size = response.content_length();
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(unreachable(e).to_string())));
        Ok(FetchedBlob {
            size,
            body: Box::pin(body),
            permit,
        })
    }

    /// The tag list's JSON, as the upstream pages it (`query` passed on).
    pub async fn tags(
        &self,
        name: &str,
        query: Option<&str>,
    ) -> UpstreamResult<(Bytes, Option<String>)> {
        let _permit = self.permit().await?;
        let path = match query {
            Some(query) => format!("{name}/tags/list?{query}"),
            None => format!("{name}/tags/list"),
        };
        let response = self.send(Method::GET, name, &path, None, true).await?;
        let response = answered(response)?;
        let link = response
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((read_limited(response, MAX_DOCUMENT_BYTES).await?, link))
    }
}

fn is_docker_hub(url: &url::Url) -> bool {
    matches!(
        url.host_str(),
        Some("registry-1.docker.io" | "docker.io" | "index.docker.io" | "registry.hub.docker.com")
    )
}

fn retry_after(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .map(str::to_string)
}

/// The response when it is an answer (2xx), else why not.
fn answered(response: reqwest::Response) -> UpstreamResult<reqwest::Response> {
    match response.status() {
        status if status.is_success() => Ok(response),
        StatusCode::NOT_FOUND => Err(UpstreamError::NotFound),
        status => Err(UpstreamError::Refused {
            status: status.as_u16(),
            retry_after: retry_after(response.headers()),
        }),
    }
}

/// The whole body, refused past `limit` bytes.
async fn read_limited(response: reqwest::Response, limit: usize) -> UpstreamResult<Bytes> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(UpstreamError::Invalid(format!(
            "the answer is larger than {limit} bytes"
        )));
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unreachable)?;
        if body.len() + chunk.len() > limit {
            return Err(UpstreamError::Invalid(format!(
                "the answer is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The scheme and parameters of a `WWW-Authenticate` header.
fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let value: &HeaderValue = headers.get(header::WWW_AUTHENTICATE)?;
    let text = value.to_str().ok()?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let parameters = challenge_parameters(rest);
    let realm = parameters.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: parameters.get("service").cloned(),
    })
}

/// `key="value",key=value` pairs; quoted values may hold commas.
fn challenge_parameters(text: &str) -> HashMap<String, String> {
    let mut parameters = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        parameters.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_with_quoted_commas() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
            ),
        );
        let Some(Challenge::Bearer { realm, service }) = parse_challenge(&headers) else {
            panic!("a bearer challenge");
        };
        assert_eq!(realm, "https://auth.docker.io/token");
        assert_eq!(service.as_deref(), Some("registry.docker.io"));
        let parameters = challenge_parameters(r#"realm="a,b", scope=x"#);
        assert_eq!(parameters["realm"], "a,b");
        assert_eq!(parameters["scope"], "x");
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="Registry Realm""#),
        );
        assert!(matches!(parse_challenge(&headers), Some(Challenge::Basic)));
    }

    #[test]
    fn docker_hub_names_get_library() {
        let cache = CacheConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            upstream_concurrency: 1,
            ..CacheConfig::default()
        };
        let proxy = |upstream: &str, prefix: Option<&str>| ProxyConfig {
            namespace: "hub".into(),
            upstream: url::Url::parse(upstream).unwrap(),
            upstream_namespace: prefix.map(str::to_string),
            mirror_of: None,
            credentials: None,
            tag_ttl: Duration::from_secs(1),
            evict_after: Duration::from_secs(1),
        };
        let hub = Upstream::new(proxy("https://registry-1.docker.io", None), &cache).unwrap();
        assert_eq!(hub.upstream_name("alpine"), "library/alpine");
        assert_eq!(hub.upstream_name("library/alpine"), "library/alpine");
        assert_eq!(hub.upstream_name("grafana/grafana"), "grafana/grafana");
        let ghcr = Upstream::new(proxy("https://ghcr.io", Some("acme")), &cache).unwrap();
        assert_eq!(ghcr.upstream_name("web"), "acme/web");
        let plain = Upstream::new(proxy("http://127.0.0.1:5001", None), &cache).unwrap();
        assert_eq!(plain.upstream_name("alpine"), "alpine");
    }
}
