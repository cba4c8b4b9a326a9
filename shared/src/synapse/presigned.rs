//! Reading S3's answer to a presigned UploadPartCopy PUT. S3 may answer 200 and still put an
//! `<Error>` in the body (the copy failed after headers were sent), and escapes the quotes around
//! the ETag either literally or as `&quot;`.

use super::error::SynapseError;

/// Text content of the first `<tag>...</tag>` in a small XML document, if present.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// Undoes the XML escapes S3 uses in element text.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Whether the document is an S3 error answer (`<Error>` root, optionally after a prolog).
fn is_error_document(xml: &str) -> bool {
    xml.contains("<Error>")
}

fn s3_error(status: u16, body: &str) -> SynapseError {
    let code = element(body, "Code").map(unescape).unwrap_or_default();
    let message = element(body, "Message").map(unescape).unwrap_or_default();
    if status == 403 {
        SynapseError::PresignedUrlRejected { code, message }
    } else {
        SynapseError::S3 {
            status,
            code,
            message,
        }
    }
}

/// The part's ETag (unquoted) from a `CopyPartResult`, or the error S3 reported.
pub fn parse_copy_part_response(status: u16, body: &str) -> Result<String, SynapseError> {
    if !(200..300).contains(&status) || is_error_document(body) {
        return Err(s3_error(status, body));
    }
    let etag = element(body, "ETag").ok_or_else(|| SynapseError::Protocol {
        endpoint: "presigned part URL".into(),
        message: "the CopyPartResult has no ETag".into(),
    })?;
    let etag = unescape(etag.trim());
    let etag = etag.trim_matches('"');
    if etag.is_empty() {
        return Err(SynapseError::Protocol {
            endpoint: "presigned part URL".into(),
            message: "the CopyPartResult has an empty ETag".into(),
        });
    }
    Ok(etag.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    #[test]
    fn etag_with_literal_quotes() {
        let body = format!(
            "{PROLOG}\n<CopyPartResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LastModified>2026-01-01T00:00:00.000Z</LastModified>\
             <ETag>\"9b2cf535f27731c974343645a3985328\"</ETag></CopyPartResult>"
        );
        assert_eq!(
            parse_copy_part_response(200, &body).unwrap(),
            "9b2cf535f27731c974343645a3985328"
        );
    }

    #[test]
    fn etag_with_escaped_quotes() {
        for quote in ["&quot;", "&#34;"] {
            let body = format!(
                "<CopyPartResult><ETag>{quote}abc123{quote}</ETag>\
                 <LastModified>2026-01-01T00:00:00Z</LastModified></CopyPartResult>"
            );
            assert_eq!(parse_copy_part_response(200, &body).unwrap(), "abc123");
        }
    }

    #[test]
    fn ok_status_with_an_error_body_is_a_retryable_failure() {
        let body = format!(
            "{PROLOG}\n<Error><Code>InternalError</Code>\
             <Message>We encountered an internal error. Please try again.</Message></Error>"
        );
        let err = parse_copy_part_response(200, &body).unwrap_err();
        assert!(
            matches!(&err, SynapseError::S3 { status: 200, code, .. } if code == "InternalError")
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn forbidden_means_presign_again() {
        let body = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
        let err = parse_copy_part_response(403, body).unwrap_err();
        assert!(matches!(
            &err,
            SynapseError::PresignedUrlRejected { code, message }
                if code == "AccessDenied" && message == "Request has expired"
        ));
    }

    #[test]
    fn other_s3_errors_keep_status_and_code() {
        let body = "<Error><Code>PreconditionFailed</Code>\
                    <Message>At least one of the pre-conditions did not hold</Message></Error>";
        let err = parse_copy_part_response(412, body).unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Conflict");
        let err = parse_copy_part_response(503, "").unwrap_err();
        assert!(matches!(err, SynapseError::S3 { status: 503, .. }));
    }

    #[test]
    fn a_result_without_etag_is_a_protocol_error() {
        let err = parse_copy_part_response(200, "<CopyPartResult></CopyPartResult>").unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Internal");
        let err = parse_copy_part_response(
            200,
            "<CopyPartResult><ETag>&quot;&quot;</ETag></CopyPartResult>",
        )
        .unwrap_err();
        assert_eq!(err.error_type(), "Fatal.Internal");
    }
}
