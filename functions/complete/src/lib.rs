//! Lambda `synmigrate-complete`: `{"stage": "complete", ...}` finishes a unit's copies and
//! updates its entities; `{"stage": "recordFailure", ...}` (the Catch of a unit) marks the
//! unit's unfinished items ERRORED and sends one message to the SQS failure queue, so that
//! operators see failures without reading the execution history.

use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};
use synmigrate::stages::{
    self, CompleteInput, CompleteOutput, RecordFailureInput, RecordFailureOutput, Services,
};
use synmigrate_lambda::{ColdStart, FunctionError};

/// What the state machine sends: the stage's input, tagged with the stage.
#[derive(Debug, Deserialize)]
#[serde(tag = "stage", rename_all = "camelCase")]
pub enum Event {
    Complete(CompleteInput),
    RecordFailure(RecordFailureInput),
}

/// The stage's output as it is (no tag).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Complete(CompleteOutput),
    RecordFailure(RecordFailureOutput),
}

/// The function's state: the stage services and the failure queue.
pub struct Complete {
    services: Services,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl ColdStart for Complete {
    async fn cold_start(sdk: &SdkConfig) -> Result<Self, FunctionError> {
        Ok(Self {
            services: synmigrate_lambda::services(sdk).await?,
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue_url: synmigrate_lambda::failure_queue_url()?,
        })
    }

    fn services(&self) -> &Services {
        &self.services
    }
}

pub async fn handle(function: &Complete, event: Event) -> Result<Reply, FunctionError> {
    match event {
        Event::Complete(input) => Ok(Reply::Complete(
            stages::complete(&function.services, input).await?,
        )),
        Event::RecordFailure(input) => {
            let message = stages::failure_message(&input);
            let recorded = stages::record_failure(&function.services, input).await?;
            function
                .sqs
                .send_message()
                .queue_url(&function.queue_url)
                .message_body(message.to_string())
                .send()
                .await
                .map_err(|e| {
                    FunctionError::Transient(format!(
                        "cannot send to the failure queue: {}",
                        synmigrate::error_chain(&e)
                    ))
                })?;
            tracing::warn!(unit = %recorded.unit_id, errored = recorded.errored, "unit failed");
            Ok(Reply::RecordFailure(recorded))
        }
    }
}

#[cfg(test)]
mod tests {
    use synmigrate_lambda::parse_event;

    use super::*;

    const COMPLETE: &str = include_str!("../../../events/complete.json");
    const RECORD_FAILURE: &str = include_str!("../../../events/complete-record-failure.json");

    /// The sample event without its `stage` tag, parsed as the stage's own input.
    fn untagged<T: serde::de::DeserializeOwned>(json: &str) -> T {
        synmigrate_lambda::untagged_event(json).unwrap()
    }

    #[test]
    fn the_stage_tag_picks_the_stage() {
        match parse_event(handle, COMPLETE).unwrap() {
            Event::Complete(input) => {
                assert_eq!(input, untagged::<CompleteInput>(COMPLETE));
                assert_eq!(input.unit.unit_id, "unit-000001");
                assert_eq!(input.jobs.len(), 1);
                assert_eq!(input.jobs[0].entity_id, "syn1001");
            }
            other => panic!("complete.json: {other:?}"),
        }
        match parse_event(handle, RECORD_FAILURE).unwrap() {
            Event::RecordFailure(input) => {
                assert_eq!(input, untagged::<RecordFailureInput>(RECORD_FAILURE));
                assert_eq!(input.failure.error, "Retryable.Transient");
            }
            other => panic!("complete-record-failure.json: {other:?}"),
        }
        let unknown = COMPLETE.replace(r#""stage": "complete""#, r#""stage": "report""#);
        assert_ne!(unknown, COMPLETE);
        assert!(parse_event(handle, &unknown).is_err());
    }

    #[test]
    fn the_failure_message_names_the_run_the_unit_its_items_and_the_error() {
        let input = untagged::<RecordFailureInput>(RECORD_FAILURE);
        assert_eq!(
            stages::failure_message(&input),
            serde_json::json!({
                "projectId": "syn1000",
                "destinationStorageLocationId": 7001,
                "runId": "sample-run",
                "unitId": "unit-000001",
                "items": ["syn1001.1", "syn1002.1"],
                "errorType": "Retryable.Transient",
                "cause": "transient failure: Synapse answered 503",
            })
        );
    }
}
