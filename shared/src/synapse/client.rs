//! Typed Synapse REST client for exactly the calls a storage migration makes, with the limits,
//! retries and timeouts the server expects from a well-behaved client.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use synapse_model::{
    AddPartResponse, Annotations2, BatchFileRequest, BatchFileResult,
    BatchPresignedUploadUrlRequest, BatchPresignedUploadUrlResponse, Entity, EntityBundle,
    EntityBundleRequest, EntityChildrenRequest, EntityChildrenResponse, EntityHeader,
    ErrorResponse, FileHandle, FileHandleVersionUpdate, MultipartUploadCopyRequest,
    MultipartUploadStatus, PaginatedResults, S3FileHandleCreate, StorageLocationSetting,
    UploadDestination, UserEntityPermissions, UserProfile, VersionInfo,
};

use super::budget::{RequestBudget, Throttling};
use super::error::SynapseError;
use super::limiter::RateLimiter;
use super::presigned::parse_copy_part_response;
use super::retry::{with_retries, RetryPolicy};
use super::token::SynapseToken;

mod files;
mod tables;

/// Production repository service.
pub const PROD_REPO_ENDPOINT: &str = "https://repo-prod.prod.sagebase.org/repo/v1";
/// Production file service (multipart copy, external file handles, file handle batches).
pub const PROD_FILE_ENDPOINT: &str = "https://file-prod.prod.sagebase.org/file/v1";

/// Longest server error text kept in an error when the body is not Synapse's `{"reason"}` JSON.
const MAX_RAW_REASON: usize = 300;

/// Everything the client needs; `Debug` shows the token as `[redacted]`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub repo_endpoint: String,
    pub file_endpoint: String,
    pub token: SynapseToken,
    /// Whole-request timeout for Synapse calls (the official client uses 70 s).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Timeout of one presigned UploadPartCopy PUT: S3 copies 60-70 MiB/s, so a 5 GiB part needs
    /// well over the Synapse timeout.
    pub part_copy_timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests per minute for the whole process (Synapse allows 600 per user and session).
    pub requests_per_minute: u32,
    /// Requests that may go back to back after an idle period.
    pub burst: u32,
    /// Concurrent Synapse requests for the whole process (Synapse allows 3).
    pub max_in_flight: usize,
    /// Tries of a read-modify-write entity update that keeps hitting 412.
    pub max_conflict_attempts: u32,
    /// Largest answer read: Synapse's answers are pages (children, versions, a table query's
    /// 2 MiB), so anything bigger is refused as a protocol error instead of filling memory.
    pub max_response_bytes: usize,
}

impl ClientConfig {
    /// Defaults that keep one process under Synapse's limits with some headroom.
    pub fn new(
        repo_endpoint: impl Into<String>,
        file_endpoint: impl Into<String>,
        token: SynapseToken,
    ) -> Self {
        Self {
            repo_endpoint: repo_endpoint.into(),
            file_endpoint: file_endpoint.into(),
            token,
            request_timeout: Duration::from_secs(70),
            connect_timeout: Duration::from_secs(10),
            part_copy_timeout: Duration::from_secs(600),
            retry: RetryPolicy::default(),
            requests_per_minute: 540,
            burst: 10,
            max_in_flight: 3,
            max_conflict_attempts: 5,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }

    /// The production endpoints.
    pub fn production(token: SynapseToken) -> Self {
        Self::new(PROD_REPO_ENDPOINT, PROD_FILE_ENDPOINT, token)
    }
}

/// Which Synapse service a call goes to: the file service is a separate host in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Repo,
    File,
}

