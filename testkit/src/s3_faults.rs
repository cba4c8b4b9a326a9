//! A fault-injecting S3 proxy: forwards every request unchanged to an S3 endpoint (moto) and, for a
//! seeded share of copies (CopyObject, UploadPartCopy) and CompleteMultipartUpload requests,
//! answers the way S3 does under load: `503 SlowDown` without forwarding, or a `200` whose body is
//! an `<Error>` after forwarding (S3 documents such answers for these three operations; forwarded
//! first, the work is done but reported failed, as when an answer is lost). It can also hold a
//! short-lived presigned request until its URL has expired, so an early expiry really bites.
//!
//! Decisions come from one seeded stream per kind of request, so the k-th copy (or completion) the
//! proxy sees always gets the same fault; one request (method, path, part and upload) is faulted at
//! most [`S3FaultConfig::max_in_a_row`] times in a row, so a client that retries gets through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::task::JoinHandle;

use crate::loopback_proxy::{self, param};

/// How long one forwarded request may take (a 12 MiB GET through moto takes well under a second).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// Shares (0..=1, summing to at most 1) of one kind of request that get each fault.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    /// Answered `503 SlowDown` without reaching S3.
    pub slow_down: f64,
    /// Forwarded, then answered `200` with an `InternalError` body.
    pub error_body: f64,
}

/// What the proxy injects; the default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct S3FaultConfig {
    pub seed: u64,
    /// CopyObject and UploadPartCopy (a PUT with `x-amz-copy-source`), presigned or signed.
    pub copy: FaultRates,
    /// CompleteMultipartUpload (a POST with `uploadId`).
    pub complete: FaultRates,
    /// Faults (and holds) one request gets in a row at most; 0 means no limit. Below the
    /// client's attempts, every request gets through.
    pub max_in_a_row: u32,
    /// Presigned requests whose `X-Amz-Expires` is at most this are held until they expired.
    pub hold_expiring: Option<Duration>,
}

/// What the proxy did, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S3FaultCounts {
    pub copy_slow_down: usize,
    pub copy_error_body: usize,
    pub complete_slow_down: usize,
    pub complete_error_body: usize,
    /// Presigned requests held until their URL expired.
    pub held_until_expired: usize,
    /// Presigned requests S3 refused with 403 (expired, when held).
    pub presigned_refused: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Copy,
    Complete,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    SlowDown,
    ErrorBody,
}

struct Injector {
    config: S3FaultConfig,
    streams: HashMap<&'static str, u64>,
    /// Faults each request got in a row.
    rows: HashMap<String, u32>,
    counts: S3FaultCounts,
}

impl Injector {
    fn new(config: S3FaultConfig) -> Self {
        Self {
            config,
            streams: HashMap::new(),
            rows: HashMap::new(),
            counts: S3FaultCounts::default(),
        }
    }

    /// The next number in 0..1 of `stream` (splitmix64 seeded by the seed and the stream's name).
    fn next_unit(&mut self, stream: &'static str) -> f64 {
        let seed = self.config.seed
            ^ stream
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let state = self.streams.entry(stream).or_insert(seed);
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }

    /// Whether `identity` gets the fault it `wants`: at most `max_in_a_row` in a row.
    fn in_a_row(&mut self, identity: String, wants: bool) -> bool {
        let limit = self.config.max_in_a_row;
        let row = self.rows.entry(identity).or_default();
        let fault = wants && (limit == 0 || *row < limit);
        *row = if fault { *row + 1 } else { 0 };
        fault
    }

    fn decide(&mut self, kind: Kind, identity: String) -> Option<Fault> {
        let (stream, rates) = match kind {
            Kind::Copy => ("copy", self.config.copy),
            Kind::Complete => ("complete", self.config.complete),
        };
        let roll = self.next_unit(stream);
        let wanted = if roll < rates.slow_down {
            Some(Fault::SlowDown)
        } else if roll < rates.slow_down + rates.error_body {
            Some(Fault::ErrorBody)
        } else {
            None
        };
        let fault = wanted.filter(|_| self.in_a_row(identity, wanted.is_some()));
        let counts = &mut self.counts;
        match (kind, fault) {
            (Kind::Copy, Some(Fault::SlowDown)) => counts.copy_slow_down += 1,
            (Kind::Copy, Some(Fault::ErrorBody)) => counts.copy_error_body += 1,
            (Kind::Complete, Some(Fault::SlowDown)) => counts.complete_slow_down += 1,
            (Kind::Complete, Some(Fault::ErrorBody)) => counts.complete_error_body += 1,
            (_, None) => {}
        }
        fault
    }

    /// How long to hold a presigned request so that its URL, valid for `expires` seconds, has
    /// expired when it reaches S3 (signed no later than now, to the second).
    fn hold(&mut self, identity: String, expires: u64) -> Option<Duration> {
        let short = self
            .config
            .hold_expiring
            .is_some_and(|hold| Duration::from_secs(expires) <= hold);
        self.in_a_row(format!("hold {identity}"), short).then(|| {
            self.counts.held_until_expired += 1;
            Duration::from_secs(expires + 1)
        })
    }
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    injector: Mutex<Injector>,
}

