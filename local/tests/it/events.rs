//! Every sample event in `events/` is what its function accepts, so `cargo lambda invoke
//! --data-file events/...` reaches the stage instead of failing to parse.

use serde::de::DeserializeOwned;
use serde_json::Value;
use synmigrate::config::MigrationOptions;
use synmigrate::stages::{
    CloseRunInput, CompleteInput, CopyPartsInput, IndexInput, InitInput, NotifyInput, PlanInput,
    RecordFailureInput, ReportInput, UnitInput,
};
use synmigrate_testkit::workspace_root;

fn event(name: &str) -> Value {
    let path = workspace_root().join("events").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Parses an event as `T`; with `stage`, checks and strips the tag the function dispatches on.
fn parses_as<T: DeserializeOwned>(name: &str, stage: Option<&str>) -> T {
    let mut value = event(name);
    if let Some(stage) = stage {
        let tag = value
            .as_object_mut()
            .and_then(|o| o.remove("stage"))
            .unwrap_or_else(|| panic!("{name} has no stage"));
        assert_eq!(tag, stage, "{name}");
    }
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_sample_event_parses_as_its_stage_input() {
    let init: InitInput = parses_as("index-init", Some("init"));
    assert!(init.project_id.starts_with("syn"));
    let index: IndexInput = parses_as("index-index", Some("index"));
    let plan: PlanInput = parses_as("index-plan", Some("plan"));
    assert_eq!(index.run, plan.run);
    let unit: UnitInput = parses_as("start-copy", None);
    assert!(!unit.unit.items.is_empty());
    let parts: CopyPartsInput = parses_as("copy-parts", None);
    assert!(parts.batch.first_part <= parts.batch.last_part);
    let complete: CompleteInput = parses_as("complete", Some("complete"));
    assert_eq!(complete.unit, unit.unit);
    let failure: RecordFailureInput = parses_as("complete-record-failure", Some("recordFailure"));
    assert!(failure.failure.error.starts_with("Retryable."));
    let report: ReportInput = parses_as("report", Some("report"));
    assert!(!report.aborted);
    let aborted: ReportInput = parses_as("report-aborted", Some("report"));
    assert!(aborted.aborted);
    let close: CloseRunInput = parses_as("report-close-run", Some("closeRun"));
    assert_eq!(close.run_id, report.run.run_id);
    let notify: NotifyInput = parses_as("report-notify", Some("notify"));
    assert_eq!(notify.state["run"]["runId"], report.run.run_id.as_str());

    let start = event("start-execution");
    assert!(start["projectId"].is_string());
    assert!(start["destinationStorageLocationId"].is_i64());
    let options: MigrationOptions = serde_json::from_value(start["options"].clone()).unwrap();
    options.validate().unwrap();
}
