//! Static rules of `statemachine/migration.asl.json` that running it locally cannot show: every
//! transition names a state of its scope, state names are unique, every state is reachable, every
//! Lambda task retries the retryable error types, the Lambda service's errors and a crashed
//! function's with jitter, and only JSONPath features are used.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use synmigrate::error::types;
use synmigrate_local::{definition, FUNCTIONS};

/// Checks one `States` scope (the top level or a Map's ItemProcessor), recursing into Maps;
/// collects every state name in `names` (they must be unique in the whole state machine).
fn check_scope(scope: &Value, path: &str, tasks: &mut usize, names: &mut BTreeSet<String>) {
    let states: &Map<String, Value> = scope["States"].as_object().expect("States");
    for name in states.keys() {
        assert!(
            names.insert(name.clone()),
            "state name {name} is used twice"
        );
    }
    let start = scope["StartAt"].as_str().expect("StartAt");
    let mut reachable = BTreeSet::from([start.to_owned()]);
    for (name, state) in states {
        let mut targets: Vec<&str> = Vec::new();
        targets.extend(state["Next"].as_str());
        targets.extend(state["Default"].as_str());
        for rule in state["Choices"].as_array().into_iter().flatten() {
            targets.extend(rule["Next"].as_str());
        }
        for catcher in state["Catch"].as_array().into_iter().flatten() {
            targets.extend(catcher["Next"].as_str());
        }
        for target in targets {
            assert!(
                states.contains_key(target),
                "{path}{name} -> unknown {target}"
            );
            reachable.insert(target.to_owned());
        }
        let kind = state["Type"].as_str().expect("Type");
        let ends = matches!(kind, "Succeed" | "Fail" | "Choice") || state["End"] == true;
        assert!(
            ends || state["Next"].is_string(),
            "{path}{name} leads nowhere"
        );
        if kind == "Task"
            && state["Resource"]
                .as_str()
                .is_some_and(|r| r.contains(":function:"))
        {
            *tasks += 1;
            let retried: BTreeSet<&str> = state["Retry"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}{name} has no Retry"))
                .iter()
                .inspect(|retrier| assert_eq!(retrier["JitterStrategy"], "FULL", "{path}{name}"))
                .flat_map(|retrier| retrier["ErrorEquals"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let must = [types::THROTTLED, types::TRANSIENT, types::LEASE_HELD];
            let lambda = types::LAMBDA_SERVICE_ERRORS.into_iter();
            for error in must.into_iter().chain(lambda).chain(types::CRASH_ERRORS) {
                assert!(
                    retried.contains(error),
                    "{path}{name} does not retry {error}"
                );
            }
        }
        if kind == "Map" {
            assert!(state.get("ItemBatcher").is_none(), "no ItemBatcher (moto)");
            check_scope(
                &state["ItemProcessor"],
                &format!("{path}{name}/"),
                tasks,
                names,
            );
        }
    }
    let unreachable: Vec<&String> = states.keys().filter(|s| !reachable.contains(*s)).collect();
    assert!(
        unreachable.is_empty(),
        "{path}: unreachable {unreachable:?}"
    );
}

#[test]
fn the_definition_is_well_formed() {
    let text = definition().expect("the definition loads");
    assert!(!text.contains("QueryLanguage"), "JSONPath only");
    assert!(!text.contains("{%"), "no JSONata expressions");
    let machine: Value = serde_json::from_str(&text).expect("JSON");
    let mut tasks = 0;
    check_scope(&machine, "", &mut tasks, &mut BTreeSet::new());
    // Init, Index, Plan, StartCopy, CopyParts, Complete, RecordFailure, Report, ReportAborted,
    // CloseRun, CloseInit, Notify.
    assert_eq!(tasks, 12);
    // Every end of an execution notifies first: no Fail or Succeed state but the last ones.
    let ends: Vec<&String> = machine["States"]
        .as_object()
        .expect("states")
        .iter()
        .filter(|(_, state)| {
            matches!(state["Type"].as_str(), Some("Fail" | "Succeed")) || state["End"] == true
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(ends, ["Failed", "Succeeded"]);
    // The units' results go to S3, never into the execution's 256 KiB of state.
    assert_eq!(
        machine["States"]["CopyUnits"]["ResultWriter"]["Resource"],
        "arn:aws:states:::s3:putObject"
    );
    // A run that left files unmigrated fails with its own error, whatever continueOnError says.
    assert!(text.contains(types::UNFINISHED));
    assert!(text.contains("$.summary.unfinishedMessage"));
    for (_, function) in FUNCTIONS {
        assert!(text.contains(function), "{function} is called");
    }
}
