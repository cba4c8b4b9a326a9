//! What the deployment's own files say about a run's cost: the state transitions of the
//! definition's happy path (`statemachine/migration.asl.json`) and each function's memory
//! (`template.yaml`). Both files are compiled in, so the estimate counts on the definition and
//! template this build deploys; `make scale`'s projection counts with the same code.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Error, Result};

/// The state machine this build deploys.
const DEFINITION: &str = include_str!("../../../statemachine/migration.asl.json");
/// The SAM template this build deploys.
const TEMPLATE: &str = include_str!("../../../template.yaml");

/// State transitions of the definition's happy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transitions {
    /// Per run, besides the Index loop: the states entered once.
    pub run_once: u64,
    /// Per Index invocation: the loop's states.
    pub index_loop: u64,
    /// Per work unit (a child execution of the Distributed Map), besides part batches.
    pub per_unit: u64,
    /// Per part batch (the inline Map's iteration).
    pub per_batch: u64,
    /// Once more when there are follower units: the states of the Map's second pass.
    pub follower_pass: u64,
    pub run_path: Vec<String>,
    pub loop_path: Vec<String>,
    pub unit_path: Vec<String>,
    pub batch_path: Vec<String>,
    pub follower_path: Vec<String>,
}

/// One walk through a definition's states.
#[derive(Default)]
struct Walk {
    path: Vec<String>,
    /// The states of a loop (Index until done), once.
    looped: Vec<String>,
    /// The Map states met.
    maps: Vec<String>,
    /// A Choice's branch that leads back to a state already entered (the follower units' second
    /// pass), up to that Choice again.
    detour: Vec<String>,
}

/// The states from `target` following `Next` until one on `path`, and that one; `None` when
/// they do not lead back to `path` within a few states.
fn way_back(states: &Value, path: &[String], target: &str) -> Option<(Vec<String>, String)> {
    let mut ahead = Vec::new();
    let mut at = target.to_owned();
    for _ in 0..8 {
        if path.contains(&at) {
            return Some((ahead, at));
        }
        ahead.push(at.clone());
        at = states[&at]["Next"].as_str()?.to_owned();
    }
    None
}

/// The happy path through `states` from `start`: a Choice takes its first branch that is no
/// Fail state and does not lead back to a state already entered, and otherwise its Default; a
/// Default that goes back is a loop (Index until done), whose states are counted apart.
fn walk(states: &Value, start: &str) -> Walk {
    let mut walk = Walk::default();
    let mut current = Some(start.to_owned());
    while let Some(name) = current.take() {
        if walk.path.contains(&name) || walk.path.len() > 200 {
            break;
        }
        let state = &states[&name];
        walk.path.push(name.clone());
        let kind = state["Type"].as_str().unwrap_or_default();
        if kind == "Map" {
            walk.maps.push(name.clone());
        }
        if state["End"].as_bool() == Some(true) {
            break;
        }
        current = match kind {
            "Choice" => choose(states, state, &mut walk),
            "Succeed" | "Fail" => None,
            _ => state["Next"].as_str().map(str::to_owned),
        };
    }
    walk
}

/// The state a Choice goes to on the happy path (see [`walk`]); notes a loop or a detour met.
fn choose(states: &Value, state: &Value, walk: &mut Walk) -> Option<String> {
    let is_fail = |target: &str| states[target]["Type"].as_str() == Some("Fail");
    let mut branches = Vec::new();
    for target in state["Choices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Next"].as_str())
        .filter(|t| !is_fail(t))
    {
        match way_back(states, &walk.path, target) {
            // A second pass (the follower units' Map), which a project without widely shared
            // sources skips: counted apart.
            Some((ahead, back)) => {
                let from = walk.path.iter().position(|p| *p == back).unwrap_or(0);
                walk.detour = ahead
                    .into_iter()
                    .chain(walk.path[from..].to_vec())
                    .collect();
            }
            None => branches.push(target.to_owned()),
        }
    }
    let default = state["Default"].as_str().map(str::to_owned);
    match default {
        Some(back) if walk.path.contains(&back) => {
            let from = walk.path.iter().position(|p| *p == back).unwrap_or(0);
            walk.looped = walk.path[from..].to_vec();
            branches.into_iter().next()
        }
        default => branches
            .into_iter()
            .next()
            .or(default.filter(|d| !is_fail(d))),
    }
}

impl Transitions {
    /// Counted on the definition this build deploys.
    pub fn deployed() -> Result<Self> {
        let definition: Value = serde_json::from_str(DEFINITION).map_err(|e| {
            Error::Internal(format!("the compiled-in state machine does not parse: {e}"))
        })?;
        Self::from_definition(&definition)
    }

