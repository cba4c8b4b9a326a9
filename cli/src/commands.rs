//! The commands: each checks its flags and settings first (a usage error needs no AWS), then
//! talks to Step Functions, DynamoDB and S3 through the default AWS configuration, so
//! `AWS_ENDPOINT_URL` points every client at a local stack.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use synmigrate::config::MigrationOptions;
use synmigrate::context::followers_key;
/// Where Plan writes a run's manifest (the tests and the watch read it).
pub use synmigrate::context::manifest_key;
use synmigrate::plan::WorkUnit;
use synmigrate::report::{csv_row, ItemTotals, CSV_HEADER};
use synmigrate::stages::now;
use synmigrate::state::dynamo::DynamoStore;
use synmigrate::state::{
    orphaned_copies, ItemRecord, MigrationKey, RunRecord, RunStatus, StateStore,
};

use crate::args::{Command, Deployment, Format, MigrationArgs, ReportArgs, StartArgs, WatchArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};
use crate::naming::{
    check_destination, check_execution_name, check_project, execution_arn, execution_name,
    execution_name_of, execution_prefix,
};
use crate::outcome::{self, Outcome};
use crate::render::{self, Planned, Progress, Rates, RunReport};

/// Items per state table page.
const PAGE: u32 = 500;
/// A plain (non-terminal) progress line is repeated at least this often, even when unchanged.
const PLAIN_REPEAT: Duration = Duration::from_secs(30);

/// Runs one command, writing its result to `out` (progress goes to standard error).
pub async fn run(
    deployment: &Deployment,
    command: &Command,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    match command {
        Command::Start(args) => start(deployment, args, out).await,
        Command::Watch(args) => watch(deployment, args, out).await,
        Command::Report(args) => report(deployment, args, out).await,
        Command::Status(args) => status(deployment, args, out).await,
        Command::Estimate(args) => crate::estimate::estimate(deployment, args, out).await,
        Command::Verify(args) => crate::verify::verify(deployment, args, out).await,
    }
}

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
struct ExecutionInput {
    project_id: String,
    #[serde(default)]
    destination_storage_location_id: Option<i64>,
}

pub(crate) fn migration(args: &MigrationArgs) -> Result<MigrationKey, CliError> {
    check_project(&args.project)?;
    check_destination(args.destination)?;
    MigrationKey::with_destination(&args.project, args.destination).map_err(CliError::from)
}

async fn start(
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
fn not_started(
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

async fn describe(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
) -> Result<DescribeExecutionOutput, CliError> {
    describe_if_exists(sfn, arn)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("execution {arn} does not exist")))
}

/// The execution, or `None` if there is none of that ARN.
async fn describe_if_exists(
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
async fn newest_execution(
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

/// What Plan decided, once its manifest exists: every unit's files (the followers' too), the
/// lead units' bytes (the followers' sources are the same copies).
async fn read_plan(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    run_id: &str,
) -> Result<Option<Planned>, CliError> {
    let Some(leads) = read_units(s3, bucket, &manifest_key(run_id)).await? else {
        return Ok(None);
    };
    let followers = read_units(s3, bucket, &followers_key(run_id))
        .await?
        .unwrap_or_default();
    Ok(Some(Planned {
        files: leads
            .iter()
            .chain(&followers)
            .map(|u| u.items.len() as u64)
            .sum(),
        bytes: leads.iter().map(|u| u.total_bytes).sum(),
    }))
}

/// The units of a manifest, or `None` if it is not written (yet).
async fn read_units(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<WorkUnit>>, CliError> {
    let object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok(None)
        }
        Err(error) => return Err(CliError::aws("S3", error)),
    };
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| CliError::aws("S3", e))?
        .into_bytes();
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| CliError::Aws {
            service: "S3",
            message: format!("manifest s3://{bucket}/{key} does not parse: {e}"),
        })
}

/// The progress display: an indicatif bar on a terminal, plain lines elsewhere (logs, CI).
enum Display {
    Bar(ProgressBar),
    Plain {
        last: String,
        printed_at: Option<Instant>,
    },
}

