//! The middleware in front of the API handlers: bearer-token auth, then the App's injected faults
//! ([`crate::faults`]), per-user throttle ([`crate::throttle`]) and request log
//! ([`crate::request_log`]). Tokens are only ever used as lookup keys; the log records user ids.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::error::ApiError;
use crate::request_log::RequestRecord;
use crate::store::User;
use crate::util::lock;

/// The cookie the server sets on a request that came without one (`SessionIdCookieSetterFilter`).
const SESSION_COOKIE: &str = "sessionID";

/// A 429 as the throttle filter writes it (`ThrottleUtils.setResponseError`): a bare
/// `{"reason"}` body, no `concreteType`, no `Retry-After`.
fn throttled(reason: String) -> Response {
    (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({ "reason": reason })),
    )
        .into_response()
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

/// Epoch milliseconds: when a request arrived, comparable across processes.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
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
    let received_ms = epoch_ms();
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
                None => app.throttle.admit(&caller).map_err(throttled),
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
        session_id: session,
        received_ms,
    });
    response
}
