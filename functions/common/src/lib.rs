//! What every synmigrate Lambda shares: [`run`], which starts a function's runtime around its
//! handler; logging that follows Lambda's controls ([`logging`]); each invocation's metrics in the
//! embedded metric format (`synmigrate::metrics`); the [`Services`] built once per container
//! (cold start); and the mapping of errors to the stable error names the state machine's `Retry`/`Catch` blocks match on.
//!
//! A function is a library holding its handler, `async fn(&State, Event) -> Result<Reply,
//! FunctionError>` with its unit tests beside it, and a `main.rs` that hands the handler to
//! [`run`]. `State` is [`Services`] or the function's own [`ColdStart`] type.
//!
//! Configuration comes from the environment (see [`env`] and `synmigrate::config::env`); a missing
//! or malformed variable fails the cold start with a message naming it. The Synapse token comes
//! from Secrets Manager when `SYNAPSE_TOKEN_SECRET_ARN` is set (deployed), else from the token
//! variable or file `Settings` reads (local runs). The token never appears in a log line or error.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use synmigrate::config::Settings;
use synmigrate::error::types;
use synmigrate::metrics;
use synmigrate::stages::{Services, Tuning};
use synmigrate::state::dynamo::DynamoStore;
use synmigrate::synapse::{
    ClientConfig, SynapseClient, SynapseToken, PROD_FILE_ENDPOINT, PROD_REPO_ENDPOINT,
};

/// Environment variables read here (the others are `synmigrate::config::env`).
pub mod env {
    /// ARN of the Secrets Manager secret holding the Synapse token (plain, or `{"token": ...}`).
    pub const TOKEN_SECRET_ARN: &str = "SYNAPSE_TOKEN_SECRET_ARN";
    // Shared with the CLI and the local deployment. MAX_SYNAPSE_RPM: Synapse allows 600 per
    // user; only a local simulator without throttling is a reason to go higher.
    pub use synmigrate::config::env::{
        ARTIFACTS_S3_ENDPOINT, FAILURE_QUEUE_URL, MAX_SYNAPSE_RPM, S3_FORCE_PATH_STYLE,
    };
    /// Seconds one Index invocation walks before handing back.
    pub const INDEX_SECONDS: &str = "SYNMIGRATE_INDEX_SECONDS";
    /// Most files in one work unit of small files.
    pub const UNIT_MAX_FILES: &str = "SYNMIGRATE_UNIT_MAX_FILES";
    /// Files above this size get their own unit and are copied in part batches.
    pub const LARGE_FILE_BYTES: &str = "SYNMIGRATE_LARGE_FILE_BYTES";
    /// Seconds of copying one CopyParts invocation plans for.
    pub const BATCH_SECONDS: &str = "SYNMIGRATE_BATCH_SECONDS";
    /// Parts one CopyParts invocation copies at the same time.
    pub const BATCH_CONCURRENCY: &str = "SYNMIGRATE_BATCH_CONCURRENCY";
    /// The direct engine copies files up to this size with one CopyObject.
    pub const COPY_OBJECT_THRESHOLD: &str = "SYNMIGRATE_COPY_OBJECT_THRESHOLD";
    /// The highest `maxConcurrency` Init accepts (template parameter `MaxConcurrencyCeiling`).
    pub const MAX_CONCURRENCY_CEILING: &str = "SYNMIGRATE_MAX_CONCURRENCY_CEILING";
    /// The CloudWatch namespace of the functions' metrics (the template: one per stack).
    pub const METRICS_NAMESPACE: &str = "SYNMIGRATE_METRICS_NAMESPACE";
    /// Set by Lambda: the function's name, the metrics' `FunctionName` dimension.
    pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
}

pub mod logging;

/// Errors of the function layer: the library's, or the deployment's configuration.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error(transparent)]
    Migration(#[from] synmigrate::Error),
    /// A missing or malformed environment variable or secret; retrying cannot help.
    #[error("configuration: {0}")]
    Config(String),
    /// An AWS call of the function layer itself (the failure queue) failed.
    #[error("{0}")]
    Transient(String),
}

impl FunctionError {
    /// The stable name Step Functions matches on.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Migration(error) => error.error_type(),
            Self::Config(_) => types::INTERNAL,
            Self::Transient(_) => types::TRANSIENT,
        }
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(error: FunctionError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// What a function builds once per container (cold start), before its first event.
pub trait ColdStart: Sized {
    /// Builds the state from the AWS configuration and the environment; an error ends the cold
    /// start.
    fn cold_start(sdk: &SdkConfig) -> impl Future<Output = Result<Self, FunctionError>>;

    /// The services whose counts become each invocation's metrics.
    fn services(&self) -> &Services;
}

impl ColdStart for Services {
    async fn cold_start(sdk: &SdkConfig) -> Result<Self, FunctionError> {
        services(sdk).await
    }

    fn services(&self) -> &Services {
        self
    }
}

/// Runs a function: logging ([`logging`]), its state built once per container ([`ColdStart`]),
/// then `handler` for every event, its errors reported under their stable names
/// ([`FunctionError`]) and what it did printed as metrics ([`MetricLines`]). Returns when the
/// runtime stops, or at once with the cold start's error.
pub async fn run<S, E, R, H>(handler: H) -> Result<(), lambda_runtime::Error>
where
    S: ColdStart,
    E: DeserializeOwned,
    R: Serialize,
    H: AsyncFn(&S, E) -> Result<R, FunctionError>,
{
    logging::LogSettings::from_env(|name| std::env::var(name).ok()).init();
    let sdk = sdk_config().await;
    let state = &S::cold_start(&sdk).await?;
    let handler = &handler;
    let metric_lines = &MetricLines::from_env();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| async move {
        let result = handler(state, event.payload).await;
        metric_lines.emit(state.services());
        result
    }))
    .await
}

