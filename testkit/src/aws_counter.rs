//! A counting AWS proxy: forwards every request unchanged to the local stack (moto) and counts
//! it, DynamoDB by operation (`X-Amz-Target`) with an estimate of the request units it consumes,
//! S3 by operation (from the method, the query and the headers), anything else by its target or
//! method. Give its endpoint to the functions as `AWS_ENDPOINT_URL` and every AWS request they
//! make is counted; the upstream can be set after the proxy started (the stack's port is known
//! only once the stack runs, and the functions' environment must be known before).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::loopback_proxy::{self, param};

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// DynamoDB bills a write request unit per KiB of item written and a read request unit per 4 KiB
/// read (strongly consistent; half for eventually consistent reads).
const WRITE_UNIT_BYTES: usize = 1024;
const READ_UNIT_BYTES: usize = 4096;
/// The attribute the state table's status index (GSI) is keyed by: writing an item that has it
/// writes the index too.
const INDEX_KEY_ATTRIBUTE: &str = "\"SPK\"";

/// What went through the proxy since it started or since [`AwsCountingProxy::take`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AwsCounts {
    /// DynamoDB requests by operation (`Query`, `PutItem`, ...).
    pub dynamodb: BTreeMap<String, u64>,
    /// S3 requests by operation (`GetObject`, `CopyObject`, `UploadPartCopy`, ...).
    pub s3: BTreeMap<String, u64>,
    /// Other services' requests, by `X-Amz-Target` or method.
    pub other: BTreeMap<String, u64>,
    /// Estimated write request units of the table's items (see [`estimate_units`]).
    pub dynamodb_write_units: f64,
    /// Estimated write request units of the status index (an item written with its index key).
    pub dynamodb_index_write_units: f64,
    /// Estimated read request units.
    pub dynamodb_read_units: f64,
    /// Time spent waiting for the upstream's answers to DynamoDB and to S3 requests (summed over
    /// requests, so concurrent requests count each).
    pub dynamodb_time: Duration,
    pub s3_time: Duration,
}

impl AwsCounts {
    pub fn dynamodb_requests(&self) -> u64 {
        self.dynamodb.values().sum()
    }

    pub fn s3_requests(&self) -> u64 {
        self.s3.values().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &AwsCounts) {
        for (mine, theirs) in [
            (&mut self.dynamodb, &other.dynamodb),
            (&mut self.s3, &other.s3),
            (&mut self.other, &other.other),
        ] {
            for (operation, count) in theirs {
                *mine.entry(operation.clone()).or_default() += count;
            }
        }
        self.dynamodb_write_units += other.dynamodb_write_units;
        self.dynamodb_index_write_units += other.dynamodb_index_write_units;
        self.dynamodb_read_units += other.dynamodb_read_units;
        self.dynamodb_time += other.dynamodb_time;
        self.s3_time += other.s3_time;
    }
}

struct Shared {
    upstream: Mutex<Option<String>>,
    http: reqwest::Client,
    counts: Mutex<AwsCounts>,
}

