//! Lambda `synmigrate-index` (Init, Index, Plan); the handler is [`synmigrate_index::handle`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::run(synmigrate_index::handle).await
}