impl Display {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar(bar)
        } else {
            Display::Plain {
                last: String::new(),
                printed_at: None,
            }
        }
    }

    /// Shows `progress`; with a `stall` note, that note instead of the rate and ETA.
    fn show(&mut self, progress: &Progress, rates: Rates, stall: Option<&str>) {
        let rates = if stall.is_some() {
            Rates::default()
        } else {
            rates
        };
        let with_note = |text: String| match stall {
            Some(note) => format!("{text} · {note}"),
            None => text,
        };
        match self {
            Display::Bar(bar) => match progress.planned {
                Some(planned) if planned.files > 0 => {
                    if bar.length() != Some(planned.files) {
                        bar.set_style(style(
                            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files\n  {msg}",
                        ));
                        bar.set_length(planned.files);
                    }
                    bar.set_position(progress.files_done);
                    bar.set_message(with_note(progress.detail(rates)));
                }
                _ => {
                    bar.set_style(style("{spinner} [{elapsed_precise}] {msg}"));
                    bar.set_message(with_note(progress.message(rates)));
                }
            },
            Display::Plain { last, printed_at } => {
                let message = with_note(progress.message(rates));
                let stale = printed_at.is_none_or(|at| at.elapsed() >= PLAIN_REPEAT);
                if message != *last || stale {
                    eprintln!("{message}");
                    *last = message;
                    *printed_at = Some(Instant::now());
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish();
            // indicatif leaves the cursor at the end of the bar's last line.
            eprintln!();
        }
    }
}

/// A bar style from one of the templates above (all valid; the default style otherwise).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Which execution `watch` follows.
enum Target<'a> {
    Execution(&'a str),
    Newest {
        project: &'a str,
        destination: Option<i64>,
        state_machine: &'a str,
    },
}

async fn watch(
    deployment: &Deployment,
    args: &WatchArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        return Err(CliError::Usage(format!(
            "--interval must be a positive number of seconds, got {}",
            args.interval
        )));
    }
    let interval = Duration::from_secs_f64(args.interval);
    let table = deployment.table()?;
    let bucket = deployment.bucket()?;
    let target = match (&args.execution, &args.project, args.destination) {
        (Some(arn), _, _) => {
            execution_name_of(arn)?;
            Target::Execution(arn)
        }
        (None, Some(project), destination) => {
            check_project(project)?;
            check_destination(destination)?;
            Target::Newest {
                project,
                destination,
                state_machine: deployment.state_machine_arn()?,
            }
        }
        _ => {
            return Err(CliError::Usage(
                "watch needs --execution ARN, or --project (and --destination)".to_owned(),
            ))
        }
    };
    let aws = Aws::load().await;
    let (sfn, store, s3) = (aws.sfn(), aws.store(table), aws.s3());
    let arn = match target {
        Target::Execution(arn) => arn.to_owned(),
        Target::Newest {
            project,
            destination,
            state_machine,
        } => newest_execution(&sfn, state_machine, project, destination)
            .await?
            .ok_or_else(|| {
                CliError::NotFound(format!(
                    "no execution of {project} into {} in {state_machine}; \
                     start one with `synmigrate start`",
                    render::destination_text(destination)
                ))
            })?,
    };
    let run_id = execution_name_of(&arn)?.to_owned();
    let mut execution = describe(&sfn, &arn).await?;
    let input: ExecutionInput =
        serde_json::from_str(execution.input().unwrap_or("{}")).map_err(|e| {
            CliError::Usage(format!(
                "execution {run_id} was not started by synmigrate (its input has no \
                 projectId/destinationStorageLocationId: {e})"
            ))
        })?;
    let migration =
        MigrationKey::with_destination(&input.project_id, input.destination_storage_location_id)?;
    eprintln!(
        "Watching {run_id} ({} -> {})",
        input.project_id,
        render::destination_text(input.destination_storage_location_id)
    );
    let mut display = Display::new();
    let clock = Instant::now();
    let mut planned = None;
    let mut first_sample = None;
    let mut last_seen: Option<Progress> = None;
    let mut changed_at = Duration::ZERO;
    let run = loop {
        let run = store.get_run(&migration, &run_id).await?;
        if planned.is_none() && run.is_some() {
            planned = read_plan(&s3, bucket, &run_id).await?;
        }
        let counters = run.as_ref().map(|r| r.counters.clone()).unwrap_or_default();
        let progress = Progress::new(&counters, planned);
        let sample = progress.sample(clock.elapsed());
        let rates = match first_sample {
            Some(first) => render::rates(first, sample),
            None => {
                first_sample = planned.map(|_| sample);
                Rates::default()
            }
        };
        if last_seen != Some(progress) {
            last_seen = Some(progress);
            changed_at = clock.elapsed();
        }
        let stall = render::stall_note(clock.elapsed().saturating_sub(changed_at));
        display.show(&progress, rates, stall.as_deref());
        if execution.status != ExecutionStatus::Running {
            break run;
        }
        tokio::time::sleep(interval).await;
        execution = describe(&sfn, &arn).await?;
    };
    display.finish();
    let outcome = outcome::outcome((&execution).into(), run.as_ref());
    let summary = render::watch_summary(&outcome, &run_id, run.as_ref(), execution.output());
    writeln!(out, "{summary}")?;
    Ok(outcome.verdict())
}

