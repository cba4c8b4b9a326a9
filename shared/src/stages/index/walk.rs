//! The Index stage's walk: lists the project depth-first, page by page, within a time budget,
//! and turns every selected file version into an item (INDEXED, ALREADY_MIGRATED or SKIPPED).
//!
//! Progress lives in a [`Frontier`] saved after every children page, so the next invocation
//! continues where this one stopped and a crash repeats at most one page. Repeating a page is
//! harmless: `put_item` never overwrites an item in a later state (rule 1).
//!
//! The frontier is a stack of containers with their page tokens. A page's sub-folders are pushed
//! above their parent, so they are walked before the parent's next page: the stack holds at most
//! one page of folders per level, whatever the project's width.
//!
//! A re-run reads only what may have changed: a file whose current version and `modifiedOn` in
//! the listing are those recorded when it was last settled (migrated by us, found in the
//! destination, or skipped; [`SeenFile`]) is counted unchanged without reading its bundle. Any
//! update touches `modifiedOn` (`NodeDAOImpl.touch`), a new file handle makes a new version.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use synapse_model::{concrete, entity_type, EntityChildrenRequest, EntityHeader};

use crate::context::{now, RunContext, Services};
use crate::manifest::{self, ManifestEntry};
use crate::state::{
    FolderRecord, ItemRecord, ItemStatus, MigrationKey, PutOutcome, RunCounters, SeenFile,
    StatusName,
};

use super::classify::unreadable;
use super::files::file_items;
use super::locations::Locations;
use super::tables::{self, TableWalk};
use crate::{Error, Result};

/// How long a frontier outlives its last save (the table's TTL removes it afterwards).
const FRONTIER_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// A container still to list, and where its listing continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub parent_id: String,
    pub next_page_token: Option<String>,
    /// Aligned runs: where the container's files go and what its pages held so far, from its
    /// first page on (written as the folder's record after its last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<FolderRecord>,
    /// A table (with `includeTableFiles`): where the walk of its file-handle cells stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableWalk>,
}

/// Progress of the walk of a migration, saved after every page. A run continues the walk of an
/// earlier run that stopped before its end (a crash, or retries spent) if it walks with the
/// same options, instead of walking the project again from the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Frontier {
    /// Containers to list; the last one is listed next.
    pub stack: Vec<Cursor>,
    pub done: bool,
    /// The options that decide which items the walk writes ([`RunContext::frontier_scope`]).
    #[serde(default)]
    pub scope: String,
    /// A manifest run: the next manifest entry to take once the stack is empty.
    #[serde(default)]
    pub manifest_next: usize,
}

impl Frontier {
    /// The start of a walk of `project_id` with options `scope`.
    pub fn start(project_id: &str, scope: String) -> Self {
        Self {
            stack: vec![Cursor {
                parent_id: project_id.to_owned(),
                next_page_token: None,
                folder: None,
                table: None,
            }],
            done: false,
            scope,
            manifest_next: 0,
        }
    }

    /// The start of a walk of a manifest's entries with options `scope`.
    pub fn start_manifest(scope: String) -> Self {
        Self {
            stack: Vec::new(),
            done: false,
            scope,
            manifest_next: 0,
        }
    }
}

/// The files of a page whose listing can stand for them, with that listing: the current
/// version and its `modifiedOn`. That holds for `all` too: a new version changes the current
/// one, and the only change to an older version that matters, a swap of its file handle,
/// touches the node (`NodeManagerImpl.updateNodeFileHandle` calls `NodeDAOImpl.touch`), which
/// moves the listed `modifiedOn`.
fn listings<'a>(page: &'a [EntityHeader], scope: &str) -> BTreeMap<&'a str, SeenFile> {
    page.iter()
        .filter(|child| child.kind == concrete::FILE_ENTITY)
        .filter_map(|file| {
            let listing = SeenFile {
                version: file.version_number?,
                modified_on: file.modified_on.clone()?,
                scope: scope.to_owned(),
            };
            Some((file.id.as_str(), listing))
        })
        .collect()
}

