//! The entity update of Complete against the simulator: each strategy writes without reading
//! first, and only a 412 makes it read and decide: still the source, write again; the copy or
//! another handle in the destination, done without writing; anything else, `Fatal.Conflict`.
//! Each case checks the exact calls made.

use std::time::Duration;

use anyhow::Context;
use synapse_model::Entity;
use synapse_sim::{FaultConfig, Fixture, ThrottleConfig};
use synmigrate::config::FileVersionStrategy;
use synmigrate::error::types;
use synmigrate::state::{ItemKey, ItemRecord, ItemStatus};
use synmigrate::synapse::SynapseClient;
use synmigrate::update::{update_entity, EntityUpdate, UpdateOutcome};

use crate::common::{bounded, client_config, fixture_from, SimEnv};

const TOKEN: &str = "migrator-token";
const PROJECT: &str = "Updates";
const DEST: i64 = 7001;
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const PUT: &str = "PUT /entity/{id}";
const GET: &str = "GET /entity/{id}";
const SWAP: &str = "PUT /entity/{id}/version/{version}/filehandle";
const VERSION_BUNDLE: &str = "POST /entity/{id}/version/{version}/bundle2";
const BATCH: &str = "POST /fileHandle/batch";

/// Files to update, each with a copy of its bytes already in the destination (`*-copy.txt`,
/// whose handles stand in for the copies), other files in the destination and twins (the same
/// bytes in another handle).
fn fixture() -> Fixture {
    let file = |name: &str, text: &str| {
        serde_json::json!({"type": "file", "name": name,
                           "versions": [{"content": {"text": text}}]})
    };
    let copy = |name: &str, text: &str| {
        serde_json::json!({"type": "file", "name": name,
                           "versions": [{"content": {"text": text}, "storageLocationId": DEST,
                                         "createdBy": "migrator"}]})
    };
    fixture_from(serde_json::json!({
        "users": [{"userName": "migrator", "ownerId": "3350001", "token": TOKEN}],
        "storageLocations": [
            {"storageLocationId": 1, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "createdBy": "migrator"}
        ],
        "projects": [{"name": PROJECT, "owner": "migrator", "children": [
            file("renamed.txt", "renamed"), copy("renamed-copy.txt", "renamed"),
            file("crashed.txt", "crashed"), copy("crashed-copy.txt", "crashed"),
            file("changed.txt", "changed"), copy("changed-copy.txt", "changed"),
            file("elsewhere.txt", "elsewhere"), copy("elsewhere-copy.txt", "elsewhere"),
            copy("in-destination.txt", "already there"),
            file("other.txt", "other bytes"),
            // Same bytes as a file, for swaps (Synapse swaps only handles of equal MD5).
            file("changed-twin.txt", "changed"), copy("elsewhere-twin.txt", "elsewhere"),
            // A table whose file cells are rewritten, and a copy for its first row.
            {"type": "table", "name": "cells",
             "columns": [{"name": "the file", "columnType": "FILEHANDLEID"}],
             "rows": [{"the file": {"content": {"text": "cell one"}}},
                      {"the file": {"content": {"text": "cell two"}}}]},
            copy("cell-copy.txt", "cell one")
        ]}]
    }))
}

struct Env {
    env: SimEnv,
    client: SynapseClient,
}

impl Env {
    async fn start() -> anyhow::Result<Self> {
        let env = SimEnv::seeded(&fixture(), ThrottleConfig::disabled()).await?;
        let client = SynapseClient::new(client_config(
            &env.sim,
            TOKEN,
            3,
            Duration::from_millis(200),
        ))?;
        Ok(Self { env, client })
    }

    fn id(&self, name: &str) -> String {
        self.find(name)
            .unwrap_or_else(|| panic!("no entity {name}"))
    }

    fn find(&self, name: &str) -> Option<String> {
        self.env.sim.entity_id(&format!("{PROJECT}/{name}"))
    }

    /// The entity as the index reads it.
    fn entity(&self, name: &str) -> anyhow::Result<Entity> {
        Ok(self
            .env
            .sim
            .entity(&self.id(name))
            .context(name.to_owned())?
            .entity)
    }

