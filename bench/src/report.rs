//! The markdown tables: throughput against the Synapse budget, calls per migrated file by
//! endpoint, and where the wall time goes (state machine against the in-process runner).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use synapse_sim::RequestRecord;
use synmigrate::copy::CopyMode;

use crate::runs::{Measurement, Tool};

/// The requests that start a copy: the Synapse engine's multipart copy, the direct engine's
/// registration of an object it copied. The copy phase starts at the first.
const COPY_STARTS: [&str; 2] = ["POST /file/multipart", "POST /externalFileHandle/s3"];

fn minutes(duration: Duration) -> f64 {
    duration.as_secs_f64() / 60.0
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn calls_per_file(m: &Measurement) -> Option<f64> {
    (m.migrated > 0).then(|| m.requests.len() as f64 / m.migrated as f64)
}

/// The most requests Synapse answered (429s left out) in any 60 s: above the limit when the
/// client's calls fall under more than one throttle key or straddle two fixed blocks.
fn peak_minute(m: &Measurement) -> usize {
    peak_of(m.requests.iter())
}

/// The throttle keys (user and `sessionID` cookie; one IP here) the run's requests fell under,
/// and the busiest key's peak in 60 s: the server counts each key apart.
fn throttle_keys(m: &Measurement) -> (usize, usize) {
    let mut keys: BTreeMap<(Option<&str>, Option<&str>), Vec<&RequestRecord>> = BTreeMap::new();
    for r in &m.requests {
        keys.entry((r.user_id.as_deref(), r.session_id.as_deref()))
            .or_default()
            .push(r);
    }
    let busiest = keys.values().map(|rs| peak_of(rs.iter().copied())).max();
    (keys.len(), busiest.unwrap_or_default())
}

fn peak_of<'a>(requests: impl Iterator<Item = &'a RequestRecord>) -> usize {
    let mut times: Vec<u64> = requests
        .filter(|r| r.status != 429)
        .map(|r| r.received_ms)
        .collect();
    times.sort_unstable();
    let mut start = 0;
    let mut peak = 0;
    for (end, &at) in times.iter().enumerate() {
        while times[start] + 60_000 <= at {
            start += 1;
        }
        peak = peak.max(end + 1 - start);
    }
    peak
}

/// The projects in the order they were measured.
fn projects(runs: &[Measurement]) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for m in runs {
        if !seen.contains(&m.project.as_str()) {
            seen.push(&m.project);
        }
    }
    seen
}

fn or_dash(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// One row per run: the headline numbers.
pub fn summary(runs: &[Measurement]) -> String {
    let mut out = String::from(
        "| project | tool / engine | files | migrated | failed | wall | files/min | calls/file \
         | 429s | peak calls in 60 s | throttle keys | busiest key's peak in 60 s | budget/min \
         | share of budget ÷ calls/file |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for m in runs {
        let per_minute = m.migrated as f64 / minutes(m.wall).max(f64::EPSILON);
        let calls = calls_per_file(m);
        let budget = m.tool.budget();
        let share = calls.map(|c| per_minute / (f64::from(budget) / c) * 100.0);
        let throttled = m.requests.iter().filter(|r| r.status == 429).count();
        let (keys, busiest) = throttle_keys(m);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} s | {:.0} | {} | {throttled} | {} | {keys} | \
             {busiest} | {budget} | {} |",
            m.project,
            m.tool.label(),
            m.files,
            m.migrated,
            m.failed,
            m.wall.as_secs_f64(),
            per_minute,
            or_dash(calls, 2),
            peak_minute(m),
            share.map_or_else(|| "–".to_owned(), |s| format!("{s:.0}%")),
        );
    }
    out.push_str(
        "\nShare = files/min ÷ (budget ÷ calls/file). A run shorter than 60 s fits in one of the \
         throttle's fixed blocks, so its rate per minute may exceed the limit.\n",
    );
    for m in runs {
        if let Some(error) = &m.error {
            let _ = writeln!(out, "\n{} on {}: {error}", m.tool.label(), m.project);
        }
    }
    out
}

