//! `synmigrate estimate`: what the next run of a migration would take, from its index in the
//! state table (the library's [`synmigrate::estimate`], the same one a dry run's summary
//! carries), with a run's options and the flags' changes. Reads the state table only.

use std::io::Write;

use indicatif::BinaryBytes;
use synmigrate::config::MigrationOptions;
use synmigrate::estimate::{Bound, Estimate, PRICES};
use synmigrate::stages::{RunContext, Tuning};
use synmigrate::state::RunRecord;

use super::records::{migration, newest_run};
use crate::args::{Deployment, EstimateArgs, EstimateFormat, MigrationArgs};
use crate::aws::Aws;
use crate::error::{CliError, Verdict};
use crate::render::{destination_text, table};

pub(crate) async fn estimate(
    deployment: &Deployment,
    args: &EstimateArgs,
    out: &mut dyn Write,
) -> Result<Verdict, CliError> {
    let key = migration(&args.migration)?;
    let table_name = deployment.table()?;
    let store = Aws::load().await.store(table_name);
    let runs = store.list_runs(&key).await?;
    let run = chosen_run(args, &runs)?;
    let context = run_context(&args.migration, run, args.options(run_options(run)?)?)?;
    let estimate = synmigrate::stages::estimate(&store, &context, &Tuning::default()).await?;
    let text = match args.format {
        EstimateFormat::Table => estimate_table(&context, &estimate),
        EstimateFormat::Json => estimate_json(&context.run_id, &estimate),
    };
    out.write_all(text.as_bytes())?;
    Ok(Verdict::Clean)
}

/// How to make the index an estimate reads.
fn dry_run_hint(args: &MigrationArgs) -> String {
    let destination = args
        .destination
        .map(|id| format!(" --destination {id}"))
        .unwrap_or_default();
    format!(
        "index it first: `synmigrate start --project {}{destination} --dry-run`",
        args.project
    )
}

/// The run `--run` names, or the newest.
fn chosen_run<'a>(args: &EstimateArgs, runs: &'a [RunRecord]) -> Result<&'a RunRecord, CliError> {
    let described = format!(
        "{} into {}",
        args.migration.project,
        destination_text(args.migration.destination)
    );
    match &args.run {
        Some(id) => runs.iter().find(|run| &run.run_id == id).ok_or_else(|| {
            CliError::NotFound(format!(
                "no run {id} of {described}; `synmigrate status` lists the runs"
            ))
        }),
        None => newest_run(runs).ok_or_else(|| {
            CliError::NotFound(format!(
                "no runs of {described}, so no index to estimate from; {}",
                dry_run_hint(&args.migration)
            ))
        }),
    }
}

/// The options a run was started with, as Init recorded them.
fn run_options(run: &RunRecord) -> Result<MigrationOptions, CliError> {
    match run.settings.get("options") {
        Some(options) => serde_json::from_value(options.clone()).map_err(|e| {
            CliError::Usage(format!(
                "run {} recorded options this CLI cannot read: {e}",
                run.run_id
            ))
        }),
        None => Ok(MigrationOptions::default()),
    }
}

/// The run as the estimate sees it: its migration, its id (whose items a partial run takes),
/// the options to estimate with, and the destination's kind as Init recorded it (`auto` copies
/// directly only into an external S3 location).
fn run_context(
    args: &MigrationArgs,
    run: &RunRecord,
    options: MigrationOptions,
) -> Result<RunContext, CliError> {
    let kind = run
        .settings
        .get("destinationType")
        .and_then(|kind| kind.as_str());
    let destination = match (args.destination, kind) {
        (Some(id), Some(kind)) => {
            serde_json::json!({"concreteType": kind, "storageLocationId": id})
        }
        _ => serde_json::Value::Null,
    };
    serde_json::from_value(serde_json::json!({
        "projectId": args.project,
        "destinationStorageLocationId": args.destination,
        "runId": run.run_id,
        "options": options,
        "destination": destination,
    }))
    .map_err(|e| CliError::Usage(format!("run {} cannot be estimated: {e}", run.run_id)))
}

