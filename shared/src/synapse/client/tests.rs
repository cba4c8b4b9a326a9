use super::*;

const SECRET: &str = "synapse-pat-very-secret-value";

/// An address on loopback that refuses connections: a port that was free a moment ago.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/repo/v1")
}

fn client(endpoint: &str) -> SynapseClient {
    let mut config = ClientConfig::new(endpoint, endpoint, SynapseToken::new(SECRET).unwrap());
    config.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    config.connect_timeout = Duration::from_secs(5);
    SynapseClient::new(config).unwrap()
}

#[test]
fn debug_output_never_shows_the_token() {
    let config = ClientConfig::production(SynapseToken::new(SECRET).unwrap());
    assert!(!format!("{config:?}").contains(SECRET));
    let client = SynapseClient::new(config).unwrap();
    let shown = format!("{client:?}");
    assert!(shown.contains("[redacted]"));
    assert!(!shown.contains(SECRET));
}

#[test]
fn bad_endpoints_are_refused() {
    let token = SynapseToken::new(SECRET).unwrap();
    for endpoint in ["not a url", "ftp://example.org/repo/v1"] {
        let config = ClientConfig::new(endpoint, PROD_FILE_ENDPOINT, token.clone());
        let err = SynapseClient::new(config).unwrap_err();
        assert_eq!(err.error_type(), "Fatal.InvalidInput");
    }
}

#[tokio::test]
async fn connection_failures_are_transient_and_never_show_secrets() {
    let client = client(&closed_endpoint());
    let err = client.user_profile().await.unwrap_err();
    assert_eq!(err.error_type(), "Retryable.Transient", "{err:?}");
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert!(!format!("{err:?} {err}").contains(SECRET));

    let url = format!(
        "{}/bucket/key?partNumber=1&uploadId=u&X-Amz-Signature=deadbeefsignature",
        closed_endpoint()
    );
    let err = client
        .put_presigned_part(&url, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Retryable.Transient", "{err:?}");
    let shown = format!("{err:?} {err}");
    assert!(!shown.contains("deadbeefsignature"), "{shown}");
}

#[tokio::test]
async fn invalid_signed_headers_are_refused_before_sending() {
    let client = client(&closed_endpoint());
    let headers = BTreeMap::from([("bad header".to_owned(), "x".to_owned())]);
    let err = client
        .put_presigned_part("http://127.0.0.1:9/b/k", &headers)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Fatal.Internal");
}

#[test]
fn error_reason_prefers_the_synapse_json_reason() {
    let status = StatusCode::BAD_REQUEST;
    assert_eq!(
        error_reason(status, br#"{"reason":"Invalid Name"}"#),
        "Invalid Name"
    );
    assert_eq!(error_reason(status, b"  plain text  "), "plain text");
    assert_eq!(error_reason(status, b""), "Bad Request");
    let long = "x".repeat(1000);
    assert_eq!(error_reason(status, long.as_bytes()).len(), MAX_RAW_REASON);
}

#[test]
fn retry_after_reads_seconds_only() {
    let mut headers = reqwest::header::HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert(RETRY_AFTER, HeaderValue::from_static("12"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(12)));
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&headers), None);
}
