//! The local AWS stack does what the rest of the test suite relies on: S3 with path-style addressing,
//! DynamoDB conditional writes, and Step Functions executing a state machine whose Lambda Tasks reach
//! real code over HTTP, with function errors matched by Retry/Catch on their error type.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_sfn::types::ExecutionStatus;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use synmigrate_testkit::{AwsStack, StackOptions};

#[tokio::test]
async fn s3_and_dynamodb_behave() -> anyhow::Result<()> {
    let stack = AwsStack::start()?;
    let s3 = stack.s3_client().await;
    s3.create_bucket().bucket("testkit-bucket").send().await?;
    s3.put_object()
        .bucket("testkit-bucket")
        .key("a/b.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await?;
    let got = s3
        .get_object()
        .bucket("testkit-bucket")
        .key("a/b.txt")
        .send()
        .await?;
    assert_eq!(got.body.collect().await?.into_bytes().as_ref(), b"hello");

    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk_config().await);
    ddb.create_table()
        .table_name("t")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("PK")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("PK")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await?;
    let put_if_absent = || {
        ddb.put_item()
            .table_name("t")
            .item("PK", AttributeValue::S("x".into()))
            .condition_expression("attribute_not_exists(PK)")
            .send()
    };
    put_if_absent().await?;
    let second = put_if_absent().await;
    assert!(
        second.is_err_and(|e| e
            .into_service_error()
            .is_conditional_check_failed_exception()),
        "a conditional put on an existing item must fail"
    );
    Ok(())
}

/// A stand-in for the Lambda runtime emulator: `double` answers, `flaky` fails with an error type.
async fn invoke(Path(name): Path<String>, Json(event): Json<Value>) -> (HeaderMap, Json<Value>) {
    let mut headers = HeaderMap::new();
    match name.as_str() {
        "double" => (
            headers,
            Json(json!({ "n": event["n"].as_i64().unwrap_or(0) * 2 })),
        ),
        _ => {
            headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            let body = json!({ "errorType": "Retryable.Transient", "errorMessage": "try later" });
            (headers, Json(body))
        }
    }
}

#[tokio::test]
async fn step_functions_run_lambda_tasks_through_the_forwarder() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime_url = format!("http://{}", listener.local_addr()?);
    let app = Router::new().route("/2015-03-31/functions/{name}/invocations", post(invoke));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = AwsStack::start_with(StackOptions {
        lambda_invoke_url: Some(runtime_url),
    })?;
    let sfn = aws_sdk_sfn::Client::new(&stack.sdk_config().await);
    let function = |name: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{name}");
    let definition = json!({
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.doubled",
                "ItemProcessor": {
                    "ProcessorConfig": { "Mode": "INLINE" },
                    "StartAt": "Double",
                    "States": { "Double": {
                        "Type": "Task", "Resource": function("double"), "End": true
                    } }
                },
                "Next": "Flaky"
            },
            "Flaky": {
                "Type": "Task", "Resource": function("flaky"), "ResultPath": "$.flaky",
                "Catch": [{ "ErrorEquals": ["Retryable.Transient"], "ResultPath": "$.caught", "Next": "Caught" }],
                "Next": "Unreachable"
            },
            "Caught": { "Type": "Pass", "End": true },
            "Unreachable": { "Type": "Fail", "Error": "NotCaught" }
        }
    });
    let machine = sfn
        .create_state_machine()
        .name("testkit")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/testkit")
        .send()
        .await?;
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name("run-1")
        .input(json!({ "items": [{ "n": 1 }, { "n": 21 }] }).to_string())
        .send()
        .await?;

    let mut status = ExecutionStatus::Running;
    let mut output = None;
    for _ in 0..200 {
        let described = sfn
            .describe_execution()
            .execution_arn(execution.execution_arn())
            .send()
            .await?;
        status = described.status().clone();
        output = described.output().map(str::to_owned);
        if status != ExecutionStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.abort();
    assert_eq!(status, ExecutionStatus::Succeeded, "output: {output:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default())?;
    assert_eq!(output["doubled"], json!([{ "n": 2 }, { "n": 42 }]));
    assert_eq!(output["caught"]["Error"], "Retryable.Transient");
    Ok(())
}

/// moto skips two checks real S3 makes and the migration relies on; the launcher restores them.
#[tokio::test]
async fn s3_checks_copy_preconditions_and_presigned_expiry() -> anyhow::Result<()> {
    use aws_sdk_s3::presigning::PresigningConfig;

    let stack = AwsStack::start()?;
    let s3 = stack.s3_client().await;
    s3.create_bucket().bucket("strict").send().await?;
    let put = s3
        .put_object()
        .bucket("strict")
        .key("src")
        .body(vec![7u8; 64].into())
        .send()
        .await?;
    let etag = put.e_tag().unwrap_or_default().to_owned();
    let upload = s3
        .create_multipart_upload()
        .bucket("strict")
        .key("dst")
        .send()
        .await?;
    let copy_part = |if_match: String| {
        s3.upload_part_copy()
            .bucket("strict")
            .key("dst")
            .upload_id(upload.upload_id().unwrap_or_default())
            .part_number(1)
            .copy_source("strict/src")
            .copy_source_if_match(if_match)
            .send()
    };
    let stale = copy_part("\"0123456789abcdef0123456789abcdef\"".into()).await;
    let code = stale.map_err(|e| e.into_service_error().meta().code().map(str::to_owned));
    assert_eq!(code.err().flatten().as_deref(), Some("PreconditionFailed"));
    let fresh = copy_part(etag.clone()).await?;
    assert_eq!(
        fresh.copy_part_result().and_then(|r| r.e_tag()),
        Some(etag.as_str())
    );

    let presigned = s3
        .get_object()
        .bucket("strict")
        .key("src")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(1))?)
        .await?;
    let http = synmigrate_testkit::http_client();
    let before = http.get(presigned.uri()).send().await?;
    assert_eq!(before.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = http.get(presigned.uri()).send().await?;
    assert_eq!(after.status(), 403);
    assert!(after.text().await?.contains("Request has expired"));
    Ok(())
}