    fn handle(&self, name: &str) -> anyhow::Result<String> {
        let id = self.find(name).context(name.to_owned())?;
        self.env
            .sim
            .entity(&id)
            .context(id)?
            .entity
            .data_file_handle_id
            .context("a file handle")
    }

    /// The item of `name`'s latest version, copied to its `-copy` twin's handle (if any), with the
    /// entity as indexed when `indexed` is given.
    fn item(&self, name: &str, indexed: Option<Entity>) -> anyhow::Result<ItemRecord> {
        let entity = self.entity(name)?;
        let version = entity.version_number.context("a version")?;
        Ok(ItemRecord {
            key: ItemKey::new(self.id(name), u64::try_from(version)?)?,
            source_file_handle_id: self.handle(name)?,
            size: 1,
            content_md5: None,
            source_storage_location_id: Some(1),
            file_name: name.to_owned(),
            destination_file_name: None,
            entity: indexed,
            status: ItemStatus::Copied,
            destination_file_handle_id: self.handle(&copy_of(name)).ok(),
            attempts: 1,
            lease: None,
            updated_at: 0,
            run_id: "run".into(),
            verified_by: None,
            source_handle: None,
            destination_storage_location_id: None,
            column_name: None,
        })
    }

    /// Runs the update of `item` to its copy and returns its outcome and the calls it made.
    async fn update(
        &self,
        item: &ItemRecord,
        strategy: FileVersionStrategy,
    ) -> (synmigrate::Result<UpdateOutcome>, Vec<(String, u16)>) {
        self.env.sim.reset_requests();
        let destination = item.destination_file_handle_id.as_deref().unwrap_or("");
        let outcome = update_entity(
            &self.client,
            EntityUpdate {
                item,
                destination_file_handle_id: destination,
                destination_storage_location_id: DEST,
                strategy,
            },
        )
        .await;
        let calls = self
            .env
            .sim
            .requests()
            .iter()
            .map(|r| (r.endpoint(), r.status))
            .collect();
        (outcome, calls)
    }

    /// Points `name` at another handle in a new version, as its owner would.
    async fn repoint(&self, name: &str, handle: &str) -> anyhow::Result<()> {
        let mut entity = self.client.get_entity(&self.id(name)).await?;
        entity.data_file_handle_id = Some(handle.to_owned());
        entity.version_label = None;
        self.client
            .put_entity(&self.id(name), &entity, true)
            .await?;
        Ok(())
    }
}

/// The query and transaction jobs of a cell update (each a start and a get).
const QUERY_START: &str = "POST /entity/{id}/table/query/async/start";
const QUERY_GET: &str = "GET /entity/{id}/table/query/async/get/{token}";
const TRANSACTION_START: &str = "POST /entity/{id}/table/transaction/async/start";
const TRANSACTION_GET: &str = "GET /entity/{id}/table/transaction/async/get/{token}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_are_read_and_rewritten_only_while_they_name_the_source() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let table_id = env.id("cells");
        let cells = |row: i64| {
            let table = env.env.sim.table(&table_id).expect("the table");
            let value = table
                .rows
                .iter()
                .find(|r| r.row_id == row)
                .and_then(|r| r.values.get("the file").cloned());
            (table.column_ids["the file"].clone(), value)
        };
        let (column, first) = cells(1);
        let column: u64 = column.parse()?;
        let copy = env.handle("cell-copy.txt")?;
        let mut item = env.item("cell-copy.txt", None)?;
        item.key = ItemKey::cell(&table_id, 1, column)?;
        item.column_name = Some("the file".to_owned());
        item.source_file_handle_id = first.context("row 1's file")?;
        item.destination_file_handle_id = Some(copy.clone());
        let strategy = FileVersionStrategy::New;

        let (outcome, made) = env.update(&item, strategy).await;
        assert!(matches!(outcome?, UpdateOutcome::Updated { .. }));
        assert_eq!(cells(1).1.as_deref(), Some(copy.as_str()));
        let job = |start, get| [(start, 201), (get, 201)];
        let expected: Vec<(&str, u16)> = job(QUERY_START, QUERY_GET)
            .into_iter()
            .chain(job(TRANSACTION_START, TRANSACTION_GET))
            .collect();
        assert_eq!(made, calls(&expected));

        // Again (a retry after a crash): the cell names the copy, nothing is written.
        let (outcome, made) = env.update(&item, strategy).await;
        assert_eq!(outcome?, UpdateOutcome::AlreadyDone);
        assert_eq!(made, calls(&job(QUERY_START, QUERY_GET)));

        // Row 2 names a handle other than the indexed source and outside the destination:
        // changed after indexing, so it is left alone.
        let (_, second) = cells(2);
        item.key = ItemKey::cell(&table_id, 2, column)?;
        item.source_file_handle_id = "999999".to_owned();
        let (outcome, made) = env.update(&item, strategy).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), types::CONFLICT, "{error}");
        assert!(error.to_string().contains("cell"), "{error}");
        assert!(
            !made.iter().any(|(e, _)| e == TRANSACTION_START),
            "{made:?}"
        );
        assert_eq!(cells(2).1, second);
        Ok(())
    })
    .await
}