impl Shared {
    fn counts(&self) -> std::sync::MutexGuard<'_, AwsCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running counting proxy; stopped when dropped.
pub struct AwsCountingProxy {
    endpoint: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl AwsCountingProxy {
    /// Serves on a free loopback port; answers `502` until [`Self::set_upstream`].
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            upstream: Mutex::new(None),
            http: loopback_proxy::upstream_client(UPSTREAM_TIMEOUT)?,
            counts: Mutex::new(AwsCounts::default()),
        });
        let router = Router::new().fallback(forward).with_state(shared.clone());
        let (endpoint, server) = loopback_proxy::serve(router).await?;
        Ok(Self {
            endpoint,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give the clients.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Where requests go from now on (`http://127.0.0.1:PORT` of the stack).
    pub fn set_upstream(&self, upstream: &str) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(upstream.trim_end_matches('/').into());
    }

    /// The counts so far, which start again from zero.
    pub fn take(&self) -> AwsCounts {
        std::mem::take(&mut *self.shared.counts())
    }
}

impl Drop for AwsCountingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The S3 operation of a path-style request (`/bucket` or `/bucket/key`).
pub fn s3_operation(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> String {
    let has = |name: &str| param(query, name).is_some();
    let object = path.trim_start_matches('/').contains('/');
    let copy = headers.contains_key("x-amz-copy-source");
    let operation = match *method {
        Method::GET if !object && has("uploads") => "ListMultipartUploads",
        Method::GET if !object && has("lifecycle") => "GetBucketLifecycleConfiguration",
        Method::GET if !object && has("location") => "GetBucketLocation",
        Method::GET if !object => "ListObjects",
        Method::GET if has("uploadId") => "ListParts",
        Method::GET => "GetObject",
        Method::HEAD if object => "HeadObject",
        Method::HEAD => "HeadBucket",
        Method::PUT if has("partNumber") && copy => "UploadPartCopy",
        Method::PUT if has("partNumber") => "UploadPart",
        Method::PUT if copy => "CopyObject",
        Method::PUT if object => "PutObject",
        Method::PUT => "CreateBucket",
        Method::POST if has("uploads") => "CreateMultipartUpload",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        Method::POST if has("delete") => "DeleteObjects",
        Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        Method::DELETE => "DeleteObject",
        _ => return format!("{method} other"),
    };
    operation.to_owned()
}

/// Request units of one DynamoDB call: `(write, index write, read)`, estimated from the JSON
/// bodies (DynamoDB's JSON encoding of an item is somewhat longer than its stored size, so these
/// lean high). Writes: a unit per KiB of each item put (an update or a delete: one), twice in a
/// transaction; items carrying the status index's key write the index too (an update that sets
/// it: two, the old entry's removal and the new one). Reads: a unit per 4 KiB of the answer
/// (strongly consistent; half otherwise), at least one per item read or query.
pub fn estimate_units(operation: &str, request: &[u8], response: &[u8]) -> (f64, f64, f64) {
    let request_json: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let consistent = request_json["ConsistentRead"].as_bool().unwrap_or(false);
    let read_factor = if consistent { 1.0 } else { 0.5 };
    let item_units = |item: &Value| {
        let len = item.to_string().len();
        len.div_ceil(WRITE_UNIT_BYTES).max(1) as f64
    };
    let indexed = |value: &Value| value.to_string().contains(INDEX_KEY_ATTRIBUTE);
    let read_units = |bytes: usize| bytes.div_ceil(READ_UNIT_BYTES).max(1) as f64 * read_factor;
    match operation {
        "PutItem" => {
            let item = &request_json["Item"];
            let units = item_units(item);
            (units, if indexed(item) { units } else { 0.0 }, 0.0)
        }
        "UpdateItem" => {
            let index = if indexed(&request_json) { 2.0 } else { 0.0 };
            (1.0, index, 0.0)
        }
        "DeleteItem" => (1.0, 0.0, 0.0),
        "BatchWriteItem" => {
            let mut write = 0.0;
            let mut index = 0.0;
            if let Some(tables) = request_json["RequestItems"].as_object() {
                for requests in tables.values() {
                    for request in requests.as_array().into_iter().flatten() {
                        let item = &request["PutRequest"]["Item"];
                        if item.is_null() {
                            write += 1.0;
                        } else {
                            let units = item_units(item);
                            write += units;
                            if indexed(item) {
                                index += units;
                            }
                        }
                    }
                }
            }
            (write, index, 0.0)
        }
        "TransactWriteItems" => {
            let items = request_json["TransactItems"].as_array().map_or(0, Vec::len);
            let index = if indexed(&request_json) { 2.0 } else { 0.0 };
            (2.0 * items as f64, index, 0.0)
        }
        "GetItem" | "Query" | "Scan" => (0.0, 0.0, read_units(response.len())),
        "BatchGetItem" => {
            let answer: Value = serde_json::from_slice(response).unwrap_or(Value::Null);
            let mut units = 0.0;
            if let Some(tables) = answer["Responses"].as_object() {
                for items in tables.values() {
                    for item in items.as_array().into_iter().flatten() {
                        // BatchGetItem reads eventually consistent unless asked otherwise.
                        units += read_units(item.to_string().len());
                    }
                }
            }
            (0.0, 0.0, units)
        }
        _ => (0.0, 0.0, 0.0),
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(upstream) = shared
        .upstream
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        return (StatusCode::BAD_GATEWAY, "no upstream yet").into_response();
    };
    let body = match loopback_proxy::body_of(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let query = parts.uri.query().unwrap_or_default();
    let s3_operation = target
        .is_none()
        .then(|| s3_operation(&parts.method, parts.uri.path(), query, &parts.headers));
    let request_body = body.clone();
    let clock = std::time::Instant::now();
    let answer = match loopback_proxy::forward(&shared.http, &upstream, parts, body).await {
        Ok(answer) => answer,
        Err(refused) => return refused,
    };
    let took = clock.elapsed();
    {
        let mut counts = shared.counts();
        match (&target, s3_operation) {
            (Some(target), _) if target.starts_with("DynamoDB_") => {
                let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
                if answer.status.is_success() {
                    let (write, index, read) =
                        estimate_units(&operation, &request_body, &answer.body);
                    counts.dynamodb_write_units += write;
                    counts.dynamodb_index_write_units += index;
                    counts.dynamodb_read_units += read;
                }
                *counts.dynamodb.entry(operation).or_default() += 1;
                counts.dynamodb_time += took;
            }
            (Some(target), _) => *counts.other.entry(target.clone()).or_default() += 1,
            (None, Some(operation)) => {
                *counts.s3.entry(operation).or_default() += 1;
                counts.s3_time += took;
            }
            (None, None) => {}
        }
    }
    answer.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_operations_are_told_apart() {
        let none = HeaderMap::new();
        let mut copy = HeaderMap::new();
        copy.insert("x-amz-copy-source", "b/k".parse().unwrap());
        let op = |m: Method, path: &str, q: &str, h: &HeaderMap| s3_operation(&m, path, q, h);
        assert_eq!(op(Method::PUT, "/b/k", "", &copy), "CopyObject");
        assert_eq!(
            op(Method::PUT, "/b/k", "partNumber=1&uploadId=u", &copy),
            "UploadPartCopy"
        );
        assert_eq!(op(Method::PUT, "/b/k", "", &none), "PutObject");
        assert_eq!(op(Method::GET, "/b", "list-type=2", &none), "ListObjects");
        assert_eq!(
            op(Method::GET, "/b", "uploads", &none),
            "ListMultipartUploads"
        );
        assert_eq!(op(Method::GET, "/b/k", "", &none), "GetObject");
        assert_eq!(
            op(Method::POST, "/b/k", "uploads", &none),
            "CreateMultipartUpload"
        );
    }

    #[test]
    fn units_follow_item_sizes() {
        let put = br#"{"Item":{"PK":{"S":"a"},"SPK":{"S":"b"}}}"#;
        assert_eq!(estimate_units("PutItem", put, b"{}"), (1.0, 1.0, 0.0));
        let big = format!(r#"{{"Item":{{"PK":{{"S":"{}"}}}}}}"#, "x".repeat(3000));
        assert_eq!(
            estimate_units("PutItem", big.as_bytes(), b"{}"),
            (3.0, 0.0, 0.0)
        );
        let answer = vec![b' '; 10_000];
        assert_eq!(
            estimate_units("Query", br#"{"ConsistentRead":true}"#, &answer),
            (0.0, 0.0, 3.0)
        );
        assert_eq!(estimate_units("Query", b"{}", &answer), (0.0, 0.0, 1.5));
    }
}
