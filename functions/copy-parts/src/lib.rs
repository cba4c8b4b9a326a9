//! Lambda `synmigrate-copy-parts`: copies one batch of parts of a big file (bounded concurrency
//! inside), sized by StartCopy to finish well within the Lambda timeout.

use synmigrate::stages::{self, CopyPartsInput, CopyPartsOutput, Services};
use synmigrate_lambda::FunctionError;

pub async fn handle(
    services: &Services,
    input: CopyPartsInput,
) -> Result<CopyPartsOutput, FunctionError> {
    Ok(stages::copy_parts(services, input).await?)
}

#[cfg(test)]
mod tests {
    use synmigrate_lambda::parse_event;

    use super::*;

    const SAMPLE: &str = include_str!("../../../events/copy-parts.json");

    #[test]
    fn the_sample_event_is_the_stage_input() {
        let input = parse_event(handle, SAMPLE).unwrap();
        assert_eq!(input.unit_id, "unit-000001");
        assert_eq!(input.run.run_id, "sample-run");
        assert_eq!(input.job.entity_id, "syn1001");
        assert_eq!((input.batch.first_part, input.batch.last_part), (1, 1));
    }
}
