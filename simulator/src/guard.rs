//! Everything in front of the API handlers: bearer-token auth, the per-user throttle, injected
//! faults and the request log. Tokens are only ever used as lookup keys; the log records user ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{FaultConfig, ThrottleConfig};
use crate::error::ApiError;
use crate::server::App;
use crate::store::User;

const WINDOW: Duration = Duration::from_secs(60);
/// The cookie the server sets on a request that came without one (`SessionIdCookieSetterFilter`).
const SESSION_COOKIE: &str = "sessionID";

/// One handled API request. `route` is the template without the `/repo/v1` or `/file/v1` prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub user_id: Option<String>,
}

impl RequestRecord {
    /// `POST /file/multipart`: the key of [`RequestCounts::by_endpoint`].
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.route)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    pub total: usize,
    pub by_endpoint: BTreeMap<String, usize>,
    pub by_user: BTreeMap<String, usize>,
    /// Status code -> count.
    pub by_status: BTreeMap<u16, usize>,
}

#[derive(Default)]
pub struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    fn push(&self, record: RequestRecord) {
        lock(&self.records).push(record);
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        lock(&self.records).clone()
    }

    pub fn counts(&self) -> RequestCounts {
        let records = lock(&self.records);
        let mut counts = RequestCounts {
            total: records.len(),
            ..RequestCounts::default()
        };
        for r in records.iter() {
            *counts.by_endpoint.entry(r.endpoint()).or_default() += 1;
            if let Some(user) = &r.user_id {
                *counts.by_user.entry(user.clone()).or_default() += 1;
            }
            *counts.by_status.entry(r.status).or_default() += 1;
        }
        counts
    }

    pub fn reset(&self) {
        lock(&self.records).clear();
    }
}

/// A poisoned lock only means another request panicked; the data is still usable for a simulator.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One caller's counters: requests admitted in the current time block and requests in flight.
#[derive(Default)]
struct Window {
    block_start: Option<Instant>,
    admitted: usize,
    in_flight: usize,
}

/// Synapse's per-caller limits (`UserConcurrentConnectionThrottler`,
/// `UserRequestFrequencyThrottler` with `MemoryTimeBlockCountingSemaphoreImpl`): at most
/// `in_flight` concurrent requests, and at most `per_minute` requests in a fixed 60 s block that
/// starts with the block's first request (a refused request is not counted). The caller is
/// `userId|sessionId|ip` (`HttpRequestIdentifier.getUserMachineIdentifierString`).
pub struct Throttle {
    config: Mutex<ThrottleConfig>,
    callers: Mutex<HashMap<String, Window>>,
}

/// Holds one in-flight slot until dropped.
pub struct Admission {
    app: Arc<App>,
    caller: Option<String>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(caller) = &self.caller {
            if let Some(w) = lock(&self.app.throttle.callers).get_mut(caller) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
    }
}

/// A 429 as the throttle filter writes it (`ThrottleUtils.setResponseError`): a bare
/// `{"reason"}` body, no `concreteType`, no `Retry-After`.
fn throttled(reason: String) -> Response {
    (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({ "reason": reason })),
    )
        .into_response()
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config: Mutex::new(config),
            callers: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_config(&self, config: ThrottleConfig) {
        *lock(&self.config) = config;
        lock(&self.callers).clear();
    }

    /// An in-flight slot for `caller`, or the reason of the 429.
    fn admit(app: &Arc<App>, caller: &str) -> Result<Admission, String> {
        let config = lock(&app.throttle.config).clone();
        if !config.enabled {
            return Ok(Admission {
                app: app.clone(),
                caller: None,
            });
        }
        let mut callers = lock(&app.throttle.callers);
        let window = callers.entry(caller.to_owned()).or_default();
        if window.in_flight >= config.in_flight {
            return Err(format!(
                "Too many concurrent requests. Allowed {} concurrent connections at any time.",
                config.in_flight
            ));
        }
        let now = Instant::now();
        if window
            .block_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            window.block_start = Some(now);
            window.admitted = 0;
        }
        if window.admitted >= config.per_minute {
            return Err(format!(
                "Requests are too frequent. Allowed {} requests every {} seconds.",
                config.per_minute,
                WINDOW.as_secs()
            ));
        }
        window.admitted += 1;
        window.in_flight += 1;
        Ok(Admission {
            app: app.clone(),
            caller: Some(caller.to_owned()),
        })
    }
}

/// The `sessionID` cookie of the request (`HttpRequestIdentifierUtils.getSessionId`).
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| value.to_owned())
        })
}

/// The caller's address: `X-Forwarded-For` when present, else the peer (`IpAddressUtil`).
fn ip_address(req: &Request) -> String {
    req.headers()
        .get("X-Forwarded-For")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
        })
        .unwrap_or_else(|| "null".to_owned())
}