/// How each invocation's metrics are printed: EMF lines on stdout, where CloudWatch Logs
/// extracts them.
pub struct MetricLines {
    namespace: String,
    function: String,
    /// The `level` of each line. With JSON logs Lambda drops lines below `AWS_LAMBDA_LOG_LEVEL`
    /// and counts a line without a level as INFO, so at WARN the metrics would vanish: each line
    /// carries the configured level itself and always passes.
    level: String,
}

impl MetricLines {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            namespace: var(env::METRICS_NAMESPACE)
                .unwrap_or_else(|| metrics::DEFAULT_NAMESPACE.to_owned()),
            function: var(env::FUNCTION_NAME).unwrap_or_default(),
            level: var(logging::LOG_LEVEL_ENV)
                .map_or_else(|| "INFO".to_owned(), |l| l.trim().to_ascii_uppercase()),
        }
    }

    /// Prints what the invocation did and resets the counts for the next invocation (a failed
    /// one's count too).
    pub fn emit(&self, services: &Services) {
        let tally = services.metrics.take();
        let requests = services.synapse.take_request_counts();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let documents =
            metrics::emf_documents(&self.namespace, &self.function, &tally, &requests, now_ms);
        let mut stdout = std::io::stdout().lock();
        for mut document in documents {
            document["level"] = serde_json::Value::from(self.level.as_str());
            // Not println!: a closed stdout (a local runner gone) must not fail the invocation.
            let _ = writeln!(stdout, "{document}");
        }
    }
}

/// Parses `json` as the event `handler` takes, as [`run`] does with each invocation's payload:
/// lets a function's tests check its sample events without a runtime.
pub fn parse_event<S, E, R, H>(_handler: H, json: &str) -> serde_json::Result<E>
where
    E: DeserializeOwned,
    H: AsyncFn(&S, E) -> Result<R, FunctionError>,
{
    serde_json::from_str(json)
}

/// A sample event without its `stage` tag, parsed as the stage's own input (for the functions'
/// tests: the tagged event and the stage input must carry the same fields).
pub fn untagged_event<T: DeserializeOwned>(json: &str) -> serde_json::Result<T> {
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    if let Some(object) = value.as_object_mut() {
        object.remove("stage");
    }
    serde_json::from_value(value)
}

/// The AWS configuration of the function (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Builds the stage services from the process environment; called once per cold start.
pub async fn services(sdk: &SdkConfig) -> Result<Services, FunctionError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let settings = Settings::from_env().map_err(|e| FunctionError::Config(e.to_string()))?;
    let token = match lookup(env::TOKEN_SECRET_ARN).filter(|v| !v.trim().is_empty()) {
        Some(arn) => secret_token(sdk, &arn).await?,
        None => settings
            .token_source
            .load()
            .map_err(synmigrate::Error::from)?,
    };
    let mut client = ClientConfig::new(
        settings
            .repo_endpoint
            .clone()
            .unwrap_or_else(|| PROD_REPO_ENDPOINT.to_owned()),
        settings
            .file_endpoint
            .clone()
            .unwrap_or_else(|| PROD_FILE_ENDPOINT.to_owned()),
        token,
    );
    if let Some(rpm) = number(&lookup, env::MAX_SYNAPSE_RPM)? {
        client.requests_per_minute = rpm;
    }
    let synapse = SynapseClient::new(client).map_err(synmigrate::Error::from)?;
    let path_style = flag(&lookup, env::S3_FORCE_PATH_STYLE)?;
    let s3 = match lookup(env::ARTIFACTS_S3_ENDPOINT).filter(|v| !v.trim().is_empty()) {
        Some(endpoint) => {
            synmigrate::config::s3_client_routing(sdk, path_style, &settings.bucket, &endpoint)
        }
        None => synmigrate::config::s3_client(sdk, path_style),
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), settings.table);
    Ok(Services::new(
        synapse,
        Arc::new(store),
        s3,
        settings.bucket,
        tuning(&lookup)?,
    ))
}

/// The failure queue's URL, required by the functions that report failures.
pub fn failure_queue_url() -> Result<String, FunctionError> {
    std::env::var(env::FAILURE_QUEUE_URL)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            FunctionError::Config(format!(
                "missing environment variable {}",
                env::FAILURE_QUEUE_URL
            ))
        })
}

