//! Stage 1, Init: validates the input and the destination, takes the project lock and opens the
//! run. The lock's renewal (Index, Plan, StartCopy) and best-effort release live here too.

use serde::{Deserialize, Serialize};
use synapse_model::{concrete, StorageLocationSetting};

use crate::config::MigrationOptions;
use crate::context::{now, seconds, RunContext, Services};
use crate::manifest;
use crate::state::{MigrationKey, StateError};
use crate::synapse::SynapseError;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitInput {
    /// Absent or null in the input reads as empty, so that Init refuses it as
    /// `Fatal.InvalidInput` instead of the function failing to read its input.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub project_id: String,
    /// Absent (or null): every file goes to the storage location its folder uploads to.
    #[serde(default)]
    pub destination_storage_location_id: Option<i64>,
    /// The Step Functions execution name (unique per execution).
    pub execution_name: String,
    #[serde(default)]
    pub options: MigrationOptions,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<String, D::Error> {
    Option::<String>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Validates the input and the destination, takes the project lock and opens the run.
pub async fn init(services: &Services, input: InitInput) -> Result<RunContext> {
    let InitInput {
        project_id,
        destination_storage_location_id: destination_id,
        execution_name,
        options,
    } = input;
    if !project_id
        .strip_prefix("syn")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::InvalidInput(format!(
            "projectId must look like syn123, got {project_id:?}"
        )));
    }
    if let Some(id) = destination_id.filter(|id| *id <= 0) {
        return Err(Error::InvalidInput(format!(
            "destinationStorageLocationId must be a positive id, got {id}"
        )));
    }
    if execution_name.is_empty() || execution_name.contains(['#', '/']) {
        return Err(Error::InvalidInput(format!(
            "executionName must be non-empty without '#' or '/', got {execution_name:?}"
        )));
    }
    options
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let ceiling = services.tuning.max_concurrency_ceiling;
    if options.max_concurrency > ceiling {
        return Err(Error::InvalidInput(format!(
            "maxConcurrency {} is above this deployment's ceiling of {ceiling} (template \
             parameter MaxConcurrencyCeiling)",
            options.max_concurrency
        )));
    }
    services.use_run_budget(
        &MigrationKey::with_destination(&project_id, destination_id)?,
        &execution_name,
        options.max_synapse_requests_per_minute,
    );
    let destination = match destination_id {
        Some(id) => Some(writable_destination(services, id, &options).await?),
        None => None,
    };
    let project = services
        .synapse
        .get_entity(&project_id)
        .await
        .map_err(|error| match error {
            SynapseError::NotFound { reason } => {
                Error::NotFound(format!("project {project_id} does not exist ({reason})"))
            }
            other => other.into(),
        })?;
    if project.concrete_type != concrete::PROJECT {
        return Err(Error::InvalidInput(format!(
            "{project_id} is a {}, not a project",
            project.concrete_type
        )));
    }
    if !options.dry_run {
        check_may_update(services, &project_id).await?;
    }
    check_manifest(services, &options).await?;
    let run = RunContext {
        project_id,
        destination_storage_location_id: destination_id,
        run_id: execution_name,
        options,
        destination,
    };
    let migration = run.migration()?;
    let at = now();
    services
        .store
        .acquire_lock(
            &migration,
            &run.run_id,
            at + seconds(services.tuning.lock_ttl),
            at,
        )
        .await
        .map_err(|error| match error {
            StateError::LeaseHeld {
                owner, expires_at, ..
            } => Error::AlreadyRunning(format!(
                "already running: execution {owner} holds the lock of {} into {} until {expires_at}",
                run.project_id,
                describe_destination(run.destination_storage_location_id)
            )),
            other => other.into(),
        })?;
    crate::crash::point(crate::crash::INIT_AFTER_LOCK);
    let settings = serde_json::json!({
        "options": run.options,
        "destinationStorageLocationId": run.destination_storage_location_id,
        "destinationType": run.destination.as_ref().map_or(ALIGNED, |d| &d.concrete_type),
    });
    if let Err(error) = services
        .store
        .create_run(&migration, &run.run_id, &settings, at)
        .await
    {
        release_lock(services, &run).await;
        return Err(error.into());
    }
    tracing::info!(project = %run.project_id,
                   destination = %describe_destination(run.destination_storage_location_id),
                   run = %run.run_id, "run opened");
    Ok(run)
}

/// Refuses, before anything is copied, a token whose user may not update the project's files:
/// the copies would be made and paid for, and every entity update refused. A project's
/// `canEdit` holds for a user who is not certified, whose updates of files Synapse refuses
/// (`EntityDeciderFunctions`), so certification is required too. (A file with an ACL of its own
/// may still refuse; that file's update fails and is recorded.)
async fn check_may_update(services: &Services, project_id: &str) -> Result<()> {
    let permissions = services.synapse.entity_permissions(project_id).await?;
    if permissions.can_edit && permissions.is_certified_user {
        return Ok(());
    }
    let why = if permissions.can_edit {
        "is not a certified user, and Synapse lets only certified users update files"
    } else {
        "may not edit it"
    };
    Err(Error::Forbidden(format!(
        "the token's user {why}: the files of {project_id} could be copied but not pointed at \
         their copies (a dry run needs only read access)"
    )))
}

