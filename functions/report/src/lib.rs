//! Lambda `synmigrate-report`: `{"stage": "report", ...}` counts the items, writes the CSV report
//! to S3, closes the run and releases the project lock (its [`Summary`] is the run's output);
//! `{"stage": "closeRun", ...}` (the Catch of Init and Report) closes a run that failed for good;
//! `{"stage": "notify", ...}` words the notification of an execution's end, which the state
//! machine publishes.

use serde::{Deserialize, Serialize};
use synmigrate::stages::{
    self, CloseRunInput, CloseRunOutput, Notification, NotifyInput, ReportInput, Services, Summary,
};
use synmigrate_lambda::FunctionError;

/// What the state machine sends: the stage's input, tagged with the stage.
#[derive(Debug, Deserialize)]
#[serde(tag = "stage", rename_all = "camelCase")]
pub enum Event {
    Report(Box<ReportInput>),
    CloseRun(CloseRunInput),
    Notify(Box<NotifyInput>),
}

/// The stage's output as it is (no tag).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Report(Box<Summary>),
    CloseRun(CloseRunOutput),
    Notify(Box<Notification>),
}

pub async fn handle(services: &Services, event: Event) -> Result<Reply, FunctionError> {
    Ok(match event {
        Event::Report(input) => Reply::Report(Box::new(stages::report(services, *input).await?)),
        Event::CloseRun(input) => Reply::CloseRun(stages::close_run(services, input).await?),
        Event::Notify(input) => Reply::Notify(Box::new(stages::notify(*input))),
    })
}

#[cfg(test)]
mod tests {
    use synmigrate_lambda::{parse_event, untagged_event};

    use super::*;

    const SAMPLE: &str = include_str!("../../../events/report.json");
    const ABORTED: &str = include_str!("../../../events/report-aborted.json");
    const CLOSE_RUN: &str = include_str!("../../../events/report-close-run.json");
    const NOTIFY: &str = include_str!("../../../events/report-notify.json");

    fn report(json: &str) -> ReportInput {
        match parse_event(handle, json).unwrap() {
            Event::Report(input) => *input,
            other => panic!("not a report: {other:?}"),
        }
    }

    #[test]
    fn the_sample_event_is_the_stage_input() {
        let input = report(SAMPLE);
        assert_eq!(input, untagged_event::<ReportInput>(SAMPLE).unwrap());
        assert_eq!(input.run.project_id, "syn1000");
        assert!(!input.aborted);
    }

    #[test]
    fn an_aborted_run_is_reported_as_aborted() {
        let aborted = report(ABORTED);
        assert!(aborted.aborted);
        assert_eq!(aborted.run, report(SAMPLE).run);
        // `aborted` may be left out (a manual invocation): a normal report.
        let mut value: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        value.as_object_mut().unwrap().remove("aborted");
        assert!(!report(&value.to_string()).aborted);
    }

    #[test]
    fn a_failed_report_closes_the_run() {
        match parse_event(handle, CLOSE_RUN).unwrap() {
            Event::CloseRun(input) => assert_eq!(input.run_id, report(SAMPLE).run.run_id),
            other => panic!("not closeRun: {other:?}"),
        }
    }

    /// The sample's notification carries the summary's counts, failures and report.
    #[tokio::test]
    async fn a_notification_is_worded_from_the_execution_state() {
        let input = match parse_event(handle, NOTIFY).unwrap() {
            Event::Notify(input) => *input,
            other => panic!("not notify: {other:?}"),
        };
        let notification = stages::notify(input);
        let detail = &notification.detail;
        assert_eq!(detail["status"], "FAILED");
        assert_eq!(detail["projectId"], "syn1000");
        assert_eq!(detail["counts"]["MIGRATED"], 7);
        assert_eq!(
            detail["report"],
            "s3://synmigrate-artifacts/runs/sample-run/report.csv"
        );
        assert_eq!(detail["failures"][0]["errorType"], "Fatal.Forbidden");
        assert_eq!(notification.subject, "synmigrate syn1000: FAILED");
        for line in [
            "synmigrate run sample-run of project syn1000 into storage location 7001: FAILED",
            "Error: Fatal.ItemsFailed: items are ERRORED",
            "Failed: 1 item(s) Fatal.Forbidden, e.g. PUT /entity/{id}: forbidden",
            "Report: s3://synmigrate-artifacts/runs/sample-run/report.csv",
        ] {
            assert!(
                notification.message.contains(line),
                "{line}: {}",
                notification.message
            );
        }
    }
}
