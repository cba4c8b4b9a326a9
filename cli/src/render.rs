//! Text the commands print: tables for people, CSV and one-line JSON for tools, progress lines.
//! Pure functions of the records, so they are tested without AWS.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{BinaryBytes, HumanDuration};
use serde::Serialize;
use synmigrate::report::{orphaned_copy_notes, ItemTotals};
use synmigrate::state::{
    CopyRecord, EpochSeconds, ItemRecord, ItemStatus, Lease, RunCounters, RunRecord, RunStatus,
    StatusName,
};

use crate::naming::rfc3339;
use crate::outcome::Outcome;

/// Left-aligned columns separated by two spaces; the header underlined.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut out = table_line(headers, &widths);
    out.push_str(&table_line(&rule, &widths));
    for row in rows {
        out.push_str(&table_line(row, &widths));
    }
    out
}

fn table_line(cells: &[impl AsRef<str>], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(cell, width)| format!("{:<width$}", cell.as_ref()))
        .collect();
    let mut line = padded.join("  ").trim_end().to_owned();
    line.push('\n');
    line
}

fn count(counters: &RunCounters, status: StatusName) -> i64 {
    counters.by_status.get(&status).copied().unwrap_or_default()
}

fn bytes(n: i64) -> String {
    BinaryBytes(u64::try_from(n).unwrap_or_default()).to_string()
}

/// Whether a run's outcome calls for exit code 1.
pub fn run_failed(run: &RunRecord) -> bool {
    matches!(run.status, RunStatus::Failed | RunStatus::Aborted)
        || count(&run.counters, StatusName::Errored) > 0
}

/// `synmigrate status`: who holds the lock, then every run, oldest first.
pub fn status_text(
    project: &str,
    destination: Option<i64>,
    lock: Option<&Lease>,
    runs: &[RunRecord],
    now: EpochSeconds,
) -> String {
    let mut out = format!("Migration {project} -> {}\n", destination_text(destination));
    out.push_str(&match lock {
        None => "Lock: free\n".to_owned(),
        Some(lease) if lease.expires_at <= now => format!(
            "Lock: free (last held by {}, expired {})\n",
            lease.owner,
            rfc3339(lease.expires_at)
        ),
        Some(lease) => format!(
            "Lock: held by {} until {}\n",
            lease.owner,
            rfc3339(lease.expires_at)
        ),
    });
    if runs.is_empty() {
        out.push_str("No runs yet.\n");
        return out;
    }
    let mut sorted: Vec<&RunRecord> = runs.iter().collect();
    sorted.sort_by(|a, b| (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|run| {
            vec![
                run.run_id.clone(),
                run.status.as_str().to_owned(),
                rfc3339(run.started_at),
                run.ended_at.map(rfc3339).unwrap_or_else(|| "-".to_owned()),
                count(&run.counters, StatusName::Indexed).to_string(),
                count(&run.counters, StatusName::Migrated).to_string(),
                count(&run.counters, StatusName::Skipped).to_string(),
                count(&run.counters, StatusName::Errored).to_string(),
                bytes(run.counters.bytes_copied),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "RUN", "STATUS", "STARTED", "ENDED", "INDEXED", "MIGRATED", "SKIPPED", "ERRORED",
            "COPIED",
        ],
        &rows,
    ));
    out
}

/// An execution `start` found under the name it would have started.
#[derive(Debug, Clone, Copy)]
pub struct ExistingExecution<'a> {
    pub name: &'a str,
    pub status: &'a str,
    pub started_at: EpochSeconds,
    /// The name came from the time window (not `--execution-name`).
    pub of_window: bool,
    /// It was started with the input this start would give.
    pub same_input: bool,
}

/// What `start` says when it starts nothing, so that it never reads as a new start.
pub fn not_started(existing: &ExistingExecution<'_>) -> String {
    let which = if existing.of_window {
        " of this time window"
    } else {
        ""
    };
    let found = format!(
        "Not started: execution {}{which} already exists ({}, started {})",
        existing.name,
        existing.status,
        rfc3339(existing.started_at)
    );
    if existing.same_input {
        format!(
            "{found}; showing it (its ARN follows). --window 0 or --execution-name starts a new one."
        )
    } else {
        format!(
            "{found} with another input (other options or another migration); --window 0 or \
             --execution-name starts one with this input."
        )
    }
}

/// What `watch` ends with: the one verdict, the run's counts, and an aligned run's folder list.
pub fn watch_summary(
    outcome: &Outcome,
    run_id: &str,
    run: Option<&RunRecord>,
    output: Option<&str>,
) -> String {
    let mut lines = vec![outcome.line(), run_counts_line(run_id, run)];
    lines.extend(folder_list_line(output));
    lines.join("\n")
}

