//! What one function invocation did, as CloudWatch metrics in the embedded metric format (EMF):
//! a JSON log line that CloudWatch Logs turns into metrics, so the functions make no CloudWatch
//! call and need no permission for it.
//!
//! The stages count into the [`Recorder`] of their `Services`; the Synapse
//! client counts its own requests ([`crate::synapse::RequestCounts`]). After each invocation the
//! function layer takes both and prints [`emf_documents`]. The dashboard and alarms of
//! `template.yaml` name these metrics ([`Metric::ALL`]; the template check compares them).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::synapse::RequestCounts;

/// The namespace when the deployment names none (`SYNMIGRATE_METRICS_NAMESPACE`; the template
/// gives each stack its own).
pub const DEFAULT_NAMESPACE: &str = "synmigrate";
/// The dimension naming the function that emitted a metric.
pub const FUNCTION_DIMENSION: &str = "FunctionName";
/// The dimension of [`Metric::ItemsFailed`] naming the stable error type.
pub const ERROR_TYPE_DIMENSION: &str = "ErrorType";

/// The metrics the functions emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Items the index wrote (to copy, skipped, already there): progress before any copy.
    ItemsIndexed,
    /// Items whose entity (or table cell) now points at the copy.
    FilesMigrated,
    /// Bytes of copies finished (a source copied once however many items use it).
    BytesCopied,
    /// Items recorded ERRORED, also per error type.
    ItemsFailed,
    /// Requests sent to Synapse (retries included).
    SynapseRequests,
    /// Synapse answers 429 (throttled).
    SynapseThrottled,
    /// Time requests waited for the process limiter and the run's fleet budget.
    BudgetWaitTime,
    /// Bytes per second of the part batches copied (CopyParts).
    CopyThroughput,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::ItemsIndexed,
        Metric::FilesMigrated,
        Metric::BytesCopied,
        Metric::ItemsFailed,
        Metric::SynapseRequests,
        Metric::SynapseThrottled,
        Metric::BudgetWaitTime,
        Metric::CopyThroughput,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ItemsIndexed => "ItemsIndexed",
            Metric::FilesMigrated => "FilesMigrated",
            Metric::BytesCopied => "BytesCopied",
            Metric::ItemsFailed => "ItemsFailed",
            Metric::SynapseRequests => "SynapseRequests",
            Metric::SynapseThrottled => "SynapseThrottled",
            Metric::BudgetWaitTime => "BudgetWaitTime",
            Metric::CopyThroughput => "CopyThroughput",
        }
    }

    /// The CloudWatch unit.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::ItemsIndexed | Metric::FilesMigrated | Metric::ItemsFailed => "Count",
            Metric::SynapseRequests | Metric::SynapseThrottled => "Count",
            Metric::BytesCopied => "Bytes",
            Metric::BudgetWaitTime => "Milliseconds",
            Metric::CopyThroughput => "Bytes/Second",
        }
    }
}

/// What the stages did in one invocation, taken (and reset) after it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub items_indexed: u64,
    pub files_migrated: u64,
    pub bytes_copied: u64,
    /// Items failed per stable error type.
    pub failures: BTreeMap<String, u64>,
    /// Bytes of part batches and the time they took.
    pub batch_bytes: u64,
    pub batch_time: Duration,
}

/// Where the stages count; shared by the concurrent work of an invocation.
#[derive(Debug, Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
}

