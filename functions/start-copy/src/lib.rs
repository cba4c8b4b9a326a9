//! Lambda `synmigrate-start-copy`: claims one work unit's items, starts (or resumes) each
//! source's copy and returns the part batches CopyParts must run.

use synmigrate::stages::{self, Services, StartCopyOutput, UnitInput};
use synmigrate_lambda::FunctionError;

pub async fn handle(
    services: &Services,
    input: UnitInput,
) -> Result<StartCopyOutput, FunctionError> {
    Ok(stages::start_copy(services, input).await?)
}

#[cfg(test)]
mod tests {
    use synmigrate_lambda::parse_event;

    use super::*;

    const SAMPLE: &str = include_str!("../../../events/start-copy.json");

    #[test]
    fn the_sample_event_is_the_stage_input() {
        let input = parse_event(handle, SAMPLE).unwrap();
        assert_eq!(input.run.project_id, "syn1000");
        assert_eq!(input.unit.unit_id, "unit-000001");
        let keys: Vec<&str> = input.unit.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["syn1001.1", "syn1002.1"]);
    }
}
