//! What an operator sees of a run, through the state machine: the notification every end of an
//! execution publishes (the EventBridge event and the SNS message, read back from queues
//! subscribed in moto), the functions' log lines under Lambda's logging controls (JSON, the
//! level `AWS_LAMBDA_LOG_LEVEL` sets, winning over `RUST_LOG`) with the Synapse token nowhere in
//! them even at TRACE, and the metrics they print in the embedded metric format, which must add
//! up to what the run did.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use synmigrate::metrics::{Metric, ERROR_TYPE_DIMENSION, FUNCTION_DIMENSION};
use synmigrate_local::{LocalDeployment, LocalOptions};

use super::common::{bounded, input_with, project, run_to_end};

/// The functions' token (the fixture's migrator): it must appear in no log line.
const TOKEN: &str = "migrator-token";

fn fixture() -> synapse_sim::Fixture {
    let file = |name: &str, text: &str| json!({"type": "file", "name": name, "versions": [{"content": {"text": text}}]});
    project(json!([
        file("a.txt", "alpha"),
        file("b.txt", "bravo bravo"),
        {"type": "folder", "name": "sub", "children": [file("c.txt", "charlie")]},
        // Readable, not writable: its copy is refused, one ERRORED item.
        {"type": "file", "name": "readonly.txt", "versions": [{"content": {"text": "hands off"}}],
         "acl": {"migrator": ["READ", "DOWNLOAD"]}}
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_notify_and_log_and_count_what_they_did() -> anyhow::Result<()> {
    bounded(async {
        let logs = std::env::temp_dir().join(format!("synmigrate-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)?;
        let options = LocalOptions {
            log_dir: Some(logs.clone()),
            function_env: vec![
                ("AWS_LAMBDA_LOG_LEVEL".into(), "TRACE".into()),
                ("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()),
            ],
            ..LocalOptions::default()
        };
        ensure!(
            options.rust_log == "warn",
            "RUST_LOG alone would hide debug lines"
        );
        let deployment = LocalDeployment::start(&fixture(), options).await?;

        // A run that finishes with one failed file (continueOnError).
        let input = input_with(&deployment, json!({"continueOnError": true}));
        let done = run_to_end(&deployment, "observed", &input).await?;
        ensure!(done.status == ExecutionStatus::Succeeded, "{done:?}");
        let summary: Value = serde_json::from_str(done.output().context("output")?)?;
        let events = deployment.inbox().events().await?;
        ensure!(events.len() == 1, "one event per execution: {events:?}");
        let event = &events[0];
        ensure!(event["source"] == "synmigrate", "{event}");
        ensure!(event["detail-type"] == "Synmigrate Run Finished", "{event}");
        let detail = &event["detail"];
        ensure!(detail["status"] == "SUCCEEDED", "{detail}");
        ensure!(detail["runId"] == summary["runId"], "{detail}");
        ensure!(detail["counts"]["MIGRATED"] == 3, "{detail}");
        ensure!(detail["counts"]["ERRORED"] == 1, "{detail}");
        ensure!(
            detail["bytesMigrated"] == summary["totals"]["migratedBytes"],
            "{detail}"
        );
        let report = format!(
            "s3://{}/{}",
            summary["reportBucket"].as_str().unwrap_or_default(),
            summary["reportKey"].as_str().unwrap_or_default()
        );
        ensure!(detail["report"] == report.as_str(), "{detail}");
        let failures = detail["failures"].as_array().context("failures")?;
        ensure!(failures.len() == 1 && failures[0]["items"] == 1, "{detail}");
        let failed_type = failures[0]["errorType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mails = deployment.inbox().mails().await?;
        ensure!(mails.len() == 1, "{mails:?}");
        ensure!(
            mails[0].subject
                == format!(
                    "synmigrate {}: SUCCEEDED",
                    detail["projectId"].as_str().unwrap_or_default()
                ),
            "{mails:?}"
        );
        for needle in [report.as_str(), failed_type.as_str(), "MIGRATED 3"] {
            ensure!(
                mails[0].message.contains(needle),
                "{needle}: {}",
                mails[0].message
            );
        }

        // An input Init refuses: the execution fails as before, and still notifies.
        let refused = run_to_end(&deployment, "refused", &json!({"options": {}})).await?;
        ensure!(refused.status == ExecutionStatus::Failed, "{refused:?}");
        ensure!(refused.error() == Some("Fatal.InvalidInput"), "{refused:?}");
        let events = deployment.inbox().events().await?;
        ensure!(events.len() == 1, "{events:?}");
        ensure!(events[0]["detail"]["status"] == "FAILED", "{events:?}");
        ensure!(
            events[0]["detail"]["error"] == "Fatal.InvalidInput",
            "{events:?}"
        );
        ensure!(deployment.inbox().mails().await?.len() == 1);

        let lines = log_lines(&logs)?;
        drop(deployment);
        let _ = std::fs::remove_dir_all(&logs);
        check_logs(&lines)?;
        check_metrics(&lines, 3, &failed_type, &summary)?;
        Ok(())
    })
    .await
}

/// Every function's log lines, parsed as JSON (each must be).
fn log_lines(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let value: Value = serde_json::from_str(line).with_context(|| {
                format!("{} logged a line that is no JSON: {line}", path.display())
            })?;
            lines.push(value);
        }
    }
    ensure!(!lines.is_empty(), "the functions logged nothing");
    Ok(lines)
}

/// The token appears nowhere; Lambda's level (TRACE) won over `RUST_LOG=warn`.
fn check_logs(lines: &[Value]) -> anyhow::Result<()> {
    for line in lines {
        ensure!(
            !line.to_string().contains(TOKEN),
            "a log line holds the token"
        );
    }
    // The tracing lines' levels (the metrics lines carry the configured one).
    let levels: BTreeMap<&str, usize> = lines
        .iter()
        .filter(|l| l.get("_aws").is_none())
        .filter_map(|l| l["level"].as_str())
        .fold(BTreeMap::new(), |mut m, level| {
            *m.entry(level).or_default() += 1;
            m
        });
    ensure!(
        levels.contains_key("DEBUG") && levels.contains_key("TRACE"),
        "AWS_LAMBDA_LOG_LEVEL=TRACE shows debug and trace lines: {levels:?}"
    );
    Ok(())
}

/// The EMF documents add up to the run: files migrated, failures by type, Synapse requests.
fn check_metrics(
    lines: &[Value],
    migrated: u64,
    failed_type: &str,
    summary: &Value,
) -> anyhow::Result<()> {
    let documents: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    ensure!(!documents.is_empty(), "no metrics were printed");
    let sum = |metric: Metric, dimension: &str| -> u64 {
        documents
            .iter()
            .filter(|d| d.get(dimension).is_some())
            .filter_map(|d| d[metric.name()].as_u64())
            .sum()
    };
    for document in &documents {
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        ensure!(directive["Namespace"] == "synmigrate", "{document}");
        // Lambda drops JSON lines below its level and takes a line without one as INFO.
        ensure!(
            document["level"] == "TRACE",
            "the configured level: {document}"
        );
        for metric in directive["Metrics"].as_array().context("metrics")? {
            let name = metric["Name"].as_str().unwrap_or_default();
            ensure!(
                document[name].is_number(),
                "{name} has no value: {document}"
            );
        }
    }
    ensure!(sum(Metric::FilesMigrated, FUNCTION_DIMENSION) == migrated);
    ensure!(
        sum(Metric::ItemsIndexed, FUNCTION_DIMENSION) == migrated + 1,
        "every file was indexed, the failed one too"
    );
    ensure!(
        sum(Metric::BytesCopied, FUNCTION_DIMENSION)
            == summary["runCounters"]["bytesCopied"]
                .as_u64()
                .unwrap_or_default()
    );
    ensure!(sum(Metric::ItemsFailed, FUNCTION_DIMENSION) == 1);
    let per_type: u64 = documents
        .iter()
        .filter(|d| d[ERROR_TYPE_DIMENSION] == failed_type)
        .filter_map(|d| d[Metric::ItemsFailed.name()].as_u64())
        .sum();
    ensure!(per_type == 1, "ItemsFailed of {failed_type}: {per_type}");
    ensure!(sum(Metric::SynapseRequests, FUNCTION_DIMENSION) > 0);
    Ok(())
}

/// `AWS_LAMBDA_LOG_FORMAT=Text` gives text lines (the metrics stay JSON: CloudWatch reads them
/// either way), at `AWS_LAMBDA_LOG_LEVEL`, whatever `RUST_LOG` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_follow_lambdas_controls_too() -> anyhow::Result<()> {
    bounded(async {
        let logs =
            std::env::temp_dir().join(format!("synmigrate-text-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)?;
        let options = LocalOptions {
            log_dir: Some(logs.clone()),
            rust_log: "debug".into(),
            function_env: vec![
                ("AWS_LAMBDA_LOG_LEVEL".into(), "INFO".into()),
                ("AWS_LAMBDA_LOG_FORMAT".into(), "Text".into()),
            ],
            ..LocalOptions::default()
        };
        let deployment = LocalDeployment::start(&fixture(), options).await?;
        let input = input_with(&deployment, json!({"continueOnError": true}));
        let done = run_to_end(&deployment, "text-logs", &input).await?;
        ensure!(done.status == ExecutionStatus::Succeeded, "{done:?}");
        drop(deployment);
        let mut text_lines = 0;
        for entry in std::fs::read_dir(&logs)? {
            for line in std::fs::read_to_string(entry?.path())?.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                if let Ok(json) = serde_json::from_str::<Value>(line) {
                    ensure!(json.get("_aws").is_some(), "a JSON line under Text: {line}");
                    continue;
                }
                ensure!(!line.contains(TOKEN), "a log line holds the token");
                ensure!(
                    !line.contains("DEBUG") && !line.contains("TRACE"),
                    "INFO hides debug lines, though RUST_LOG=debug: {line}"
                );
                text_lines += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&logs);
        ensure!(text_lines > 0, "the functions logged no text line");
        Ok(())
    })
    .await
}
