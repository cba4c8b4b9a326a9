//! The project's own template rules (`scripts/check-template.sh --rules-only`, which `make
//! template-check` runs after the linters) fail on templates that break them: each case changes one
//! line of `template.yaml` and expects the rule's message; the template as it is passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context};
use synmigrate_testkit::workspace_root;

/// One broken copy of the template: (what changes, into what, a message the rules must print).
const CASES: [(&str, &str, &str); 6] = [
    (
        r#"[".", "SynapseThrottled", {"stat": "Sum"}],"#,
        r#"[".", "SynapseThrottles", {"stat": "Sum"}],"#,
        "the dashboard does not show SynapseThrottled",
    ),
    (
        r#"[".", "SynapseThrottled", {"stat": "Sum"}],"#,
        r#"[".", "SynapseThrottles", {"stat": "Sum"}], [".", "SynapseThrottled"],"#,
        "metric SynapseThrottles is not one the functions emit",
    ),
    (
        "      MetricName: ItemsFailed\n      Statistic: Sum",
        "      MetricName: ItemFailures\n      Statistic: Sum",
        "FailuresAlarm: metric ItemFailures is not one the functions emit",
    ),
    (
        "Action: sns:Publish",
        "Action: sns:*",
        "wildcard action 'sns:*'",
    ),
    (
        "SYNMIGRATE_METRICS_NAMESPACE: !Sub",
        "SYNMIGRATE_METRIC_NAMESPACE: !Sub",
        "Globals sets SYNMIGRATE_METRIC_NAMESPACE, which no function reads",
    ),
    (
        "        EventBusName: !Ref EventBusName",
        "        EventBus: !Ref EventBusName",
        "${EventBusName} has no DefinitionSubstitutions entry",
    ),
];

/// Runs the rules on `template`: whether they passed, and what they printed.
fn rules(template: &Path) -> anyhow::Result<(bool, String)> {
    let output = Command::new("bash")
        .arg(workspace_root().join("scripts/check-template.sh"))
        .arg("--rules-only")
        .arg(template)
        .output()
        .context("running scripts/check-template.sh")?;
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    Ok((output.status.success(), text))
}

/// A copy of the template beside it (its paths are relative), removed when dropped.
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn the_template_rules_refuse_what_they_are_for() -> anyhow::Result<()> {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("template.yaml"))?;
    let (passed, text) = rules(&root.join("template.yaml"))?;
    ensure!(passed, "the template as it is passes: {text}");
    for (index, (from, to, message)) in CASES.iter().enumerate() {
        ensure!(
            template.contains(from),
            "case {index}: the template has no {from:?}"
        );
        let copy = Copy(root.join(format!(
            ".template-rules-{index}-{}.yaml",
            std::process::id()
        )));
        std::fs::write(&copy.0, template.replacen(from, to, 1))?;
        let (passed, text) = rules(&copy.0)?;
        ensure!(!passed, "case {index} ({to:?}) passed the rules: {text}");
        ensure!(
            text.contains(message),
            "case {index}: no {message:?} in {text}"
        );
    }
    Ok(())
}
