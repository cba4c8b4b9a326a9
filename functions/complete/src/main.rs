//! Lambda `synmigrate-complete` (Complete, RecordFailure); the handler is
//! [`synmigrate_complete::handle`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::run(synmigrate_complete::handle).await
}
