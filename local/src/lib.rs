//! The deployed pipeline, on this machine: the state machine from `statemachine/migration.asl.json`
//! in moto's Step Functions, its Lambda tasks running the real function binaries
//! (`target/debug/synmigrate-*`, through [`LambdaHost`]), the state table, the artifacts bucket and
//! the failure queue in moto, and the Synapse simulator seeded with a fixture.
//!
//! [`LocalDeployment::start`] sets it all up the way `template.yaml` does on AWS (same function
//! names, environment variables and definition substitutions), so the end-to-end test and
//! `make demo` exercise what gets deployed. [`LocalDeployment::start_external`] does the same
//! against a Synapse it does not start ([`ExternalSynapse`]: Synapse's staging stack, or any server
//! speaking the API); no simulator runs then. [`LocalOptions::s3_endpoint`] sends the functions'
//! S3 calls for the data (the direct engine's reads and copies) to another S3 than the stack's;
//! the artifacts bucket stays in the stack, where Step Functions reads the manifests.
//! Everything stops when the deployment is dropped.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use synapse_sim::{Fixture, LocationKind, RunningSim, SimConfig, Simulator, ThrottleConfig};
use synmigrate::config::env as settings_env;
use synmigrate::state::dynamo::create_table;
use synmigrate::synapse::SynapseToken;
use synmigrate_testkit::{workspace_root, AwsStack, FunctionSpec, LambdaHost, StackOptions};

mod notifications;
pub use notifications::{Inbox, Mail};

/// Where moto's Lambda ARNs point (moto's default account and the stack's region).
const ACCOUNT_ID: &str = "123456789012";
const STATE_MACHINE: &str = "synmigrate-migration";
const TABLE: &str = "synmigrate-state";
const BUCKET: &str = "synmigrate-artifacts";
const QUEUE: &str = "synmigrate-failures";
/// Where the state machine publishes the end of each execution (`template.yaml`: the default
/// bus and the stack's topic).
pub const EVENT_BUS: &str = "default";
/// The secret holding the Synapse token, and the variable naming it (`template.yaml`'s).
const TOKEN_SECRET: &str = "synmigrate/synapse-token";
const TOKEN_SECRET_ARN_ENV: &str = "SYNAPSE_TOKEN_SECRET_ARN";
/// How long the simulator may take to finish its in-flight requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often [`LocalDeployment::wait_for_execution`] looks.
const POLL: Duration = Duration::from_millis(250);
/// The AWS SDK's service-specific endpoint variable for S3 (wins over `AWS_ENDPOINT_URL`), read by
/// the functions' `aws_config` loader.
pub const S3_ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_S3";

/// The functions: the definition substitution naming each, and its binary (= function name).
pub const FUNCTIONS: [(&str, &str); 5] = [
    ("IndexFunctionArn", "synmigrate-index"),
    ("StartCopyFunctionArn", "synmigrate-start-copy"),
    ("CopyPartsFunctionArn", "synmigrate-copy-parts"),
    ("CompleteFunctionArn", "synmigrate-complete"),
    ("ReportFunctionArn", "synmigrate-report"),
];

