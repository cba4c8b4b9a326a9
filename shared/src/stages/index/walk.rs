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
use synapse_model::{
    concrete, entity_type, BatchFileRequest, EntityBundleRequest, EntityChildrenRequest,
    EntityHeader, FileHandle, FileHandleAssociation, FILE_HANDLE_COLUMN,
};

use crate::config::FileVersionStrategy;
use crate::context::{now, RunContext, Services};
use crate::copy::{FILE_HANDLE_BATCH, TABLE_ENTITY_ASSOCIATION};
use crate::error::types;
use crate::manifest::{self, ManifestEntry};
use crate::stages::init::writable_destination;
use crate::state::{
    FolderRecord, ItemError, ItemKey, ItemRecord, ItemStatus, MigrationKey, PutOutcome,
    RunCounters, SeenFile, SkipReason, StatusName,
};
use crate::{Error, Result};

/// Versions asked for per page of `GET /entity/{id}/version`.
const VERSIONS_PAGE: u64 = 100;
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

/// Where the walk of a table's file-handle cells stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableWalk {
    /// Its FILEHANDLEID columns (id, name), read on its first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<(String, String)>>,
    /// Rows read so far.
    pub offset: u64,
}

/// Rows asked for per query of a table (Synapse may answer fewer: it caps a page's bytes).
const TABLE_PAGE_ROWS: u64 = 1_000;

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
        let more = match self
            .table_cells(&table_id, &mut table, folder.as_mut())
            .await
        {
            Ok(more) => more,
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

    /// Indexes the cells of the next page of rows of `table`; whether more rows follow.
    async fn table_cells(
        &mut self,
        table_id: &str,
        table: &mut TableWalk,
        mut folder: Option<&mut FolderRecord>,
    ) -> Result<bool> {
        let (services, run) = (self.services, self.run);
        let columns = match table.columns.take() {
            Some(columns) => columns,
            None => services
                .synapse
                .table_columns(table_id)
                .await?
                .results
                .into_iter()
                .filter(|column| column.column_type == FILE_HANDLE_COLUMN)
                .map(|column| (column.id, column.name))
                .collect(),
        };
        if columns.is_empty() {
            return Ok(false);
        }
        let select: Vec<String> = columns
            .iter()
            .map(|(_, name)| format!("\"{}\"", name.replace('"', "\"\"")))
            .collect();
        let sql = format!("select {} from {table_id}", select.join(", "));
        let page = services
            .synapse
            .query_table(table_id, &sql, table.offset, TABLE_PAGE_ROWS)
            .await?;
        let mut cells = Vec::new();
        for row in &page.rows {
            for ((column_id, name), value) in columns.iter().zip(&row.values) {
                if let Some(handle) = value.as_deref().filter(|v| !v.is_empty()) {
                    let row_id = u64::try_from(row.row_id).unwrap_or_default();
                    let column: u64 = column_id.parse().map_err(|_| {
                        Error::Internal(format!("column id {column_id:?} is not a number"))
                    })?;
                    cells.push((ItemKey::cell(table_id, row_id, column)?, name, handle));
                }
            }
        }
        let handles = table_handles(services, table_id, cells.iter().map(|c| c.2)).await?;
        for (key, name, handle_id) in cells {
            let handle = handles.get(handle_id);
            let mut item = classify(run, folder.as_deref(), key, "", Some(handle_id), handle);
            item.column_name = Some(name.clone());
            self.put(item, folder.as_deref_mut()).await?;
        }
        table.offset += page.rows.len() as u64;
        table.columns = Some(columns);
        Ok(page.more && !page.rows.is_empty())
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

/// The items for one file entity (as its children listing shows it) under the run's version
/// strategy.
async fn file_items(
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

/// The item that reports a file (id, name, version) the walk could not read.
fn unreadable(
    run: &RunContext,
    folder: Option<&FolderRecord>,
    (entity_id, name, version): (&str, &str, i64),
    error: &Error,
) -> Result<ItemRecord> {
    let key = ItemKey::new(entity_id, u64::try_from(version).unwrap_or(1))?;
    let mut item = classify(run, folder, key, name, None, None);
    item.status = ItemStatus::Errored(ItemError::from(error));
    Ok(item)
}

/// The upload locations an aligned walk met in this invocation, and whether files can be
/// copied into each (`Some(why)` when not), so that each is asked about once.
#[derive(Default)]
struct Locations(BTreeMap<i64, Option<String>>);

impl Locations {
    /// The record of a folder (or the project) whose listing starts: where its files go
    /// (`GET /entity/{id}/uploadDestination`), and whether they can be copied there.
    async fn folder(
        &mut self,
        services: &Services,
        run: &RunContext,
        folder_id: &str,
    ) -> Result<FolderRecord> {
        let location = services
            .synapse
            .upload_destination(folder_id)
            .await?
            .storage_location_id;
        let not_writable = match self.0.get(&location) {
            Some(known) => known.clone(),
            None => {
                let why = match writable_destination(services, location, &run.options).await {
                    Ok(_) => None,
                    Err(error) if !error.is_retryable() => Some(error.to_string()),
                    Err(error) => return Err(error),
                };
                self.0.insert(location, why.clone());
                why
            }
        };
        Ok(FolderRecord {
            folder_id: folder_id.to_owned(),
            destination_storage_location_id: location,
            not_writable,
            ..FolderRecord::default()
        })
    }
}

/// The handles named by a table's cells, read through the table (`TableEntity`, 100 per
/// call); a handle Synapse does not give is absent (its cell becomes an ERRORED item).
async fn table_handles<'a>(
    services: &Services,
    table_id: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, FileHandle>> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let mut handles = BTreeMap::new();
    for chunk in ids.chunks(FILE_HANDLE_BATCH) {
        let request = BatchFileRequest {
            requested_files: chunk
                .iter()
                .map(|id| FileHandleAssociation {
                    file_handle_id: (*id).to_owned(),
                    associate_object_id: table_id.to_owned(),
                    associate_object_type: TABLE_ENTITY_ASSOCIATION.to_owned(),
                })
                .collect(),
            include_file_handles: true,
            include_pre_signed_urls: false,
            include_preview_pre_signed_urls: false,
        };
        let answer = services.synapse.file_handle_batch(&request).await?;
        for file in answer.requested_files {
            if let Some(handle) = file.file_handle {
                handles.insert(file.file_handle_id, handle);
            }
        }
    }
    Ok(handles)
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

/// Decides what to do with one file version, in `folder` for an aligned run. Pure, so every
/// rule is unit-tested.
pub fn classify(
    run: &RunContext,
    folder: Option<&FolderRecord>,
    key: ItemKey,
    entity_name: &str,
    handle_id: Option<&str>,
    handle: Option<&FileHandle>,
) -> ItemRecord {
    let options = &run.options;
    let file_name = handle
        .and_then(|h| h.file_name.clone())
        .unwrap_or_else(|| entity_name.to_owned());
    let mut item = ItemRecord {
        key,
        source_file_handle_id: handle_id.unwrap_or_default().to_owned(),
        size: handle.and_then(|h| h.content_size).unwrap_or_default(),
        content_md5: handle.and_then(|h| h.content_md5.clone()),
        source_storage_location_id: handle.and_then(|h| h.storage_location_id),
        file_name,
        destination_file_name: None,
        entity: None,
        status: ItemStatus::Indexed,
        destination_file_handle_id: None,
        attempts: 0,
        lease: None,
        updated_at: now(),
        run_id: run.run_id.clone(),
        verified_by: None,
        source_handle: None,
        destination_storage_location_id: folder.map(|f| f.destination_storage_location_id),
        column_name: None,
    };
    let destination = item
        .destination_storage_location_id
        .or(run.destination_storage_location_id);
    let skip = |reason| ItemStatus::Skipped { reason };
    item.status = match handle {
        None => ItemStatus::Errored(ItemError {
            class: types::NOT_FOUND.to_owned(),
            message: format!(
                "file handle {} of {} is not readable",
                handle_id.unwrap_or("(none)"),
                item.key
            ),
            retryable: false,
        }),
        Some(h) if h.concrete_type == concrete::EXTERNAL_FILE_HANDLE => {
            skip(SkipReason::ExternalLink)
        }
        Some(h) if !h.is_s3() => skip(SkipReason::NotS3),
        Some(h) if h.storage_location_id.is_some() && h.storage_location_id == destination => {
            item.destination_file_handle_id = Some(h.id.clone());
            ItemStatus::AlreadyMigrated
        }
        Some(h) if !options.selects_source(h.storage_location_id) => skip(SkipReason::FilteredOut),
        Some(_) if folder.is_some_and(|f| f.not_writable.is_some()) => {
            skip(SkipReason::DestinationNotWritable)
        }
        Some(_) if item.size == 0 => skip(SkipReason::EmptyFile),
        Some(_) => match crate::copy::sanitize_file_name(&item.file_name) {
            Some(_) if !options.sanitize_file_names => skip(SkipReason::InvalidFileName),
            renamed => {
                item.destination_file_name = renamed;
                ItemStatus::Indexed
            }
        },
    };
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MigrationOptions;
    use synapse_model::StorageLocationSetting;

    fn run(options: MigrationOptions) -> RunContext {
        RunContext {
            project_id: "syn1".into(),
            destination_storage_location_id: Some(7001),
            run_id: "run-1".into(),
            options,
            destination: Some(StorageLocationSetting {
                concrete_type: concrete::EXTERNAL_S3_STORAGE_LOCATION.into(),
                storage_location_id: 7001,
                upload_type: None,
                bucket: Some("dest".into()),
                base_key: None,
                sts_enabled: None,
                endpoint_url: None,
                banner: None,
                description: None,
                etag: None,
                created_on: None,
                created_by: None,
            }),
        }
    }

    fn handle(kind: &str, location: i64, size: u64, name: &str) -> FileHandle {
        serde_json::from_value(serde_json::json!({
            "id": "55", "concreteType": kind, "storageLocationId": location,
            "contentSize": size, "contentMd5": "abc", "fileName": name
        }))
        .unwrap()
    }

    fn status(options: MigrationOptions, h: &FileHandle) -> ItemRecord {
        let key = ItemKey::new("syn9", 2).unwrap();
        classify(
            &run(options),
            None,
            key,
            "entity name",
            Some(&h.id),
            Some(h),
        )
    }

    #[test]
    fn s3_files_outside_the_destination_are_indexed() {
        let item = status(
            MigrationOptions::default(),
            &handle(concrete::S3_FILE_HANDLE, 1, 10, "a.txt"),
        );
        assert_eq!(item.status, ItemStatus::Indexed);
        assert_eq!(item.source_file_handle_id, "55");
        assert_eq!(item.size, 10);
        assert_eq!(item.file_name, "a.txt");
        assert_eq!(item.destination_file_name, None);
    }

    #[test]
    fn skips_carry_their_reason() {
        let defaults = MigrationOptions::default;
        let cases = [
            (
                defaults(),
                handle(concrete::EXTERNAL_FILE_HANDLE, 1, 10, "a"),
                SkipReason::ExternalLink,
            ),
            (
                defaults(),
                handle(concrete::GOOGLE_CLOUD_FILE_HANDLE, 1, 10, "a"),
                SkipReason::NotS3,
            ),
            (
                defaults(),
                handle(concrete::PROXY_FILE_HANDLE, 1, 10, "a"),
                SkipReason::NotS3,
            ),
            (
                defaults(),
                handle(concrete::S3_FILE_HANDLE, 1, 0, "a"),
                SkipReason::EmptyFile,
            ),
            (
                MigrationOptions {
                    source_storage_location_ids: vec![2],
                    ..defaults()
                },
                handle(concrete::S3_FILE_HANDLE, 1, 10, "a"),
                SkipReason::FilteredOut,
            ),
            (
                MigrationOptions {
                    sanitize_file_names: false,
                    ..defaults()
                },
                handle(concrete::S3_FILE_HANDLE, 1, 10, "données#1.csv"),
                SkipReason::InvalidFileName,
            ),
        ];
        for (options, h, reason) in cases {
            assert_eq!(
                status(options, &h).status,
                ItemStatus::Skipped { reason },
                "{h:?}"
            );
        }
    }

    #[test]
    fn files_in_the_destination_are_already_migrated() {
        let item = status(
            MigrationOptions::default(),
            &handle(concrete::S3_FILE_HANDLE, 7001, 10, "a"),
        );
        assert_eq!(item.status, ItemStatus::AlreadyMigrated);
        assert_eq!(item.destination_file_handle_id.as_deref(), Some("55"));
    }

    #[test]
    fn an_aligned_run_classifies_each_file_against_its_folders_location() {
        let aligned = RunContext {
            destination_storage_location_id: None,
            destination: None,
            ..run(MigrationOptions::default())
        };
        let folder = |location, not_writable: Option<&str>| FolderRecord {
            folder_id: "syn2".into(),
            destination_storage_location_id: location,
            not_writable: not_writable.map(str::to_owned),
            ..FolderRecord::default()
        };
        let classify_in = |folder: &FolderRecord, h: &FileHandle| {
            let key = ItemKey::new("syn9", 1).unwrap();
            classify(&aligned, Some(folder), key, "x", Some(&h.id), Some(h))
        };
        let in_7003 = handle(concrete::S3_FILE_HANDLE, 7003, 10, "a");
        let there = classify_in(&folder(7003, None), &in_7003);
        assert_eq!(there.status, ItemStatus::AlreadyMigrated);
        assert_eq!(there.destination_storage_location_id, Some(7003));
        let to_copy = classify_in(&folder(7001, None), &in_7003);
        assert_eq!(to_copy.status, ItemStatus::Indexed);
        assert_eq!(to_copy.destination_storage_location_id, Some(7001));
        assert_eq!(to_copy.copy_id(), "55@7001");
        let refused = classify_in(&folder(7002, Some("not yours")), &in_7003);
        assert_eq!(
            refused.status,
            ItemStatus::Skipped {
                reason: SkipReason::DestinationNotWritable
            }
        );
        // Already in a location nobody may copy into is still already there.
        let in_synapse = handle(concrete::S3_FILE_HANDLE, 1, 10, "a");
        let kept = classify_in(&folder(1, Some("Synapse's")), &in_synapse);
        assert_eq!(kept.status, ItemStatus::AlreadyMigrated);
    }

    #[test]
    fn invalid_names_are_sanitised_by_default() {
        let item = status(
            MigrationOptions::default(),
            &handle(concrete::S3_FILE_HANDLE, 1, 10, "données#1.csv"),
        );
        assert_eq!(item.status, ItemStatus::Indexed);
        let renamed = item.destination_file_name.expect("a sanitised name");
        assert!(
            crate::copy::sanitize_file_name(&renamed).is_none(),
            "{renamed}"
        );
    }

    #[test]
    fn unreadable_handles_are_errors_that_are_not_retried() {
        let key = ItemKey::new("syn9", 1).unwrap();
        let item = classify(
            &run(MigrationOptions::default()),
            None,
            key,
            "x",
            Some("77"),
            None,
        );
        match item.status {
            ItemStatus::Errored(error) => {
                assert_eq!(error.class, types::NOT_FOUND);
                assert!(!error.retryable);
                assert!(error.message.contains("77"));
            }
            other => panic!("expected ERRORED, got {other:?}"),
        }
    }

    #[test]
    fn frontier_round_trips() {
        let frontier = Frontier::start("syn3", "[\"new\"]".into());
        let json = serde_json::to_value(&frontier).unwrap();
        assert_eq!(json["stack"][0]["parentId"], "syn3");
        assert_eq!(serde_json::from_value::<Frontier>(json).unwrap(), frontier);
    }
}
