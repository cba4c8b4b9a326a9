//! Errors: [`ApiError`] is what a request answers (the server's `ErrorResponse` JSON,
//! `{"concreteType":"org.sagebionetworks.repo.model.ErrorResponse","reason":...}`, with its status
//! codes: `BaseControllerExceptionHandlerAdvice`);
//! [`SimError`] is what setting the simulator up (fixture, seeding, binding) can fail with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use synapse_model::ErrorResponse;

#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// `NameConflictException`: a sibling already has the name (409).
    #[error("{0}")]
    NameConflict(String),
    /// `FileHandleLinkedException`: a handle still in use cannot be deleted (409).
    #[error("{0}")]
    Linked(String),
    /// Synapse's "conflicting update": stale etags and handle-swap conflicts.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Throttled(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NameConflict(_) | Self::Linked(_) => StatusCode::CONFLICT,
            Self::Conflict(_) => StatusCode::PRECONDITION_FAILED,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// `ValidateArgument.required(value, name)`: 400 `<name> is required.`
    pub fn required(name: &str) -> Self {
        Self::BadRequest(format!("{name} is required."))
    }

    /// `ValidateArgument.requiredNotEmpty(value, name)`: 400 `<name> is required and must not be
    /// the empty string.`
    pub fn required_not_empty(name: &str) -> Self {
        Self::BadRequest(format!(
            "{name} is required and must not be the empty string."
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, Json(ErrorResponse::new(self.to_string()))).into_response()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid fixture: {0}")]
    Fixture(String),
    #[error("S3 error while {context}: {message}")]
    S3 { context: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl SimError {
    pub(crate) fn s3(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::S3 {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// Renders an SDK error with its service message (the default Display only says "service error").
pub(crate) fn sdk_message<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => format!("{err}"),
    }
}
