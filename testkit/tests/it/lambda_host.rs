//! The Lambda host runs a real `lambda_runtime` binary: Step Functions in the local stack invokes it
//! and catches a function error by its type, and invocations that arrive together run in parallel
//! processes up to the function's concurrency.

use std::time::Duration;

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use synmigrate_testkit::{AwsStack, FunctionSpec, LambdaHost, StackOptions};

fn echo_function(max_instances: usize) -> FunctionSpec {
    let mut spec = FunctionSpec::workspace_binary("echo_function", max_instances);
    let examples = spec.binary.with_file_name("examples").join("echo_function");
    spec.binary = examples;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_runs_real_function_processes() -> anyhow::Result<()> {
    let host = LambdaHost::start(vec![echo_function(3)], Vec::new()).await?;
    let stack = AwsStack::start_with(StackOptions {
        lambda_invoke_url: Some(host.invoke_url().to_owned()),
    })?;
    let sfn = aws_sdk_sfn::Client::new(&stack.sdk_config().await);
    let echo = "arn:aws:lambda:us-east-1:123456789012:function:echo_function";
    let definition = json!({
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 3, "ResultPath": "$.doubled",
                "ItemProcessor": {
                    "ProcessorConfig": { "Mode": "INLINE" },
                    "StartAt": "Double",
                    "States": { "Double": { "Type": "Task", "Resource": echo, "End": true } }
                },
                "Next": "Fail"
            },
            "Fail": {
                "Type": "Task", "Resource": echo, "Parameters": { "fail": "Fatal.InvalidInput" },
                "Catch": [{ "ErrorEquals": ["Fatal.InvalidInput"], "ResultPath": "$.caught", "Next": "Done" }],
                "Next": "Done"
            },
            "Done": { "Type": "Pass", "End": true }
        }
    });
    let machine = sfn
        .create_state_machine()
        .name("host")
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/host")
        .send()
        .await?;
    let items: Vec<Value> = (1..=6).map(|n| json!({ "n": n, "sleepMs": 300 })).collect();
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name("host-1")
        .input(json!({ "items": items }).to_string())
        .send()
        .await?;
    let mut described = None;
    for _ in 0..600 {
        let d = sfn
            .describe_execution()
            .execution_arn(execution.execution_arn())
            .send()
            .await?;
        if d.status() != &ExecutionStatus::Running {
            described = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let described = described.expect("the execution finished within 60 s");
    assert_eq!(
        described.status(),
        &ExecutionStatus::Succeeded,
        "{described:?}"
    );
    let output: Value = serde_json::from_str(described.output().unwrap_or("{}"))?;
    let doubled: Vec<i64> = output["doubled"]
        .as_array()
        .expect("Map output")
        .iter()
        .map(|r| r["n"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(doubled, vec![2, 4, 6, 8, 10, 12]);
    assert_eq!(output["caught"]["Error"], "Fatal.InvalidInput");
    assert!(output["caught"]["Cause"]
        .as_str()
        .is_some_and(|c| c.contains("asked to fail")));
    let processes = host.running_instances("echo_function");
    assert!(
        (1..=3).contains(&processes),
        "at most MaxConcurrency processes, got {processes}"
    );
    Ok(())
}

/// Invocations that arrive together while every process is busy each get a process of their own,
/// up to the function's concurrency: three slow invocations answer from three different processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_run_in_parallel_processes() -> anyhow::Result<()> {
    let host = LambdaHost::start(vec![echo_function(3)], Vec::new()).await?;
    let url = format!(
        "{}/2015-03-31/functions/echo_function/invocations",
        host.invoke_url()
    );
    let http = synmigrate_testkit::http_client();
    let calls = (1..=3).map(|n| {
        let request = http
            .post(&url)
            .json(&json!({ "n": n, "sleepMs": 1500 }))
            .timeout(Duration::from_secs(60));
        async move { request.send().await?.json::<Value>().await }
    });
    let answers = futures::future::try_join_all(calls).await?;
    let doubled: Vec<i64> = answers
        .iter()
        .map(|a| a["n"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(doubled, vec![2, 4, 6]);
    let pids: std::collections::BTreeSet<u64> =
        answers.iter().filter_map(|a| a["pid"].as_u64()).collect();
    assert_eq!(
        pids.len(),
        3,
        "one process per concurrent invocation: {answers:?}"
    );
    assert_eq!(host.running_instances("echo_function"), 3);
    Ok(())
}

/// A process that dies mid-invocation (SIGKILL) is answered at once with Lambda's
/// `Runtime.ExitError`, while another process of the function is still busy (before, its caller
/// waited for the 900 s deadline); the next invocation gets a fresh process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_answers_its_invocation_with_runtime_exit_error() -> anyhow::Result<()> {
    let host = LambdaHost::start(vec![echo_function(2)], Vec::new()).await?;
    let url = format!(
        "{}/2015-03-31/functions/echo_function/invocations",
        host.invoke_url()
    );
    let http = synmigrate_testkit::http_client();
    let call = |event: Value| {
        let request = http
            .post(&url)
            .json(&event)
            .timeout(Duration::from_secs(60));
        async move {
            let response = request.send().await?;
            let error = response
                .headers()
                .get("x-amz-function-error")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            anyhow::Ok((error, response.json::<Value>().await?))
        }
    };
    let start = std::time::Instant::now();
    let (busy, killed) = tokio::join!(
        call(json!({ "n": 1, "sleepMs": 4000 })),
        call(json!({ "die": true, "sleepMs": 300 }))
    );
    let (error, body) = killed?;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(body["errorType"], "Runtime.ExitError", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("signal: 9"),
        "{body}"
    );
    assert_eq!(busy?.1["n"], 2);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let (error, again) = call(json!({ "n": 5 })).await?;
    assert_eq!((error, again["n"].clone()), (None, json!(10)));
    Ok(())
}
