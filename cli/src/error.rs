//! The CLI's errors and exit codes.
//!
//! Scripts (and `make demo`) branch on the exit code, so each outcome has its own:
//! 0 the command did what was asked and the migration (if any) had no failures,
//! 1 the migration finished with failures or its execution failed,
//! 2 a usage or configuration problem (named in the message),
//! 3 an AWS service could not be reached or refused a request.

use std::process::ExitCode;

use synmigrate::state::StateError;

/// The command worked and found nothing wrong.
pub const EXIT_OK: u8 = 0;
/// The migration finished with failures, or its execution failed.
pub const EXIT_FAILURES: u8 = 1;
/// A flag or setting is missing or wrong, or names something that does not exist.
pub const EXIT_USAGE: u8 = 2;
/// An AWS request failed.
pub const EXIT_SERVICE: u8 = 3;

/// What a command that ran to its end found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing failed.
    Clean,
    /// The migration (or its execution) failed, or items ended ERRORED.
    Failures,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clean => EXIT_OK,
            Verdict::Failures => EXIT_FAILURES,
        }
    }
}

impl From<Verdict> for ExitCode {
    fn from(verdict: Verdict) -> Self {
        ExitCode::from(verdict.exit_code())
    }
}

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A missing or malformed flag, setting or option; the message names it.
    #[error("{0}")]
    Usage(String),
    /// Something named on the command line (a run, an execution, a state machine) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state table could not be read.
    #[error("state table: {0}")]
    State(#[from] StateError),
    /// The migration library refused or failed (a stage's work done by the CLI).
    #[error("{0}")]
    Migration(#[from] synmigrate::Error),
    /// Step Functions or S3 failed.
    #[error("{service}: {message}")]
    Aws {
        service: &'static str,
        message: String,
    },
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::NotFound(_) => EXIT_USAGE,
            CliError::State(StateError::Invalid(_) | StateError::NotFound(_)) => EXIT_USAGE,
            CliError::Migration(
                synmigrate::Error::InvalidInput(_)
                | synmigrate::Error::Plan(_)
                | synmigrate::Error::State(StateError::Invalid(_) | StateError::NotFound(_)),
            ) => EXIT_USAGE,
            CliError::State(_)
            | CliError::Migration(_)
            | CliError::Aws { .. }
            | CliError::Output(_) => EXIT_SERVICE,
        }
    }

    /// A failed AWS request, with the service's error code and message (never credentials).
    pub(crate) fn aws<E>(service: &'static str, error: E) -> Self
    where
        E: std::error::Error + 'static,
    {
        CliError::Aws {
            service,
            message: synmigrate::error_chain(&error),
        }
    }
}
