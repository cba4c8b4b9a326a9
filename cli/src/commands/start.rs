//! `synmigrate start`: one execution per migration and time window, or plainly none.

use std::io::Write;

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use synmigrate::stages::now;

use super::executions::{describe, describe_if_exists, execution_input};
use super::records::migration;
use crate::args::{Deployment, MigrationArgs, StartArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};
use crate::naming::{check_execution_name, execution_arn, execution_name};
use crate::render;

pub(super) async fn start(
    deployment: &Deployment,
    args: &StartArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let MigrationArgs {
        project,
        destination,
    } = &args.migration;
    migration(&args.migration)?;
    let options = args.options()?;
    let name = match &args.execution_name {
        Some(name) => {
            check_execution_name(name)?;
            name.clone()
        }
        None => execution_name(project, *destination, now(), args.window),
    };
    let state_machine = deployment.state_machine_arn()?;
    let input = execution_input(project, *destination, &options);
    let of_window = args.execution_name.is_none();
    let sfn = Aws::load().await.sfn();
    let arn = execution_arn(state_machine, &name)?;
    // Look first: on AWS, starting a running execution's name again with the same input
    // succeeds and returns that execution, which would read as a new start.
    if let Some(existing) = describe_if_exists(&sfn, &arn).await? {
        return not_started(&existing, &input, of_window, out);
    }
    let started = sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .name(&name)
        .input(input.to_string())
        .send()
        .await;
    match started {
        Ok(output) => {
            eprintln!("Started execution {name}");
            writeln!(out, "{}", output.execution_arn)?;
            Ok(Verdict::Clean)
        }
        Err(error) => {
            let service = error.as_service_error();
            if service.is_some_and(|e| e.is_execution_already_exists()) {
                // Started by someone else since we looked.
                not_started(&describe(&sfn, &arn).await?, &input, of_window, out)
            } else if service.is_some_and(|e| e.is_state_machine_does_not_exist()) {
                Err(CliError::NotFound(format!(
                    "state machine {state_machine} does not exist"
                )))
            } else if service.is_some_and(|e| e.is_invalid_arn()) {
                Err(CliError::Usage(format!(
                    "invalid state machine ARN {state_machine:?}"
                )))
            } else {
                Err(CliError::aws("Step Functions", error))
            }
        }
    }
}

/// `start` found an execution of its name: with the same input it hands that one on (its ARN,
/// so what follows, such as `watch --execution`, follows it); with another input it refuses,
/// since following it would show another migration than the one asked for.
pub(super) fn not_started(
    existing: &DescribeExecutionOutput,
    input: &serde_json::Value,
    of_window: bool,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let existing_input: Option<serde_json::Value> = existing
        .input()
        .and_then(|text| serde_json::from_str(text).ok());
    let same_input = existing_input.as_ref() == Some(input);
    let text = render::not_started(&render::ExistingExecution {
        name: existing.name().unwrap_or_default(),
        status: existing.status.as_str(),
        started_at: existing.start_date.secs(),
        of_window,
        same_input,
    });
    if !same_input {
        return Err(CliError::Usage(text));
    }
    eprintln!("{text}");
    writeln!(out, "{}", existing.execution_arn)?;
    Ok(Verdict::Clean)
}
