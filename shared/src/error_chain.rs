//! The text of an error as reports, failure messages and logs show it: the error and its causes,
//! never its `Debug` form. The AWS SDK's `DisplayErrorContext` appends that form, which holds the
//! raw HTTP response (headers, request ids, bodies); a user reads the report, not our structs.
//! A leaf module: the state store, the copy engines and the stages all use it.

use std::error::Error;

/// `error` and each of its sources, `: `-joined (a source already at the end is not repeated).
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !part.is_empty() && !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::SdkError;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_sdk_s3::types::error::NoSuchKey;

    use super::*;

    /// What the SDK hands back for a missing object, its raw response carrying a header.
    fn missing_object() -> SdkError<GetObjectError, HttpResponse> {
        let mut raw = HttpResponse::new(404.try_into().unwrap(), SdkBody::from("<Error/>"));
        raw.headers_mut()
            .insert("x-amz-id-2", "raw-response-header");
        let error = GetObjectError::NoSuchKey(
            NoSuchKey::builder()
                .message("The specified key does not exist.")
                .build(),
        );
        SdkError::service_error(error, raw)
    }

    #[test]
    fn the_chain_says_what_failed_without_the_sdk_debug_text() {
        let error = missing_object();
        let text = error_chain(&error);
        assert!(text.contains("The specified key does not exist."), "{text}");
        for debug in [
            "raw-response-header",
            "ServiceError",
            "HttpResponse",
            "SdkBody",
            "{",
        ] {
            assert!(!text.contains(debug), "{debug:?} in {text}");
        }
        // What it replaces: the SDK's context display carries all of it.
        let context = aws_sdk_s3::error::DisplayErrorContext(&error).to_string();
        assert!(context.contains("raw-response-header"), "{context}");
    }

    /// Product code (the library, the functions, the CLI) words AWS errors with [`error_chain`]
    /// only: a `DisplayErrorContext` anywhere else would bring the Debug text back.
    #[test]
    fn no_product_code_uses_the_sdk_context_display() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut offenders = Vec::new();
        let mut folders = vec![root.join("shared/src"), root.join("cli/src")];
        for function in std::fs::read_dir(root.join("functions")).unwrap() {
            folders.push(function.unwrap().path().join("src"));
        }
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("error_chain.rs")
                    && std::fs::read_to_string(&path)
                        .unwrap()
                        .contains("DisplayErrorContext")
                {
                    offenders.push(path);
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:?}");
    }
}