impl Proxy {
    fn injector(&self) -> std::sync::MutexGuard<'_, Injector> {
        self.injector.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running proxy; stopped when dropped.
pub struct S3FaultProxy {
    endpoint: String,
    proxy: Arc<Proxy>,
    server: JoinHandle<()>,
}

impl S3FaultProxy {
    /// Serves on a free loopback port, forwarding to `upstream` (`http://127.0.0.1:PORT`) and
    /// injecting nothing until [`Self::set_config`].
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: loopback_proxy::upstream_client(UPSTREAM_TIMEOUT)?,
            injector: Mutex::new(Injector::new(S3FaultConfig::default())),
        });
        let router = Router::new().fallback(forward).with_state(proxy.clone());
        let (endpoint, server) = loopback_proxy::serve(router).await?;
        Ok(Self {
            endpoint,
            proxy,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`: the S3 endpoint to give the clients.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Replaces what is injected, restarting the seeded streams and the counts.
    pub fn set_config(&self, config: S3FaultConfig) {
        *self.proxy.injector() = Injector::new(config);
    }

    pub fn counts(&self) -> S3FaultCounts {
        self.proxy.injector().counts
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn kind(method: &Method, query: &str, headers: &HeaderMap) -> Option<Kind> {
    if method == Method::PUT && headers.contains_key("x-amz-copy-source") {
        Some(Kind::Copy)
    } else if method == Method::POST && param(query, "uploadId").is_some() {
        Some(Kind::Complete)
    } else {
        None
    }
}

/// An S3 error document, as S3 writes it.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>s3-fault-proxy</RequestId></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or_default();
    let identity = format!(
        "{} {} {:?} {:?}",
        parts.method,
        parts.uri.path(),
        param(query, "partNumber"),
        param(query, "uploadId")
    );
    let fault = kind(&parts.method, query, &parts.headers)
        .and_then(|kind| proxy.injector().decide(kind, identity.clone()));
    if fault == Some(Fault::SlowDown) {
        return s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        );
    }
    let presigned = param(query, "X-Amz-Signature").is_some();
    let expires = param(query, "X-Amz-Expires").and_then(|s| s.parse::<u64>().ok());
    if let Some(expires) = expires.filter(|_| presigned) {
        let hold = proxy.injector().hold(identity, expires);
        if let Some(hold) = hold {
            tokio::time::sleep(hold).await;
        }
    }
    let body = match loopback_proxy::body_of(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let answer = match loopback_proxy::forward(&proxy.http, &proxy.upstream, parts, body).await {
        Ok(answer) => answer,
        Err(refused) => return refused,
    };
    if presigned && answer.status == StatusCode::FORBIDDEN {
        proxy.injector().counts.presigned_refused += 1;
    }
    if fault == Some(Fault::ErrorBody) && answer.status.is_success() {
        return s3_error(
            StatusCode::OK,
            "InternalError",
            "We encountered an internal error. Please try again.",
        );
    }
    answer.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies(config: S3FaultConfig, requests: &[&str]) -> Vec<Option<Fault>> {
        let mut injector = Injector::new(config);
        requests
            .iter()
            .map(|r| injector.decide(Kind::Copy, (*r).to_owned()))
            .collect()
    }

    #[test]
    fn decisions_follow_the_seed_and_the_rates() {
        let config = |seed| S3FaultConfig {
            seed,
            copy: FaultRates {
                slow_down: 0.2,
                error_body: 0.2,
            },
            ..S3FaultConfig::default()
        };
        let requests: Vec<String> = (0..1000).map(|i| format!("part {i}")).collect();
        let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
        let first = copies(config(7), &requests);
        assert_eq!(first, copies(config(7), &requests));
        assert_ne!(first, copies(config(8), &requests));
        let slow = first
            .iter()
            .filter(|f| **f == Some(Fault::SlowDown))
            .count();
        let body = first
            .iter()
            .filter(|f| **f == Some(Fault::ErrorBody))
            .count();
        assert!((150..250).contains(&slow), "{slow}");
        assert!((150..250).contains(&body), "{body}");
    }

    #[test]
    fn a_retried_request_gets_through_after_max_in_a_row() {
        let config = S3FaultConfig {
            copy: FaultRates {
                slow_down: 1.0,
                error_body: 0.0,
            },
            max_in_a_row: 2,
            ..S3FaultConfig::default()
        };
        let faults = copies(config.clone(), &["a", "a", "a", "b", "a"]);
        let slow = Some(Fault::SlowDown);
        assert_eq!(faults, [slow, slow, None, slow, slow]);

        let mut injector = Injector::new(S3FaultConfig {
            hold_expiring: Some(Duration::from_secs(5)),
            ..config
        });
        let holds: Vec<_> = [("a", 5), ("a", 5), ("a", 5), ("a", 900), ("a", 1)]
            .map(|(part, expires)| injector.hold(part.to_owned(), expires))
            .to_vec();
        let held = Some(Duration::from_secs(6));
        assert_eq!(
            holds,
            [held, held, None, None, Some(Duration::from_secs(2))]
        );
        assert_eq!(injector.counts.held_until_expired, 3);
    }

    #[test]
    fn requests_are_told_apart_by_method_query_and_copy_source() {
        let mut copy = HeaderMap::new();
        copy.insert("x-amz-copy-source", "bucket/key".parse().unwrap());
        let none = HeaderMap::new();
        let part = "partNumber=2&uploadId=abc";
        assert!(kind(&Method::PUT, part, &copy) == Some(Kind::Copy));
        assert!(kind(&Method::PUT, "", &copy) == Some(Kind::Copy));
        assert!(kind(&Method::PUT, part, &none).is_none());
        assert!(kind(&Method::POST, "uploadId=abc", &none) == Some(Kind::Complete));
        assert!(kind(&Method::POST, "uploads", &none).is_none());
        assert_eq!(param("uploads&x=1", "uploads"), Some(""));
        assert_eq!(param(part, "uploadId"), Some("abc"));
    }
}