/// Reads the token secret; its value is the token itself or `{"token": "..."}`.
async fn secret_token(sdk: &SdkConfig, arn: &str) -> Result<SynapseToken, FunctionError> {
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            FunctionError::Config(format!(
                "cannot read the token secret {arn}: {}",
                synmigrate::error_chain(&e)
            ))
        })?;
    let text = secret.secret_string().ok_or_else(|| {
        FunctionError::Config(format!("the token secret {arn} has no string value"))
    })?;
    let token = token_from_secret(text)
        .ok_or_else(|| FunctionError::Config(format!("the token secret {arn} is malformed")))?;
    Ok(SynapseToken::new(token).map_err(synmigrate::Error::from)?)
}

/// The token in a secret string: JSON with a `token` field, or the whole string.
fn token_from_secret(text: &str) -> Option<String> {
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        value.get("token")?.as_str().map(str::to_owned)
    } else {
        Some(text.to_owned())
    }
}

/// The default tuning with the overrides the environment gives.
fn tuning(lookup: &impl Fn(&str) -> Option<String>) -> Result<Tuning, FunctionError> {
    let mut tuning = Tuning::default();
    if let Some(seconds) = number(lookup, env::INDEX_SECONDS)? {
        tuning.index_time_budget = Duration::from_secs(seconds);
    }
    if let Some(files) = number(lookup, env::UNIT_MAX_FILES)? {
        tuning.unit_limits.max_files = files;
    }
    if let Some(bytes) = number(lookup, env::LARGE_FILE_BYTES)? {
        tuning.unit_limits.large_threshold = bytes;
    }
    if let Some(seconds) = number(lookup, env::BATCH_SECONDS)? {
        tuning.batch_budget.time_budget = Duration::from_secs(seconds);
    }
    if let Some(parts) = number(lookup, env::BATCH_CONCURRENCY)? {
        tuning.batch_budget.concurrency = parts;
        tuning.engine.concurrency = parts as usize;
    }
    if let Some(bytes) = number(lookup, env::COPY_OBJECT_THRESHOLD)? {
        tuning.engine.copy_object_threshold = bytes;
    }
    if let Some(ceiling) = number(lookup, env::MAX_CONCURRENCY_CEILING)? {
        tuning.max_concurrency_ceiling = ceiling;
    }
    Ok(tuning)
}

/// An optional positive integer variable; zero or garbage fails naming the variable.
fn number<T: std::str::FromStr + PartialEq + Default>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<T>, FunctionError> {
    let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim().parse::<T>() {
        Ok(n) if n != T::default() => Ok(Some(n)),
        _ => Err(FunctionError::Config(format!(
            "{name} must be a positive integer, got {value:?}"
        ))),
    }
}

fn flag(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Result<bool, FunctionError> {
    match lookup(name).as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(FunctionError::Config(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_secret_is_the_token_or_json_holding_it() {
        assert_eq!(token_from_secret("abc").as_deref(), Some("abc"));
        assert_eq!(
            token_from_secret(r#"{"token": "xyz"}"#).as_deref(),
            Some("xyz")
        );
        assert_eq!(token_from_secret(r#"{"other": "xyz"}"#), None);
    }

    #[test]
    fn tuning_overrides_name_the_bad_variable() {
        let tuned = tuning(&lookup(&[
            (env::LARGE_FILE_BYTES, "1024"),
            (env::BATCH_SECONDS, "2"),
            (env::BATCH_CONCURRENCY, "3"),
            (env::UNIT_MAX_FILES, "7"),
            (env::MAX_CONCURRENCY_CEILING, "40"),
        ]))
        .unwrap();
        assert_eq!(tuned.max_concurrency_ceiling, 40);
        assert_eq!(tuned.unit_limits.large_threshold, 1024);
        assert_eq!(tuned.unit_limits.max_files, 7);
        assert_eq!(tuned.batch_budget.time_budget, Duration::from_secs(2));
        assert_eq!(tuned.batch_budget.concurrency, 3);
        assert_eq!(
            tuning(&lookup(&[])).unwrap().unit_limits.max_files,
            Tuning::default().unit_limits.max_files
        );
        for bad in ["0", "-1", "lots"] {
            let error = tuning(&lookup(&[(env::UNIT_MAX_FILES, bad)])).unwrap_err();
            assert!(error.to_string().contains(env::UNIT_MAX_FILES), "{error}");
            assert_eq!(error.error_type(), types::INTERNAL);
        }
    }

    #[test]
    fn path_style_flag() {
        let name = env::S3_FORCE_PATH_STYLE;
        assert!(flag(&lookup(&[(name, "true")]), name).unwrap());
        assert!(!flag(&lookup(&[]), name).unwrap());
        assert!(flag(&lookup(&[(name, "yes please")]), name).is_err());
    }

    #[test]
    fn diagnostics_carry_the_stable_type() {
        let error = FunctionError::from(synmigrate::Error::Throttled("slow down".into()));
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, types::THROTTLED);
        assert!(diagnostic.error_message.contains("slow down"));
        let diagnostic = Diagnostic::from(FunctionError::Transient("queue".into()));
        assert_eq!(diagnostic.error_type, types::TRANSIENT);
    }
}
