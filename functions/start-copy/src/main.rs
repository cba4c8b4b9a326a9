//! Lambda `synmigrate-start-copy` (StartCopy); the handler is [`synmigrate_start_copy::handle`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::run(synmigrate_start_copy::handle).await
}
