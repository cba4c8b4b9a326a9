//! The projection: per-file costs measured at the largest size, the functions' memory from
//! `template.yaml`, the state transitions counted on `statemachine/`'s definition, stated list
//! prices and a stated copy throughput, applied to bigger projects. The transitions, the memory
//! and the prices are the library's ([`synmigrate::estimate`]), which `synmigrate estimate`
//! uses too.

use std::collections::BTreeMap;

use anyhow::Context;
use synmigrate::estimate::{deployed_memory, prices::is_put_class, Transitions, PRICES};
use synmigrate::stages::Tuning;
use synmigrate_bench::runs::MAX_CONCURRENCY;

use crate::measure::{SizeRun, Stage};
use crate::Args;

/// The copy stages: measured on the sample, so per sampled file.
const COPY_STAGES: [&str; 3] = ["StartCopy", "CopyParts", "Complete"];

/// Seconds a file a stage would take on AWS: its own time here (the wall time less the time
/// moto took to answer its DynamoDB and S3 requests: a debug build, so high) plus its requests
/// at `request_ms` each.
fn aws_seconds_per_file(stage: &Stage, files: usize, request_ms: f64) -> f64 {
    let own = stage
        .wall
        .saturating_sub(stage.aws.dynamodb_time + stage.aws.s3_time)
        .as_secs_f64();
    let requests = (stage.aws.dynamodb_requests() + stage.aws.s3_requests()) as f64;
    (own + requests * request_ms / 1000.0) / files.max(1) as f64
}

/// `1e6` as `10^6`.
fn power(value: f64) -> String {
    format!("10^{:.0}", value.log10())
}

/// One projected project.
pub struct Row {
    pub label: String,
    pub files: f64,
    pub bytes: f64,
    pub synapse_calls: f64,
    pub synapse_hours: f64,
    /// Plan's and Report's single invocations, seconds (Lambda stops one at 900).
    pub plan_s: f64,
    pub report_s: f64,
    pub copy_hours: f64,
    pub transitions: f64,
    pub invocations: f64,
    pub gb_seconds: f64,
    pub dynamodb_requests: f64,
    pub write_units: f64,
    pub read_units: f64,
    pub s3_put: f64,
    pub s3_get: f64,
}

impl Row {
    pub fn dollars(&self) -> [f64; 4] {
        [
            self.transitions * PRICES.transition,
            self.gb_seconds * PRICES.gb_second + self.invocations * PRICES.lambda_request,
            self.write_units * PRICES.write_unit + self.read_units * PRICES.read_unit,
            self.s3_put * PRICES.s3_put_class + self.s3_get * PRICES.s3_get_class,
        ]
    }
}

/// Per-file (or per-run) rates of one quantity, split as the projection needs them.
#[derive(Default, Clone, Copy)]
pub struct Rate {
    /// Init: once per run.
    pub per_run: f64,
    /// Index, Plan and Report: per file of the project.
    pub per_file: f64,
    /// The copy stages: per copied file.
    pub per_copied_file: f64,
}

impl Rate {
    fn of(size: &SizeRun, value: impl Fn(&Stage) -> f64) -> Self {
        let mut rate = Self::default();
        for stage in &size.stages {
            let v = value(stage);
            if stage.name == "Init" {
                rate.per_run += v;
            } else if COPY_STAGES.contains(&stage.name) {
                rate.per_copied_file += v / size.sample_files.max(1) as f64;
            } else {
                rate.per_file += v / size.files.max(1) as f64;
            }
        }
        rate
    }

    pub fn at(&self, files: f64) -> f64 {
        self.per_run + files * (self.per_file + self.per_copied_file)
    }
}

fn s3_split(stage: &Stage) -> (f64, f64) {
    let put = stage
        .aws
        .s3
        .iter()
        .filter(|(op, _)| is_put_class(op))
        .map(|(_, n)| *n as f64)
        .sum::<f64>();
    (put, stage.aws.s3_requests() as f64 - put)
}

pub struct Model {
    pub basis_files: usize,
    pub memory: BTreeMap<String, u64>,
    pub transitions: Transitions,
    pub synapse: Rate,
    pub index_synapse_per_file: f64,
    pub dynamodb: Rate,
    pub write_units: Rate,
    pub read_units: Rate,
    pub s3_put: Rate,
    pub s3_get: Rate,
    pub files_per_unit: f64,
    pub index_budget_s: f64,
    pub unit_concurrency: usize,
    /// Lambda memory of the copy, GB, weighted by the measured time of each copy stage.
    pub copy_gb: f64,
    /// Plan's and Report's seconds a file on AWS (see [`aws_seconds_per_file`]), and their GB.
    pub plan_s_per_file: f64,
    pub report_s_per_file: f64,
    pub plan_gb: f64,
    pub report_gb: f64,
    pub init_gb_s: f64,
    pub rows: Vec<Row>,
}

