//! The one verdict `watch` (and `report`) give: every combination of the execution's status and
//! the run record reads as one outcome, and only a clean success exits 0.

use aws_sdk_sfn::types::ExecutionStatus;
use synmigrate::state::{RunCounters, RunRecord, RunStatus, StatusName};
use synmigrate_cli::outcome::{outcome, ExecutionState, Outcome};
use synmigrate_cli::render;
use synmigrate_cli::Verdict;

fn run(status: RunStatus, errored: i64) -> RunRecord {
    RunRecord {
        run_id: "syn1-7001-20261121T0600".into(),
        settings: serde_json::json!({}),
        status,
        counters: RunCounters {
            by_status: [
                (StatusName::Indexed, 3),
                (StatusName::Migrated, 3 - errored),
                (StatusName::Errored, errored),
            ]
            .into(),
            bytes_copied: 2048,
        },
        started_at: 0,
        ended_at: Some(60),
    }
}

fn ended(status: &ExecutionStatus) -> ExecutionState<'_> {
    ExecutionState {
        status,
        error: None,
        cause: None,
    }
}

fn failed<'a>(error: &'a str, cause: &'a str) -> ExecutionState<'a> {
    ExecutionState {
        status: &ExecutionStatus::Failed,
        error: Some(error),
        cause: Some(cause),
    }
}

#[test]
fn a_succeeded_execution_is_judged_by_its_run() {
    let succeeded = ended(&ExecutionStatus::Succeeded);
    let clean = outcome(succeeded, Some(&run(RunStatus::Succeeded, 0)));
    assert_eq!(clean, Outcome::Succeeded);
    assert_eq!(clean.line(), "Succeeded");
    assert_eq!(clean.verdict(), Verdict::Clean);

    // continueOnError: the execution succeeds, the run records FAILED with ERRORED items.
    let with_failures = outcome(succeeded, Some(&run(RunStatus::Failed, 2)));
    assert_eq!(
        with_failures.line(),
        "Finished with 2 failures (continueOnError)"
    );
    assert_eq!(with_failures.verdict(), Verdict::Failures);
    assert_eq!(
        outcome(succeeded, Some(&run(RunStatus::Failed, 1))).line(),
        "Finished with 1 failure (continueOnError)"
    );

    let no_run = outcome(succeeded, None);
    assert_eq!(no_run, Outcome::NoRun);
    assert_eq!(no_run.verdict(), Verdict::Failures);
    let left_running = outcome(succeeded, Some(&run(RunStatus::Running, 0)));
    assert_eq!(left_running, Outcome::RunLeft(RunStatus::Running));
    assert!(left_running
        .line()
        .starts_with("Ended with its run RUNNING"));
    assert_eq!(left_running.verdict(), Verdict::Failures);
}

#[test]
fn an_execution_that_did_not_succeed_says_why_whatever_its_run_says() {
    let items_failed = failed(
        "Fatal.ItemsFailed",
        "items are ERRORED and continueOnError is off; see the run's report",
    );
    let verdict = outcome(items_failed, Some(&run(RunStatus::Failed, 1)));
    assert_eq!(
        verdict.line(),
        "Failed: Fatal.ItemsFailed: items are ERRORED and continueOnError is off; see the run's \
         report"
    );
    assert_eq!(verdict.verdict(), Verdict::Failures);

    let init = failed("Fatal.Forbidden", "you may not edit syn1");
    assert_eq!(
        outcome(init, None).line(),
        "Failed: Fatal.Forbidden: you may not edit syn1"
    );
    let redrivable = ExecutionState {
        status: &ExecutionStatus::PendingRedrive,
        ..init
    };
    assert_eq!(outcome(redrivable, None), outcome(init, None));

    let locked = outcome(
        failed(
            "Fatal.AlreadyRunning",
            "another execution holds the project lock",
        ),
        None,
    );
    assert_eq!(locked, Outcome::AlreadyRunning);
    assert!(locked
        .line()
        .starts_with("Not run: another execution holds the project lock"));

    // Stopped or timed out: the run may still say RUNNING or even SUCCEEDED; the verdict does not.
    for (status, start) in [
        (ExecutionStatus::Aborted, "Aborted: "),
        (ExecutionStatus::TimedOut, "Timed out: "),
    ] {
        for record in [run(RunStatus::Running, 0), run(RunStatus::Succeeded, 0)] {
            let verdict = outcome(ended(&status), Some(&record));
            assert!(verdict.line().starts_with(start), "{}", verdict.line());
            assert_eq!(verdict.verdict(), Verdict::Failures);
        }
    }
    assert_eq!(
        outcome(ended(&ExecutionStatus::Failed), None).line(),
        "Failed (Step Functions recorded no error)"
    );
    let long = "x".repeat(5000);
    let Outcome::Failed {
        cause: Some(cause), ..
    } = outcome(failed("Fatal.Internal", &long), None)
    else {
        panic!("a failure");
    };
    assert_eq!(cause.len(), 2000);
}

#[test]
fn watch_ends_with_one_verdict_then_the_counts() {
    let record = run(RunStatus::Failed, 2);
    let verdict = outcome(ended(&ExecutionStatus::Succeeded), Some(&record));
    let summary = render::watch_summary(&verdict, &record.run_id, Some(&record), None);
    assert_eq!(
        summary,
        "Finished with 2 failures (continueOnError)\n\
         Run syn1-7001-20261121T0600: 3 indexed, 1 migrated, 0 skipped, 0 already migrated, 2 \
         errored; 2.00 KiB copied"
    );
    let init = outcome(failed("Fatal.InvalidInput", "no projectId"), None);
    assert_eq!(
        render::watch_summary(&init, "syn1-7001-20261121T0600", None, None),
        "Failed: Fatal.InvalidInput: no projectId\nNo run syn1-7001-20261121T0600 in the state table"
    );
}