    /// Counts them on a definition.
    pub fn from_definition(definition: &Value) -> Result<Self> {
        let missing = |what: &str| Error::Internal(format!("the definition has no {what}"));
        let start = definition["StartAt"]
            .as_str()
            .ok_or_else(|| missing("StartAt"))?;
        let run = walk(&definition["States"], start);
        // The first Distributed Map is the copy of the units; its processor is one unit.
        let unit_map = run
            .maps
            .iter()
            .find(|m| definition["States"][m.as_str()]["ItemReader"].is_object())
            .ok_or_else(|| missing("Distributed Map"))?;
        let processor = &definition["States"][unit_map.as_str()]["ItemProcessor"];
        let unit_start = processor["StartAt"]
            .as_str()
            .ok_or_else(|| missing("unit StartAt"))?;
        let unit = walk(&processor["States"], unit_start);
        let batch = match unit.maps.first() {
            Some(inline) => {
                let inner = &processor["States"][inline.as_str()]["ItemProcessor"];
                walk(
                    &inner["States"],
                    inner["StartAt"].as_str().unwrap_or_default(),
                )
            }
            None => Walk::default(),
        };
        let count = |states: &[String]| states.len() as u64;
        Ok(Self {
            // The path holds one pass of the loop; the loop is counted per invocation.
            run_once: count(&run.path) - count(&run.looped),
            index_loop: count(&run.looped),
            per_unit: count(&unit.path),
            per_batch: count(&batch.path),
            follower_pass: count(&run.detour),
            run_path: run.path,
            loop_path: run.looped,
            unit_path: unit.path,
            batch_path: batch.path,
            follower_path: run.detour,
        })
    }
}

/// Memory (MB) of each function (by binary name) in the template this build deploys.
pub fn deployed_memory() -> BTreeMap<String, u64> {
    template_memory(TEMPLATE)
}

/// Memory (MB) of each function (by binary name) in `template.yaml`: the resource's own
/// `MemorySize`, else the Globals'.
pub fn template_memory(template: &str) -> BTreeMap<String, u64> {
    let mut global = 128;
    let mut in_globals = false;
    let mut resource: Option<(Option<String>, Option<u64>)> = None;
    let mut memory = BTreeMap::new();
    let mut finish = |resource: &mut Option<(Option<String>, Option<u64>)>, global: u64| {
        if let Some((Some(binary), size)) = resource.take() {
            memory.insert(binary, size.unwrap_or(global));
        }
    };
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 0 && !text.is_empty() {
            in_globals = text == "Globals:";
            finish(&mut resource, global);
        }
        if indent == 2 && text.ends_with(':') && !in_globals {
            finish(&mut resource, global);
            resource = Some((None, None));
        }
        let value = |key: &str| text.strip_prefix(key).map(|v| v.trim().to_owned());
        if let Some(size) = value("MemorySize:").and_then(|v| v.parse::<u64>().ok()) {
            match (&mut resource, in_globals) {
                (_, true) => global = size,
                (Some((_, slot)), false) => *slot = Some(size),
                _ => {}
            }
        }
        if let (Some(binary), Some((slot, _))) = (value("Binary:"), &mut resource) {
            *slot = Some(binary);
        }
    }
    finish(&mut resource, global);
    memory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_definition_has_a_loop_a_unit_a_batch_and_a_follower_pass() {
        let t = Transitions::deployed().unwrap();
        assert_eq!(t.loop_path, ["Index", "Indexed"]);
        assert_eq!(t.index_loop, 2);
        assert_eq!(t.unit_path.first().map(String::as_str), Some("StartCopy"));
        assert!(t.unit_path.contains(&"Complete".to_owned()));
        assert_eq!(t.batch_path, ["CopyParts"]);
        assert_eq!(t.follower_path, ["Followers", "CopyUnits", "MoreUnits"]);
        assert!(!t.run_path.contains(&"Followers".to_owned()));
        assert_eq!(t.run_once, t.run_path.len() as u64 - 2);
    }

    #[test]
    fn memory_is_the_resources_own_else_the_globals() {
        let template = "Globals:\n  Function:\n    MemorySize: 512\nResources:\n  A:\n    \
                        Type: x\n    Metadata:\n      Binary: a\n    Properties:\n      \
                        MemorySize: 1024\n  B:\n    Metadata:\n      Binary: b\n";
        let memory = template_memory(template);
        assert_eq!(memory["a"], 1024);
        assert_eq!(memory["b"], 512);
        let deployed = deployed_memory();
        assert_eq!(deployed["synmigrate-index"], 1024);
        assert!(deployed.contains_key("synmigrate-report"));
    }
}