/// This run's frontier: its own, or the unfinished one of an earlier run with the same scope,
/// or a new one (from the project, or from the first manifest entry).
async fn frontier_of(services: &Services, run: &RunContext, manifest: bool) -> Result<Frontier> {
    let scope = run.frontier_scope();
    let start = |scope| match manifest {
        true => Frontier::start_manifest(scope),
        false => Frontier::start(&run.project_id, scope),
    };
    let Some(saved) = services.store.load_frontier(&run.migration()?).await? else {
        return Ok(start(scope));
    };
    let frontier: Frontier = serde_json::from_value(saved.frontier)
        .map_err(|e| Error::Internal(format!("stored index frontier does not parse: {e}")))?;
    if saved.run_id == run.run_id {
        return Ok(frontier);
    }
    if !frontier.done && frontier.scope == scope {
        tracing::info!(run = %run.run_id, from = %saved.run_id,
                       "continuing the walk an earlier run left unfinished");
        return Ok(frontier);
    }
    Ok(start(scope))
}

/// Items written by one Index invocation, by what happened to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexCounts {
    pub indexed: u64,
    pub already_migrated: u64,
    pub skipped: u64,
    pub errored: u64,
    /// Items found in a later state (migrated by an earlier run, in flight) and left alone.
    pub unchanged: u64,
    pub pages: u64,
}

impl IndexCounts {
    pub fn add(&mut self, other: &IndexCounts) {
        self.indexed += other.indexed;
        self.already_migrated += other.already_migrated;
        self.skipped += other.skipped;
        self.errored += other.errored;
        self.unchanged += other.unchanged;
        self.pages += other.pages;
    }

    fn count(&mut self, status: StatusName) {
        match status {
            StatusName::AlreadyMigrated => self.already_migrated += 1,
            StatusName::Skipped => self.skipped += 1,
            StatusName::Errored => self.errored += 1,
            _ => self.indexed += 1,
        }
    }
}

/// Walks until the budget is spent (always at least one page) or the project (or the
/// manifest's entities) is done.
pub async fn walk(
    services: &Services,
    run: &RunContext,
    deadline: Instant,
) -> Result<IndexOutcome> {
    let manifest = manifest::load(
        &services.s3,
        &services.bucket,
        &run.options.entities,
        run.options.manifest.as_deref(),
    )
    .await?;
    let mut walker = Walker {
        services,
        run,
        migration: run.migration()?,
        scope: run.walk_scope(),
        counts: IndexCounts::default(),
        delta: RunCounters::default(),
        locations: Locations::default(),
    };
    let mut frontier = frontier_of(services, run, manifest.is_some()).await?;
    while !frontier.done && (walker.counts.pages == 0 || Instant::now() < deadline) {
        match frontier.stack.pop() {
            Some(cursor) => walker.page(&mut frontier, cursor).await?,
            None => {
                let entries = manifest.as_deref().unwrap_or_default();
                let Some(entry) = entries.get(frontier.manifest_next) else {
                    frontier.done = true;
                    break;
                };
                walker.entry(&mut frontier, entry).await?;
                frontier.manifest_next += 1;
            }
        }
        let entries_left = manifest
            .as_ref()
            .is_some_and(|entries| frontier.manifest_next < entries.len());
        frontier.done = frontier.stack.is_empty() && !entries_left;
        walker.counts.pages += 1;
        crate::crash::point(crate::crash::INDEX_AFTER_PAGE);
        let json = serde_json::to_value(&frontier)
            .map_err(|e| Error::Internal(format!("cannot encode the index frontier: {e}")))?;
        services
            .store
            .save_frontier(
                &walker.migration,
                &run.run_id,
                &json,
                now() + FRONTIER_TTL_SECONDS,
            )
            .await?;
    }
    if !walker.delta.by_status.is_empty() {
        let written: i64 = walker.delta.by_status.values().sum();
        services
            .metrics
            .indexed(u64::try_from(written).unwrap_or_default());
        services
            .store
            .add_to_counters(&walker.migration, &run.run_id, &walker.delta)
            .await?;
    }
    Ok(IndexOutcome {
        done: frontier.done,
        counts: walker.counts,
    })
}

