//! Lambda `synmigrate-copy-parts` (CopyParts); the handler is [`synmigrate_copy_parts::handle`].

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    synmigrate_lambda::run(synmigrate_copy_parts::handle).await
}
