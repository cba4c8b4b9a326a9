//! `synmigrate report`: the run's rows (`--all`: the project's) as a table, CSV or JSON, and why
//! an execution recorded no run.

use std::io::Write;

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use synmigrate::report::{csv_row, ItemTotals, CSV_HEADER};
use synmigrate::state::{orphaned_copies, RunRecord, RunStatus};

use super::executions::{unless_unavailable, Executions};
use super::records::{each_item, migration, newest_run};
use crate::args::{Deployment, Format, ReportArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};
use crate::outcome::{self, Outcome};
use crate::render::{self, RunReport};

pub(super) async fn report(
    deployment: &Deployment,
    args: &ReportArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let migration = migration(&args.migration)?;
    let table = deployment.table()?;
    let aws = Aws::load().await;
    let store = aws.store(table);
    // Optional: without the state machine the report has only the state table to go by.
    let executions = deployment
        .state_machine_arn()
        .ok()
        .map(|state_machine| Executions {
            sfn: aws.sfn(),
            state_machine,
        });
    let runs = store.list_runs(&migration).await?;
    if let Some(executions) = &executions {
        if let Some(execution) = unless_unavailable(executions.without_run(args, &runs).await)? {
            return report_without_run(args, &execution, &runs, out);
        }
    }
    let run = reported_run(args, &runs, table, executions.is_some())?;
    let outcome = match &executions {
        Some(executions) if run.status != RunStatus::Succeeded => {
            unless_unavailable(executions.outcome_of(&run).await)?
        }
        _ => None,
    };
    let verdict = if render::run_failed(&run) || outcome.as_ref().is_some_and(Outcome::failed) {
        Verdict::Failures
    } else {
        Verdict::Clean
    };
    if args.format == Format::Csv {
        // The CSV keeps the official client's columns; whose rows they are goes to stderr.
        eprintln!("{}", render::rows_of(&run.run_id, args.all));
        writeln!(out, "{CSV_HEADER}")?;
    }
    let mut totals = ItemTotals::default();
    // The table needs every row in hand; CSV streams, JSON only counts.
    let mut rows = Vec::new();
    each_item(&store, &migration, |item| {
        if !(args.all || item.run_id == run.run_id) {
            return Ok(());
        }
        totals.add(&item);
        match args.format {
            Format::Table => rows.push(item),
            Format::Csv => out.write_all(csv_row(&item, args.migration.destination).as_bytes())?,
            Format::Json => {}
        }
        Ok(())
    })
    .await?;
    let report = RunReport {
        project_id: args.migration.project.clone(),
        destination_storage_location_id: args.migration.destination,
        run,
        outcome,
        all_rows: args.all,
        totals,
        orphaned_copies: orphaned_copies(&store, &migration).await?,
    };
    match args.format {
        Format::Table => out.write_all(render::report_table(&report, &rows).as_bytes())?,
        Format::Json => out.write_all(render::report_json(&report).as_bytes())?,
        Format::Csv => {}
    }
    Ok(verdict)
}

/// The run `report` shows: the one `--run` names, or the newest.
pub(super) fn reported_run(
    args: &ReportArgs,
    runs: &[RunRecord],
    table: &str,
    executions_known: bool,
) -> Result<RunRecord, CliError> {
    let described = format!(
        "{} into {}",
        args.migration.project,
        render::destination_text(args.migration.destination)
    );
    match &args.run {
        Some(run_id) => runs
            .iter()
            .find(|run| &run.run_id == run_id)
            .cloned()
            .ok_or_else(|| {
                CliError::NotFound(format!(
                    "no run {run_id} of {described} in table {table}; `synmigrate status` lists \
                     the runs"
                ))
            }),
        None => newest_run(runs).cloned().ok_or_else(|| {
            let hint = if executions_known {
                "start one with `synmigrate start`"
            } else {
                "with --state-machine-arn (or SYNMIGRATE_STATE_MACHINE_ARN) the report says why \
                 an execution recorded none"
            };
            CliError::NotFound(format!(
                "no runs of {described} in table {table} yet; {hint}"
            ))
        }),
    }
}

/// An execution the report is about that recorded no run: its verdict instead of rows (on
/// stdout as the table; on stderr for CSV and JSON, whose stdout stays empty).
pub(super) fn report_without_run(
    args: &ReportArgs,
    execution: &DescribeExecutionOutput,
    runs: &[RunRecord],
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let outcome = outcome::outcome(execution.into(), None);
    let text = render::report_without_run(
        &args.migration.project,
        args.migration.destination,
        execution.name().unwrap_or_default(),
        &outcome,
        newest_run(runs).map(|run| run.run_id.as_str()),
    );
    match args.format {
        Format::Table => out.write_all(text.as_bytes())?,
        Format::Csv | Format::Json => eprint!("{text}"),
    }
    Ok(outcome.verdict())
}
