//! Multipart uploads a migration left unfinished (a copy whose files failed for good, or wait for
//! a retry): the report counts them and says what becomes of their parts, after checking the
//! destination bucket's lifecycle rules where the deployment may read them.

use aws_sdk_s3::types::ExpirationStatus;

use crate::context::{RunContext, Services};
use crate::copy::{EngineKind, EngineState};
use crate::state::{CopyRecord, CopyStatus, EpochSeconds};

/// Days after which Synapse's cleanup worker clears the uploads it started
/// (`MultipartManagerV2.EXPIRE_PERIOD_DAYS`, where the stack enables `MULTIPART_AUTO_CLEANUP`).
const SYNAPSE_CLEANUP_DAYS: u32 = 30;

/// The upload a copy left unfinished: the copy is not finished, its engine state names an
/// upload, and no live lease holds it. When the report runs, the run's own units are over, so
/// only another run's unexpired lease (a crashed attempt that may still be alive) counts.
pub(super) fn unfinished_upload(
    copy: &CopyRecord,
    run: &RunContext,
    at: EpochSeconds,
) -> Option<EngineState> {
    let held = copy
        .lease
        .as_ref()
        .is_some_and(|l| l.expires_at > at && !run.owns(&l.owner));
    if copy.status != CopyStatus::Copying || held {
        return None;
    }
    let state = EngineState::from_document(copy.engine_state.as_ref()?).ok()?;
    state.upload_id().is_some().then_some(state)
}

/// The report's line on one unfinished upload.
pub(super) fn upload_note(state: &EngineState) -> String {
    let engine = match state.kind() {
        EngineKind::Synapse => "Synapse's",
        EngineKind::Direct => "the direct engine's",
    };
    format!(
        "{engine} multipart upload {} is unfinished: a later run resumes it if the file is \
         retried; otherwise its parts stay in the destination bucket until aborted",
        state.upload_id().unwrap_or_default()
    )
}

/// What becomes of `count` unfinished uploads in the run's destination, and what to do.
pub(super) async fn cleanup_advice(services: &Services, run: &RunContext, count: u64) -> String {
    let Some(destination) = &run.destination else {
        return format!(
            "{count} unfinished multipart uploads in the folders' upload locations: a later run \
             resumes them if their files are retried; otherwise abort them, or let the buckets' \
             lifecycle rules (or Synapse's cleanup, after {SYNAPSE_CLEANUP_DAYS} days, for the \
             uploads it started) clear them"
        );
    };
    let Some(bucket) = destination.bucket.as_deref() else {
        return format!(
            "{count} unfinished multipart uploads in Synapse's storage: Synapse clears the \
             uploads it started after {SYNAPSE_CLEANUP_DAYS} days"
        );
    };
    let rule = services
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await;
    let checked = match rule {
        Ok(config) => match config
            .rules()
            .iter()
            .filter(|r| r.status() == &ExpirationStatus::Enabled)
            .find_map(|r| {
                r.abort_incomplete_multipart_upload()?
                    .days_after_initiation()
            }) {
            Some(days) => {
                return format!(
                    "{count} unfinished multipart uploads in s3://{bucket}: its lifecycle rule \
                     aborts them {days} days after they started"
                )
            }
            None => "it has no lifecycle rule that aborts incomplete multipart uploads".to_owned(),
        },
        Err(error) => match error.as_service_error().and_then(|e| e.meta().code()) {
            Some("NoSuchLifecycleConfiguration") => "it has no lifecycle rules".to_owned(),
            code => format!(
                "its lifecycle rules could not be read ({})",
                code.unwrap_or("no answer")
            ),
        },
    };
    format!(
        "{count} unfinished multipart uploads in s3://{bucket} keep their parts, billed as \
         storage, until aborted, and {checked}: add one, e.g. `aws s3api \
         put-bucket-lifecycle-configuration --bucket {bucket} --lifecycle-configuration \
         '{{\"Rules\":[{{\"ID\":\"abort-incomplete-uploads\",\"Status\":\"Enabled\",\
         \"Filter\":{{}},\"AbortIncompleteMultipartUpload\":{{\"DaysAfterInitiation\":7}}}}]}}'` \
         (Synapse also clears the uploads it started after {SYNAPSE_CLEANUP_DAYS} days where \
         its cleanup is enabled)"
    )
}