impl Recorder {
    fn with(&self, change: impl FnOnce(&mut Tally)) {
        change(&mut self.tally.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn indexed(&self, items: u64) {
        self.with(|t| t.items_indexed += items);
    }

    pub fn migrated(&self, files: u64) {
        self.with(|t| t.files_migrated += files);
    }

    pub fn copied(&self, bytes: u64) {
        self.with(|t| t.bytes_copied += bytes);
    }

    pub fn failed(&self, error_type: &str, items: u64) {
        self.with(|t| *t.failures.entry(error_type.to_owned()).or_default() += items);
    }

    /// A part batch of `bytes` copied in `took`.
    pub fn batch(&self, bytes: u64, took: Duration) {
        self.with(|t| {
            t.batch_bytes += bytes;
            t.batch_time += took;
        });
    }

    /// The tally so far, leaving zero behind.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut self.tally.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The EMF documents of one invocation of `function`: one with every metric (per function and
/// in total), and one per error type that failed items. `timestamp_ms`: when it ended.
pub fn emf_documents(
    namespace: &str,
    function: &str,
    tally: &Tally,
    requests: &RequestCounts,
    timestamp_ms: i64,
) -> Vec<Value> {
    let throughput = (tally.batch_time > Duration::ZERO)
        .then(|| tally.batch_bytes as f64 / tally.batch_time.as_secs_f64());
    let values = [
        (Metric::ItemsIndexed, json!(tally.items_indexed)),
        (Metric::FilesMigrated, json!(tally.files_migrated)),
        (Metric::BytesCopied, json!(tally.bytes_copied)),
        (
            Metric::ItemsFailed,
            json!(tally.failures.values().sum::<u64>()),
        ),
        (Metric::SynapseRequests, json!(requests.requests)),
        (Metric::SynapseThrottled, json!(requests.throttled)),
        (
            Metric::BudgetWaitTime,
            json!(requests.waited.as_millis() as u64),
        ),
        (Metric::CopyThroughput, json!(throughput)),
    ];
    let present: Vec<(Metric, Value)> = values.into_iter().filter(|(_, v)| !v.is_null()).collect();
    let mut documents = vec![document(
        namespace,
        timestamp_ms,
        &[(FUNCTION_DIMENSION, function)],
        true,
        &present,
    )];
    for (error_type, items) in &tally.failures {
        documents.push(document(
            namespace,
            timestamp_ms,
            &[(ERROR_TYPE_DIMENSION, error_type)],
            false,
            &[(Metric::ItemsFailed, json!(items))],
        ));
    }
    documents
}

/// One EMF document: its metrics under the dimension set of all `dimensions` and, `with_total`,
/// under the empty one too (the deployment's total, which the dashboard and alarms watch).
fn document(
    namespace: &str,
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    with_total: bool,
    metrics: &[(Metric, Value)],
) -> Value {
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    let sets = if with_total {
        json!([names, []])
    } else {
        json!([names])
    };
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(metric, _)| json!({"Name": metric.name(), "Unit": metric.unit()}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": sets,
                "Metrics": definitions,
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), json!(value));
    }
    for (metric, value) in metrics {
        root.insert(metric.name().into(), value.clone());
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> RequestCounts {
        RequestCounts {
            requests: 12,
            throttled: 2,
            waited: Duration::from_millis(1500),
        }
    }

    #[test]
    fn an_invocation_is_one_document_with_every_metric_declared_and_valued() {
        let recorder = Recorder::default();
        recorder.indexed(5);
        recorder.migrated(3);
        recorder.copied(4096);
        recorder.batch(10_000_000, Duration::from_secs(4));
        let tally = recorder.take();
        assert_eq!(recorder.take(), Tally::default(), "take resets");
        let docs = emf_documents("ns", "synmigrate-complete", &tally, &requests(), 1_700_000);
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000);
        assert_eq!(directive["Namespace"], "ns");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"], []]));
        assert_eq!(doc["FunctionName"], "synmigrate-complete");
        for metric in Metric::ALL {
            let declared = directive["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["Name"] == metric.name() && m["Unit"] == metric.unit());
            assert!(declared, "{} declared", metric.name());
            assert!(doc[metric.name()].is_number(), "{} valued", metric.name());
        }
        assert_eq!(doc["ItemsIndexed"], 5);
        assert_eq!(doc["FilesMigrated"], 3);
        assert_eq!(doc["BytesCopied"], 4096);
        assert_eq!(doc["SynapseThrottled"], 2);
        assert_eq!(doc["BudgetWaitTime"], 1500);
        assert_eq!(doc["CopyThroughput"], 2_500_000.0);
    }

    #[test]
    fn failures_are_counted_in_total_and_per_error_type() {
        let recorder = Recorder::default();
        recorder.failed("Fatal.NotFound", 2);
        recorder.failed("Retryable.Transient", 1);
        recorder.failed("Fatal.NotFound", 1);
        let docs = emf_documents("ns", "f", &recorder.take(), &RequestCounts::default(), 0);
        assert_eq!(docs[0]["ItemsFailed"], 4);
        assert!(
            docs[0].get("CopyThroughput").is_none(),
            "no batch, no throughput"
        );
        let per_type: Vec<(String, u64)> = docs[1..]
            .iter()
            .map(|d| {
                assert_eq!(
                    d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                    json!([["ErrorType"]]),
                    "the total is in the first document only"
                );
                (
                    d["ErrorType"].as_str().unwrap().to_owned(),
                    d["ItemsFailed"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            per_type,
            [
                ("Fatal.NotFound".to_owned(), 3),
                ("Retryable.Transient".to_owned(), 1)
            ]
        );
    }
}
