//! Lambda `synmigrate-complete`: `{"stage": "complete", ...}` finishes a unit's copies and
//! updates its entities; `{"stage": "recordFailure", ...}` (the Catch of a unit) marks the
//! unit's unfinished items ERRORED and sends one message to the SQS failure queue, so that
//! operators see failures without reading the execution history.

use lambda_runtime::{service_fn, LambdaEvent};
use serde::{Deserialize, Serialize};
use synmigrate::stages::{
    self, CompleteInput, CompleteOutput, RecordFailureInput, RecordFailureOutput, Services,
};
use synmigrate_lambda::FunctionError;

#[derive(Deserialize)]
#[serde(tag = "stage", rename_all = "camelCase")]
enum Event {
    Complete(CompleteInput),
    RecordFailure(RecordFailureInput),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reply {
    Complete(CompleteOutput),
    RecordFailure(RecordFailureOutput),
}

struct Function {
    services: Services,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Function {
    async fn handle(&self, event: Event) -> Result<Reply, FunctionError> {
        match event {
            Event::Complete(input) => Ok(Reply::Complete(
                stages::complete(&self.services, input).await?,
            )),
            Event::RecordFailure(input) => {
                let message = failure_message(&input);
                let recorded = stages::record_failure(&self.services, input).await?;
                self.sqs
                    .send_message()
                    .queue_url(&self.queue_url)
                    .message_body(message.to_string())
                    .send()
                    .await
                    .map_err(|e| {
                        FunctionError::Transient(format!(
                            "cannot send to the failure queue: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(&e)
                        ))
                    })?;
                tracing::warn!(unit = %recorded.unit_id, errored = recorded.errored, "unit failed");
                Ok(Reply::RecordFailure(recorded))
            }
        }
    }
}

/// The failure queue message: which run and unit failed, how, and which items it held.
fn failure_message(input: &RecordFailureInput) -> serde_json::Value {
    serde_json::json!({
        "projectId": input.run.project_id,
        "destinationStorageLocationId": input.run.destination_storage_location_id,
        "runId": input.run.run_id,
        "unitId": input.unit.unit_id,
        "items": input.unit.items.iter().map(|item| item.key.as_str()).collect::<Vec<_>>(),
        "errorType": input.failure.error,
        "cause": input.failure.cause,
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::init_tracing();
    let sdk = synmigrate_lambda::sdk_config().await;
    let function = &Function {
        services: synmigrate_lambda::services(&sdk).await?,
        sqs: aws_sdk_sqs::Client::new(&sdk),
        queue_url: synmigrate_lambda::failure_queue_url()?,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        function.handle(event.payload).await
    }))
    .await
}
