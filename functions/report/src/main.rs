//! Lambda `synmigrate-report`: counts the items, writes the CSV report to S3, closes the run and
//! releases the project lock; its [`Summary`](synmigrate::stages::Summary) is the run's output.

use lambda_runtime::{service_fn, LambdaEvent};
use synmigrate::stages::{self, ReportInput};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::init_tracing();
    let sdk = synmigrate_lambda::sdk_config().await;
    let services = &synmigrate_lambda::services(&sdk).await?;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ReportInput>| async move {
            stages::report(services, event.payload)
                .await
                .map_err(synmigrate_lambda::FunctionError::from)
        },
    ))
    .await
}
