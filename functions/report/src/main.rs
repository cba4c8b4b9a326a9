//! Lambda `synmigrate-report` (Report); the handler is [`synmigrate_report::handle`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::run(synmigrate_report::handle).await
}
