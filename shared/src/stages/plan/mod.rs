//! Stage 3, Plan: groups the items to copy into work units ([`units`]) and writes the manifest
//! the Distributed Map reads.

use serde::{Deserialize, Serialize};

use super::init::renew_lock;
use crate::artifacts::ArtifactWriter;
use crate::context::{now, RunContext, Services, LIST_PAGE};
use crate::state::{ItemRecord, ItemStatus, StatusName};
use crate::{Error, Result};

pub mod units;

use units::{UnitItem, WorkUnit};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInput {
    pub run: RunContext,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOutput {
    /// Where the manifest (a JSON array of [`WorkUnit`]s) is, for the Distributed Map.
    pub bucket: String,
    pub key: String,
    pub unit_count: usize,
    pub item_count: usize,
    pub total_bytes: u64,
}

/// Every item the copy should take on: INDEXED ones, ERRORED ones due for a retry (rule 4, see
/// [`ItemRecord::due_for_retry`]), and COPYING/COPIED ones whose worker's lease ran out (a crash).
pub(super) async fn copy_candidates(
    services: &Services,
    run: &RunContext,
) -> Result<Vec<ItemRecord>> {
    let migration = run.migration()?;
    let at = now();
    let max_attempts = run.options.max_attempts;
    let mut candidates = Vec::new();
    for status in [
        StatusName::Indexed,
        StatusName::Errored,
        StatusName::Copying,
        StatusName::Copied,
    ] {
        let mut token: Option<String> = None;
        loop {
            let page = services
                .store
                .list_items(&migration, Some(status), LIST_PAGE, token.as_deref())
                .await?;
            candidates.extend(page.items.into_iter().filter(|item| {
                match &item.status {
                    ItemStatus::Indexed => true,
                    ItemStatus::Errored(_) => item.due_for_retry(max_attempts),
                    ItemStatus::Copying | ItemStatus::Copied => item
                        .lease
                        .as_ref()
                        .is_none_or(|lease| lease.expires_at <= at),
                    _ => false,
                }
            }));
            match page.next_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
    }
    Ok(candidates)
}

/// Groups the items to copy into work units and writes the manifest to S3.
pub async fn plan(services: &Services, input: PlanInput) -> Result<PlanOutput> {
    let run = &input.run;
    renew_lock(services, run).await?;
    let units = if run.options.dry_run {
        Vec::new()
    } else {
        let items = copy_candidates(services, run).await?;
        units::group_units(
            items.into_iter().map(|item| UnitItem {
                key: item.key.to_string(),
                size: item.size,
                source: item.source_file_handle_id,
            }),
            &services.tuning.unit_limits,
        )?
    };
    let key = run.manifest_key();
    write_manifest(services, &key, &units).await?;
    crate::crash::point(crate::crash::PLAN_AFTER_MANIFEST);
    Ok(PlanOutput {
        bucket: services.bucket.clone(),
        key,
        unit_count: units.len(),
        item_count: units.iter().map(|u| u.items.len()).sum(),
        total_bytes: units.iter().map(|u| u.total_bytes).sum(),
    })
}

/// Writes the manifest (a JSON array of units) a unit at a time, so its encoding never needs
/// memory for the whole of it.
async fn write_manifest(services: &Services, key: &str, units: &[WorkUnit]) -> Result<()> {
    let mut manifest = ArtifactWriter::new(services, key, "application/json");
    manifest.write(b"[").await?;
    for (n, unit) in units.iter().enumerate() {
        let mut json = if n == 0 { Vec::new() } else { b",".to_vec() };
        serde_json::to_writer(&mut json, unit)
            .map_err(|e| Error::Internal(format!("cannot encode the manifest: {e}")))?;
        manifest.write(&json).await?;
    }
    manifest.write(b"]").await?;
    manifest.finish().await
}

/// Reads a manifest written by [`plan()`] (the in-process runner's ItemReader).
pub async fn read_manifest(services: &Services, key: &str) -> Result<Vec<WorkUnit>> {
    let object = services
        .s3
        .get_object()
        .bucket(&services.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            Error::Transient(format!(
                "cannot read s3://{}/{key}: {}",
                services.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| Error::Transient(format!("cannot read the manifest body: {e}")))?
        .into_bytes();
    serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("bad manifest {key}: {e}")))
}