/// A Synapse client. Cheap to clone; clones share the connection pool and the rate limiter.
#[derive(Clone)]
pub struct SynapseClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    repo: String,
    file: String,
    /// `Bearer <token>`, marked sensitive so reqwest never prints it.
    authorization: HeaderValue,
    /// `sessionID=<random>`: this client's own session from its first request (see
    /// [`session_cookie`]).
    session: HeaderValue,
    limiter: Arc<RateLimiter>,
    /// The run's fleet-wide budget, drawn from after the process limiter (see [`RequestBudget`]).
    budget: RwLock<Option<Arc<dyn RequestBudget>>>,
    request_timeout: Duration,
    part_copy_timeout: Duration,
    retry: RetryPolicy,
    max_conflict_attempts: u32,
    max_response_bytes: usize,
    stats: RequestStats,
}

/// What this client's requests met since the counts were last taken (the functions' metrics).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Answers 429.
    pub throttled: u64,
    /// Time spent waiting for the process limiter and the run's budget before sending.
    pub waited: Duration,
}

#[derive(Default)]
struct RequestStats {
    requests: AtomicU64,
    throttled: AtomicU64,
    waited_micros: AtomicU64,
}

/// A session of this client's own, sent from its first request. Synapse counts requests in
/// flight per user, session and address (`HttpRequestIdentifier.getUserMachineIdentifierString`,
/// at most 3: `UserConcurrentConnectionThrottler`) and gives a request without a `sessionID` cookie
/// none (`SessionIdCookieSetterFilter` only sets one on the response). Without its own, every
/// function instance behind one address (a NAT gateway) would share one allowance of 3, however
/// well each keeps to it; with it each instance is the one client its limiter is sized for, as a
/// client that keeps Synapse's cookie is after its first answer.
fn session_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!("sessionID={:032x}", rand::random::<u128>()))
        .expect("hex digits are a valid header value")
}

impl fmt::Debug for SynapseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SynapseClient")
            .field("repo", &self.inner.repo)
            .field("file", &self.inner.file)
            .field("token", &"[redacted]")
            .field("limiter", &self.inner.limiter)
            .finish_non_exhaustive()
    }
}

/// One Synapse request, kept whole so that every retry sends the same thing.
struct Call<'a> {
    method: Method,
    service: Service,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// Names the call in logs and errors without ids or hosts, e.g. `POST /entity/{id}/bundle2`.
    name: &'a str,
}

impl<'a> Call<'a> {
    fn new(method: Method, service: Service, path: String, name: &'a str) -> Self {
        Self {
            method,
            service,
            path,
            query: Vec::new(),
            body: None,
            name,
        }
    }

    fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    fn json<B: Serialize>(mut self, body: &B) -> Result<Self, SynapseError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SynapseError::Protocol {
            endpoint: self.name.to_owned(),
            message: format!("cannot encode the request body: {e}"),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }
}

/// Describes a reqwest failure with its causes but without its URL (a presigned URL carries a
/// signature).
fn transport_error(endpoint: &str, err: reqwest::Error) -> SynapseError {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    let err = err.without_url();
    let mut message = format!("{kind}: {err}");
    let mut cause = std::error::Error::source(&err);
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    SynapseError::Transport {
        endpoint: endpoint.to_owned(),
        message,
    }
}

/// The server's `reason`, or a bounded piece of whatever else it sent.
fn error_reason(status: StatusCode, body: &[u8]) -> String {
    if let Ok(ErrorResponse { reason, .. }) = serde_json::from_slice(body) {
        return reason;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned();
    }
    text.chars().take(MAX_RAW_REASON).collect()
}

/// The body of `response`, read a chunk at a time and refused once it passes `limit` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    endpoint: &str,
    limit: usize,
) -> Result<Vec<u8>, SynapseError> {
    let too_big = || SynapseError::Protocol {
        endpoint: endpoint.to_owned(),
        message: format!("the answer is longer than {limit} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(endpoint, e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` in its seconds form (the only one Synapse and S3 send).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Checks a Synapse endpoint before any request carries the token to it: https, or http to a
/// loopback address only (the local simulator), since every request sends the token in a header.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("bad endpoint {endpoint}: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "endpoint {endpoint} is plain http: the token would travel in the clear (use https; \
             http is only for a loopback address)"
        )),
        other => Err(format!("endpoint {endpoint} is {other}, not https")),
    }
}

