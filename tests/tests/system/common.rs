//! What the whole-system tests share: the seeded project's shape, its deployment's inputs, and
//! reading back what a migration left (entities, items, objects).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use synapse_model::FileHandle;
use synapse_sim::{EntitySnapshot, Fixture};
use synmigrate::state::dynamo::DynamoStore;
use synmigrate::state::{ItemRecord, MigrationKey, StateStore};
use synmigrate_local::LocalDeployment;
use synmigrate_testkit::object_bytes;

pub(crate) const PROJECT: &str = "End to end";
pub(crate) const DEST: i64 = 7001;
pub(crate) const MIB: u64 = 1024 * 1024;
/// Under nextest's 5-minute kill; a run alone takes about 40 s, beside the other heavy tests 100 s.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(280);
pub(crate) const EXECUTION_TIMEOUT: Duration = Duration::from_secs(200);

/// A project of `children` owned by `owner`, which `migrator` (the functions' token) may read,
/// download and update; destination 7001 is the migrator's bucket.
pub(crate) fn project(children: Value) -> Fixture {
    let fixture = json!({
        "users": [
            {"userName": "owner", "ownerId": "3350001", "token": "owner-token"},
            {"userName": "migrator", "ownerId": "3350002", "token": "migrator-token"}
        ],
        "storageLocations": [
            {"storageLocationId": 1, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DEST, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"}
        ],
        "fileHandles": {
            "shared": {"content": {"text": "shared bytes"}, "fileName": "shared.txt"},
            "wide": {"content": {"text": "wide bytes"}, "fileName": "wide.txt",
                     "createdBy": "migrator"}
        },
        "projects": [{
            "name": PROJECT, "owner": "owner",
            "acl": {"migrator": ["READ", "DOWNLOAD", "UPDATE"]},
            "children": children
        }]
    });
    Fixture::from_json(&fixture.to_string()).expect("the test fixture parses")
}

pub(crate) fn input_with(deployment: &LocalDeployment, options: Value) -> Value {
    json!({
        "projectId": deployment.project_id(),
        "destinationStorageLocationId": DEST,
        "options": options
    })
}

pub(crate) async fn bounded<F: Future<Output = anyhow::Result<()>>>(test: F) -> anyhow::Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .context("the test timed out")?
}

pub(crate) async fn run_to_end(
    deployment: &LocalDeployment,
    name: &str,
    input: &Value,
) -> anyhow::Result<DescribeExecutionOutput> {
    let arn = deployment.start_execution(name, input).await?;
    Ok(deployment
        .wait_for_execution(&arn, EXECUTION_TIMEOUT)
        .await?)
}

pub(crate) fn snapshots(
    deployment: &LocalDeployment,
) -> BTreeMap<String, (String, EntitySnapshot)> {
    let prefix = format!("{PROJECT}/");
    deployment
        .sim()
        .paths()
        .into_iter()
        .filter_map(|(path, id)| {
            let relative = path.strip_prefix(&prefix)?.to_owned();
            let snapshot = deployment.sim().entity(&id)?;
            snapshot
                .entity
                .is_file()
                .then_some((relative, (id, snapshot)))
        })
        .collect()
}

pub(crate) async fn items(
    deployment: &LocalDeployment,
) -> anyhow::Result<BTreeMap<String, ItemRecord>> {
    items_of(deployment, Some(DEST)).await
}

/// The items of the migration into `destination` (`None`: into each folder's upload location).
pub(crate) async fn items_of(
    deployment: &LocalDeployment,
    destination: Option<i64>,
) -> anyhow::Result<BTreeMap<String, ItemRecord>> {
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(deployment.sdk_config()),
        deployment.table(),
    );
    let project = deployment.project_id().context("the project")?;
    let migration = MigrationKey::with_destination(project, destination)?;
    let mut items = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_items(&migration, None, 500, token.as_deref())
            .await?;
        items.extend(page.items.into_iter().map(|i| (i.key.to_string(), i)));
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(items),
        }
    }
}

pub(crate) async fn handle_md5(
    deployment: &LocalDeployment,
    s3: &aws_sdk_s3::Client,
    id: &str,
) -> anyhow::Result<(FileHandle, String)> {
    let handle = deployment
        .sim()
        .file_handle(id)
        .with_context(|| format!("no file handle {id}"))?;
    let bytes = object_bytes(
        s3,
        handle.bucket_name.as_deref().context("no bucket")?,
        handle.key.as_deref().context("no key")?,
    )
    .await?;
    Ok((handle, hex::encode(Md5::digest(&bytes))))
}

/// Version numbers with their file handles (other fields, such as the latest flag, change).
pub(crate) fn handles(snapshot: &EntitySnapshot) -> Vec<(Option<i64>, Option<String>)> {
    snapshot
        .versions
        .iter()
        .map(|v| (v.version_number, v.data_file_handle_id.clone()))
        .collect()
}

pub(crate) fn latest_handle(snapshot: &EntitySnapshot) -> anyhow::Result<String> {
    snapshot
        .entity
        .data_file_handle_id
        .clone()
        .context("a file entity has a handle")
}

/// The CSV at the summary's `key` field (under `reportBucket`), as rows of named fields.
pub(crate) async fn csv_rows(
    deployment: &LocalDeployment,
    summary: &Value,
    key: &Value,
) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let s3 = deployment.s3_client().await;
    let bytes = object_bytes(
        &s3,
        summary["reportBucket"].as_str().context("reportBucket")?,
        key.as_str().context("a CSV key")?,
    )
    .await?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let headers = reader.headers()?.clone();
    reader
        .records()
        .map(|record| {
            let record = record?;
            Ok(headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect())
        })
        .collect()
}