/// Visits every item of the migration, page by page (a big project's items do not fit in memory
/// at once).
async fn each_item(
    store: &DynamoStore,
    migration: &MigrationKey,
    mut visit: impl FnMut(ItemRecord) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_items(migration, None, PAGE, token.as_deref())
            .await?;
        page.items.into_iter().try_for_each(&mut visit)?;
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

async fn report(
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
fn reported_run(
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

pub(crate) fn newest_run(runs: &[RunRecord]) -> Option<&RunRecord> {
    runs.iter()
        .max_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)))
}

/// An execution the report is about that recorded no run: its verdict instead of rows (on
/// stdout as the table; on stderr for CSV and JSON, whose stdout stays empty).
fn report_without_run(
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

/// Step Functions only adds to a report: when it cannot be asked (no permission, another
/// deployment's state machine), the report goes on from the state table, saying so.
fn unless_unavailable<T>(answer: Result<Option<T>, CliError>) -> Result<Option<T>, CliError> {
    match answer {
        Err(error @ (CliError::Aws { .. } | CliError::NotFound(_))) => {
            eprintln!("synmigrate: Step Functions not asked ({error}); from the state table alone");
            Ok(None)
        }
        answer => answer,
    }
}

/// The deployment's state machine, for what only Step Functions knows about a run.
struct Executions<'a> {
    sfn: aws_sdk_sfn::Client,
    state_machine: &'a str,
}

impl Executions<'_> {
    async fn named(&self, name: &str) -> Result<Option<DescribeExecutionOutput>, CliError> {
        describe_if_exists(&self.sfn, &execution_arn(self.state_machine, name)?).await
    }

    /// The execution a report is about (`--run`'s, or the migration's newest) when it has no
    /// run record: Init failed before opening one, or has not opened it yet.
    async fn without_run(
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
    async fn outcome_of(&self, run: &RunRecord) -> Result<Option<Outcome>, CliError> {
        Ok(self
            .named(&run.run_id)
            .await?
            .map(|execution| outcome::outcome((&execution).into(), Some(run))))
    }
}

async fn status(
    deployment: &Deployment,
    args: &MigrationArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let migration = migration(args)?;
    let table = deployment.table()?;
    let store = Aws::load().await.store(table);
    let lock = store.get_lock(&migration).await?;
    let runs = store.list_runs(&migration).await?;
    let text = render::status_text(&args.project, args.destination, lock.as_ref(), &runs, now());
    out.write_all(text.as_bytes())?;
    Ok(Verdict::Clean)
}
