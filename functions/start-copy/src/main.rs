//! Lambda `synmigrate-start-copy`: claims one work unit's items, starts (or resumes) each
//! source's copy and returns the part batches CopyParts must run.

use lambda_runtime::{service_fn, LambdaEvent};
use synmigrate::stages::{self, UnitInput};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::init_tracing();
    let sdk = synmigrate_lambda::sdk_config().await;
    let services = &synmigrate_lambda::services(&sdk).await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<UnitInput>| async move {
            stages::start_copy(services, event.payload)
                .await
                .map_err(synmigrate_lambda::FunctionError::from)
        },
    ))
    .await
}