/// Hours in words: seconds under a minute, minutes under an hour, days past two.
fn duration_text(hours: f64) -> String {
    match hours {
        h if h < 1.0 / 60.0 => format!("{:.0} s", h * 3600.0),
        h if h < 1.0 => format!("{:.1} min", h * 60.0),
        h if h < 48.0 => format!("{h:.1} h"),
        h => format!("{h:.1} h ({:.1} days)", h / 24.0),
    }
}

fn dollars(amount: f64) -> String {
    format!("${amount:.2}")
}

/// `estimate --format json`: one line.
pub fn estimate_json(run_id: &str, estimate: &Estimate) -> String {
    let mut line = serde_json::json!({"indexOfRun": run_id, "estimate": estimate}).to_string();
    line.push('\n');
    line
}

/// `estimate --format table`: the figures, then the calls by endpoint, the charges and what
/// they assume.
pub fn estimate_table(run: &RunContext, estimate: &Estimate) -> String {
    let work = &estimate.work;
    let options = &run.options;
    let mut out = format!(
        "Estimate for {} -> {}, from the index as of run {} (strategy {}, copy mode {}, \
         {} engine)\n",
        run.project_id,
        destination_text(run.destination_storage_location_id),
        run.run_id,
        serde_json::to_value(options.file_version_strategy).unwrap_or_default(),
        serde_json::to_value(options.copy_mode).unwrap_or_default(),
        serde_json::to_value(estimate.engine).unwrap_or_default(),
    )
    .replace('"', "");
    if work.files == 0 {
        out.push_str(&format!(
            "Nothing to copy: the index holds no file to migrate (none indexed, or all \
             migrated). If the project has files, {}\n",
            dry_run_hint(&MigrationArgs {
                project: run.project_id.clone(),
                destination: run.destination_storage_location_id,
            })
        ));
        return out;
    }
    let tuning = Tuning::default();
    let in_flight = options.max_concurrency as usize * tuning.unit_concurrency;
    let per_request = BinaryBytes(tuning.batch_budget.throughput_bytes_per_sec);
    let bound = match estimate.bound_by {
        Bound::Synapse => "Synapse's budget",
        Bound::S3Copy => "copying the bytes",
    };
    out.push_str(&format!(
        "Files to copy: {} ({} table cells), {}; {} copies, {} parts; {} work units ({} \
         followers), {} part batches\n\
         Synapse calls: {} at {}/min: {}\n\
         Copying the bytes: {} ({per_request}/s per request, {in_flight} in flight)\n\
         Expected duration: {}, bound by {bound}\n\n",
        work.files,
        work.cells,
        BinaryBytes(work.bytes),
        work.copies,
        work.parts,
        work.lead_units + work.follower_units,
        work.follower_units,
        work.part_batches,
        estimate.synapse_calls,
        estimate.requests_per_minute,
        duration_text(estimate.synapse_hours),
        duration_text(estimate.copy_hours),
        duration_text(estimate.hours),
    ));
    let calls: Vec<Vec<String>> = work
        .synapse
        .iter()
        .map(|(endpoint, n)| {
            vec![
                endpoint.clone(),
                n.to_string(),
                format!("{:.2}", *n as f64 / work.files as f64),
            ]
        })
        .collect();
    out.push_str(&table(&["Synapse endpoint", "calls", "per file"], &calls));
    let d = &estimate.dollars;
    let db = &estimate.dynamodb;
    let charges = vec![
        vec![
            "Step Functions".to_owned(),
            format!("{} transitions", estimate.transitions),
            dollars(d.step_functions),
        ],
        vec![
            "Lambda".to_owned(),
            format!(
                "{} invocations, {:.0} GB-s",
                estimate.lambda.invocations, estimate.lambda.gb_seconds
            ),
            dollars(d.lambda),
        ],
        vec![
            "DynamoDB".to_owned(),
            format!(
                "{} writes ({} WRU), {} reads ({} RRU)",
                db.writes, db.write_units, db.reads, db.read_units
            ),
            dollars(d.dynamodb),
        ],
        vec![
            "S3".to_owned(),
            format!(
                "{} PUT-class, {} GET-class requests",
                estimate.s3_put_class, estimate.s3_get_class
            ),
            dollars(d.s3),
        ],
        vec!["total".to_owned(), String::new(), dollars(d.total)],
    ];
    out.push('\n');
    out.push_str(&table(&["AWS", "usage", "USD"], &charges));
    out.push_str(&format!(
        "\nAt us-east-1 list prices (Lambda x86 ${} per GB-s; arm64 is a fifth less), storage \
         and transfer not counted. Assumes every file copies at the first attempt; the \
         folder listings are a lower bound; DynamoDB requests and the functions' time are \
         `make scale`'s measurements (README: Estimate before running).\n",
        PRICES.gb_second
    ));
    out
}