impl SynapseClient {
    /// A client with its own rate limiter.
    pub fn new(config: ClientConfig) -> Result<Self, SynapseError> {
        let limiter = Arc::new(RateLimiter::new(
            config.requests_per_minute,
            config.burst,
            config.max_in_flight,
        ));
        Self::with_limiter(config, limiter)
    }

    /// A client sharing `limiter` with others (several clients in one process, one budget).
    pub fn with_limiter(
        config: ClientConfig,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, SynapseError> {
        for endpoint in [&config.repo_endpoint, &config.file_endpoint] {
            check_endpoint(endpoint).map_err(SynapseError::Config)?;
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.token.expose()))
            .map_err(|_| {
                SynapseError::Config("the token contains characters not allowed in a header".into())
            })?;
        authorization.set_sensitive(true);
        // reqwest has no TLS provider of its own here (ring stays out of the build): it takes
        // the process's default, aws-lc-rs, the one the AWS SDK uses. Err: one is installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| SynapseError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                session: session_cookie(),
                repo: config.repo_endpoint.trim_end_matches('/').to_owned(),
                file: config.file_endpoint.trim_end_matches('/').to_owned(),
                authorization,
                limiter,
                budget: RwLock::new(None),
                request_timeout: config.request_timeout,
                part_copy_timeout: config.part_copy_timeout,
                retry: config.retry,
                max_conflict_attempts: config.max_conflict_attempts.max(1),
                max_response_bytes: config.max_response_bytes,
                stats: RequestStats::default(),
            }),
        })
    }

    /// Makes every request of this client and its clones draw from `budget` as well (`None`: the
    /// process limiter alone). A Lambda instance serves one run at a time, so the budget is set
    /// per invocation for the whole process.
    pub fn set_budget(&self, budget: Option<Arc<dyn RequestBudget>>) {
        *self
            .inner
            .budget
            .write()
            .unwrap_or_else(PoisonError::into_inner) = budget;
    }

    /// The counts of this client and its clones since the last call, leaving zero behind.
    pub fn take_request_counts(&self) -> RequestCounts {
        let stats = &self.inner.stats;
        RequestCounts {
            requests: stats.requests.swap(0, Ordering::Relaxed),
            throttled: stats.throttled.swap(0, Ordering::Relaxed),
            waited: Duration::from_micros(stats.waited_micros.swap(0, Ordering::Relaxed)),
        }
    }

    /// The budget set by [`Self::set_budget`].
    fn budget(&self) -> Option<Arc<dyn RequestBudget>> {
        self.inner
            .budget
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `call` under the rate limiter and the budget, retrying what is worth retrying; returns the body.
    async fn send(&self, call: Call<'_>) -> Result<Vec<u8>, SynapseError> {
        let inner = &self.inner;
        let base = match call.service {
            Service::Repo => &inner.repo,
            Service::File => &inner.file,
        };
        let url = format!("{base}{}", call.path);
        with_retries(&inner.retry, call.name, |_| async {
            let mut request = inner
                .http
                .request(call.method.clone(), &url)
                .timeout(inner.request_timeout)
                .header(AUTHORIZATION, inner.authorization.clone())
                .header(COOKIE, inner.session.clone())
                .header(ACCEPT, "application/json");
            if !call.query.is_empty() {
                request = request.query(&call.query);
            }
            if let Some(body) = &call.body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let waiting = Instant::now();
            let _permit = inner.limiter.acquire().await;
            let budget = self.budget();
            if let Some(budget) = &budget {
                budget.admit().await;
            }
            let stats = &inner.stats;
            let waited = u64::try_from(waiting.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.waited_micros.fetch_add(waited, Ordering::Relaxed);
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(call.name, e))?;
            let status = response.status();
            let wait = retry_after(response.headers());
            let body = read_capped(response, call.name, inner.max_response_bytes).await?;
            tracing::debug!(call = call.name, status = status.as_u16(), "Synapse call");
            if status.is_success() {
                return Ok(body.to_vec());
            }
            let reason = error_reason(status, &body);
            if status == StatusCode::TOO_MANY_REQUESTS {
                stats.throttled.fetch_add(1, Ordering::Relaxed);
            }
            if let (StatusCode::TOO_MANY_REQUESTS, Some(budget)) = (status, &budget) {
                budget.throttled(Throttling::of(&reason, wait)).await;
            }
            Err(SynapseError::from_status(status.as_u16(), reason, wait))
        })
        .await
    }

    /// Sends `call` and decodes its JSON answer.
    async fn send_json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, SynapseError> {
        let name = call.name.to_owned();
        let body = self.send(call).await?;
        serde_json::from_slice(&body).map_err(|e| SynapseError::Protocol {
            endpoint: name,
            message: format!("cannot decode the answer: {e}"),
        })
    }

    /// `GET /userProfile`: who the token belongs to (also a cheap token check).
    pub async fn user_profile(&self) -> Result<UserProfile, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::Repo,
            "/userProfile".into(),
            "GET /userProfile",
        );
        self.send_json(call).await
    }

    /// `GET /entity/{id}/permissions`: what the caller may do with the entity (200 with every
    /// permission false for an entity that does not exist or the caller may not read).
    pub async fn entity_permissions(
        &self,
        entity_id: &str,
    ) -> Result<UserEntityPermissions, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::Repo,
            format!("/entity/{entity_id}/permissions"),
            "GET /entity/{id}/permissions",
        );
        self.send_json(call).await
    }

    /// `GET /storageLocation/{id}`: only the creator of the location gets an answer.
    pub async fn storage_location(
        &self,
        storage_location_id: i64,
    ) -> Result<StorageLocationSetting, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::Repo,
            format!("/storageLocation/{storage_location_id}"),
            "GET /storageLocation/{id}",
        );
        self.send_json(call).await
    }

    /// `POST /entity/{id}/bundle2`, or `/entity/{id}/version/{v}/bundle2` for a given version.
    pub async fn entity_bundle(
        &self,
        entity_id: &str,
        version: Option<i64>,
        request: &EntityBundleRequest,
    ) -> Result<EntityBundle, SynapseError> {
        let call = match version {
            None => Call::new(
                Method::POST,
                Service::Repo,
                format!("/entity/{entity_id}/bundle2"),
                "POST /entity/{id}/bundle2",
            ),
            Some(v) => Call::new(
                Method::POST,
                Service::Repo,
                format!("/entity/{entity_id}/version/{v}/bundle2"),
                "POST /entity/{id}/version/{v}/bundle2",
            ),
        };
        self.send_json(call.json(request)?).await
    }

    /// `POST /entity/children`: one page (50 children) of a container.
    pub async fn children_page(
        &self,
        request: &EntityChildrenRequest,
    ) -> Result<EntityChildrenResponse, SynapseError> {
        let call = Call::new(
            Method::POST,
            Service::Repo,
            "/entity/children".into(),
            "POST /entity/children",
        );
        self.send_json(call.json(request)?).await
    }

    /// Every child of `parent_id` of the given types (`entity_type::*`), sorted by name, all pages.
    pub async fn children_all(
        &self,
        parent_id: &str,
        include_types: &[&str],
    ) -> Result<Vec<EntityHeader>, SynapseError> {
        let mut request = EntityChildrenRequest {
            parent_id: Some(parent_id.to_owned()),
            include_types: Some(include_types.iter().map(|t| (*t).to_owned()).collect()),
            sort_by: Some("NAME".into()),
            sort_direction: Some("ASC".into()),
            next_page_token: None,
        };
        let mut children = Vec::new();
        loop {
            let page = self.children_page(&request).await?;
            children.extend(page.page);
            match page.next_page_token {
                Some(token) => request.next_page_token = Some(token),
                None => return Ok(children),
            }
        }
    }

    /// `GET /entity/{id}/version?offset&limit`: one page of an entity's versions, newest first.
    pub async fn versions_page(
        &self,
        entity_id: &str,
        offset: u64,
        limit: u64,
    ) -> Result<PaginatedResults<VersionInfo>, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::Repo,
            format!("/entity/{entity_id}/version"),
            "GET /entity/{id}/version",
        )
        .query("offset", offset)
        .query("limit", limit);
        self.send_json(call).await
    }

    /// `GET /entity/{id}`: the latest version, with everything a later PUT must send back.
    pub async fn get_entity(&self, entity_id: &str) -> Result<Entity, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::Repo,
            format!("/entity/{entity_id}"),
            "GET /entity/{id}",
        );
        self.send_json(call).await
    }

    /// `PUT /entity/{id}?newVersion=...`: 412 (`Conflict`) if the entity's etag is stale.
    pub async fn put_entity(
        &self,
        entity_id: &str,
        entity: &Entity,
        new_version: bool,
    ) -> Result<Entity, SynapseError> {
        let call = Call::new(
            Method::PUT,
            Service::Repo,
            format!("/entity/{entity_id}"),
            "PUT /entity/{id}",
        )
        .query("newVersion", new_version)
        .json(entity)?;
        self.send_json(call).await
    }

    /// Lets `edit` change the entity and PUTs it: the first time `known` (an entity read earlier,
    /// with its etag) if given, else the entity read now; on 412 (someone else changed it, or our
    /// own earlier PUT went through) reads it again and re-applies `edit`, a bounded number of
    /// times. `edit` returns `false` when the entity is already as wanted: nothing is written and
    /// the entity as read is returned, which makes the update safe to repeat.
    pub async fn update_entity_with<F>(
        &self,
        entity_id: &str,
        mut known: Option<Entity>,
        new_version: bool,
        mut edit: F,
    ) -> Result<Entity, SynapseError>
    where
        F: FnMut(&mut Entity) -> bool,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut entity = match known.take() {
                Some(entity) => entity,
                None => self.get_entity(entity_id).await?,
            };
            if !edit(&mut entity) {
                return Ok(entity);
            }
            match self.put_entity(entity_id, &entity, new_version).await {
                Err(SynapseError::Conflict { reason })
                    if tries < self.inner.max_conflict_attempts =>
                {
                    tracing::info!(
                        entity_id,
                        attempt = tries,
                        %reason,
                        "entity changed underneath, re-reading"
                    );
                }
                result => return result,
            }
        }
    }

    /// `PUT /entity/{id}/version/{v}/filehandle`: swap one version's file handle in place. A 412
    /// (`Conflict`) also comes back when the swap was already done (say, by a retry whose first
    /// answer was lost): the caller checks the version's current handle before failing.
    pub async fn put_version_file_handle(
        &self,
        entity_id: &str,
        version: i64,
        update: &FileHandleVersionUpdate,
    ) -> Result<(), SynapseError> {
        let call = Call::new(
            Method::PUT,
            Service::Repo,
            format!("/entity/{entity_id}/version/{version}/filehandle"),
            "PUT /entity/{id}/version/{v}/filehandle",
        )
        .json(update)?;
        self.send(call).await.map(drop)
    }

    /// `PUT /entity/{id}/annotations2`.
    pub async fn put_annotations(
        &self,
        entity_id: &str,
        annotations: &Annotations2,
    ) -> Result<Annotations2, SynapseError> {
        let call = Call::new(
            Method::PUT,
            Service::Repo,
            format!("/entity/{entity_id}/annotations2"),
            "PUT /entity/{id}/annotations2",
        )
        .json(annotations)?;
        self.send_json(call).await
    }
}

#[cfg(test)]
mod tests;
