//! How the direct engine classifies S3 failures into the library's stable error names.
//!
//! S3 answers HEAD requests without a body, so the status code matters as much as the error code.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// The class of an S3 failure, decided from its HTTP status and error code. `transport` is true
/// when no answer came at all (timeout, connection failure, unreadable response).
pub(crate) fn classify(
    status: Option<u16>,
    code: Option<&str>,
    transport: bool,
    message: String,
) -> Error {
    match (code.unwrap_or_default(), status) {
        ("SlowDown" | "Throttling" | "ThrottlingException", _) | (_, Some(503)) => {
            Error::Throttled(message)
        }
        ("InternalError" | "RequestTimeout" | "ServiceUnavailable", _) => Error::Transient(message),
        (_, Some(500..=599)) => Error::Transient(message),
        // A 200 whose body is an `<Error>` (the SDK turns it into an error): the copy failed
        // after S3 had sent its headers. A 200 without a code is an answer we cannot read.
        (code, Some(200)) if !code.is_empty() => Error::Transient(message),
        // The source no longer has the ETag the copy was pinned to: it changed since the start.
        ("PreconditionFailed", _) | (_, Some(412)) => Error::Verification(format!(
            "the source object changed since the copy started: {message}"
        )),
        ("AccessDenied" | "Forbidden" | "AllAccessDisabled", _) | (_, Some(403)) => {
            Error::Forbidden(message)
        }
        ("NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NotFound", _) | (_, Some(404)) => {
            Error::NotFound(message)
        }
        (_, Some(400..=499)) => Error::InvalidInput(message),
        (_, None) if transport => Error::Transient(message),
        _ => Error::Internal(message),
    }
}

/// Converts an SDK error of `operation` into the library's error.
pub(crate) fn s3_error<E>(operation: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(str::to_owned);
    let transport = matches!(
        error,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    );
    let message = format!("S3 {operation}: {}", crate::error_chain(&error));
    classify(status, code.as_deref(), transport, message)
}

/// Whether `error` says the multipart upload no longer exists (completed or aborted). By code
/// only: a 404 may also mean that the bucket is gone, which a fresh upload cannot fix.
pub(crate) fn is_no_such_upload<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    error.code() == Some("NoSuchUpload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::types;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_sdk_s3::operation::upload_part_copy::UploadPartCopyError;
    use aws_sdk_s3::primitives::SdkBody;

    #[test]
    fn codes_and_statuses_map_to_stable_names() {
        let cases = [
            (Some(503), Some("SlowDown"), types::THROTTLED),
            (Some(503), None, types::THROTTLED),
            (Some(500), Some("InternalError"), types::TRANSIENT),
            (Some(200), Some("InternalError"), types::TRANSIENT),
            (Some(200), Some("SomethingNew"), types::TRANSIENT),
            (Some(200), None, types::INTERNAL),
            (Some(400), Some("RequestTimeout"), types::TRANSIENT),
            (Some(502), None, types::TRANSIENT),
            (Some(412), Some("PreconditionFailed"), types::VERIFICATION),
            (Some(403), Some("AccessDenied"), types::FORBIDDEN),
            (Some(403), None, types::FORBIDDEN),
            (Some(404), Some("NoSuchKey"), types::NOT_FOUND),
            (Some(404), Some("NoSuchBucket"), types::NOT_FOUND),
            (Some(404), None, types::NOT_FOUND),
            (Some(400), Some("InvalidArgument"), types::INVALID_INPUT),
            (None, None, types::INTERNAL),
        ];
        for (status, code, name) in cases {
            let error = classify(status, code, false, "m".into());
            assert_eq!(error.error_type(), name, "{status:?} {code:?}");
        }
        assert_eq!(
            classify(None, None, true, "m".into()).error_type(),
            types::TRANSIENT
        );
    }

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    #[test]
    fn sdk_errors_are_classified_by_their_response() {
        // HEAD answers carry no body, hence no code: the status decides.
        let denied = SdkError::service_error(
            HeadObjectError::generic(ErrorMetadata::builder().build()),
            response(403),
        );
        let error = s3_error("HeadObject", denied);
        assert_eq!(error.error_type(), types::FORBIDDEN);
        assert!(error.to_string().contains("HeadObject"), "{error}");

        let changed = SdkError::service_error(
            UploadPartCopyError::generic(
                ErrorMetadata::builder()
                    .code("PreconditionFailed")
                    .message("At least one of the pre-conditions you specified did not hold")
                    .build(),
            ),
            response(412),
        );
        let error = s3_error("UploadPartCopy", changed);
        assert_eq!(error.error_type(), types::VERIFICATION);
        assert!(!error.is_retryable());

        let timeout: SdkError<HeadObjectError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(
            s3_error("HeadObject", timeout).error_type(),
            types::TRANSIENT
        );
    }

    #[test]
    fn a_vanished_upload_is_recognised() {
        let gone: SdkError<UploadPartCopyError, HttpResponse> = SdkError::service_error(
            UploadPartCopyError::generic(ErrorMetadata::builder().code("NoSuchUpload").build()),
            response(404),
        );
        assert!(is_no_such_upload(&gone));
        let other: SdkError<UploadPartCopyError, HttpResponse> = SdkError::service_error(
            UploadPartCopyError::generic(ErrorMetadata::builder().code("AccessDenied").build()),
            response(403),
        );
        assert!(!is_no_such_upload(&other));
    }
}
