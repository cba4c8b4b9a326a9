//! A minimal Lambda function for the Lambda host's own tests: doubles `n`, or fails with the error
//! type given in `fail`, or has its own process killed with SIGKILL (`die`), after sleeping
//! `sleepMs`.

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::{json, Value};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let payload = event.payload;
    if let Some(ms) = payload["sleepMs"].as_u64() {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if payload["die"] == true {
        // A real crash: the process is gone mid-invocation, as after an out-of-memory kill.
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
    }
    if let Some(error_type) = payload["fail"].as_str() {
        return Err(Diagnostic {
            error_type: error_type.to_owned(),
            error_message: format!("asked to fail as {error_type}"),
        });
    }
    Ok(json!({ "n": payload["n"].as_i64().unwrap_or(0) * 2, "pid": std::process::id() }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