/// The run's counts, without its status (the verdict above says how it went).
fn run_counts_line(run_id: &str, run: Option<&RunRecord>) -> String {
    let Some(run) = run else {
        return format!("No run {run_id} in the state table");
    };
    let n = |status| count(&run.counters, status);
    format!(
        "Run {run_id}: {} indexed, {} migrated, {} skipped, {} already migrated, {} errored; {} \
         copied",
        n(StatusName::Indexed),
        n(StatusName::Migrated),
        n(StatusName::Skipped),
        n(StatusName::AlreadyMigrated),
        n(StatusName::Errored),
        bytes(run.counters.bytes_copied),
    )
}

/// Where an aligned run's plan per folder is, from the execution's output (the run's summary).
pub fn folder_list_line(output: Option<&str>) -> Option<String> {
    let summary: serde_json::Value = serde_json::from_str(output?).ok()?;
    let folders = summary.get("folders")?;
    let mut line = format!(
        "Folders: {} walked, {} whose upload location cannot take copies; the plan per folder is \
         s3://{}/{}",
        folders["folders"],
        folders["notWritable"],
        summary["reportBucket"].as_str()?,
        folders["key"].as_str()?
    );
    if let Some(first) = folders["firstNotWritable"].as_str() {
        line.push_str(&format!(" (first: {first})"));
    }
    Some(line)
}

/// Where a migration goes, in words: "storage location 7001", or "each folder's upload
/// location" when no destination was given.
pub fn destination_text(destination: Option<i64>) -> String {
    match destination {
        Some(id) => format!("storage location {id}"),
        None => "each folder's upload location".to_owned(),
    }
}

/// A run and its rows (or, with `--all`, the whole project's) as they stand.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub project_id: String,
    /// `None`: each file went to its folder's upload location.
    pub destination_storage_location_id: Option<i64>,
    pub run: RunRecord,
    /// How the run's execution ended, when the run did not succeed and Step Functions still
    /// knows the execution: the run record alone does not say why.
    pub outcome: Option<Outcome>,
    /// The rows are every item of the migration (`--all`), not only the run's.
    pub all_rows: bool,
    /// Over the rows shown.
    pub totals: ItemTotals,
    /// Finished copies no entity points at, with why (the whole migration's: copies are shared
    /// by the runs).
    pub orphaned_copies: Vec<CopyRecord>,
}

/// Which rows a report shows. A run's rows are the items it last indexed or changed (an item
/// records the run that last wrote it, the rule partial runs take items by); an item a later run
/// wrote again is that run's.
pub fn rows_of(run_id: &str, all_rows: bool) -> String {
    if all_rows {
        "Rows of the whole project (every run)".to_owned()
    } else {
        format!("Rows of run {run_id} (--all for the whole project's)")
    }
}

/// `report` for an execution that recorded no run (Init failed, or has not finished): its
/// verdict, and which run the state table does have.
pub fn report_without_run(
    project: &str,
    destination: Option<i64>,
    execution: &str,
    outcome: &Outcome,
    newest_run: Option<&str>,
) -> String {
    let mut out = format!(
        "Migration {project} -> {}: execution {execution} has recorded no run\n{}\n",
        destination_text(destination),
        outcome.line()
    );
    if let Some(run) = newest_run {
        out.push_str(&format!(
            "The newest run recorded is {run} (`--run {run}` reports it)\n"
        ));
    }
    out
}

/// Every status with its count, zeros included, so `jq .counts.MIGRATED` never meets `null`.
fn all_statuses<T: Copy + Default>(
    lookup: impl Fn(StatusName) -> Option<T>,
) -> BTreeMap<StatusName, T> {
    StatusName::ALL
        .into_iter()
        .map(|status| (status, lookup(status).unwrap_or_default()))
        .collect()
}

/// The one-line JSON of `report --format json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportLine<'a> {
    project_id: &'a str,
    destination_storage_location_id: Option<i64>,
    run_id: &'a str,
    status: RunStatus,
    /// How the execution ended, when the run did not succeed.
    outcome: Option<String>,
    started_at: String,
    ended_at: Option<String>,
    /// What this run did, per status.
    counts: BTreeMap<StatusName, i64>,
    /// Bytes this run copied.
    bytes_copied: i64,
    /// `run`: the rows are the run's own; `project`: every run's (`--all`).
    rows_of: &'static str,
    /// The rows, per status.
    totals: BTreeMap<StatusName, u64>,
    items: u64,
    migrated_bytes: u64,
    /// Migrated files whose copy has no proof beyond its handle's fields (`verified_by` none).
    unproven: u64,
    /// Files whose old handle was deleted, and kept (`deleteSourceFileHandles`).
    source_deleted: u64,
    source_kept: u64,
    /// Finished copies no entity points at (`report --format table` lists them).
    orphaned_copies: usize,
    /// Handles a crashed attempt may have registered that no record names.
    possibly_orphaned_handles: u64,
}