/// Synapse answers 202 while a job runs: the update polls the query and the transaction until
/// they are done, then rewrites the cell as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cell_updates_wait_for_jobs_still_running() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        env.env.sim.set_faults(FaultConfig {
            running_job_polls: 2,
            ..FaultConfig::default()
        });
        let table_id = env.id("cells");
        let table = env.env.sim.table(&table_id).context("the table")?;
        let column: u64 = table.column_ids["the file"].parse()?;
        let copy = env.handle("cell-copy.txt")?;
        let mut item = env.item("cell-copy.txt", None)?;
        item.key = ItemKey::cell(&table_id, 1, column)?;
        item.column_name = Some("the file".to_owned());
        item.source_file_handle_id = table.rows[0].values["the file"].clone();
        item.destination_file_handle_id = Some(copy.clone());
        let (outcome, made) = env.update(&item, FileVersionStrategy::All).await;
        assert!(matches!(outcome?, UpdateOutcome::Updated { .. }));
        let running = |get| [(get, 202), (get, 202), (get, 201)];
        let expected: Vec<(&str, u16)> = [(QUERY_START, 201)]
            .into_iter()
            .chain(running(QUERY_GET))
            .chain([(TRANSACTION_START, 201)])
            .chain(running(TRANSACTION_GET))
            .collect();
        assert_eq!(made, calls(&expected));
        let now = env.env.sim.table(&table_id).context("the table")?;
        assert_eq!(now.rows[0].values["the file"], copy);
        Ok(())
    })
    .await
}

fn copy_of(name: &str) -> String {
    name.replace(".txt", "-copy.txt")
}