#[cfg(test)]
mod tests {
    use synmigrate::estimate::{endpoint, Params, Tally};
    use synmigrate::stages::plan::units::{Planned, UnitItem, UnitKind, WorkUnit};

    use super::*;

    fn run() -> RunContext {
        RunContext {
            project_id: "syn123".into(),
            destination_storage_location_id: Some(7001),
            run_id: "syn123-7001-20261121T0600".into(),
            options: MigrationOptions::default(),
            destination: None,
        }
    }

    #[test]
    fn the_table_names_the_run_the_calls_and_the_total() {
        let run = run();
        let params = Params::new(
            &run.options,
            synmigrate::copy::EngineKind::Synapse,
            &Tuning::default(),
        );
        let mut work = Tally::default();
        let unit = Planned::Lead(WorkUnit {
            unit_id: "unit-000001".into(),
            kind: UnitKind::Small,
            total_bytes: 2048,
            items: vec![UnitItem {
                key: "syn5.1".into(),
                size: 2048,
                source: "fh-1".into(),
                destination: None,
            }],
            destination: None,
        });
        work.add(&unit, &params).unwrap();
        work.add_run(true);
        let estimate = Estimate::new(work, &params).unwrap();
        let text = estimate_table(&run, &estimate);
        assert!(text.starts_with(
            "Estimate for syn123 -> storage location 7001, from the index as of run \
             syn123-7001-20261121T0600 (strategy new, copy mode synapse, synapse engine)\n"
        ));
        assert!(text.contains("Files to copy: 1 (0 table cells), 2.00 KiB; 1 copies, 1 parts"));
        let cells = |first: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|l| l.starts_with(first))
                .unwrap_or_default();
            line[first.len()..]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(cells(endpoint::PRESIGN), ["1", "1.00"], "{text}");
        assert_eq!(cells("total"), [dollars(estimate.dollars.total)], "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&estimate_json(&run.run_id, &estimate)).unwrap();
        assert_eq!(json["indexOfRun"], run.run_id.as_str());
        assert_eq!(json["estimate"]["work"]["files"], 1);
    }

    #[test]
    fn an_empty_index_asks_for_a_dry_run() {
        let run = run();
        let params = Params::new(
            &run.options,
            synmigrate::copy::EngineKind::Synapse,
            &Tuning::default(),
        );
        let estimate = Estimate::new(Tally::default(), &params).unwrap();
        let text = estimate_table(&run, &estimate);
        assert!(
            text.contains(
                "index it first: `synmigrate start --project syn123 --destination 7001 --dry-run`"
            ),
            "{text}"
        );
    }

    #[test]
    fn durations_read_in_minutes_hours_or_days() {
        assert_eq!(duration_text(0.005), "18 s");
        assert_eq!(duration_text(0.5), "30.0 min");
        assert_eq!(duration_text(2.25), "2.2 h");
        assert_eq!(duration_text(94.0), "94.0 h (3.9 days)");
    }
}