pub fn report_json(report: &RunReport) -> String {
    let run = &report.run;
    let line = ReportLine {
        project_id: &report.project_id,
        destination_storage_location_id: report.destination_storage_location_id,
        run_id: &run.run_id,
        status: run.status,
        outcome: report.outcome.as_ref().map(Outcome::line),
        started_at: rfc3339(run.started_at),
        ended_at: run.ended_at.map(rfc3339),
        counts: all_statuses(|s| run.counters.by_status.get(&s).copied()),
        bytes_copied: run.counters.bytes_copied,
        rows_of: if report.all_rows { "project" } else { "run" },
        totals: all_statuses(|s| report.totals.by_status.get(&s).copied()),
        items: report.totals.items,
        migrated_bytes: report.totals.migrated_bytes,
        unproven: report.totals.unproven,
        source_deleted: report.totals.source_deleted,
        source_kept: report.totals.source_kept,
        orphaned_copies: report
            .orphaned_copies
            .iter()
            .filter(|c| c.is_orphaned())
            .count(),
        possibly_orphaned_handles: report
            .orphaned_copies
            .iter()
            .map(|c| u64::from(c.unrecorded_handles()))
            .sum(),
    };
    let mut text = serde_json::to_string(&line).unwrap_or_else(|e| {
        // Only maps with string keys and plain values: encoding cannot fail.
        format!("{{\"error\":\"cannot encode the report: {e}\"}}")
    });
    text.push('\n');
    text
}

fn detail(item: &ItemRecord) -> String {
    let mut detail = match &item.status {
        ItemStatus::Skipped { reason } => reason.as_str().to_owned(),
        ItemStatus::Errored(error) => format!("{}: {}", error.class, error.message),
        _ => String::new(),
    };
    let notes = [
        item.destination_file_name
            .as_ref()
            .map(|renamed| format!("renamed to {renamed}")),
        item.verified_by
            .as_ref()
            .map(|proof| format!("verified: {proof}")),
        item.source_handle
            .as_ref()
            .map(|fate| format!("old handle: {fate}")),
    ];
    for note in notes.into_iter().flatten() {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&note);
    }
    detail.replace(['\n', '\r'], " ")
}

fn counts_text<T: std::fmt::Display + Default + PartialEq>(
    counts: &BTreeMap<StatusName, T>,
) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n != T::default())
        .map(|(status, n)| format!("{status} {n}"))
        .collect();
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `report --format table`: the summary, then one row per item.
pub fn report_table(report: &RunReport, items: &[ItemRecord]) -> String {
    let run = &report.run;
    let mut out = format!(
        "Migration {} -> {}, run {} ({})\n",
        report.project_id,
        destination_text(report.destination_storage_location_id),
        run.run_id,
        run.status.as_str()
    );
    out.push_str(&format!(
        "Started {}, ended {}\n",
        rfc3339(run.started_at),
        run.ended_at.map(rfc3339).unwrap_or_else(|| "-".to_owned())
    ));
    if let Some(outcome) = &report.outcome {
        out.push_str(&format!("Execution: {}\n", outcome.line()));
    }
    out.push_str(&format!(
        "This run: {}; {} copied\n",
        counts_text(&run.counters.by_status),
        bytes(run.counters.bytes_copied)
    ));
    out.push_str(&format!(
        "{}: {} ({}); {} migrated\n\n",
        rows_of(&run.run_id, report.all_rows),
        report.totals.items,
        counts_text(&report.totals.by_status),
        BinaryBytes(report.totals.migrated_bytes)
    ));
    if report.totals.unproven > 0 {
        out.push_str(&format!(
            "{} migrated files have no proof beyond their handles' fields (verified: none, \
             with the reason; `synmigrate verify --level bytes` reads them)\n\n",
            report.totals.unproven
        ));
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            vec![
                item.key.to_string(),
                item.status.name().as_str().to_owned(),
                item.size.to_string(),
                item.source_file_handle_id.clone(),
                item.destination_file_handle_id.clone().unwrap_or_default(),
                detail(item),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ITEM",
            "STATUS",
            "BYTES",
            "FROM HANDLE",
            "TO HANDLE",
            "DETAIL",
        ],
        &rows,
    ));
    if !report.orphaned_copies.is_empty() {
        out.push_str(&format!(
            "\nCopies no entity points at ({}; the next run retries their updates or they stay \
             for the reason given):\n",
            report.orphaned_copies.len()
        ));
        let rows: Vec<Vec<String>> = report
            .orphaned_copies
            .iter()
            .flat_map(|copy| {
                orphaned_copy_notes(copy).into_iter().map(|(to, why)| {
                    vec![
                        copy.source_file_handle_id.clone(),
                        to,
                        why.replace(['\n', '\r'], " "),
                    ]
                })
            })
            .collect();
        out.push_str(&table(&["FROM HANDLE", "TO HANDLE", "WHY"], &rows));
    }
    out
}

