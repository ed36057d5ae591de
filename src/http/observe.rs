//! One access-log line and the request metrics for every request, written
//! when the response body has been sent (or dropped), so bytes and duration
//! cover the whole transfer. Routes are labelled by kind (`blob`,
//! `manifest`, ...), never by raw path, to keep metric cardinality bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;
use super::route::{self, Route};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::origin::RequestId;
use axum::http::{HeaderValue, Method};

/// Who made the request, as the handler established it (for the log line).
#[derive(Debug, Clone)]
pub struct Subject(pub String);

pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v2" | "/v2/" => "base",
        "/token" => "token",
        "/token/jwks.json" | "/.well-known/jwks.json" => "jwks",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ if path.starts_with("/api/v1/") => "api",
        _ => match path.strip_prefix("/v2/").and_then(route::parse) {
            Some(Route::Catalog) => "catalog",
            Some(Route::Tags { .. }) => "tags",
            Some(Route::Manifest { .. }) => "manifest",
            Some(Route::Referrers { .. }) => "referrers",
            Some(Route::Blob { .. }) => "blob",
            Some(Route::UploadStart { .. }) => "upload_start",
            Some(Route::Upload { .. }) => "upload",
            None => "unknown",
        },
    }
}

/// The method as a label: the standard ones by name, any other as
/// `other`, so a client inventing methods cannot grow the metrics.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A body that reports the size of every data frame passing through, and
/// otherwise looks exactly like the body it wraps (same size hint, so a
/// response keeps its `Content-Length`).
struct CountingBody<F> {
    inner: Body,
    on_data: F,
}

impl<F: FnMut(usize) + Send + Unpin + 'static> HttpBody for CountingBody<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            (self.on_data)(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Logs and counts the request when dropped, i.e. when the response body is done.
struct Finished {
    metrics: Arc<Metrics>,
    started: Instant,
    method: &'static str,
    path: String,
    route: &'static str,
    request_id: String,
    status: u16,
    subject: Option<String>,
    received: Arc<AtomicU64>,
    sent: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let received = self.received.load(Ordering::Relaxed);
        let labels = RouteLabels {
            route: self.route,
            method: self.method,
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.route,
                method: self.method,
                status: self.status,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.metrics
            .bytes_received
            .get_or_create(&labels)
            .inc_by(received);
        self.metrics
            .bytes_sent
            .get_or_create(&labels)
            .inc_by(self.sent);
        tracing::info!(
            target: "berth::access",
            method = self.method,
            path = %self.path,
            route = self.route,
            status = self.status,
            received,
            sent = self.sent,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            subject = self.subject.as_deref().unwrap_or("-"),
            request_id = %self.request_id,
            "request"
        );
    }
}

pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId::from_headers(request.headers());
    request.extensions_mut().insert(request_id.clone());
    let method = method_label(request.method());
    // The path only: query strings are not logged.
    let path = request.uri().path().to_string();
    let route = route_label(&path);
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let request = request.map(|body| {
        Body::new(CountingBody {
            inner: body,
            on_data: move |len: usize| {
                counter.fetch_add(len as u64, Ordering::Relaxed);
            },
        })
    });
    let span = tracing::info_span!("request", method, route);
    let response = next.run(request).instrument(span).await;
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        parts.headers.insert("x-request-id", value);
    }
    let mut finished = Finished {
        request_id: request_id.0,
        metrics: state.metrics.clone(),
        started,
        method,
        path,
        route,
        status: parts.status.as_u16(),
        subject: parts.extensions.get::<Subject>().map(|s| s.0.clone()),
        received,
        sent: 0,
    };
    let body = Body::new(CountingBody {
        inner: body,
        on_data: move |len: usize| {
            // Borrowing the whole value makes the closure own all of it, so the
            // log line is written when the body (and with it the closure) is dropped.
            let finished = &mut finished;
            finished.sent += len as u64;
        },
    });
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_by_kind() {
        assert_eq!(route_label("/v2/"), "base");
        assert_eq!(route_label("/v2/a/b/blobs/sha256:00"), "blob");
        assert_eq!(route_label("/v2/a/b/blobs/uploads/"), "upload_start");
        assert_eq!(route_label("/v2/a/manifests/latest"), "manifest");
        assert_eq!(route_label("/v2/_catalog"), "catalog");
        assert_eq!(route_label("/api/v1/users"), "api");
        assert_eq!(route_label("/anything/else"), "unknown");
    }
}