/// Seeded fault injection. Each route has its own RNG stream, so one endpoint's decisions do not
/// depend on how requests to other endpoints interleave.
pub struct Faults {
    state: Mutex<FaultState>,
}

struct FaultState {
    config: FaultConfig,
    rngs: HashMap<String, ChaCha8Rng>,
    counter: u64,
}

impl FaultState {
    fn rng(&mut self, stream: &str) -> &mut ChaCha8Rng {
        let seed = self.config.seed;
        self.rngs
            .entry(stream.to_owned())
            .or_insert_with(|| ChaCha8Rng::seed_from_u64(seed ^ fnv1a(stream)))
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            state: Mutex::new(FaultState {
                config,
                rngs: HashMap::new(),
                counter: 0,
            }),
        }
    }

    /// Replaces the configuration and restarts every random stream.
    pub fn set_config(&self, config: FaultConfig) {
        *lock(&self.state) = FaultState {
            config,
            rngs: HashMap::new(),
            counter: 0,
        };
    }

    /// Latency to add, then an injected error if one fires for this request.
    fn roll(&self, endpoint: &str) -> (Duration, Option<ApiError>) {
        let mut state = lock(&self.state);
        if !state.config.any() {
            return (Duration::ZERO, None);
        }
        let latency = state.config.latency;
        let n = state.counter;
        state.counter += 1;
        if let Some(burst) = state.config.burst_429 {
            if burst.every > 0 && n % burst.every >= burst.every - burst.length.min(burst.every) {
                return (
                    latency,
                    Some(ApiError::Throttled("Injected throttling burst".into())),
                );
            }
        }
        let rate = state
            .config
            .error_rates
            .get(endpoint)
            .or_else(|| state.config.error_rates.get("*"))
            .copied()
            .unwrap_or(0.0);
        if rate > 0.0 && state.rng(endpoint).gen_bool(rate.clamp(0.0, 1.0)) {
            return (
                latency,
                Some(ApiError::Unavailable("Injected server error".into())),
            );
        }
        (latency, None)
    }

    /// The expiry for the next presigned URL: sometimes much shorter than `normal`.
    pub fn presign_expiry(&self, normal: Duration) -> Duration {
        let mut state = lock(&self.state);
        let rate = state.config.early_expiry_rate;
        let early = state.config.early_expiry.max(Duration::from_secs(1));
        if rate > 0.0 && state.rng("presign").gen_bool(rate.clamp(0.0, 1.0)) {
            early
        } else {
            normal
        }
    }
}

fn authenticate(app: &App, headers: &HeaderMap) -> Result<User, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("Missing bearer token".into()))?;
    lock(&app.store)
        .users_by_token
        .get(token.trim())
        .cloned()
        .ok_or_else(|| ApiError::Unauthorized("Invalid access token".into()))
}

/// The route template without the service prefix (`/repo/v1`, `/file/v1`).
fn route_of(req: &Request) -> String {
    let full = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    ["/repo/v1", "/file/v1"]
        .iter()
        .find_map(|p| full.strip_prefix(p))
        .map(str::to_owned)
        .unwrap_or(full)
}

/// Middleware for every `/repo/v1` and `/file/v1` request.
pub async fn api_guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = route_of(&req);
    let user = authenticate(&app, req.headers());
    let user_id = user.as_ref().ok().map(|u| u.id.clone());
    let session = session_id(req.headers());
    let caller = format!(
        "{}|{}|{}",
        user_id.as_deref().unwrap_or("null"),
        session.as_deref().unwrap_or("null"),
        ip_address(&req)
    );
    let mut response = match user {
        Err(e) => e.into_response(),
        Ok(user) => {
            let (latency, fault) = app.faults.roll(&format!("{method} {route}"));
            let admission = match fault {
                Some(e) => Err(e.into_response()),
                None => Throttle::admit(&app, &caller).map_err(throttled),
            };
            match admission {
                Err(refusal) => refusal,
                Ok(admission) => {
                    // Inside the admission: a slow request holds its in-flight slot, as on the server.
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    req.extensions_mut().insert(user);
                    let response = next.run(req).await;
                    drop(admission);
                    response
                }
            }
        }
    };
    if session.is_none() {
        let cookie = format!("{SESSION_COOKIE}={}; HttpOnly", uuid::Uuid::new_v4());
        if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, value);
        }
    }
    tracing::debug!(%method, %route, status = response.status().as_u16(), user = ?user_id, "request");
    app.log.push(RequestRecord {
        method,
        route,
        status: response.status().as_u16(),
        user_id,
    });
    response
}
