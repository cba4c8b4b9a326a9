//! Step Functions as the commands see it: the execution input `start` sends and `watch` reads
//! back, one execution described, the newest of a migration, and what only Step Functions knows
//! about a run (for `report`).

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use serde::Deserialize;
use synmigrate::config::MigrationOptions;
use synmigrate::state::RunRecord;

use crate::args::{MigrationArgs, ReportArgs};
use crate::error::CliError;
use crate::naming::{check_execution_name, execution_arn, execution_name_of, execution_prefix};
use crate::outcome::{self, Outcome};

/// The execution input the state machine expects.
pub fn execution_input(
    project: &str,
    destination: Option<i64>,
    options: &MigrationOptions,
) -> serde_json::Value {
    serde_json::json!({
        "projectId": project,
        "destinationStorageLocationId": destination,
        "options": options,
    })
}

/// The part of an execution's input `watch` needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExecutionInput {
    pub(super) project_id: String,
    #[serde(default)]
    pub(super) destination_storage_location_id: Option<i64>,
}

pub(super) async fn describe(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
) -> Result<DescribeExecutionOutput, CliError> {
    describe_if_exists(sfn, arn)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("execution {arn} does not exist")))
}

/// The execution, or `None` if there is none of that ARN.
pub(super) async fn describe_if_exists(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
) -> Result<Option<DescribeExecutionOutput>, CliError> {
    match sfn.describe_execution().execution_arn(arn).send().await {
        Ok(execution) => Ok(Some(execution)),
        Err(error) => {
            let service = error.as_service_error();
            if service.is_some_and(|e| e.is_execution_does_not_exist()) {
                Ok(None)
            } else if service.is_some_and(|e| e.is_invalid_arn()) {
                Err(CliError::Usage(format!("invalid execution ARN {arn:?}")))
            } else {
                Err(CliError::aws("Step Functions", error))
            }
        }
    }
}

/// The ARN of the newest execution started for a migration, if any (ListExecutions lists newest
/// first).
pub(super) async fn newest_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    project: &str,
    destination: Option<i64>,
) -> Result<Option<String>, CliError> {
    let prefix = execution_prefix(project, destination);
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .into_paginator()
        .items()
        .send();
    while let Some(execution) = pages.try_next().await.map_err(|error| {
        if error
            .as_service_error()
            .is_some_and(|e| e.is_state_machine_does_not_exist())
        {
            CliError::NotFound(format!("state machine {state_machine} does not exist"))
        } else {
            CliError::aws("Step Functions", error)
        }
    })? {
        if execution.name.starts_with(&prefix) {
            return Ok(Some(execution.execution_arn));
        }
    }
    Ok(None)
}

/// Step Functions only adds to a report: when it cannot be asked (no permission, another
/// deployment's state machine), the report goes on from the state table, saying so.
pub(super) fn unless_unavailable<T>(
    answer: Result<Option<T>, CliError>,
) -> Result<Option<T>, CliError> {
    match answer {
        Err(error @ (CliError::Aws { .. } | CliError::NotFound(_))) => {
            eprintln!("synmigrate: Step Functions not asked ({error}); from the state table alone");
            Ok(None)
        }
        answer => answer,
    }
}

/// The deployment's state machine, for what only Step Functions knows about a run.
pub(super) struct Executions<'a> {
    pub(super) sfn: aws_sdk_sfn::Client,
    pub(super) state_machine: &'a str,
}

impl Executions<'_> {
    pub(super) async fn named(
        &self,
        name: &str,
    ) -> Result<Option<DescribeExecutionOutput>, CliError> {
        describe_if_exists(&self.sfn, &execution_arn(self.state_machine, name)?).await
    }

    /// The execution a report is about (`--run`'s, or the migration's newest) when it has no
    /// run record: Init failed before opening one, or has not opened it yet.
    pub(super) async fn without_run(
        &self,
        args: &ReportArgs,
        runs: &[RunRecord],
    ) -> Result<Option<DescribeExecutionOutput>, CliError> {
        let name = match &args.run {
            // Not an execution name: no execution to look for.
            Some(name) if check_execution_name(name).is_err() => return Ok(None),
            Some(name) => name.clone(),
            None => {
                let MigrationArgs {
                    project,
                    destination,
                } = &args.migration;
                match newest_execution(&self.sfn, self.state_machine, project, *destination).await?
                {
                    Some(arn) => execution_name_of(&arn)?.to_owned(),
                    None => return Ok(None),
                }
            }
        };
        if runs.iter().any(|run| run.run_id == name) {
            return Ok(None);
        }
        self.named(&name).await
    }

    /// How the run's execution went, if Step Functions still knows it (90 days).
    pub(super) async fn outcome_of(&self, run: &RunRecord) -> Result<Option<Outcome>, CliError> {
        Ok(self
            .named(&run.run_id)
            .await?
            .map(|execution| outcome::outcome((&execution).into(), Some(run))))
    }
}
