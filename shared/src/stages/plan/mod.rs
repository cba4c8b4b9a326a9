//! Stage 3, Plan: groups the items to copy into work units ([`units`]) as it pages through them
//! in plan order, and writes the manifests the Distributed Map reads: the lead units, and the
//! follower units of widely shared sources for the Map's second pass.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use synapse_model::StorageLocationSetting;

use super::init::{renew_lock, writable_destination};
use crate::artifacts::ArtifactWriter;
use crate::context::{now, RunContext, Services, LIST_PAGE};
use crate::state::{ItemRecord, ItemStatus, MigrationKey, StateStore, StatusName};
use crate::{Error, Result};

pub mod units;

use units::{Planned, UnitItem, UnitPlanner, WorkUnit};

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
    /// Items in all units, followers' too.
    pub item_count: usize,
    /// Bytes to copy (each source once).
    pub total_bytes: u64,
    /// The follower units' manifest, for a second pass of the Map once the first is over;
    /// null (always present: the state machine selects it) when no source is shared by more
    /// items than a unit holds.
    #[serde(default)]
    pub followers_key: Option<String>,
    #[serde(default)]
    pub follower_unit_count: usize,
}

/// Whether an item listed under its status is one the copy should take on: INDEXED, ERRORED
/// and due for a retry (rule 4, see [`ItemRecord::due_for_retry`]), or COPYING/COPIED with a
/// lease that ran out (a crash).
fn is_candidate(item: &ItemRecord, max_attempts: u32, at: i64) -> bool {
    match &item.status {
        ItemStatus::Indexed => true,
        ItemStatus::Errored(_) => item.due_for_retry(max_attempts),
        ItemStatus::Copying | ItemStatus::Copied => item
            .lease
            .as_ref()
            .is_none_or(|lease| lease.expires_at <= at),
        _ => false,
    }
}

/// The statuses whose items may be candidates.
const CANDIDATE_STATUSES: [StatusName; 4] = [
    StatusName::Indexed,
    StatusName::Errored,
    StatusName::Copying,
    StatusName::Copied,
];

/// One status's items in plan order, a page at a time.
struct StatusPages {
    status: StatusName,
    page: VecDeque<(String, ItemRecord)>,
    token: Option<String>,
    exhausted: bool,
}

/// Every item the copy should take on ([`is_candidate`]), in plan order
/// ([`crate::state::plan_order_key`]): the candidate statuses' listings merged, holding one
/// page of each.
pub(super) struct Candidates<'a> {
    store: &'a dyn StateStore,
    migration: MigrationKey,
    /// Whose candidates these are ([`RunContext::takes`]).
    run: RunContext,
    at: i64,
    statuses: Vec<StatusPages>,
}

impl<'a> Candidates<'a> {
    pub(super) fn new(store: &'a dyn StateStore, run: &RunContext) -> Result<Self> {
        Ok(Self {
            store,
            migration: run.migration()?,
            run: run.clone(),
            at: now(),
            statuses: CANDIDATE_STATUSES
                .into_iter()
                .map(|status| StatusPages {
                    status,
                    page: VecDeque::new(),
                    token: None,
                    exhausted: false,
                })
                .collect(),
        })
    }

    /// The next candidate, or `None` when every listing is read.
    pub(super) async fn next(&mut self) -> Result<Option<ItemRecord>> {
        loop {
            for pages in &mut self.statuses {
                while pages.page.is_empty() && !pages.exhausted {
                    let page = self
                        .store
                        .list_items(
                            &self.migration,
                            Some(pages.status),
                            LIST_PAGE,
                            pages.token.as_deref(),
                        )
                        .await?;
                    pages.page = page
                        .items
                        .into_iter()
                        .map(|item| (item.plan_order(), item))
                        .collect();
                    pages.exhausted = page.next_token.is_none();
                    pages.token = page.next_token;
                }
            }
            let Some(first) = self
                .statuses
                .iter_mut()
                .filter(|pages| !pages.page.is_empty())
                .min_by(|a, b| a.page[0].0.cmp(&b.page[0].0))
            else {
                return Ok(None);
            };
            let (_, item) = first.page.pop_front().expect("a page that is not empty");
            if self.run.takes(&item) && is_candidate(&item, self.run.options.max_attempts, self.at)
            {
                return Ok(Some(item));
            }
        }
    }
}

/// An item to copy as the unit planner takes it.
pub(super) fn unit_item(item: ItemRecord) -> UnitItem {
    UnitItem {
        key: item.key.to_string(),
        size: item.size,
        source: item.source_file_handle_id,
        destination: item.destination_storage_location_id,
    }
}

