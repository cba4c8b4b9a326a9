//! Lambda `synmigrate-report`: counts the items, writes the CSV report to S3, closes the run and
//! releases the project lock; its [`Summary`] is the run's output.

use synmigrate::stages::{self, ReportInput, Services, Summary};
use synmigrate_lambda::FunctionError;

pub async fn handle(services: &Services, input: ReportInput) -> Result<Summary, FunctionError> {
    Ok(stages::report(services, input).await?)
}

#[cfg(test)]
mod tests {
    use synmigrate_lambda::parse_event;

    use super::*;

    const SAMPLE: &str = include_str!("../../../events/report.json");
    const ABORTED: &str = include_str!("../../../events/report-aborted.json");

    #[test]
    fn the_sample_event_is_the_stage_input() {
        let input = parse_event(handle, SAMPLE).unwrap();
        assert_eq!(input.run.project_id, "syn1000");
        assert!(!input.aborted);
    }

    #[test]
    fn an_aborted_run_is_reported_as_aborted() {
        let aborted = parse_event(handle, ABORTED).unwrap();
        assert!(aborted.aborted);
        assert_eq!(aborted.run, parse_event(handle, SAMPLE).unwrap().run);
        // `aborted` may be left out (a manual invocation): a normal report.
        let mut value: serde_json::Value = serde_json::from_str(SAMPLE).unwrap();
        value.as_object_mut().unwrap().remove("aborted");
        assert!(!parse_event(handle, &value.to_string()).unwrap().aborted);
    }
}
