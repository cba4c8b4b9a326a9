//! One verdict on how a migration's execution went, decided from Step Functions' status and the
//! run record together: either alone misleads (an execution succeeds while its run has ERRORED
//! items under continueOnError; a run stays RUNNING after its execution was stopped).

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use synmigrate::error::types::ALREADY_RUNNING;
use synmigrate::state::{RunRecord, RunStatus, StatusName};

use crate::error::Verdict;

/// Most characters of an execution's failure cause shown.
const MAX_CAUSE_CHARS: usize = 2_000;

/// What Step Functions says of an execution (DescribeExecution).
#[derive(Debug, Clone, Copy)]
pub struct ExecutionState<'a> {
    pub status: &'a ExecutionStatus,
    pub error: Option<&'a str>,
    pub cause: Option<&'a str>,
}

impl<'a> From<&'a DescribeExecutionOutput> for ExecutionState<'a> {
    fn from(execution: &'a DescribeExecutionOutput) -> Self {
        Self {
            status: &execution.status,
            error: execution.error(),
            cause: execution.cause(),
        }
    }
}

/// The one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The execution succeeded and its run finished SUCCEEDED without ERRORED items.
    Succeeded,
    /// The execution succeeded although items ended ERRORED: continueOnError kept it going.
    FinishedWithFailures {
        failures: u64,
    },
    /// The execution succeeded but recorded no run in this state table.
    NoRun,
    /// The execution succeeded but its run is recorded as not succeeded.
    RunLeft(RunStatus),
    /// Init found another execution holding the project lock.
    AlreadyRunning,
    /// The execution failed (or waits for a redrive after failing).
    Failed {
        error: Option<String>,
        cause: Option<String>,
    },
    /// Stopped from outside.
    Aborted,
    TimedOut,
    Running,
    /// A status this CLI does not know.
    Other(String),
}

/// The verdict on an execution and the run it recorded (if any).
pub fn outcome(execution: ExecutionState<'_>, run: Option<&RunRecord>) -> Outcome {
    match execution.status {
        ExecutionStatus::Succeeded => succeeded_outcome(run),
        ExecutionStatus::Failed | ExecutionStatus::PendingRedrive
            if execution.error == Some(ALREADY_RUNNING) =>
        {
            Outcome::AlreadyRunning
        }
        ExecutionStatus::Failed | ExecutionStatus::PendingRedrive => Outcome::Failed {
            error: non_empty(execution.error),
            cause: non_empty(execution.cause).map(|c| c.chars().take(MAX_CAUSE_CHARS).collect()),
        },
        ExecutionStatus::Aborted => Outcome::Aborted,
        ExecutionStatus::TimedOut => Outcome::TimedOut,
        ExecutionStatus::Running => Outcome::Running,
        other => Outcome::Other(other.to_string()),
    }
}

/// A succeeded execution is only as good as the run it recorded.
fn succeeded_outcome(run: Option<&RunRecord>) -> Outcome {
    let Some(run) = run else {
        return Outcome::NoRun;
    };
    let errored = run
        .counters
        .by_status
        .get(&StatusName::Errored)
        .copied()
        .unwrap_or_default();
    match (u64::try_from(errored).unwrap_or_default(), run.status) {
        (failures @ 1.., _) => Outcome::FinishedWithFailures { failures },
        (0, RunStatus::Succeeded) => Outcome::Succeeded,
        (0, status) => Outcome::RunLeft(status),
    }
}

fn non_empty(text: Option<&str>) -> Option<String> {
    text.filter(|t| !t.trim().is_empty()).map(str::to_owned)
}

/// How a lock left by an execution that did not end by itself goes away.
const LOCK_NOTE: &str = "a project lock it held expires by itself (`synmigrate status` shows when)";

impl Outcome {
    /// Whether the migration (or its execution) went wrong: exit code 1.
    pub fn failed(&self) -> bool {
        !matches!(self, Outcome::Succeeded | Outcome::Running)
    }

    pub fn verdict(&self) -> Verdict {
        if self.failed() {
            Verdict::Failures
        } else {
            Verdict::Clean
        }
    }

    /// The verdict in one line.
    pub fn line(&self) -> String {
        match self {
            Outcome::Succeeded => "Succeeded".to_owned(),
            Outcome::FinishedWithFailures { failures } => format!(
                "Finished with {failures} failure{} (continueOnError)",
                if *failures == 1 { "" } else { "s" }
            ),
            Outcome::NoRun => "Succeeded without recording a run in this state table (is it \
                               the deployment's table?)"
                .to_owned(),
            Outcome::RunLeft(status) => format!(
                "Ended with its run {}: the execution succeeded but did not finish the run",
                status.as_str()
            ),
            Outcome::AlreadyRunning => format!(
                "Not run: another execution holds the project lock ({ALREADY_RUNNING}); \
                 `synmigrate status` shows which"
            ),
            Outcome::Failed { error, cause } => match (error, cause) {
                (Some(error), Some(cause)) => format!("Failed: {error}: {cause}"),
                (Some(error), None) => format!("Failed: {error}"),
                (None, Some(cause)) => format!("Failed: {cause}"),
                (None, None) => "Failed (Step Functions recorded no error)".to_owned(),
            },
            Outcome::Aborted => format!("Aborted: the execution was stopped; {LOCK_NOTE}"),
            Outcome::TimedOut => {
                format!("Timed out: the execution ran past its time limit; {LOCK_NOTE}")
            }
            Outcome::Running => "Running".to_owned(),
            Outcome::Other(status) => format!("Ended {status}"),
        }
    }
}
