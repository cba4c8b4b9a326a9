//! What the test proxies share: serving a router on a free loopback port, and forwarding a
//! request unchanged to an upstream and its answer back.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, request, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::task::JoinHandle;

/// Headers that describe one connection or the body's framing, not the request.
const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::HOST,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::EXPECT,
];

/// Serves `router` on a free loopback port; returns its endpoint (`http://127.0.0.1:PORT`) and
/// the server task (abort it to stop).
pub(crate) async fn serve(router: Router) -> std::io::Result<(String, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((endpoint, server))
}

/// The client a proxy forwards with: no system proxy, requests bounded by `timeout`.
pub(crate) fn upstream_client(timeout: Duration) -> std::io::Result<reqwest::Client> {
    crate::http_client_builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(std::io::Error::other)
}

/// The raw value of query parameter `name`, if present.
pub(crate) fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The whole body of a request, or the answer that says why it could not be read.
pub(crate) async fn body_of(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

/// An upstream's answer, read whole.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn into_response(mut self) -> Response {
        self.headers.remove(header::TRANSFER_ENCODING);
        self.headers.remove(header::CONNECTION);
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Sends the request (`parts` and `body`) unchanged to `upstream` (`http://127.0.0.1:PORT`);
/// a `502` answer when the upstream cannot be reached.
pub(crate) async fn forward(
    http: &reqwest::Client,
    upstream: &str,
    parts: request::Parts,
    body: Bytes,
) -> Result<Answer, Response> {
    let bad_gateway = |e: reqwest::Error| (StatusCode::BAD_GATEWAY, e.to_string()).into_response();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let answer = http
        .request(parts.method, format!("{upstream}{path_and_query}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(bad_gateway)?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.map_err(bad_gateway)?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}