fn calls(list: &[(&str, u16)]) -> Vec<(String, u16)> {
    list.iter().map(|(e, s)| ((*e).to_owned(), *s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_puts_the_indexed_entity_and_reads_only_after_a_412() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let new = FileVersionStrategy::New;

        // Indexed and unchanged since: one PUT, the official label.
        let indexed = env.entity("crashed.txt")?;
        let item = env.item("crashed.txt", Some(indexed.clone()))?;
        let (outcome, made) = env.update(&item, new).await;
        assert!(matches!(
            outcome?,
            UpdateOutcome::Updated {
                version: Some(2),
                modified_on: Some(_)
            }
        ));
        assert_eq!(made, calls(&[(PUT, 200)]));
        let now = env.entity("crashed.txt")?;
        assert_eq!(now.version_label.as_deref(), Some("2"));
        assert_eq!(now.data_file_handle_id, item.destination_file_handle_id);

        // The same update again, as after a crash before the state write: the indexed etag is
        // stale now, the read finds the copy, nothing is written.
        let (outcome, made) = env.update(&item, new).await;
        assert_eq!(outcome?, UpdateOutcome::AlreadyDone);
        assert_eq!(made, calls(&[(PUT, 412), (GET, 200)]));
        assert_eq!(
            env.env
                .sim
                .entity(&env.id("crashed.txt"))
                .unwrap()
                .versions
                .len(),
            2
        );

        // Changed after indexing but still on the source (renamed): written again with what
        // was read, labelled from the version read.
        let item = env.item("renamed.txt", Some(env.entity("renamed.txt")?))?;
        let mut renamed = env.client.get_entity(&item.key.entity_id).await?;
        renamed.name = "renamed-later.txt".into();
        env.client
            .put_entity(&item.key.entity_id, &renamed, false)
            .await?;
        let (outcome, made) = env.update(&item, new).await;
        assert!(matches!(
            outcome?,
            UpdateOutcome::Updated {
                version: Some(2),
                modified_on: Some(_)
            }
        ));
        assert_eq!(made, calls(&[(PUT, 412), (GET, 200), (PUT, 200)]));

        // Pointed at another file after indexing: left alone.
        let indexed = env.entity("changed.txt")?;
        let item = env.item("changed.txt", Some(indexed))?;
        env.repoint("changed.txt", &env.handle("other.txt")?)
            .await?;
        let (outcome, made) = env.update(&item, new).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), types::CONFLICT, "{error}");
        assert!(
            error.to_string().contains("changed after indexing"),
            "{error}"
        );
        assert_eq!(made, calls(&[(PUT, 412), (GET, 200), (BATCH, 201)]));

        // Pointed at another handle in the destination after indexing: done, nothing written.
        let indexed = env.entity("elsewhere.txt")?;
        let item = env.item("elsewhere.txt", Some(indexed))?;
        env.repoint("elsewhere.txt", &env.handle("in-destination.txt")?)
            .await?;
        let (outcome, made) = env.update(&item, new).await;
        assert_eq!(outcome?, UpdateOutcome::AlreadyDone);
        assert_eq!(made, calls(&[(PUT, 412), (GET, 200), (BATCH, 201)]));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_name_the_source_and_read_only_after_a_412() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let env = Env::start().await?;
        let latest = FileVersionStrategy::Latest;
        let swap_to = |name: &str, twin: &str| -> anyhow::Result<_> {
            let id = env.id(name);
            let update = synapse_model::FileHandleVersionUpdate {
                old_file_handle_id: env.handle(name)?,
                new_file_handle_id: env.handle(twin)?,
            };
            Ok((id, update))
        };

        // One swap, no read.
        let item = env.item("crashed.txt", None)?;
        let (outcome, made) = env.update(&item, latest).await;
        assert!(matches!(
            outcome?,
            UpdateOutcome::Updated { version: None, .. }
        ));
        assert_eq!(made, calls(&[(SWAP, 200)]));
        // Again, as after a crash before the state write: the version shows the copy.
        let (outcome, made) = env.update(&item, latest).await;
        assert_eq!(outcome?, UpdateOutcome::AlreadyDone);
        assert_eq!(made, calls(&[(SWAP, 412), (VERSION_BUNDLE, 200)]));

        // Swapped by someone else to a handle outside the destination: left alone.
        let item = env.item("changed.txt", None)?;
        let (id, update) = swap_to("changed.txt", "changed-twin.txt")?;
        env.client.put_version_file_handle(&id, 1, &update).await?;
        let (outcome, made) = env.update(&item, latest).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), types::CONFLICT, "{error}");
        assert!(error.to_string().contains("version 1 of"), "{error}");
        assert_eq!(
            made,
            calls(&[(SWAP, 412), (VERSION_BUNDLE, 200), (BATCH, 201)])
        );

        // Swapped by someone else into the destination: done.
        let item = env.item("elsewhere.txt", None)?;
        let (id, update) = swap_to("elsewhere.txt", "elsewhere-twin.txt")?;
        env.client.put_version_file_handle(&id, 1, &update).await?;
        let (outcome, made) = env.update(&item, latest).await;
        assert_eq!(outcome?, UpdateOutcome::AlreadyDone);
        assert_eq!(
            made,
            calls(&[(SWAP, 412), (VERSION_BUNDLE, 200), (BATCH, 201)])
        );

        // Still the source, yet refused (the MD5s differ): a bounded number of tries.
        let mut item = env.item("other.txt", None)?;
        item.destination_file_handle_id = Some(env.handle("renamed-copy.txt")?);
        let (outcome, made) = env.update(&item, latest).await;
        let error = outcome.unwrap_err();
        assert_eq!(error.error_type(), types::CONFLICT, "{error}");
        assert!(error.to_string().contains("MD5"), "{error}");
        assert_eq!(made, calls(&[(SWAP, 412), (VERSION_BUNDLE, 200)].repeat(3)));
        Ok(())
    })
    .await
}
