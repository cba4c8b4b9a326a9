//! What the per-unit stages (StartCopy, CopyParts, Complete, RecordFailure) share: their view
//! of one work unit ([`UnitCtx`]: migration, lease owner, clock) and its item bookkeeping.

use std::collections::BTreeMap;

use async_trait::async_trait;
use synapse_model::StorageLocationSetting;

use super::plan::units::WorkUnit;
use super::ItemOutcome;
use crate::context::{now, seconds, RunContext, Services};
use crate::copy::{CopyRequest, EngineState, HandleJournal};
use crate::state::{
    copy_id, CopyRecord, EpochSeconds, ItemError, ItemKey, ItemRecord, ItemStatus, MigrationKey,
    RunCounters, StatusName, Transition,
};
use crate::{Error, Result};

/// The stage's view of one unit: the migration, the lease owner and the clock.
pub(crate) struct UnitCtx<'a> {
    pub(crate) services: &'a Services,
    pub(crate) run: &'a RunContext,
    pub(crate) migration: MigrationKey,
    pub(crate) owner: String,
    /// The unit's own destination in an aligned run (see [`WorkUnit::destination`]).
    destination: Option<StorageLocationSetting>,
}

impl UnitCtx<'_> {
    pub(crate) fn new<'a>(
        services: &'a Services,
        run: &'a RunContext,
        unit_id: &str,
        destination: Option<StorageLocationSetting>,
    ) -> Result<UnitCtx<'a>> {
        Ok(UnitCtx {
            services,
            run,
            migration: run.use_budget(services)?,
            owner: run.unit_owner(unit_id),
            destination,
        })
    }

    /// Where the unit copies to: its own destination in an aligned run, else the run's.
    pub(crate) fn destination(&self) -> Result<&StorageLocationSetting> {
        self.destination
            .as_ref()
            .or(self.run.destination.as_ref())
            .ok_or_else(|| {
                Error::InvalidInput(
                    "the unit has no destination: an aligned run's units carry their own"
                        .to_owned(),
                )
            })
    }

    /// The unit's own destination in an aligned run, for the copy jobs it hands on.
    pub(crate) fn own_destination(&self) -> Option<&StorageLocationSetting> {
        self.destination.as_ref()
    }

    /// The id of the copy of `source` this unit makes or uses ([`copy_id`]).
    pub(crate) fn copy_id(&self, source: &str) -> String {
        copy_id(
            source,
            self.destination.as_ref().map(|d| d.storage_location_id),
        )
    }

    pub(crate) fn lease_until(&self) -> EpochSeconds {
        now() + seconds(self.services.tuning.lease_ttl)
    }

    pub(crate) fn transition(&self, from: StatusName, to: ItemStatus, lease: bool) -> Transition {
        Transition {
            from,
            to,
            owner: self.owner.clone(),
            lease_until: lease.then(|| self.lease_until()),
            destination_file_handle_id: None,
            count_attempt: false,
            verified_by: None,
            run_id: self.run.run_id.clone(),
            now: now(),
        }
    }

    pub(crate) async fn count(&self, delta: RunCounters) {
        let metrics = &self.services.metrics;
        if let Some(files) = delta.by_status.get(&StatusName::Migrated) {
            metrics.migrated(u64::try_from(*files).unwrap_or_default());
        }
        metrics.copied(u64::try_from(delta.bytes_copied).unwrap_or_default());
        if let Err(error) = self
            .services
            .store
            .add_to_counters(&self.migration, &self.run.run_id, &delta)
            .await
        {
            // Counters are progress information; the items are the truth the report reads.
            tracing::warn!(%error, "could not update the run counters");
        }
    }

    /// Records an item as ERRORED (from whatever unfinished status it is in) and releases it.
    pub(crate) async fn fail_item(&self, key: &ItemKey, error: &Error) -> ItemOutcome {
        self.record_item_error(key, ItemError::from(error)).await
    }

    pub(crate) async fn record_item_error(
        &self,
        key: &ItemKey,
        item_error: ItemError,
    ) -> ItemOutcome {
        tracing::warn!(item = %key, class = %item_error.class, message = %item_error.message, "item failed");
        let current = self.services.store.get_item(&self.migration, key).await;
        if let Ok(Some(item)) = current {
            if !item.status.name().is_terminal() {
                let t = self.transition(
                    item.status.name(),
                    ItemStatus::Errored(item_error.clone()),
                    false,
                );
                match self
                    .services
                    .store
                    .transition_item(&self.migration, key, &t)
                    .await
                {
                    Ok(_) => {
                        self.services.metrics.failed(&item_error.class, 1);
                        self.count(RunCounters::one(StatusName::Errored)).await
                    }
                    Err(e) => {
                        tracing::warn!(item = %key, error = %e, "could not record the failure")
                    }
                }
            }
        }
        ItemOutcome {
            key: key.to_string(),
            status: StatusName::Errored,
            error: Some(item_error),
        }
    }

    /// The item's stored record, or an error naming it.
    pub(crate) async fn item(&self, key: &ItemKey) -> Result<ItemRecord> {
        self.services
            .store
            .get_item(&self.migration, key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("item {key} is not in the state store")))
    }

    /// Takes the item's lease: INDEXED/ERRORED/COPYING become COPYING (one more attempt), a
    /// COPIED item stays COPIED. `Ok(None)`: the item is already finished.
    pub(crate) async fn claim_item(&self, key: &ItemKey) -> Result<Option<ItemRecord>> {
        let item = self.item(key).await?;
        let from = item.status.name();
        if from.is_terminal() {
            return Ok(None);
        }
        let mut t = if from == StatusName::Copied {
            self.transition(from, ItemStatus::Copied, true)
        } else {
            self.transition(from, ItemStatus::Copying, true)
        };
        // A retry of this unit's own claim (a Lambda retry) is not another attempt.
        let ours = item.lease.as_ref().is_some_and(|l| l.owner == self.owner);
        t.count_attempt = from != StatusName::Copied && !ours;
        Ok(Some(
            self.services
                .store
                .transition_item(&self.migration, key, &t)
                .await?,
        ))
    }

    pub(crate) fn engine_state(copy: &CopyRecord) -> Result<Option<EngineState>> {
        copy.engine_state
            .as_ref()
            .filter(|document| !document.is_null())
            .map(EngineState::from_document)
            .transpose()
    }
}