/// What Plan decided to copy (read from its manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub files: u64,
    pub bytes: u64,
}

/// One look at a running migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// File versions this run's Index wrote.
    pub found: u64,
    /// `None` while indexing.
    pub planned: Option<Planned>,
    /// Files finished either way (migrated or failed).
    pub files_done: u64,
    pub failures: u64,
    pub bytes_done: u64,
}

/// How far a migration was at one moment of `watch` (time since it began watching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Duration,
    pub files: u64,
    pub bytes: u64,
}

/// Files and bytes finished per second between two samples; each `None` until it moves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub files_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
}

impl Progress {
    pub fn new(counters: &RunCounters, planned: Option<Planned>) -> Self {
        let n = |status| u64::try_from(count(counters, status)).unwrap_or_default();
        Self {
            found: n(StatusName::Indexed) + n(StatusName::AlreadyMigrated) + n(StatusName::Skipped),
            planned,
            files_done: n(StatusName::Migrated) + n(StatusName::Errored),
            failures: n(StatusName::Errored),
            bytes_done: u64::try_from(counters.bytes_copied).unwrap_or_default(),
        }
    }

    pub fn sample(&self, at: Duration) -> Sample {
        Sample {
            at,
            files: self.files_done,
            bytes: self.bytes_done,
        }
    }

    /// Time left: the files left at the files rate and the bytes left at the bytes rate each
    /// give one, and the run needs both done, so the longer. They differ: Plan copies the
    /// biggest files first, so bytes run ahead of files early on and behind them later.
    pub fn eta(&self, rates: Rates) -> Option<Duration> {
        let planned = self.planned?;
        let by_files = time_left(
            planned.files.saturating_sub(self.files_done),
            rates.files_per_second,
        );
        let by_bytes = time_left(
            planned.bytes.saturating_sub(self.bytes_done),
            rates.bytes_per_second,
        );
        by_files.into_iter().chain(by_bytes).max()
    }

    /// The whole state in one line (plain output, and the bar's text before the copy starts).
    pub fn message(&self, rates: Rates) -> String {
        match self.planned {
            None => format!("indexing: {} file versions found", self.found),
            Some(planned) if planned.files == 0 => "nothing to copy".to_owned(),
            Some(planned) => format!(
                "files {}/{} · {}",
                self.files_done,
                planned.files,
                self.detail(rates)
            ),
        }
    }

    /// Bytes, rates, ETA and failures: what the bar itself does not show.
    pub fn detail(&self, rates: Rates) -> String {
        let planned_bytes = self.planned.map(|p| p.bytes).unwrap_or_default();
        let mut parts = vec![format!(
            "{}/{}",
            BinaryBytes(self.bytes_done),
            BinaryBytes(planned_bytes)
        )];
        if let Some(rate) = rates.bytes_per_second {
            parts.push(format!("{}/s", BinaryBytes(rate as u64)));
        }
        if let Some(rate) = rates.files_per_second {
            parts.push(format!("{rate:.1} files/s"));
        }
        if let Some(eta) = self.eta(rates) {
            parts.push(format!("ETA {}", HumanDuration(eta)));
        }
        parts.push(format!("failures {}", self.failures));
        parts.join(" · ")
    }
}

/// `left` units at `per_second`; `None` without a rate.
fn time_left(left: u64, per_second: Option<f64>) -> Option<Duration> {
    let rate = per_second.filter(|r| *r > 0.0)?;
    Duration::try_from_secs_f64(left as f64 / rate).ok()
}

/// After this long without a file finishing, a file being found or a byte copied, `watch` says so
/// instead of stretching its ETA.
pub const STALL_AFTER: Duration = Duration::from_secs(120);

/// What `watch` shows when nothing has moved for `idle` (`None` below [`STALL_AFTER`]).
pub fn stall_note(idle: Duration) -> Option<String> {
    (idle >= STALL_AFTER).then(|| {
        format!(
            "no progress for {}: a step is being retried, or files wait for a crashed \
             invocation's lease to expire (see `synmigrate status`)",
            HumanDuration(idle)
        )
    })
}

/// Files and bytes per second between two samples.
pub fn rates(first: Sample, now: Sample) -> Rates {
    let seconds = now.at.saturating_sub(first.at).as_secs_f64();
    let per_second = |before: u64, after: u64| {
        let moved = after.saturating_sub(before);
        (seconds > 0.0 && moved > 0).then(|| moved as f64 / seconds)
    };
    Rates {
        files_per_second: per_second(first.files, now.files),
        bytes_per_second: per_second(first.bytes, now.bytes),
    }
}
