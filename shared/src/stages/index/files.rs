//! The items of one file entity under the run's version strategy: its bundle per version (all
//! of them with `all`), classified, minus a version this migration itself created.

use synapse_model::{EntityBundleRequest, EntityHeader};

use super::classify::classify;
use crate::config::FileVersionStrategy;
use crate::context::{RunContext, Services};
use crate::state::{FolderRecord, ItemKey, ItemRecord, ItemStatus, StatusName};
use crate::{Error, Result};

/// Versions asked for per page of `GET /entity/{id}/version`.
const VERSIONS_PAGE: u64 = 100;

/// The items for one file entity (as its children listing shows it) under the run's version
/// strategy.
pub(super) async fn file_items(
    services: &Services,
    run: &RunContext,
    folder: Option<&FolderRecord>,
    file: &EntityHeader,
    only_version: Option<u64>,
) -> Result<Vec<ItemRecord>> {
    let entity_id = file.id.as_str();
    let request = EntityBundleRequest {
        include_entity: true,
        include_file_handles: true,
        ..EntityBundleRequest::default()
    };
    let strategy = run.options.file_version_strategy;
    let versions: Vec<Option<i64>> = match strategy {
        // A manifest's version alone (Init allows it with `all` and `latest` only).
        _ if only_version.is_some() => vec![only_version.and_then(|v| i64::try_from(v).ok())],
        FileVersionStrategy::New | FileVersionStrategy::Latest => vec![None],
        // The listing's version is the latest (the server joins the current revision): when
        // that is 1 there is no other. A higher number proves nothing, versions can be deleted.
        FileVersionStrategy::All if file.version_number == Some(1) => vec![Some(1)],
        FileVersionStrategy::All => all_versions(services, entity_id)
            .await?
            .into_iter()
            .map(Some)
            .collect(),
    };
    let mut items = Vec::with_capacity(versions.len());
    for version in versions {
        let bundle = services
            .synapse
            .entity_bundle(entity_id, version, &request)
            .await?;
        let entity = bundle.entity.ok_or_else(|| {
            Error::Internal(format!("the bundle of {entity_id} carries no entity"))
        })?;
        let number = entity.version_number.ok_or_else(|| {
            Error::Internal(format!(
                "the bundle of {entity_id} carries no version number"
            ))
        })?;
        let key = ItemKey::new(entity_id, u64::try_from(number).unwrap_or_default())?;
        let handle = entity.data_file_handle_id.as_deref().and_then(|id| {
            bundle
                .file_handles
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|h| h.id == id)
        });
        let mut item = classify(
            run,
            folder,
            key,
            &entity.name,
            entity.data_file_handle_id.as_deref(),
            handle,
        );
        if item.status == ItemStatus::AlreadyMigrated
            && migrated_by_us(services, run, &item).await?
        {
            continue;
        }
        // What Complete's `new` update PUTs back, so that it need not read the entity first.
        if strategy == FileVersionStrategy::New && item.status == ItemStatus::Indexed {
            item.entity = Some(entity);
        }
        items.push(item);
    }
    Ok(items)
}

/// Whether a file version found in the destination got there through an item of ours, which
/// then stands for it: with `new` the item of the version before (the migration created this
/// one), with `all`/`latest` the item of this very version (its handle was swapped). Such an
/// item is left to finish (say, after a crash between update and state write) instead of being
/// overwritten as ALREADY_MIGRATED.
async fn migrated_by_us(services: &Services, run: &RunContext, found: &ItemRecord) -> Result<bool> {
    let key = &found.key;
    let ours = match run.options.file_version_strategy {
        FileVersionStrategy::New if key.version <= 1 => return Ok(false),
        FileVersionStrategy::New => ItemKey::new(key.entity_id.clone(), key.version - 1)?,
        FileVersionStrategy::All | FileVersionStrategy::Latest => key.clone(),
    };
    let existing = services.store.get_item(&run.migration()?, &ours).await?;
    Ok(existing.is_some_and(|item| {
        item.status.name() != StatusName::Skipped
            && item.source_file_handle_id != found.source_file_handle_id
    }))
}

/// Every version number of an entity, newest first. Synapse's total is exact after a short
/// page and one more than seen after a full one (`PaginatedResults.createWithLimitAndOffset`), so
/// a page that reaches it is the last: no empty page is asked for.
async fn all_versions(services: &Services, entity_id: &str) -> Result<Vec<i64>> {
    let mut versions = Vec::new();
    loop {
        let page = services
            .synapse
            .versions_page(entity_id, versions.len() as u64, VERSIONS_PAGE)
            .await?;
        let full = page.results.len() as u64 == VERSIONS_PAGE;
        versions.extend(page.results.iter().map(|v| v.version_number));
        let more = page
            .total_number_of_results
            .map_or(full, |total| (versions.len() as u64) < total);
        if page.results.is_empty() || !more {
            return Ok(versions);
        }
    }
}
