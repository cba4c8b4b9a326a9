//! Everything in front of the API handlers: bearer-token auth, the per-user throttle, injected
//! faults and the request log. Tokens are only ever used as lookup keys; the log records user ids.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
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

#[derive(Default)]
struct Window {
    admitted: VecDeque<Instant>,
    in_flight: usize,
}

/// Synapse's per-user limits: a sliding 60 s window and a cap on concurrent requests.
pub struct Throttle {
    config: Mutex<ThrottleConfig>,
    users: Mutex<HashMap<String, Window>>,
}

/// Holds one in-flight slot until dropped.
pub struct Admission {
    app: Arc<App>,
    user: Option<String>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(user) = &self.user {
            if let Some(w) = lock(&self.app.throttle.users).get_mut(user) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config: Mutex::new(config),
            users: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_config(&self, config: ThrottleConfig) {
        *lock(&self.config) = config;
        lock(&self.users).clear();
    }

    fn admit(app: &Arc<App>, user: &str) -> Result<Admission, ApiError> {
        let config = lock(&app.throttle.config).clone();
        if !config.enabled {
            return Ok(Admission {
                app: app.clone(),
                user: None,
            });
        }
        let mut users = lock(&app.throttle.users);
        let window = users.entry(user.to_owned()).or_default();
        let now = Instant::now();
        while window
            .admitted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            window.admitted.pop_front();
        }
        if window.in_flight >= config.in_flight {
            return Err(ApiError::Throttled(format!(
                "Too many concurrent requests: at most {} at a time are allowed",
                config.in_flight
            )));
        }
        if window.admitted.len() >= config.per_minute {
            return Err(ApiError::Throttled(format!(
                "Request rate exceeded: at most {} requests per minute are allowed",
                config.per_minute
            )));
        }
        window.admitted.push_back(now);
        window.in_flight += 1;
        Ok(Admission {
            app: app.clone(),
            user: Some(user.to_owned()),
        })
    }
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
    let response = match user {
        Err(e) => e.into_response(),
        Ok(user) => {
            let (latency, fault) = app.faults.roll(&format!("{method} {route}"));
            match fault.map_or_else(|| Throttle::admit(&app, &user.id), Err) {
                Err(e) => e.into_response(),
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
    tracing::debug!(%method, %route, status = response.status().as_u16(), user = ?user_id, "request");
    app.log.push(RequestRecord {
        method,
        route,
        status: response.status().as_u16(),
        user_id,
    });
    response
}
