//! Notify (every end of an execution): what the state machine publishes when a run ends, however
//! it ends: an EventBridge event (`detail`) and an SNS message (`subject`, `message`, for the
//! e-mail subscription). The state machine sends them itself (its `events:putEvents` and
//! `sns:publish` integrations); this stage only words them, from the execution's state, without
//! any call: a notification must not fail for want of Synapse or the state table.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::report::Summary;

/// The event's `source` and `detail-type` (rules match on them; the template's docs name them).
pub const EVENT_SOURCE: &str = "synmigrate";
pub const EVENT_DETAIL_TYPE: &str = "Synmigrate Run Finished";
/// Error types listed in a notification at most (they are stable names: a handful in practice).
const MAX_ERROR_TYPES: usize = 10;
/// Characters of an error message or cause kept in a notification.
const MAX_TEXT: usize = 500;

/// How the execution ends, as the state machine's terminal states know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Ending {
    Succeeded,
    /// Items failed, files were left unfinished, or Init refused the input.
    Failed,
    /// A stage failed for good: the run stopped early (after its report, when one could be made).
    Aborted,
    /// Another execution holds the project's lock; nothing was done.
    AlreadyRunning,
}

/// The terminal state's verdict: the ending and, unless it succeeded, the execution's error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: Ending,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

/// Input of Notify: the outcome, the execution, and its whole state (the input and, past Init,
/// the run and its summary), read leniently: a run refused at Init may lack any field.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyInput {
    pub outcome: Outcome,
    pub execution_arn: String,
    #[serde(default)]
    pub state: Value,
}

/// What the state machine publishes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub source: &'static str,
    pub detail_type: &'static str,
    pub detail: Value,
    /// SNS subjects are at most 100 characters.
    pub subject: String,
    pub message: String,
}

/// Words the notification of `input`.
pub fn notify(input: NotifyInput) -> Notification {
    let state = &input.state;
    let summary: Option<Summary> = state
        .get("summary")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let project = text_at(state, &["run", "projectId"])
        .or_else(|| text_at(state, &["projectId"]))
        .unwrap_or_default();
    let destination = state
        .pointer("/run/destinationStorageLocationId")
        .or_else(|| state.get("destinationStorageLocationId"))
        .cloned()
        .unwrap_or(Value::Null);
    let run_id = text_at(state, &["run", "runId"]);
    let error = input.outcome.error.as_deref().map(clip);
    let cause = input.outcome.cause.as_deref().map(clip);
    let status = input.outcome.status;
    let mut detail = json!({
        "status": status,
        "projectId": project,
        "destinationStorageLocationId": destination,
        "runId": run_id,
        "executionArn": input.execution_arn,
        "error": error,
        "cause": cause,
    });
    if let Some(summary) = &summary {
        detail["dryRun"] = json!(summary.dry_run);
        detail["counts"] = json!(summary.totals.by_status);
        detail["bytesMigrated"] = json!(summary.totals.migrated_bytes);
        detail["run"] = json!(summary.run_counters);
        detail["unfinished"] = json!(summary.unfinished);
        detail["report"] = json!(format!(
            "s3://{}/{}",
            summary.report_bucket, summary.report_key
        ));
        detail["failures"] = json!(summary
            .totals
            .errors
            .iter()
            .take(MAX_ERROR_TYPES)
            .map(|(error_type, tally)| json!({
                "errorType": error_type,
                "items": tally.items,
                "example": clip(&tally.example),
            }))
            .collect::<Vec<_>>());
    }
    let status_text = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let subject: String = format!("synmigrate {project}: {status_text}")
        .chars()
        .take(100)
        .collect();
    Notification {
        source: EVENT_SOURCE,
        detail_type: EVENT_DETAIL_TYPE,
        message: message(&detail, &status_text),
        detail,
        subject,
    }
}

/// The e-mail's text: the verdict, the counts, the failures and where the report is.
fn message(detail: &Value, status: &str) -> String {
    let field = |name: &str| match &detail[name] {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut lines = vec![format!(
        "synmigrate run {} of project {} into {}: {status}",
        field("runId"),
        field("projectId"),
        match &detail["destinationStorageLocationId"] {
            Value::Null => "each folder's upload location".to_owned(),
            id => format!("storage location {id}"),
        }
    )];
    if let Some(error) = detail["error"].as_str() {
        lines.push(format!("Error: {error}: {}", field("cause")));
    }
    if let Some(counts) = detail["counts"].as_object() {
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        lines.push(format!(
            "Items of the project's migration: {}; {} bytes migrated",
            counts.join(", "),
            field("bytesMigrated")
        ));
    }
    for failure in detail["failures"].as_array().into_iter().flatten() {
        lines.push(format!(
            "Failed: {} item(s) {}, e.g. {}",
            failure["items"],
            failure["errorType"].as_str().unwrap_or_default(),
            failure["example"].as_str().unwrap_or_default()
        ));
    }
    if let Some(report) = detail["report"].as_str() {
        lines.push(format!("Report: {report}"));
    }
    lines.push(format!("Execution: {}", field("executionArn")));
    lines.join("\n")
}

fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))?
        .as_str()
        .map(str::to_owned)
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(status: Ending, state: Value) -> NotifyInput {
        NotifyInput {
            outcome: Outcome {
                status,
                error: (status != Ending::Succeeded).then(|| "Fatal.ItemsFailed".to_owned()),
                cause: (status != Ending::Succeeded).then(|| "x".repeat(2000)),
            },
            execution_arn: "arn:aws:states:us-east-1:1:execution:m:syn1-7-w".into(),
            state,
        }
    }

    #[test]
    fn a_refused_input_still_notifies_with_what_it_has() {
        let refused = notify(input(Ending::Failed, json!({"options": {}})));
        assert_eq!(refused.detail["status"], "FAILED");
        assert_eq!(refused.detail["projectId"], "");
        assert!(refused.detail.get("counts").is_none());
        assert_eq!(refused.detail["cause"].as_str().unwrap().len(), MAX_TEXT);
        assert!(refused.message.contains("Error: Fatal.ItemsFailed"));
        let running = notify(input(
            Ending::AlreadyRunning,
            json!({"projectId": "syn1", "destinationStorageLocationId": 7}),
        ));
        assert_eq!(running.subject, "synmigrate syn1: ALREADY_RUNNING");
        assert_eq!(running.detail["destinationStorageLocationId"], 7);
    }
}
