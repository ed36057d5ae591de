//! Defence in depth for every page request that changes something, before
//! any handler (and its CSRF token check) runs: a browser that says the
//! request comes from another site (`Sec-Fetch-Site: cross-site`), or whose
//! `Origin` is not the host it is talking to, is refused with a 403 page.
//! A request with neither header (an older browser, curl) goes on to the
//! token check, which every such form has.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{UiError, UiState};

pub async fn same_origin_writes(
    State(state): State<UiState>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && let Err(refusal) = check(request.headers(), &state) {
        return refusal.into_response();
    }
    next.run(request).await
}

fn check(headers: &HeaderMap, state: &UiState) -> Result<(), UiError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
        return Err(UiError::Forbidden(
            "this form was sent from another site".into(),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().ok().and_then(Authority::of_origin);
        let host = text(header::HOST.as_str());
        let public = state.public_url.as_deref().and_then(Authority::of_origin);
        let matches = origin.is_some_and(|origin| {
            host.and_then(|h| Authority::of_host(h, origin.port)) == Some(origin.clone())
                || public == Some(origin)
        });
        if !matches {
            return Err(UiError::Forbidden(
                "this form was sent from another origin".into(),
            ));
        }
    }
    Ok(())
}

/// A host and port, compared without case and with default ports filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: u16,
}

impl Authority {
    /// `https://registry.example` (an `Origin`, or `public_url`); `None` for
    /// `null` and anything else that is not an http(s) origin.
    fn of_origin(text: &str) -> Option<Authority> {
        let url = url::Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Authority {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// `registry.example:5000` (a `Host` header); without a port, the
    /// origin's own default port is assumed, as a browser omits it then.
    fn of_host(text: &str, default_port: u16) -> Option<Authority> {
        let url = url::Url::parse(&format!("http://{text}")).ok()?;
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return None;
        }
        let explicit = text
            .rsplit_once(':')
            .filter(|(_, port)| !port.contains(']'))
            .and_then(|(_, port)| port.parse().ok());
        Some(Authority {
            host: url.host_str()?.to_ascii_lowercase(),
            port: explicit.unwrap_or(default_port),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin_matches(origin: &str, host: &str) -> bool {
        Authority::of_origin(origin)
            .is_some_and(|o| Authority::of_host(host, o.port) == Some(o.clone()))
    }

    #[test]
    fn an_origin_matches_its_own_host_only() {
        assert!(origin_matches("http://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(origin_matches(
            "https://Registry.Example",
            "registry.example"
        ));
        assert!(origin_matches(
            "https://registry.example",
            "registry.example:443"
        ));
        assert!(origin_matches("http://[::1]:8080", "[::1]:8080"));
        assert!(!origin_matches("http://127.0.0.1:5001", "127.0.0.1:5000"));
        assert!(!origin_matches("https://evil.example", "registry.example"));
        assert!(!origin_matches(
            "http://registry.example",
            "registry.example:443"
        ));
        assert!(!origin_matches("null", "registry.example"));
        assert!(!origin_matches(
            "https://registry.example",
            "registry.example/x"
        ));
    }
}
