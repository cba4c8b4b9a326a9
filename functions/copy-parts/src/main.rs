//! Lambda `synmigrate-copy-parts`: copies one batch of parts of a big file (bounded concurrency
//! inside), sized by StartCopy to finish well within the Lambda timeout.

use lambda_runtime::{service_fn, LambdaEvent};
use synmigrate::stages::{self, CopyPartsInput};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::init_tracing();
    let sdk = synmigrate_lambda::sdk_config().await;
    let services = &synmigrate_lambda::services(&sdk).await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<CopyPartsInput>| async move {
            stages::copy_parts(services, event.payload)
                .await
                .map_err(synmigrate_lambda::FunctionError::from)
        },
    ))
    .await
}
