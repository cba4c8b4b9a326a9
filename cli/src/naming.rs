//! Execution names and ARNs.
//!
//! Step Functions refuses a second execution with a name already used, so a name made of the
//! project, the destination and the start of a time window turns "start" into "start once per
//! window": the same command run twice (a retried cron job, a double click) finds the first
//! execution instead of racing it for the project lock.

use aws_sdk_sfn::primitives::{DateTime, DateTimeFormat};

use crate::error::CliError;

/// Step Functions' limit on execution names.
const MAX_NAME_CHARS: usize = 80;

/// Start of the `minutes`-long UTC window holding `now` (epoch seconds); `now` itself for 0.
pub fn window_start(now: i64, minutes: u32) -> i64 {
    let width = i64::from(minutes) * 60;
    if width == 0 {
        now
    } else {
        now - now.rem_euclid(width)
    }
}

/// `yyyymmddThhmm` (or `yyyymmddThhmmss`) in UTC.
pub fn utc_stamp(epoch_seconds: i64, with_seconds: bool) -> String {
    let stamp: String = rfc3339(epoch_seconds)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    let length = if with_seconds { 15 } else { 13 };
    stamp.chars().take(length).collect()
}

/// `2026-11-21T06:00:00Z`.
pub fn rfc3339(epoch_seconds: i64) -> String {
    DateTime::from_secs(epoch_seconds)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| epoch_seconds.to_string())
}

/// The execution name for a start at `now`: `syn123-12345-20261121T0600` for a one-hour window,
/// down to the second (`...T063640`) without a window; `syn123-aligned-...` for the run into
/// each folder's upload location.
pub fn execution_name(
    project: &str,
    destination: Option<i64>,
    now: i64,
    window_minutes: u32,
) -> String {
    let start = window_start(now, window_minutes);
    format!(
        "{}{}",
        execution_prefix(project, destination),
        utc_stamp(start, window_minutes == 0)
    )
}

/// The start of every execution name of a migration.
pub fn execution_prefix(project: &str, destination: Option<i64>) -> String {
    match destination {
        Some(id) => format!("{project}-{id}-"),
        None => format!("{project}-aligned-"),
    }
}

/// Checks a project id the way the pipeline's Init does, before anything is started.
pub fn check_project(project: &str) -> Result<(), CliError> {
    let valid = project
        .strip_prefix("syn")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--project must be a Synapse id like syn123, got {project:?}"
        )))
    }
}

/// Checks a destination storage location id (none: each folder's upload location).
pub fn check_destination(destination: Option<i64>) -> Result<(), CliError> {
    match destination {
        Some(id) if id <= 0 => Err(CliError::Usage(format!(
            "--destination must be a positive storage location id, got {id}"
        ))),
        _ => Ok(()),
    }
}

/// Checks a name given with `--execution-name` against Step Functions' rules (and the state
/// table's: no `#`).
pub fn check_execution_name(name: &str) -> Result<(), CliError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err(CliError::Usage(format!(
            "--execution-name must be 1 to {MAX_NAME_CHARS} letters, digits, '-' or '_', got {name:?}"
        )));
    }
    Ok(())
}

/// The ARN of execution `name` of a state machine:
/// `arn:aws:states:REGION:ACCOUNT:stateMachine:SM` -> `arn:aws:states:REGION:ACCOUNT:execution:SM:NAME`.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> Result<String, CliError> {
    let mut parts: Vec<&str> = state_machine_arn.split(':').collect();
    if parts.len() != 7 || parts[0] != "arn" || parts[5] != "stateMachine" {
        return Err(CliError::Usage(format!(
            "not a state machine ARN: {state_machine_arn:?}"
        )));
    }
    parts[5] = "execution";
    Ok(format!("{}:{name}", parts.join(":")))
}

/// The execution name: the last field of an execution ARN.
pub fn execution_name_of(execution_arn: &str) -> Result<&str, CliError> {
    match execution_arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "states", _, _, "execution", _, name] if !name.is_empty() => Ok(name),
        _ => Err(CliError::Usage(format!(
            "not an execution ARN: {execution_arn:?}"
        ))),
    }
}
