//! A local Lambda host: runs the project's real function binaries behind the Lambda Runtime API and
//! accepts `Invoke` calls, so that Step Functions in the local stack executes real function code.
//!
//! - `POST /2015-03-31/functions/{name}/invocations` (what `scripts/stack.py --lambda-invoke-url`
//!   forwards to) queues the event for that function and answers with its result; a function error
//!   answers with the error document and `x-amz-function-error: Unhandled`, as Lambda does.
//! - Each function gets a pool of processes of its binary: a new process starts when an event waits
//!   and no process is idle, up to [`FunctionSpec::max_instances`] (Lambda's concurrency), so a Map
//!   state's parallel invocations really run in parallel.
//! - Each process gets its own Runtime API endpoint (`AWS_LAMBDA_RUNTIME_API`), so the host knows
//!   which invocation it holds: when the process dies (a panic, out of memory, SIGKILL) that
//!   invocation is answered at once with `Runtime.ExitError`, and one past its deadline with
//!   `Sandbox.Timedout` (its process is killed), as Lambda answers them.
//!
//! The binaries are the ones `cargo build` made (`target/debug/<name>`), run with the environment the
//! caller gives (the local stack's endpoint, table and bucket names), like Lambda's configuration.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

/// How long one invocation may run, as the deadline the function sees.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(900);

/// One function to host.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    /// The Lambda function name (the last part of the ARN the state machine calls).
    pub name: String,
    /// The executable implementing it with `lambda_runtime`.
    pub binary: PathBuf,
    /// Concurrent instances at most.
    pub max_instances: usize,
}

impl FunctionSpec {
    /// A binary of this workspace's target directory (`CARGO_TARGET_DIR` or `target/`, debug profile).
    pub fn workspace_binary(name: &str, max_instances: usize) -> Self {
        Self {
            name: name.to_owned(),
            binary: crate::workspace_binary(name),
            max_instances,
        }
    }
}

/// The outcome of one invocation: the function's response or its error document.
enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

struct Invocation {
    request_id: String,
    event: Bytes,
    reply: oneshot::Sender<Outcome>,
}

/// One hosted function: its queue of events, its processes and the replies it owes.
struct Function {
    spec: FunctionSpec,
    /// The environment of processes started from now on (see [`LambdaHost::set_env`]).
    env: Mutex<Vec<(String, String)>>,
    /// The file its processes' standard output and error go to (see [`LambdaHost::log_to`]);
    /// `None`: the host's own.
    log_file: Mutex<Option<PathBuf>>,
    queue: mpsc::UnboundedSender<Invocation>,
    next: AsyncMutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    processes: Mutex<Vec<(Child, Arc<Process>)>>,
    idle: AtomicU64,
    /// Processes that exited while events waited: after a few, the host stops restarting them.
    crashes: AtomicU64,
}

/// One process of a function: its own Runtime API endpoint, so the host knows which invocation
/// it holds and answers that one at once when the process dies, as Lambda does.
struct Process {
    /// Weak: the function owns its processes.
    function: Weak<Function>,
    /// The request id of the invocation this process is working on.
    holds: Mutex<Option<String>>,
    server: JoinHandle<()>,
}