/// The unit writes down on the copy's record each time a new handle may be created for it.
#[async_trait]
impl HandleJournal for UnitCtx<'_> {
    async fn before_new_handle(&self, request: &CopyRequest) -> Result<()> {
        self.services
            .store
            .note_handle_request(
                &self.migration,
                &self.copy_id(&request.source.id),
                &self.owner,
                now(),
            )
            .await?;
        Ok(())
    }
}

/// The items of a unit grouped by source handle, keys parsed.
pub(crate) fn by_source(unit: &WorkUnit) -> Result<BTreeMap<String, Vec<ItemKey>>> {
    let mut groups: BTreeMap<String, Vec<ItemKey>> = BTreeMap::new();
    for item in &unit.items {
        groups
            .entry(item.source.clone())
            .or_default()
            .push(item.key.parse()?);
    }
    Ok(groups)
}

/// Moves a claimed item to COPIED with its destination handle and how that copy was proven
/// (kept leased for the update).
pub(crate) async fn mark_copied(
    ctx: &UnitCtx<'_>,
    key: &ItemKey,
    destination: &str,
    verified_by: Option<&str>,
) -> Result<ItemRecord> {
    let item = ctx.item(key).await?;
    let mut t = ctx.transition(item.status.name(), ItemStatus::Copied, true);
    t.destination_file_handle_id = Some(destination.to_owned());
    t.verified_by = verified_by.map(str::to_owned);
    Ok(ctx
        .services
        .store
        .transition_item(&ctx.migration, key, &t)
        .await?)
}