impl Model {
    pub fn load(args: &Args, sizes: &[SizeRun]) -> anyhow::Result<Self> {
        // Per-file costs need every stage: the largest size measured whole.
        let basis = sizes
            .iter()
            .filter(|s| !s.seeded)
            .max_by_key(|s| s.files)
            .context("no size measured with every stage (SCALE_FILES)")?;
        let memory = deployed_memory();
        let transitions = Transitions::deployed()?;
        let tuning = Tuning::default();
        let gb = |function: &str| memory.get(function).copied().unwrap_or(128) as f64 / 1024.0;
        let stage_gb_s = |stage: &Stage| stage.wall.as_secs_f64() * gb(stage.function);

        let copy_time: f64 = basis
            .stages
            .iter()
            .filter(|s| COPY_STAGES.contains(&s.name))
            .map(|s| s.wall.as_secs_f64())
            .sum();
        let copy_gb = basis
            .stages
            .iter()
            .filter(|s| COPY_STAGES.contains(&s.name))
            .map(stage_gb_s)
            .sum::<f64>()
            / copy_time.max(f64::EPSILON);
        // Plan and Report read every item: their time a file from the most items they read,
        // seeded tables included.
        let largest_s = |name: &str| {
            sizes
                .iter()
                .filter_map(|size| size.stage(name).map(|stage| (size.files, stage)))
                .max_by_key(|(files, _)| *files)
                .map_or(0.0, |(files, stage)| {
                    aws_seconds_per_file(stage, files, args.aws_request_ms)
                })
        };
        let stage_gb = |name: &str| basis.stage(name).map_or(0.0, |s| gb(s.function));
        let mut model = Self {
            basis_files: basis.files,
            transitions,
            synapse: Rate::of(basis, |s| s.synapse as f64),
            index_synapse_per_file: basis.stage("Index").map_or(0.0, |s| s.synapse as f64)
                / basis.files.max(1) as f64,
            dynamodb: Rate::of(basis, |s| s.aws.dynamodb_requests() as f64),
            write_units: Rate::of(basis, |s| {
                s.aws.dynamodb_write_units + s.aws.dynamodb_index_write_units
            }),
            read_units: Rate::of(basis, |s| s.aws.dynamodb_read_units),
            s3_put: Rate::of(basis, |s| s3_split(s).0),
            s3_get: Rate::of(basis, |s| s3_split(s).1),
            files_per_unit: basis.planned_items as f64 / basis.unit_count.max(1) as f64,
            index_budget_s: tuning.index_time_budget.as_secs_f64(),
            unit_concurrency: tuning.unit_concurrency,
            copy_gb,
            plan_s_per_file: largest_s("Plan"),
            report_s_per_file: largest_s("Report"),
            plan_gb: stage_gb("Plan"),
            report_gb: stage_gb("Report"),
            init_gb_s: basis.stage("Init").map_or(0.0, stage_gb_s),
            memory,
            rows: Vec::new(),
        };
        let mean_measured = basis.planned_bytes as f64 / basis.planned_items.max(1) as f64;
        const TB: f64 = 1e12;
        let mut rows = Vec::new();
        for files in [1e6, 1e7] {
            rows.push((
                format!("{} files (sizes as measured)", power(files)),
                files,
                files * mean_measured,
            ));
        }
        for files in [1e6, 1e7] {
            for bytes in [TB, 100.0 * TB] {
                rows.push((
                    format!("{} files, {:.0} TB", power(files), bytes / TB),
                    files,
                    bytes,
                ));
            }
        }
        model.rows = rows
            .into_iter()
            .map(|(label, files, bytes)| model.project(args, label, files, bytes))
            .collect();
        Ok(model)
    }

    /// One project of `files` files and `bytes` bytes, every file below the CopyObject
    /// threshold (one CopyObject each, no part batches).
    fn project(&self, args: &Args, label: String, files: f64, bytes: f64) -> Row {
        let budget = f64::from(args.budget);
        let synapse_calls = self.synapse.at(files);
        let synapse_hours = synapse_calls / budget / 60.0;
        let index_s = files * self.index_synapse_per_file / budget * 60.0;
        let index_invocations = (index_s / self.index_budget_s).ceil().max(1.0);
        let copy_calls = files * self.synapse.per_copied_file;
        let in_flight = f64::from(MAX_CONCURRENCY) * self.unit_concurrency as f64;
        let copy_bytes_s = bytes / (args.copy_mib_per_s * 1024.0 * 1024.0 * in_flight);
        let copy_hours = copy_bytes_s / 3600.0;
        let units = (files / self.files_per_unit.max(1.0)).ceil();
        let transitions = self.transitions.run_once as f64
            + index_invocations * self.transitions.index_loop as f64
            + units * self.transitions.per_unit as f64;
        let index_gb = self.memory.get("synmigrate-index").copied().unwrap_or(128) as f64 / 1024.0;
        // While the budget binds, the Map keeps maxConcurrency units in flight, each waiting
        // for its slots; the bytes' copy time adds to it.
        let copy_s = copy_calls / budget * 60.0 + copy_bytes_s;
        let gb_seconds = self.init_gb_s
            + index_s * index_gb
            + files * self.plan_s_per_file * self.plan_gb
            + files * self.report_s_per_file * self.report_gb
            + copy_s * f64::from(MAX_CONCURRENCY) * self.copy_gb;
        Row {
            label,
            files,
            bytes,
            synapse_calls,
            synapse_hours,
            plan_s: files * self.plan_s_per_file,
            report_s: files * self.report_s_per_file,
            copy_hours,
            transitions,
            invocations: 3.0 + index_invocations + 2.0 * units,
            gb_seconds,
            dynamodb_requests: self.dynamodb.at(files),
            write_units: self.write_units.at(files),
            read_units: self.read_units.at(files),
            s3_put: self.s3_put.at(files),
            s3_get: self.s3_get.at(files),
        }
    }
}