/// Standard output and error appending to the file at `path`.
fn log_outputs(path: &std::path::Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

/// Restarts of a function whose processes keep exiting before the host gives up on its events.
const MAX_CRASHES: u64 = 3;

impl Function {
    /// Processes still running. One that exited while it held an invocation answers it with
    /// Lambda's `Runtime.ExitError`, naming the exit status (a signal for a SIGKILL).
    fn live_processes(&self) -> usize {
        let mut processes = self.processes.lock().expect("process list lock");
        processes.retain_mut(|(child, process)| {
            let status = match child.try_wait() {
                Ok(None) => return true,
                Ok(Some(status)) => status.to_string(),
                Err(error) => error.to_string(),
            };
            process.server.abort();
            if let Some(id) = process.holds.lock().expect("holds lock").take() {
                let message =
                    format!("RequestId: {id} Error: Runtime exited ({status}) before answering");
                settle(
                    self,
                    &id,
                    Outcome::Error(error_document("Runtime.ExitError", &message)),
                );
            }
            false
        });
        processes.len()
    }

    /// Starts a process when an event would otherwise wait for an idle one.
    async fn ensure_capacity(self: &Arc<Self>) -> anyhow::Result<()> {
        let live = self.live_processes();
        if self.idle.load(Ordering::SeqCst) > 0 || live >= self.spec.max_instances {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let runtime_api = listener.local_addr()?.to_string();
        let process = Arc::new_cyclic(|weak: &Weak<Process>| {
            let router = runtime_router(weak.clone());
            Process {
                function: Arc::downgrade(self),
                holds: Mutex::new(None),
                server: tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                }),
            }
        });
        let mut processes = self.processes.lock().expect("process list lock");
        if processes.len() >= self.spec.max_instances {
            process.server.abort();
            return Ok(());
        }
        let env = self.env.lock().expect("env lock").clone();
        let (stdout, stderr) = match self.log_file.lock().expect("log file lock").as_deref() {
            Some(path) => log_outputs(path)?,
            None => (Stdio::inherit(), Stdio::inherit()),
        };
        let child = Command::new(&self.spec.binary)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.spec.name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.spec.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it first: cargo build --workspace)",
                    self.spec.binary.display()
                )
            });
        match child {
            Ok(child) => {
                processes.push((child, process));
                Ok(())
            }
            Err(error) => {
                process.server.abort();
                Err(error)
            }
        }
    }

    /// Kills the process holding invocation `id` (it ran past its deadline).
    fn kill_holder(&self, id: &str) {
        let mut processes = self.processes.lock().expect("process list lock");
        for (child, process) in processes.iter_mut() {
            if process.holds.lock().expect("holds lock").as_deref() == Some(id) {
                let _ = child.start_kill();
            }
        }
    }

    /// Answers every queued event with an error (its processes cannot start).
    fn fail_queued(&self, message: &str) {
        if let Ok(mut queue) = self.next.try_lock() {
            while let Ok(invocation) = queue.try_recv() {
                let _ = invocation
                    .reply
                    .send(Outcome::Error(error_document("Runtime.ExitError", message)));
            }
        }
    }

    /// Waits for an invocation's outcome, restarting processes that exit while it waits.
    async fn wait_for(
        self: &Arc<Self>,
        request_id: &str,
        mut answer: oneshot::Receiver<Outcome>,
    ) -> Outcome {
        let deadline = tokio::time::Instant::now() + INVOCATION_TIMEOUT;
        loop {
            tokio::select! {
                outcome = &mut answer => {
                    return outcome.unwrap_or_else(|_| Outcome::Error(error_document(
                        "Runtime.ExitError",
                        "the function process exited before answering",
                    )));
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if tokio::time::Instant::now() > deadline {
                // Lambda stops the sandbox of an invocation past its timeout.
                self.kill_holder(request_id);
                self.waiting
                    .lock()
                    .expect("waiting lock")
                    .remove(request_id);
                return Outcome::Error(error_document(
                    "Sandbox.Timedout",
                    &format!(
                        "RequestId: {request_id} Error: Task timed out after {} seconds",
                        INVOCATION_TIMEOUT.as_secs()
                    ),
                ));
            }
            if self.live_processes() == 0 {
                let message = format!(
                    "{} exited before answering (its output is above)",
                    self.spec.name
                );
                if self.crashes.fetch_add(1, Ordering::SeqCst) >= MAX_CRASHES {
                    self.fail_queued(&message);
                } else if let Err(error) = self.ensure_capacity().await {
                    self.fail_queued(&format!("{error:#}"));
                }
            }
        }
    }
}

/// A running Lambda host; its processes and servers stop when it is dropped.
pub struct LambdaHost {
    invoke_url: String,
    functions: HashMap<String, Arc<Function>>,
    servers: Vec<JoinHandle<()>>,
}

impl LambdaHost {
    /// Starts the Invoke endpoint and one Runtime API endpoint per function, all on 127.0.0.1.
    /// Processes start lazily, at the first invocation.
    pub async fn start(
        specs: Vec<FunctionSpec>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let mut functions = HashMap::new();
        let mut servers = Vec::new();
        for spec in specs {
            if !spec.binary.exists() {
                bail!(
                    "no binary at {} for function {} (build it first: cargo build --workspace)",
                    spec.binary.display(),
                    spec.name
                );
            }
            let (queue, receiver) = mpsc::unbounded_channel();
            let function = Arc::new(Function {
                spec: spec.clone(),
                env: Mutex::new(env.clone()),
                log_file: Mutex::new(None),
                queue,
                next: AsyncMutex::new(receiver),
                waiting: Mutex::new(HashMap::new()),
                processes: Mutex::new(Vec::new()),
                idle: AtomicU64::new(0),
                crashes: AtomicU64::new(0),
            });
            functions.insert(spec.name.clone(), function);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let invoke_url = format!("http://{}", listener.local_addr()?);
        let invoke = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .with_state(Arc::new(functions.clone()));
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, invoke).await;
        }));
        Ok(Self {
            invoke_url,
            functions,
            servers,
        })
    }

    /// Where `Invoke` calls go: give it to `StackOptions::lambda_invoke_url`.
    pub fn invoke_url(&self) -> &str {
        &self.invoke_url
    }

    /// Replaces the environment of every function's processes started from now on. Processes
    /// start at the first invocation, so a caller that needs the host's address (for the stack)
    /// before it knows the functions' environment (the stack's endpoint) sets it here.
    pub fn set_env(&self, env: Vec<(String, String)>) {
        for function in self.functions.values() {
            *function.env.lock().expect("env lock") = env.clone();
        }
    }

    /// Sends the output of every function's processes started from now on to `dir/<name>.log`
    /// (appended), as Lambda sends it to the function's log group: tests read what the
    /// functions logged.
    pub fn log_to(&self, dir: &std::path::Path) {
        for (name, function) in &self.functions {
            *function.log_file.lock().expect("log file lock") =
                Some(dir.join(format!("{name}.log")));
        }
    }

    /// How many processes of a function have been started so far and are still running.
    pub fn running_instances(&self, name: &str) -> usize {
        self.functions.get(name).map_or(0, |f| f.live_processes())
    }

    /// The operating system ids of a function's running processes (to read their memory use
    /// from `/proc`, as the scale benchmark does).
    pub fn process_ids(&self, name: &str) -> Vec<u32> {
        let Some(function) = self.functions.get(name) else {
            return Vec::new();
        };
        function.live_processes();
        let processes = function.processes.lock().expect("process list lock");
        processes
            .iter()
            .filter_map(|(child, _)| child.id())
            .collect()
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
        for function in self.functions.values() {
            for (child, process) in function
                .processes
                .lock()
                .expect("process list lock")
                .iter_mut()
            {
                let _ = child.start_kill();
                process.server.abort();
            }
        }
    }
}