/// Reads a manifest run's entries once before anything starts, so that a bad manifest is
/// refused with its line named instead of failing the walk.
async fn check_manifest(services: &Services, options: &MigrationOptions) -> Result<()> {
    let entries = manifest::load(
        &services.s3,
        &services.bucket,
        &options.entities,
        options.manifest.as_deref(),
    )
    .await?;
    let Some(entries) = entries else {
        return Ok(());
    };
    if entries.is_empty() {
        return Err(Error::InvalidInput(
            "manifest: it names no entity".to_owned(),
        ));
    }
    for entry in &entries {
        options
            .check_entry(entry)
            .map_err(|message| Error::InvalidInput(format!("manifest: {message}")))?;
    }
    Ok(())
}

/// What an aligned run records and shows as its destination type.
const ALIGNED: &str = "each folder's upload location";

/// A run's destination in messages: the location, or "each folder's upload location".
pub fn describe_destination(destination: Option<i64>) -> String {
    destination.map_or_else(|| ALIGNED.to_owned(), |id| id.to_string())
}

/// The storage location `id`, if the caller may copy files into it with the run's copy mode:
/// Synapse shows a location only to its creator (403 otherwise), and the direct engine writes
/// to external S3 buckets only.
pub(crate) async fn writable_destination(
    services: &Services,
    id: i64,
    options: &MigrationOptions,
) -> Result<StorageLocationSetting> {
    let destination = services
        .synapse
        .storage_location(id)
        .await
        .map_err(|error| match error {
            SynapseError::Forbidden { reason } => Error::Forbidden(format!(
                "you did not create storage location {id}, so files cannot be migrated into it \
                 ({reason})"
            )),
            SynapseError::NotFound { reason } => {
                Error::NotFound(format!("storage location {id} does not exist ({reason})"))
            }
            other => other.into(),
        })?;
    check_destination(id, &destination, options.copy_mode)?;
    Ok(destination)
}

/// Whether files can be copied into `destination` with `copy_mode`: the copy is S3's
/// (UploadPartCopy), so only S3 storage (Synapse's or an external bucket) can take it, and the
/// direct engine writes to external buckets only.
fn check_destination(
    id: i64,
    destination: &StorageLocationSetting,
    copy_mode: crate::copy::CopyMode,
) -> Result<()> {
    let kind = destination.concrete_type.as_str();
    if !matches!(
        kind,
        concrete::S3_STORAGE_LOCATION | concrete::EXTERNAL_S3_STORAGE_LOCATION
    ) {
        return Err(Error::InvalidInput(format!(
            "storage location {id} is {kind}: files can only be copied into S3 storage (Synapse's \
             or an external S3 bucket)"
        )));
    }
    if copy_mode == crate::copy::CopyMode::Direct && !destination.is_external_s3() {
        return Err(Error::InvalidInput(format!(
            "copyMode direct needs an external S3 destination; storage location {id} is {kind}"
        )));
    }
    Ok(())
}

/// Extends the lock; fails if another execution took it meanwhile.
pub(crate) async fn renew_lock(services: &Services, run: &RunContext) -> Result<()> {
    let until = now() + seconds(services.tuning.lock_ttl);
    services
        .store
        .renew_lock(&run.migration()?, &run.run_id, until)
        .await
        .map(drop)
        .map_err(|error| match error {
            StateError::LeaseHeld { owner, .. } => Error::LockLost(format!(
                "the project lock expired and execution {owner} took it; this run stops and \
                 leaves its files to that one"
            )),
            other => other.into(),
        })
}

/// Best-effort release used on failure paths (the lock expires anyway).
pub(crate) async fn release_lock(services: &Services, run: &RunContext) {
    let released = match run.migration() {
        Ok(migration) => services
            .store
            .release_lock(&migration, &run.run_id)
            .await
            .map_err(Error::from),
        Err(error) => Err(error),
    };
    if let Err(error) = released {
        tracing::warn!(run = %run.run_id, %error, "could not release the project lock");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::CopyMode;

    fn location(kind: &str) -> StorageLocationSetting {
        serde_json::from_value(serde_json::json!({"concreteType": kind, "storageLocationId": 5}))
            .unwrap()
    }

    #[test]
    fn only_s3_storage_takes_copies() {
        let external = location(concrete::EXTERNAL_S3_STORAGE_LOCATION);
        let synapse = location(concrete::S3_STORAGE_LOCATION);
        for mode in [CopyMode::Synapse, CopyMode::Auto, CopyMode::Direct] {
            check_destination(5, &external, mode).unwrap();
        }
        check_destination(5, &synapse, CopyMode::Synapse).unwrap();
        let direct = check_destination(5, &synapse, CopyMode::Direct).unwrap_err();
        assert!(direct.to_string().contains("copyMode direct"), "{direct}");
        for kind in [
            "org.sagebionetworks.repo.model.project.ExternalGoogleCloudStorageLocationSetting",
            "org.sagebionetworks.repo.model.project.ExternalObjectStorageLocationSetting",
            "org.sagebionetworks.repo.model.project.ProxyStorageLocationSettings",
        ] {
            let error = check_destination(5, &location(kind), CopyMode::Synapse).unwrap_err();
            assert_eq!(error.error_type(), crate::error::types::INVALID_INPUT);
            assert!(
                error.to_string().contains("only be copied into S3"),
                "{error}"
            );
        }
    }
}