/// Errors of setting up or driving the local deployment.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The local AWS stack or the Lambda host did not start.
    #[error("local stack: {0}")]
    Stack(String),
    #[error("simulator: {0}")]
    Simulator(#[from] synapse_sim::SimError),
    /// An endpoint option is not a URL (the message never holds the token).
    #[error("{0}")]
    Endpoint(String),
    #[error("state table: {0}")]
    State(#[from] synmigrate::state::StateError),
    /// A call to the local AWS services failed.
    #[error("{0}")]
    Aws(String),
    #[error("fixture: {0}")]
    Fixture(String),
    #[error("state machine definition: {0}")]
    Definition(String),
    /// A function answered an invocation with an error.
    #[error("{function} failed with {error_type}: {message}")]
    Function {
        function: String,
        error_type: String,
        message: String,
    },
    #[error("execution {arn} still running after {waited:?}")]
    Timeout { arn: String, waited: Duration },
}

fn aws<E: std::error::Error + 'static>(what: &str) -> impl FnOnce(E) -> LocalError + '_ {
    move |error| {
        LocalError::Aws(format!(
            "{what}: {}",
            aws_sdk_sfn::error::DisplayErrorContext(&error)
        ))
    }
}

/// How to set the deployment up.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// With the simulator: the Synapse token the functions use (a fixture user's, no secret).
    /// [`ExternalSynapse`] brings its own.
    pub token: String,
    /// The simulator's per-user throttle (Synapse's limits by default).
    pub throttle: ThrottleConfig,
    /// Where the functions send their S3 calls for the data (not for the artifacts bucket, which
    /// stays in the stack); `None`: the stack's moto. Requests are path-style and signed with the
    /// stack's test credentials. The simulator, when it runs, keeps its buckets there too.
    pub s3_endpoint: Option<String>,
    /// Concurrent processes of each function at most (Lambda's reserved concurrency).
    pub max_instances: usize,
    /// `SYNMIGRATE_MAX_SYNAPSE_RPM` of each function process.
    pub max_synapse_rpm: u32,
    /// `RUST_LOG` of the function processes.
    pub rust_log: String,
    /// More environment for the functions (tuning variables such as `SYNMIGRATE_UNIT_MAX_FILES`).
    pub function_env: Vec<(String, String)>,
    /// Where the function binaries are: `None`, the workspace's debug build (`cargo build`);
    /// `Some(dir)`, cargo-lambda's layout `dir/<binary>/bootstrap` (the release builds
    /// `sam build` deploys, in `target/lambda`).
    pub lambda_build_dir: Option<PathBuf>,
    /// Where the functions' output goes, one `<function>.log` each (as Lambda's log groups);
    /// `None`: this process's own.
    pub log_dir: Option<PathBuf>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            token: "migrator-token".to_owned(),
            throttle: ThrottleConfig::default(),
            s3_endpoint: None,
            max_instances: 4,
            max_synapse_rpm: 540,
            rust_log: "warn".to_owned(),
            function_env: Vec::new(),
            lambda_build_dir: None,
            log_dir: None,
        }
    }
}

/// A Synapse server the deployment does not start: the functions use its endpoints and token.
#[derive(Debug, Clone)]
pub struct ExternalSynapse {
    /// `https://repo-staging.prod.sagebase.org/repo/v1`, or a simulator's.
    pub repo_endpoint: String,
    /// `https://repo-staging.prod.sagebase.org/file/v1`, or a simulator's.
    pub file_endpoint: String,
    /// The token the functions send (redacted in `Debug`, never announced or logged).
    pub token: SynapseToken,
    /// The project to migrate, announced as `SYNAPSE_PROJECT` (the operator's word, not checked).
    pub project_id: Option<String>,
    /// The destination storage location, announced as `SYNAPSE_DESTINATION`.
    pub destination_id: Option<i64>,
}

/// The Synapse a deployment talks to.
enum Synapse {
    Simulator(RunningSim),
    External(ExternalSynapse),
}

impl Synapse {
    fn repo_endpoint(&self) -> String {
        match self {
            Self::Simulator(sim) => sim.repo_endpoint(),
            Self::External(external) => external.repo_endpoint.clone(),
        }
    }

    fn file_endpoint(&self) -> String {
        match self {
            Self::Simulator(sim) => sim.file_endpoint(),
            Self::External(external) => external.file_endpoint.clone(),
        }
    }
}

/// What [`LocalDeployment::start_with`] starts Synapse from.
enum Target<'a> {
    Simulator(&'a Fixture),
    External(ExternalSynapse),
}

/// A running local deployment; see the crate docs. Dropping it stops everything.
pub struct LocalDeployment {
    synapse: Synapse,
    host: LambdaHost,
    stack: AwsStack,
    sdk: SdkConfig,
    state_machine_arn: String,
    queue_url: String,
    inbox: Inbox,
    project_id: Option<String>,
    destination_id: Option<i64>,
}

impl LocalDeployment {
    /// Starts the stack, the functions' host and the simulator (seeded with `fixture`), and
    /// creates the table, the bucket, the queue and the state machine.
    pub async fn start(fixture: &Fixture, options: LocalOptions) -> Result<Self, LocalError> {
        Self::start_with(Target::Simulator(fixture), options).await
    }

