//! Lambda `synmigrate-index`: the stages before the copy, chosen by the event's `stage` tag
//! (`init`, `index` or `plan`), so that one function holds the lock-and-walk logic.

use lambda_runtime::{service_fn, LambdaEvent};
use serde::{Deserialize, Serialize};
use synmigrate::stages::{
    self, IndexInput, IndexOutput, InitInput, PlanInput, PlanOutput, RunContext, Services,
};
use synmigrate_lambda::FunctionError;

#[derive(Deserialize)]
#[serde(tag = "stage", rename_all = "camelCase")]
enum Event {
    Init(InitInput),
    Index(IndexInput),
    Plan(PlanInput),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reply {
    Init(Box<RunContext>),
    Index(IndexOutput),
    Plan(PlanOutput),
}

async fn handle(services: &Services, event: Event) -> Result<Reply, FunctionError> {
    Ok(match event {
        Event::Init(input) => Reply::Init(Box::new(stages::init(services, input).await?)),
        Event::Index(input) => Reply::Index(stages::index(services, input).await?),
        Event::Plan(input) => Reply::Plan(stages::plan(services, input).await?),
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::init_tracing();
    let sdk = synmigrate_lambda::sdk_config().await;
    let services = &synmigrate_lambda::services(&sdk).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        handle(services, event.payload).await
    }))
    .await
}