/// Per project: calls per migrated file to each endpoint, one column per run.
pub fn endpoints(runs: &[Measurement]) -> String {
    let mut out = String::new();
    for project in projects(runs) {
        let columns: Vec<&Measurement> = runs.iter().filter(|m| m.project == project).collect();
        let mut counts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, m) in columns.iter().enumerate() {
            for record in &m.requests {
                counts
                    .entry(record.endpoint())
                    .or_insert_with(|| vec![0; columns.len()])[i] += 1;
            }
        }
        let _ = writeln!(out, "Synapse calls per migrated file, {project}:\n");
        out.push_str("| endpoint |");
        for m in &columns {
            let _ = write!(out, " {} |", m.tool.label());
        }
        out.push_str("\n|---|");
        out.push_str(&"--:|".repeat(columns.len()));
        out.push('\n');
        let mut rows: Vec<(String, Vec<usize>)> = counts.into_iter().collect();
        rows.sort_by_key(|(endpoint, row)| {
            (
                std::cmp::Reverse(row.iter().sum::<usize>()),
                endpoint.clone(),
            )
        });
        for (endpoint, row) in rows {
            let _ = write!(out, "| `{endpoint}` |");
            for (m, count) in columns.iter().zip(row) {
                let per_file = (m.migrated > 0).then(|| count as f64 / m.migrated as f64);
                let _ = write!(out, " {} |", or_dash(per_file, 2));
            }
            out.push('\n');
        }
        out.push_str("| **total** |");
        for m in &columns {
            let _ = write!(out, " **{}** |", or_dash(calls_per_file(m), 2));
        }
        out.push_str("\n\n");
    }
    out
}

/// Milliseconds of a run's phases: before its first Synapse call, from there to the first copy
/// (init, index, plan), from the first copy to the last Synapse call, and after that.
struct Phases([i64; 4]);

impl Phases {
    fn of(m: &Measurement) -> Self {
        let (start, end) = (m.started_ms as i64, m.ended_ms as i64);
        let times = || m.requests.iter().map(|r| r.received_ms as i64);
        let (Some(first), Some(last)) = (times().min(), times().max()) else {
            return Self([end - start, 0, 0, 0]);
        };
        let copy = m
            .requests
            .iter()
            .filter(|r| COPY_STARTS.contains(&r.endpoint().as_str()))
            .map(|r| r.received_ms as i64)
            .min()
            .unwrap_or(last);
        Self([first - start, copy - first, last - copy, end - last])
    }
}

/// The synmigrate runs' phases, and per engine the state machine's minus the in-process runner's.
pub fn breakdown(runs: &[Measurement]) -> String {
    let mut out = String::from(
        "| project | tool / engine | wall | before the first Synapse call | init + index + plan \
         (to the first copy) | copy (to the last Synapse call) | after the last Synapse call |\n\
         |---|---|--:|--:|--:|--:|--:|\n",
    );
    let row = |out: &mut String, project: &str, label: &str, wall: i64, phases: &[i64; 4]| {
        let cells: Vec<String> = phases.iter().map(|&ms| seconds(ms)).collect();
        let _ = writeln!(
            out,
            "| {project} | {label} | {} | {} |",
            seconds(wall),
            cells.join(" | ")
        );
    };
    for m in runs.iter().filter(|m| m.tool != Tool::Official) {
        row(
            &mut out,
            &m.project,
            m.tool.label(),
            m.wall.as_millis() as i64,
            &Phases::of(m).0,
        );
    }
    for project in projects(runs) {
        for mode in [CopyMode::Synapse, CopyMode::Direct] {
            let run = |tool| runs.iter().find(|m| m.tool == tool && m.project == project);
            let (Some(machine), Some(inproc)) =
                (run(Tool::StateMachine(mode)), run(Tool::InProcess(mode)))
            else {
                continue;
            };
            let (a, b) = (Phases::of(machine).0, Phases::of(inproc).0);
            let diff = [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]];
            let wall = machine.wall.as_millis() as i64 - inproc.wall.as_millis() as i64;
            let label = format!("state machine − in-process, {}", mode_name(mode));
            row(&mut out, &machine.project, &label, wall, &diff);
        }
    }
    out
}

fn mode_name(mode: CopyMode) -> &'static str {
    match mode {
        CopyMode::Direct => "direct",
        _ => "synapse",
    }
}
