//! Errors of the Synapse layer, with the stable type names Step Functions Retry/Catch match on.

use std::time::Duration;

use crate::error_types as types;

/// Everything a Synapse (or presigned S3) call can fail with. Messages carry the server's
/// `reason`, never the token or a presigned URL (those carry credentials).
#[derive(Debug, thiserror::Error)]
pub enum SynapseError {
    /// 400 (and other unexpected 4xx): the request was refused as invalid.
    #[error("Synapse refused the request ({status}): {reason}")]
    InvalidRequest { status: u16, reason: String },
    /// 401: the token is missing, expired or revoked.
    #[error("Synapse rejected the token (401): {reason}")]
    Unauthorized { reason: String },
    /// 403: the caller may not do this (e.g. did not create the destination storage location).
    #[error("Synapse forbade the request (403): {reason}")]
    Forbidden { reason: String },
    /// 404: no such entity, handle, storage location or upload.
    #[error("Synapse found nothing (404): {reason}")]
    NotFound { reason: String },
    /// 412: stale etag on an entity PUT, or a handle swap that no longer applies.
    #[error("Synapse reported a conflicting update (412): {reason}")]
    Conflict { reason: String },
    /// 429: over the per-user request or concurrency limit.
    #[error("Synapse throttled the request (429): {reason}")]
    Throttled {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 5xx from Synapse.
    #[error("Synapse server error ({status}): {reason}")]
    Server {
        status: u16,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The connection failed or timed out before an answer came.
    #[error("request to {endpoint} failed: {message}")]
    Transport { endpoint: String, message: String },
    /// A success answer whose body we cannot understand.
    #[error("unexpected response from {endpoint}: {message}")]
    Protocol { endpoint: String, message: String },
    /// S3 refused a presigned part URL with 403: it expired (15 minutes) or its signature no longer
    /// holds. The caller presigns the part again.
    #[error("S3 refused the presigned URL (403 {code}): {message}")]
    PresignedUrlRejected { code: String, message: String },
    /// Any other S3 error answer to a presigned part copy, including a 200 whose body is `<Error>`.
    #[error("S3 part copy failed ({status} {code}): {message}")]
    S3 {
        status: u16,
        code: String,
        message: String,
    },
    /// Bad client configuration (token missing or empty, malformed endpoint).
    #[error("invalid Synapse client configuration: {0}")]
    Config(String),
}

/// S3 error codes that mean "try the same request again later".
const S3_RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
];

impl SynapseError {
    /// Builds the error for a non-success Synapse status, carrying the server's `reason`.
    pub fn from_status(status: u16, reason: String, retry_after: Option<Duration>) -> Self {
        match status {
            401 => Self::Unauthorized { reason },
            403 => Self::Forbidden { reason },
            404 => Self::NotFound { reason },
            412 => Self::Conflict { reason },
            429 => Self::Throttled {
                reason,
                retry_after,
            },
            500..=599 => Self::Server {
                status,
                reason,
                retry_after,
            },
            _ => Self::InvalidRequest { status, reason },
        }
    }

    /// Stable name for Step Functions Retry/Catch (`ErrorEquals`) and for the report.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => types::THROTTLED,
            Self::Server { .. } | Self::Transport { .. } | Self::PresignedUrlRejected { .. } => {
                types::TRANSIENT
            }
            Self::S3 { status, code, .. } => {
                if *status >= 500 || *status == 200 || S3_RETRYABLE_CODES.contains(&code.as_str()) {
                    types::TRANSIENT
                } else {
                    match status {
                        404 => types::NOT_FOUND,
                        412 => types::CONFLICT,
                        _ => types::INVALID_INPUT,
                    }
                }
            }
            Self::InvalidRequest { .. } | Self::Config(_) => types::INVALID_INPUT,
            Self::Unauthorized { .. } => types::UNAUTHORIZED,
            Self::Forbidden { .. } => types::FORBIDDEN,
            Self::NotFound { .. } => types::NOT_FOUND,
            Self::Conflict { .. } => types::CONFLICT,
            Self::Protocol { .. } => types::INTERNAL,
        }
    }

    /// Whether a later attempt (possibly after presigning again) may succeed.
    pub fn is_retryable(&self) -> bool {
        self.error_type().starts_with(types::RETRYABLE_PREFIX)
    }

    /// The server's requested wait, if it sent `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_stable_types() {
        let cases = [
            (400, "Fatal.InvalidInput", false),
            (401, "Fatal.Unauthorized", false),
            (403, "Fatal.Forbidden", false),
            (404, "Fatal.NotFound", false),
            (405, "Fatal.InvalidInput", false),
            (412, "Fatal.Conflict", false),
            (429, "Retryable.Throttled", true),
            (500, "Retryable.Transient", true),
            (502, "Retryable.Transient", true),
            (503, "Retryable.Transient", true),
            (504, "Retryable.Transient", true),
        ];
        for (status, name, retryable) in cases {
            let err = SynapseError::from_status(status, format!("reason {status}"), None);
            assert_eq!(err.error_type(), name, "status {status}");
            assert_eq!(err.is_retryable(), retryable, "status {status}");
            assert!(err.to_string().contains(&format!("reason {status}")));
        }
    }

    #[test]
    fn retry_after_is_kept_for_throttling_and_server_errors() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(
            SynapseError::from_status(429, String::new(), wait).retry_after(),
            wait
        );
        assert_eq!(
            SynapseError::from_status(503, String::new(), wait).retry_after(),
            wait
        );
        assert_eq!(
            SynapseError::from_status(400, String::new(), wait).retry_after(),
            None
        );
    }

    #[test]
    fn s3_errors_are_classified_by_status_and_code() {
        let s3 = |status: u16, code: &str| SynapseError::S3 {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(s3(200, "InternalError").error_type(), "Retryable.Transient");
        assert_eq!(s3(503, "SlowDown").error_type(), "Retryable.Transient");
        assert_eq!(
            s3(400, "RequestTimeout").error_type(),
            "Retryable.Transient"
        );
        assert_eq!(s3(412, "PreconditionFailed").error_type(), "Fatal.Conflict");
        assert_eq!(s3(404, "NoSuchUpload").error_type(), "Fatal.NotFound");
        assert_eq!(
            s3(400, "InvalidArgument").error_type(),
            "Fatal.InvalidInput"
        );
        let expired = SynapseError::PresignedUrlRejected {
            code: "AccessDenied".into(),
            message: "Request has expired".into(),
        };
        assert!(expired.is_retryable());
    }
}