    /// Like [`Self::start`], with the functions talking to `synapse` instead of a simulator
    /// (`options.token` and `options.throttle` do not apply).
    pub async fn start_external(
        synapse: ExternalSynapse,
        options: LocalOptions,
    ) -> Result<Self, LocalError> {
        for (name, value) in [
            ("Synapse repository endpoint", &synapse.repo_endpoint),
            ("Synapse file endpoint", &synapse.file_endpoint),
        ] {
            check_url(name, value)?;
        }
        Self::start_with(Target::External(synapse), options).await
    }

    async fn start_with(target: Target<'_>, options: LocalOptions) -> Result<Self, LocalError> {
        if let Some(endpoint) = &options.s3_endpoint {
            check_url("S3 endpoint", endpoint)?;
        }
        let project = match &target {
            Target::Simulator(fixture) => Some(
                fixture
                    .projects
                    .first()
                    .ok_or_else(|| LocalError::Fixture("the fixture has no project".into()))?
                    .name
                    .clone(),
            ),
            Target::External(_) => None,
        };
        let specs = FUNCTIONS
            .iter()
            .map(|(_, name)| {
                let max_instances = options.max_instances.max(1);
                match &options.lambda_build_dir {
                    None => FunctionSpec::workspace_binary(name, max_instances),
                    Some(dir) => FunctionSpec {
                        name: (*name).to_owned(),
                        binary: dir.join(name).join("bootstrap"),
                        max_instances,
                    },
                }
            })
            .collect();
        // The host's address goes to the stack; the functions' environment (the stack's
        // endpoint) goes to the host before any process starts.
        let host = LambdaHost::start(specs, Vec::new())
            .await
            .map_err(|e| LocalError::Stack(format!("{e:#}")))?;
        let stack_options = StackOptions {
            lambda_invoke_url: Some(host.invoke_url().to_owned()),
        };
        let stack = tokio::task::spawn_blocking(move || AwsStack::start_with(stack_options))
            .await
            .map_err(|e| LocalError::Stack(e.to_string()))?
            .map_err(|e| LocalError::Stack(format!("{e:#}")))?;
        let sdk = stack.sdk_config().await;
        let (synapse, token, project_id, destination_id) = match target {
            Target::Simulator(fixture) => {
                // The simulator's buckets are where the functions look for the data.
                let sim_sdk = match &options.s3_endpoint {
                    Some(endpoint) => sdk.to_builder().endpoint_url(endpoint).build(),
                    None => sdk.clone(),
                };
                let mut sim_config = SimConfig::new(sim_sdk);
                sim_config.throttle = options.throttle.clone();
                let sim = Simulator::start(sim_config, fixture).await?;
                let project = project.unwrap_or_default();
                let project_id = sim.project_id(&project).ok_or_else(|| {
                    LocalError::Fixture(format!("project {project:?} was not seeded"))
                })?;
                (
                    Synapse::Simulator(sim),
                    options.token.clone(),
                    Some(project_id),
                    destination(fixture, &options.token),
                )
            }
            Target::External(external) => {
                let token = external.token.expose().to_owned();
                let (project_id, destination_id) =
                    (external.project_id.clone(), external.destination_id);
                (
                    Synapse::External(external),
                    token,
                    project_id,
                    destination_id,
                )
            }
        };

        create_table(&aws_sdk_dynamodb::Client::new(&sdk), TABLE).await?;
        stack
            .s3_client()
            .await
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .map_err(aws("creating the artifacts bucket"))?;
        let queue_url = notifications::queue(&aws_sdk_sqs::Client::new(&sdk), QUEUE).await?;
        let definition = definition()?;
        let state_machine_arn = aws_sdk_sfn::Client::new(&sdk)
            .create_state_machine()
            .name(STATE_MACHINE)
            .definition(definition)
            .role_arn(format!(
                "arn:aws:iam::{ACCOUNT_ID}:role/synmigrate-state-machine"
            ))
            .send()
            .await
            .map_err(aws("creating the state machine"))?
            .state_machine_arn()
            .to_owned();

        let inbox = notifications::Inbox::set_up(&sdk).await?;
        // As deployed, the functions read the token from Secrets Manager.
        let secret_arn = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(TOKEN_SECRET)
            .secret_string(token)
            .send()
            .await
            .map_err(aws("creating the token secret"))?
            .arn()
            .unwrap_or_default()
            .to_owned();
        let mut env = stack.env_vars();
        env.extend(
            [
                (settings_env::TABLE, TABLE.to_owned()),
                (settings_env::BUCKET, BUCKET.to_owned()),
                (settings_env::REPO_ENDPOINT, synapse.repo_endpoint()),
                (settings_env::FILE_ENDPOINT, synapse.file_endpoint()),
                (settings_env::FAILURE_QUEUE_URL, queue_url.clone()),
                (settings_env::S3_FORCE_PATH_STYLE, "true".to_owned()),
                (
                    settings_env::MAX_SYNAPSE_RPM,
                    options.max_synapse_rpm.to_string(),
                ),
                (TOKEN_SECRET_ARN_ENV, secret_arn),
                ("RUST_LOG", options.rust_log.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        if let Some(endpoint) = &options.s3_endpoint {
            env.extend([
                (S3_ENDPOINT_ENV.to_owned(), endpoint.clone()),
                (
                    settings_env::ARTIFACTS_S3_ENDPOINT.to_owned(),
                    stack.endpoint_url().to_owned(),
                ),
            ]);
        }
        env.extend(options.function_env.iter().cloned());
        host.set_env(env);
        if let Some(dir) = &options.log_dir {
            host.log_to(dir);
        }

        Ok(Self {
            synapse,
            host,
            stack,
            sdk,
            state_machine_arn,
            queue_url,
            inbox,
            project_id,
            destination_id,
        })
    }

    /// The simulator.
    ///
    /// # Panics
    ///
    /// For a deployment against an external Synapse ([`Self::simulator`] is `None` then).
    pub fn sim(&self) -> &RunningSim {
        self.simulator()
            .expect("this deployment talks to an external Synapse, not the simulator")
    }

    /// The simulator, unless the deployment talks to an external Synapse.
    pub fn simulator(&self) -> Option<&RunningSim> {
        match &self.synapse {
            Synapse::Simulator(sim) => Some(sim),
            Synapse::External(_) => None,
        }
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// An S3 client for the stack (path-style: the endpoint is an IP address): the artifacts
    /// bucket, and the data unless [`LocalOptions::s3_endpoint`] put them elsewhere.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        self.stack.s3_client().await
    }

    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }

    pub fn table(&self) -> &str {
        TABLE
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Where the notifications of the executions' ends arrive.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The seeded project (the fixture's first), or the one [`ExternalSynapse`] names.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// With the simulator, the first external S3 location the token's user created: where a
    /// migration can go; or the one [`ExternalSynapse`] names.
    pub fn destination_id(&self) -> Option<i64> {
        self.destination_id
    }

    /// Running processes of one function (for tests of concurrency).
    pub fn running_instances(&self, function: &str) -> usize {
        self.host.running_instances(function)
    }

    /// The process ids of one function's running processes (the scale benchmark reads their
    /// peak memory from `/proc`).
    pub fn function_pids(&self, function: &str) -> Vec<u32> {
        self.host.process_ids(function)
    }

    /// What a CLI needs to reach this deployment, as environment variables.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut env = self.stack.env_vars();
        env.extend(
            [
                (
                    settings_env::STATE_MACHINE_ARN,
                    self.state_machine_arn.clone(),
                ),
                (settings_env::TABLE, TABLE.to_owned()),
                (settings_env::BUCKET, BUCKET.to_owned()),
                (settings_env::FAILURE_QUEUE_URL, self.queue_url.clone()),
                // The CLI's S3 client needs it too: the local endpoint is an IP address.
                (settings_env::S3_FORCE_PATH_STYLE, "true".to_owned()),
                (settings_env::REPO_ENDPOINT, self.synapse.repo_endpoint()),
                (settings_env::FILE_ENDPOINT, self.synapse.file_endpoint()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        // No S3 endpoint of the data: the CLI only reads the artifacts bucket, in the stack.
        env
    }

    /// Invokes one function directly, as `aws lambda invoke` would (to drive a single stage).
    pub async fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, LocalError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.host.invoke_url()
        );
        let response = synmigrate_testkit::http_client()
            .post(url)
            .json(payload)
            .send()
            .await
            .map_err(|e| LocalError::Aws(format!("invoking {function}: {e}")))?;
        let failed = response.headers().contains_key("x-amz-function-error");
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| LocalError::Aws(format!("the answer of {function}: {e}")))?;
        if failed {
            let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
            return Err(LocalError::Function {
                function: function.to_owned(),
                error_type: field("errorType"),
                message: field("errorMessage"),
            });
        }
        Ok(body)
    }

    /// Starts an execution of the migration state machine (moto needs a name).
    pub async fn start_execution(
        &self,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<String, LocalError> {
        Ok(aws_sdk_sfn::Client::new(&self.sdk)
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .map_err(aws("starting an execution"))?
            .execution_arn()
            .to_owned())
    }

    /// Waits until the execution is no longer running, at most `timeout`.
    pub async fn wait_for_execution(
        &self,
        arn: &str,
        timeout: Duration,
    ) -> Result<DescribeExecutionOutput, LocalError> {
        let sfn = aws_sdk_sfn::Client::new(&self.sdk);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let described = sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .map_err(aws("describing an execution"))?;
            if described.status() != &ExecutionStatus::Running {
                return Ok(described);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LocalError::Timeout {
                    arn: arn.to_owned(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the function processes first (their pooled connections would hold the simulator's
    /// graceful shutdown open), then the simulator, then the stack.
    pub async fn shutdown(self) {
        let Self {
            synapse,
            host,
            stack,
            ..
        } = self;
        drop(host);
        if let Synapse::Simulator(sim) = synapse {
            // A connection that outlives its process's kill is cut when `sim` is dropped instead.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, sim.shutdown()).await;
        }
        drop(stack);
    }
}

/// The repository's state machine definition file.
pub fn definition_path() -> PathBuf {
    workspace_root().join("statemachine/migration.asl.json")
}

/// The definition with the substitutions `template.yaml` makes, for the local functions.
pub fn definition() -> Result<String, LocalError> {
    let path = definition_path();
    let mut text = std::fs::read_to_string(&path)
        .map_err(|e| LocalError::Definition(format!("cannot read {}: {e}", path.display())))?;
    for (key, function) in FUNCTIONS {
        text = text.replace(
            &format!("${{{key}}}"),
            &format!(
                "arn:aws:lambda:{}:{ACCOUNT_ID}:function:{function}",
                synmigrate_testkit::REGION
            ),
        );
    }
    text = text.replace("${ArtifactsBucketName}", BUCKET);
    text = text.replace("${EventBusName}", EVENT_BUS);
    text = text.replace("${NotificationTopicArn}", &notifications::topic_arn());
    if let Some(at) = text.find("${") {
        let rest: String = text[at..].chars().take(40).collect();
        return Err(LocalError::Definition(format!(
            "unknown substitution left in the definition: {rest}"
        )));
    }
    Ok(text)
}

/// Refuses an endpoint that is not an absolute URL, naming the option.
fn check_url(name: &str, value: &str) -> Result<(), LocalError> {
    reqwest::Url::parse(value)
        .map(drop)
        .map_err(|e| LocalError::Endpoint(format!("the {name} {value:?} is not a URL: {e}")))
}

/// The first external S3 storage location created by the user holding `token`.
fn destination(fixture: &Fixture, token: &str) -> Option<i64> {
    let user = fixture.users.iter().find(|u| u.token == token)?;
    fixture
        .storage_locations
        .iter()
        .filter(|l| l.kind == LocationKind::ExternalS3)
        .find(|l| l.created_by.as_deref() == Some(user.user_name.as_str()))
        .map(|l| l.storage_location_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_gets_every_substitution() {
        let text = definition().unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["StartAt"], "Defaults");
        for (_, function) in FUNCTIONS {
            assert!(
                text.contains(&format!(":function:{function}\"")),
                "{function}"
            );
        }
    }

    #[test]
    fn the_destination_is_the_migrators_location() {
        let fixture = Fixture::generate(3, 1);
        assert_eq!(destination(&fixture, "migrator-token"), Some(7001));
        assert_eq!(destination(&fixture, "owner-token"), None);
    }
}