/// Groups the items to copy into work units as it pages through them, and writes the
/// manifests: memory holds a page per status and a unit, whatever the project's size.
pub async fn plan(services: &Services, input: PlanInput) -> Result<PlanOutput> {
    let run = &input.run;
    renew_lock(services, run).await?;
    let key = run.manifest_key();
    let mut leads = Manifest::new(services, key.clone());
    let mut followers = Manifest::new(services, run.followers_key());
    if !run.options.dry_run {
        let mut planner = UnitPlanner::new(services.tuning.unit_limits)?;
        let mut candidates = Candidates::new(services.store.as_ref(), run)?;
        let mut destinations = Destinations::default();
        let mut tables = BTreeSet::new();
        while let Some(item) = candidates.next().await? {
            if item.key.cell.is_some() {
                tables.insert(item.key.entity_id.clone());
            }
            let planned = planner.push(unit_item(item));
            for unit in planned {
                let unit = destinations.attach(services, run, unit).await?;
                write_unit(&mut leads, &mut followers, unit).await?;
            }
        }
        for unit in planner.finish() {
            let unit = destinations.attach(services, run, unit).await?;
            write_unit(&mut leads, &mut followers, unit).await?;
        }
        snapshot_tables(services, run, &tables).await?;
    }
    let (follower_units, follower_items) = (followers.units, followers.items);
    let (unit_count, item_count, total_bytes) = (leads.units, leads.items, leads.bytes);
    // The followers first: whoever finds the leads' manifest (the CLI's watch) finds them too.
    if follower_units > 0 {
        followers.finish().await?;
    }
    leads.finish().await?;
    crate::crash::point(crate::crash::PLAN_AFTER_MANIFEST);
    Ok(PlanOutput {
        bucket: services.bucket.clone(),
        key,
        unit_count,
        item_count: item_count + follower_items,
        total_bytes,
        followers_key: (follower_units > 0).then(|| run.followers_key()),
        follower_unit_count: follower_units,
    })
}

/// Keeps each table whose cells the run will rewrite as a snapshot version first, as the
/// official client does, so the table as it was stays readable. A table the user may not
/// snapshot (403) is said in the log and left to its cells' updates, which fail the same way
/// and are recorded per cell.
async fn snapshot_tables(
    services: &Services,
    run: &RunContext,
    tables: &BTreeSet<String>,
) -> Result<()> {
    let comment = format!(
        "before synmigrate run {} pointed its file cells at copies",
        run.run_id
    );
    for table in tables {
        match services.synapse.snapshot_table(table, &comment).await {
            Ok(_) => tracing::info!(%table, "table snapshot kept"),
            Err(error) if !error.is_retryable() => {
                tracing::warn!(%table, %error, "could not keep a snapshot of the table")
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// The storage locations an aligned run's units copy to, as Synapse describes them (the
/// engines need bucket and base key), each asked for once per Plan.
#[derive(Default)]
struct Destinations(BTreeMap<i64, StorageLocationSetting>);

impl Destinations {
    /// The unit with its destination's description, if its items have their own destination.
    async fn attach(
        &mut self,
        services: &Services,
        run: &RunContext,
        mut planned: Planned,
    ) -> Result<Planned> {
        let (Planned::Lead(unit) | Planned::Follower(unit)) = &mut planned;
        if let Some(id) = unit.destination_id() {
            let setting = match self.0.get(&id) {
                Some(setting) => setting.clone(),
                None => {
                    let setting = writable_destination(services, id, &run.options).await?;
                    self.0.insert(id, setting.clone());
                    setting
                }
            };
            unit.destination = Some(setting);
        }
        Ok(planned)
    }
}

async fn write_unit(
    leads: &mut Manifest<'_>,
    followers: &mut Manifest<'_>,
    unit: Planned,
) -> Result<()> {
    match unit {
        Planned::Lead(unit) => leads.add(&unit).await,
        Planned::Follower(unit) => followers.add(&unit).await,
    }
}

/// A manifest (a JSON array of units) written a unit at a time, so its encoding never needs
/// memory for the whole of it.
struct Manifest<'a> {
    writer: ArtifactWriter<'a>,
    units: usize,
    items: usize,
    bytes: u64,
}

impl<'a> Manifest<'a> {
    fn new(services: &'a Services, key: String) -> Self {
        Self {
            writer: ArtifactWriter::new(services, key, "application/json"),
            units: 0,
            items: 0,
            bytes: 0,
        }
    }

    async fn add(&mut self, unit: &WorkUnit) -> Result<()> {
        let mut json = if self.units == 0 {
            b"[".to_vec()
        } else {
            b",".to_vec()
        };
        serde_json::to_writer(&mut json, unit)
            .map_err(|e| Error::Internal(format!("cannot encode the manifest: {e}")))?;
        self.writer.write(&json).await?;
        self.units += 1;
        self.items += unit.items.len();
        self.bytes = self.bytes.saturating_add(unit.total_bytes);
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        let end: &[u8] = if self.units == 0 { b"[]" } else { b"]" };
        self.writer.write(end).await?;
        self.writer.finish().await
    }
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
                crate::error_chain(&e)
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