/// What one invocation's walk carries from page to page.
struct Walker<'a> {
    services: &'a Services,
    run: &'a RunContext,
    migration: MigrationKey,
    /// The run's walk scope ([`RunContext::walk_scope`]), what settled files are recorded under.
    scope: String,
    counts: IndexCounts,
    delta: RunCounters,
    locations: Locations,
}

impl Walker<'_> {
    /// The record of a container whose listing starts, in an aligned run.
    async fn folder_of(&mut self, container_id: &str) -> Result<Option<FolderRecord>> {
        if self.run.destination_storage_location_id.is_some() {
            return Ok(None);
        }
        let folder = self
            .locations
            .folder(self.services, self.run, container_id)
            .await?;
        Ok(Some(folder))
    }

    /// The scope a file in `folder` is settled under: a folder's files are settled for the
    /// location it uploads to, so when that changes they are read again.
    fn scope_in(&self, folder: Option<&FolderRecord>) -> String {
        match folder {
            Some(folder) => format!("{}@{}", self.scope, folder.destination_storage_location_id),
            None => self.scope.clone(),
        }
    }

    /// Lists one page of a container: its files become items, its folders are pushed.
    async fn page(&mut self, frontier: &mut Frontier, mut cursor: Cursor) -> Result<()> {
        if cursor.table.is_some() {
            return self.table_page(frontier, cursor).await;
        }
        let (services, store) = (self.services, &self.services.store);
        let mut folder = match cursor.folder.take() {
            Some(folder) => Some(folder),
            None => self.folder_of(&cursor.parent_id).await?,
        };
        let scope = self.scope_in(folder.as_ref());
        let page = services
            .synapse
            .children_page(&EntityChildrenRequest {
                parent_id: Some(cursor.parent_id.clone()),
                include_types: Some(
                    [entity_type::FOLDER, entity_type::FILE]
                        .into_iter()
                        .chain(
                            self.run
                                .options
                                .include_table_files
                                .then_some(entity_type::TABLE),
                        )
                        .map(str::to_owned)
                        .collect(),
                ),
                sort_by: Some("NAME".into()),
                sort_direction: Some("ASC".into()),
                next_page_token: cursor.next_page_token.clone(),
            })
            .await?;
        let mut folders = Vec::new();
        let mut tables = Vec::new();
        let listed = listings(&page.page, &scope);
        let ids: Vec<String> = listed.keys().map(|id| (*id).to_owned()).collect();
        // No request when the page has no such file (an empty batch asks for nothing).
        let seen = store.get_seen(&self.migration, &ids).await?;
        for child in &page.page {
            if child.kind == concrete::FOLDER {
                folders.push(child.id.clone());
            } else if child.kind == concrete::TABLE_ENTITY {
                tables.push(Self::table_cursor(&child.id, folder.as_ref()));
            } else if child.kind == concrete::FILE_ENTITY {
                let listed = listed.get(child.id.as_str());
                let seen = seen.get(&child.id);
                self.file(child, (listed, seen), folder.as_mut(), None)
                    .await?;
            }
        }
        match (page.next_page_token, folder) {
            (Some(token), folder) => frontier.stack.push(Cursor {
                parent_id: cursor.parent_id,
                next_page_token: Some(token),
                folder,
                table: None,
            }),
            // The folder's last page: its record is complete (a repeat writes the same).
            (None, Some(folder)) => {
                store
                    .put_folder(
                        &self.migration,
                        &self.run.run_id,
                        &folder,
                        now() + FRONTIER_TTL_SECONDS,
                    )
                    .await?
            }
            (None, None) => {}
        }
        // Reversed so that the first folder (or table) by name is walked first.
        frontier.stack.extend(tables.into_iter().rev());
        frontier
            .stack
            .extend(folders.into_iter().rev().map(|parent_id| Cursor {
                parent_id,
                next_page_token: None,
                folder: None,
                table: None,
            }));
        Ok(())
    }

    /// The cursor that starts the walk of table `table_id`'s cells; in an aligned run its files
    /// go where the table's container uploads to (`container`), and the table gets a record
    /// of its own in the folder list.
    fn table_cursor(table_id: &str, container: Option<&FolderRecord>) -> Cursor {
        Cursor {
            parent_id: table_id.to_owned(),
            next_page_token: None,
            folder: container.map(|container| FolderRecord {
                folder_id: table_id.to_owned(),
                destination_storage_location_id: container.destination_storage_location_id,
                not_writable: container.not_writable.clone(),
                ..FolderRecord::default()
            }),
            table: Some(TableWalk::default()),
        }
    }

    /// Reads one page of a table's rows: every file-handle cell becomes an item (its handle
    /// read through the table, `TableEntity`); a table that cannot be read becomes one ERRORED
    /// item that says why.
    async fn table_page(&mut self, frontier: &mut Frontier, mut cursor: Cursor) -> Result<()> {
        let table_id = cursor.parent_id.clone();
        let mut folder = cursor.folder.take();
        let mut table = cursor.table.take().unwrap_or_default();
        let cells = tables::cells(
            self.services,
            self.run,
            &table_id,
            &mut table,
            folder.as_ref(),
        );
        let more = match cells.await {
            Ok((items, more)) => {
                for item in items {
                    self.put(item, folder.as_mut()).await?;
                }
                more
            }
            Err(error) if !error.is_retryable() => {
                let item = unreadable(self.run, folder.as_ref(), (&table_id, "", 1), &error)?;
                self.put(item, folder.as_mut()).await?;
                false
            }
            Err(error) => return Err(error),
        };
        if more {
            frontier.stack.push(Cursor {
                parent_id: table_id,
                next_page_token: None,
                folder,
                table: Some(table),
            });
        } else if let Some(folder) = folder {
            self.services
                .store
                .put_folder(
                    &self.migration,
                    &self.run.run_id,
                    &folder,
                    now() + FRONTIER_TTL_SECONDS,
                )
                .await?;
        }
        Ok(())
    }

    /// Takes one manifest entry: a folder or project is pushed to be walked, a file (or one
    /// version of it) becomes items; anything else, or an entity that cannot be read, is an
    /// ERRORED item that says why.
    async fn entry(&mut self, frontier: &mut Frontier, entry: &ManifestEntry) -> Result<()> {
        let (services, run) = (self.services, self.run);
        let version = i64::try_from(entry.version.unwrap_or(1)).unwrap_or(1);
        let entity = match services.synapse.get_entity(&entry.entity_id).await {
            Ok(entity) => entity,
            Err(error) => {
                let error = Error::from(error);
                if error.is_retryable() {
                    return Err(error);
                }
                let file = (entry.entity_id.as_str(), "", version);
                return self.put(unreadable(run, None, file, &error)?, None).await;
            }
        };
        if entity.is_container() {
            frontier.stack.push(Cursor {
                parent_id: entry.entity_id.clone(),
                next_page_token: None,
                folder: None,
                table: None,
            });
            return Ok(());
        }
        if entity.concrete_type == concrete::TABLE_ENTITY && run.options.include_table_files {
            let container = match &entity.parent_id {
                Some(parent) => self.folder_of(parent).await?,
                None => None,
            };
            let cursor = Self::table_cursor(&entry.entity_id, container.as_ref());
            frontier.stack.push(cursor);
            return Ok(());
        }
        if !entity.is_file() {
            let error = Error::InvalidInput(format!(
                "{} is a {}: a manifest names files, folders or projects (and tables, with \
                 includeTableFiles)",
                entry.entity_id, entity.concrete_type
            ));
            let file = (entry.entity_id.as_str(), entity.name.as_str(), version);
            return self.put(unreadable(run, None, file, &error)?, None).await;
        }
        let mut folder = match &entity.parent_id {
            Some(parent) => self.folder_of(parent).await?,
            None => None,
        };
        let header = EntityHeader {
            id: entry.entity_id.clone(),
            name: entity.name.clone(),
            kind: entity.concrete_type.clone(),
            version_number: entity.version_number,
            version_label: None,
            is_latest_version: None,
            modified_on: entity.modified_on.clone(),
        };
        let scope = self.scope_in(folder.as_ref());
        // A file named without a version is settled like a listed one; one version alone is
        // indexed each time (it is one read, and its item keeps it from being redone).
        let listed = match entry.version {
            None => listings(std::slice::from_ref(&header), &scope).remove(header.id.as_str()),
            Some(_) => None,
        };
        let seen = match &listed {
            Some(_) => {
                let ids = [header.id.clone()];
                let mut seen = self.services.store.get_seen(&self.migration, &ids).await?;
                seen.remove(&header.id)
            }
            None => None,
        };
        self.file(
            &header,
            (listed.as_ref(), seen.as_ref()),
            folder.as_mut(),
            entry.version,
        )
        .await
    }

    /// Indexes one file as its listing (`child`) shows it, unless it was settled under the same
    /// listing (`listed` equal to `seen`); `version`: that version alone.
    async fn file(
        &mut self,
        child: &EntityHeader,
        (listed, seen): (Option<&SeenFile>, Option<&SeenFile>),
        mut folder: Option<&mut FolderRecord>,
        version: Option<u64>,
    ) -> Result<()> {
        if listed.is_some() && seen == listed {
            // Settled, and its listing unchanged since: nothing to read or write.
            self.counts.unchanged += 1;
            if let Some(folder) = folder.as_mut() {
                folder.unchanged += 1;
            }
            return Ok(());
        }
        let (services, run) = (self.services, self.run);
        let items = match file_items(services, run, folder.as_deref(), child, version).await {
            Ok(items) => items,
            // One unreadable file must not stop the walk: it is reported instead.
            Err(error) if !error.is_retryable() => {
                let number = version
                    .and_then(|v| i64::try_from(v).ok())
                    .or(child.version_number)
                    .unwrap_or(1);
                let file = (child.id.as_str(), child.name.as_str(), number);
                vec![unreadable(run, folder.as_deref(), file, &error)?]
            }
            Err(error) => return Err(error),
        };
        let settled = items.iter().all(|item| {
            matches!(
                item.status,
                ItemStatus::AlreadyMigrated | ItemStatus::Skipped { .. }
            )
        });
        for item in items {
            self.put(item, folder.as_deref_mut()).await?;
        }
        if let Some(listed) = listed.filter(|_| settled) {
            services
                .store
                .put_seen(&self.migration, &child.id, listed)
                .await?;
        }
        Ok(())
    }

    /// Writes one item (rule 1 decides whether it replaces what is there) and counts it.
    async fn put(&mut self, item: ItemRecord, folder: Option<&mut FolderRecord>) -> Result<()> {
        let status = item.status.name();
        let outcome = self
            .services
            .store
            .put_item(&self.migration, &item, self.run.options.max_attempts)
            .await?;
        let kept = matches!(outcome, PutOutcome::Kept { .. });
        if let Some(folder) = folder {
            folder.count(&item, kept);
        }
        if kept {
            self.counts.unchanged += 1;
        } else {
            self.counts.count(status);
            *self.delta.by_status.entry(status).or_default() += 1;
        }
        Ok(())
    }
}

/// What one walk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOutcome {
    pub done: bool,
    pub counts: IndexCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_round_trips() {
        let frontier = Frontier::start("syn3", "[\"new\"]".into());
        let json = serde_json::to_value(&frontier).unwrap();
        assert_eq!(json["stack"][0]["parentId"], "syn3");
        assert_eq!(serde_json::from_value::<Frontier>(json).unwrap(), frontier);
    }
}