fn error_document(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

async fn invoke(
    State(functions): State<Arc<HashMap<String, Arc<Function>>>>,
    Path(name): Path<String>,
    event: Bytes,
) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let name = name.rsplit(':').next().unwrap_or(&name).to_owned();
    let outcome = match functions.get(&name) {
        None => Outcome::Error(error_document(
            "ResourceNotFoundException",
            &format!("function {name} is not hosted here"),
        )),
        Some(function) => {
            let (reply, answer) = oneshot::channel();
            let request_id = format!("local-{}", NEXT_ID.fetch_add(1, Ordering::SeqCst));
            let started = function.ensure_capacity().await;
            let queued = function.queue.send(Invocation {
                request_id: request_id.clone(),
                event,
                reply,
            });
            match (started, queued) {
                (Err(error), _) => {
                    Outcome::Error(error_document("Local.StartFailed", &format!("{error:#}")))
                }
                (_, Err(_)) => {
                    Outcome::Error(error_document("Local.HostStopped", "the host stopped"))
                }
                _ => function.wait_for(&request_id, answer).await,
            }
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    match outcome {
        Outcome::Response(body) => (StatusCode::OK, headers, body).into_response(),
        Outcome::Error(body) => {
            headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            (StatusCode::OK, headers, body).into_response()
        }
    }
}

/// The Runtime API of one process (see [`Process`]).
fn runtime_router(process: Weak<Process>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_event))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(process)
}

/// The process and its function, while both exist.
fn owners(process: &Weak<Process>) -> Option<(Arc<Process>, Arc<Function>)> {
    let process = process.upgrade()?;
    let function = process.function.upgrade()?;
    Some((process, function))
}

/// `GET .../invocation/next`: a process waits here for its next event.
async fn next_event(State(process): State<Weak<Process>>) -> Response {
    let Some((process, function)) = owners(&process) else {
        return StatusCode::GONE.into_response();
    };
    function.idle.fetch_add(1, Ordering::SeqCst);
    let invocation = function.next.lock().await.recv().await;
    function.idle.fetch_sub(1, Ordering::SeqCst);
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(INVOCATION_TIMEOUT)
        .as_millis();
    let arn = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:{}",
        function.spec.name
    );
    let mut headers = HeaderMap::new();
    let header = |value: &str| HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""));
    headers.insert(
        "lambda-runtime-aws-request-id",
        header(&invocation.request_id),
    );
    headers.insert("lambda-runtime-deadline-ms", header(&deadline.to_string()));
    headers.insert("lambda-runtime-invoked-function-arn", header(&arn));
    headers.insert(
        "lambda-runtime-trace-id",
        header("Root=1-00000000-000000000000000000000000"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    *process.holds.lock().expect("holds lock") = Some(invocation.request_id.clone());
    function
        .waiting
        .lock()
        .expect("waiting lock")
        .insert(invocation.request_id.clone(), invocation.reply);
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn settle(function: &Function, id: &str, outcome: Outcome) -> StatusCode {
    match function.waiting.lock().expect("waiting lock").remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// The process answered invocation `id`: it holds nothing any more.
fn answered(process: &Weak<Process>, id: &str, outcome: Outcome) -> StatusCode {
    let Some((process, function)) = owners(process) else {
        return StatusCode::GONE;
    };
    process.holds.lock().expect("holds lock").take();
    settle(&function, id, outcome)
}

async fn invocation_response(
    State(process): State<Weak<Process>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    answered(&process, &id, Outcome::Response(body))
}

async fn invocation_error(
    State(process): State<Weak<Process>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    answered(&process, &id, Outcome::Error(body))
}

async fn init_error(State(process): State<Weak<Process>>, body: Bytes) -> StatusCode {
    let Some((_, function)) = owners(&process) else {
        return StatusCode::GONE;
    };
    let message = format!(
        "{} failed to initialise: {}",
        function.spec.name,
        String::from_utf8_lossy(&body)
    );
    function.fail_queued(&message);
    StatusCode::ACCEPTED
}
