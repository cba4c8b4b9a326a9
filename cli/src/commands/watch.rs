//! `synmigrate watch`: follows an execution to its end with the run's progress (a bar on a
//! terminal, plain lines elsewhere), then prints its one verdict.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use indicatif::{ProgressBar, ProgressStyle};
use synmigrate::context::followers_key;
use synmigrate::context::manifest_key;
use synmigrate::plan::WorkUnit;
use synmigrate::state::{MigrationKey, StateStore};

use super::executions::{describe, newest_execution, ExecutionInput};
use crate::args::{Deployment, WatchArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};
use crate::naming::{check_destination, check_project, execution_name_of};
use crate::outcome::{self};
use crate::render::{self, Planned, Progress, Rates};

/// A plain (non-terminal) progress line is repeated at least this often, even when unchanged.
const PLAIN_REPEAT: Duration = Duration::from_secs(30);

/// What Plan decided, once its manifest exists: every unit's files (the followers' too), the
/// lead units' bytes (the followers' sources are the same copies).
pub(super) async fn read_plan(
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
pub(super) async fn read_units(
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
pub(super) enum Display {
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
pub(super) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Which execution `watch` follows.
pub(super) enum Target<'a> {
    Execution(&'a str),
    Newest {
        project: &'a str,
        destination: Option<i64>,
        state_machine: &'a str,
    },
}

pub(super) async fn watch(
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
