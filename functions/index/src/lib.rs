//! Lambda `synmigrate-index`: the stages before the copy, chosen by the event's `stage` tag
//! (`init`, `index` or `plan`), so that one function holds the lock-and-walk logic.

use serde::{Deserialize, Serialize};
use synmigrate::stages::{
    self, IndexInput, IndexOutput, InitInput, PlanInput, PlanOutput, RunContext, Services,
};
use synmigrate_lambda::FunctionError;

/// What the state machine sends: the stage's input, tagged with the stage.
#[derive(Debug, Deserialize)]
#[serde(tag = "stage", rename_all = "camelCase")]
pub enum Event {
    Init(InitInput),
    Index(IndexInput),
    Plan(PlanInput),
}

/// The stage's output as it is (no tag).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Init(Box<RunContext>),
    Index(IndexOutput),
    Plan(PlanOutput),
}

pub async fn handle(services: &Services, event: Event) -> Result<Reply, FunctionError> {
    Ok(match event {
        Event::Init(input) => Reply::Init(Box::new(stages::init(services, input).await?)),
        Event::Index(input) => Reply::Index(stages::index(services, input).await?),
        Event::Plan(input) => Reply::Plan(stages::plan(services, input).await?),
    })
}

#[cfg(test)]
mod tests {
    use synmigrate_lambda::parse_event;

    use super::*;

    const INIT: &str = include_str!("../../../events/index-init.json");
    const INDEX: &str = include_str!("../../../events/index-index.json");
    const PLAN: &str = include_str!("../../../events/index-plan.json");

    /// The sample event without its `stage` tag, parsed as the stage's own input.
    fn untagged<T: serde::de::DeserializeOwned>(json: &str) -> T {
        synmigrate_lambda::untagged_event(json).unwrap()
    }

    #[test]
    fn the_stage_tag_picks_the_stage() {
        match parse_event(handle, INIT).unwrap() {
            Event::Init(input) => {
                assert_eq!(input, untagged::<InitInput>(INIT));
                assert_eq!(input.project_id, "syn1000");
                assert_eq!(input.destination_storage_location_id, Some(7001));
                assert_eq!(input.execution_name, "sample-run");
                assert_eq!(input.options.max_concurrency, 2);
            }
            other => panic!("index-init.json: {other:?}"),
        }
        match parse_event(handle, INDEX).unwrap() {
            Event::Index(input) => {
                assert_eq!(input, untagged::<IndexInput>(INDEX));
                assert_eq!(input.run.run_id, "sample-run");
                assert_eq!(input.time_budget_seconds, None);
            }
            other => panic!("index-index.json: {other:?}"),
        }
        match parse_event(handle, PLAN).unwrap() {
            Event::Plan(input) => {
                assert_eq!(input, untagged::<PlanInput>(PLAN));
                assert_eq!(input.run.project_id, "syn1000");
            }
            other => panic!("index-plan.json: {other:?}"),
        }
    }

    #[test]
    fn an_event_without_a_known_stage_is_refused() {
        let untagged = serde_json::to_string(&untagged::<serde_json::Value>(PLAN)).unwrap();
        assert!(parse_event(handle, &untagged).is_err());
        let unknown = PLAN.replace(r#""stage": "plan""#, r#""stage": "copy""#);
        assert_ne!(unknown, PLAN);
        assert!(parse_event(handle, &unknown).is_err());
    }

    #[test]
    fn the_reply_is_the_stage_output_itself() {
        // Init's reply is the run every later stage gets as `run`.
        let run = untagged::<IndexInput>(INDEX).run;
        assert_eq!(
            serde_json::to_value(Reply::Init(Box::new(run.clone()))).unwrap(),
            serde_json::to_value(run).unwrap()
        );
    }
}
