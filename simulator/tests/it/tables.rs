//! Tables with FILEHANDLEID columns: the official client's table calls (`getTableColumns`,
//! `tableQuery`, `create_snapshot_version`, `store(PartialRowset)`) and its table migration
//! (`synapseutils.index_files_for_migration(..., include_table_files=True)` then
//! `migrate_indexed_files`) run against the simulator, and every refusal of the table endpoints is
//! checked with the server's status and reason over raw HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};
use synapse_sim::Fixture;

use crate::common::{assert_refused, register, start, Api, TestSim};
use crate::python_client::{client_dir, client_script};

/// Users: alice (owner, id 101), bob (READ and DOWNLOAD on the project, 102), carol (nothing,
/// 103), dave (READ only, 104), mia (READ, DOWNLOAD, UPDATE: a migrator, 105). Locations: 1
/// Synapse storage, 7001 alice's destination, 7002 mia's. Project
/// `T`: table `samples` (columns file, label, n, other; rows 1-3), table `empty` (no rows), a
/// folder `data` with one file and, in it, a table `nested`.
pub fn table_fixture() -> Fixture {
    Fixture::from_json(
        &json!({
            "users": [
                {"userName": "alice", "ownerId": "101", "token": "alice-token"},
                {"userName": "bob", "ownerId": "102", "token": "bob-token"},
                {"userName": "carol", "ownerId": "103", "token": "carol-token"},
                {"userName": "dave", "ownerId": "104", "token": "dave-token"},
                {"userName": "mia", "ownerId": "105", "token": "mia-token"}
            ],
            "storageLocations": [
                {"storageLocationId": 1, "kind": "synapse", "bucket": "sim-synapse"},
                {"storageLocationId": 7001, "kind": "externalS3", "bucket": "sim-dest",
                 "baseKey": "dest", "createdBy": "alice"},
                {"storageLocationId": 7002, "kind": "externalS3", "bucket": "sim-mia",
                 "createdBy": "mia"}
            ],
            "fileHandles": {"shared": {"content": {"text": "shared bytes\n"}, "createdBy": "alice",
                                       "fileName": "shared.txt"}},
            "projects": [{
                "name": "T", "owner": "alice",
                "acl": {"bob": ["READ", "DOWNLOAD"], "dave": ["READ"],
                        "mia": ["READ", "DOWNLOAD", "UPDATE"]},
                "children": [
                    {"type": "table", "name": "samples",
                     "columns": [
                         {"name": "file", "columnType": "FILEHANDLEID"},
                         {"name": "label", "columnType": "STRING", "maximumSize": 20},
                         {"name": "n", "columnType": "INTEGER"},
                         {"name": "other", "columnType": "FILEHANDLEID"}
                     ],
                     "rows": [
                         {"file": {"content": {"text": "row one\n"}, "fileName": "one.txt"},
                          "label": "a", "n": 1, "other": {"handle": "shared"}},
                         {"file": {"content": {"size": 3000, "seed": 3}, "fileName": "two.bin"},
                          "label": "b \"quoted\"", "n": 2},
                         {"label": "no file", "n": 3}
                     ]},
                    {"type": "table", "name": "empty",
                     "columns": [{"name": "file", "columnType": "FILEHANDLEID"}]},
                    {"type": "folder", "name": "data", "children": [
                        {"type": "file", "name": "f.txt", "versions": [{"content": {"text": "f\n"}}]},
                        {"type": "table", "name": "nested",
                         "columns": [{"name": "doc", "columnType": "FILEHANDLEID"}],
                         "rows": [{"doc": {"content": {"text": "nested doc\n"}, "fileName": "doc.txt"}}]}
                    ]}
                ]
            }]
        })
        .to_string(),
    )
    .expect("table fixture parses")
}

/// The column model id of `name` in table `path`.
fn column_id(sim: &TestSim, path: &str, name: &str) -> String {
    let id = sim.entity_id(path).unwrap();
    sim.table(&id).unwrap().column_ids[name].clone()
}

/// The official client's calls of a table migration, one by one: the columns, the CSV query
/// iterated as the migration does (row id, row version, then the file cells), a snapshot, and a
/// partial row set that points a cell at a new handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_reads_snapshots_and_updates_a_table() {
    let sim = start(&table_fixture()).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let table = sim.entity_id("T/samples").unwrap();
    let (status, new) = register(&sim, &alice, "sim-dest", "dest/new.txt", 7001, b"new\n").await;
    assert_eq!(status, StatusCode::OK, "{new}");
    let new = new["id"].as_str().unwrap().to_owned();
    let before = sim.table(&table).unwrap();
    let (dir, config) = client_dir(&sim, "tables");
    let script = r#"
import sys, synapseclient
from synapseclient import PartialRowset
from synapseclient.table import PartialRow
config, token, table_id, new_handle = sys.argv[1:5]
syn = synapseclient.Synapse(configPath=config, skip_checks=True, silent=True)
syn.login(authToken=token, silent=True)
columns = list(syn.getTableColumns(table_id))
print("columns", ",".join("%s:%s" % (c["name"], c["columnType"]) for c in columns))
files = [c for c in columns if c["columnType"] == "FILEHANDLEID"]
select = ",".join('"%s"' % c["name"] for c in files)
for row in syn.tableQuery("select %s from %s" % (select, table_id)):
    print("row", ",".join(str(v) for v in row))
print("snapshot", syn.create_snapshot_version(table_id))
result = syn.store(PartialRowset(table_id, [PartialRow({files[0]["id"]: new_handle}, 1)]))
print("stored", ",".join("%s:%s" % (r["rowId"], r["versionNumber"]) for r in result["rowReferenceSet"]["rows"]))
"#;
    let out = client_script(
        &dir,
        &config,
        script,
        "alice-token",
        &[table.clone(), new.clone()],
    )
    .await;
    let cell = |row: usize, column: &str| before.rows[row].values.get(column).cloned();
    let expected = format!(
        "columns file:FILEHANDLEID,label:STRING,n:INTEGER,other:FILEHANDLEID\n\
         row 1,1,{},{}\nrow 2,1,{},None\nrow 3,1,None,None\n\
         snapshot 1\nstored 1:2\n",
        cell(0, "file").unwrap(),
        cell(0, "other").unwrap(),
        cell(1, "file").unwrap(),
    );
    assert_eq!(out, expected);
    let after = sim.table(&table).unwrap();
    assert_eq!(after.rows[0].values["file"], new);
    assert_eq!(after.rows[0].values["label"], "a");
    assert_eq!(after.rows[0].version_number, 2);
    assert_eq!(after.rows[1], before.rows[1]);
    let entity = sim.entity(&table).unwrap();
    let labels: Vec<_> = entity
        .versions
        .iter()
        .map(|v| v.version_label.clone().unwrap())
        .collect();
    assert_eq!(labels, ["1", "in progress"]);
    // The REST calls behind those client calls (and the test's own registration).
    let counts = sim.request_counts();
    let endpoints: Vec<&str> = counts.by_endpoint.keys().map(String::as_str).collect();
    assert_eq!(
        endpoints,
        [
            "GET /entity/{id}/column",
            "GET /entity/{id}/table/download/csv/async/get/{token}",
            "GET /entity/{id}/table/transaction/async/get/{token}",
            "GET /userProfile",
            "POST /entity/{id}/bundle2",
            "POST /entity/{id}/table/download/csv/async/start",
            "POST /entity/{id}/table/snapshot",
            "POST /entity/{id}/table/transaction/async/start",
            "POST /externalFileHandle/s3",
            "POST /fileHandle/batch",
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

/// Checks the column endpoints and that a table shows as the server shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_entities_with_columns() {
    let sim = start(&table_fixture()).await;
    let bob = Api::new(&sim, Some("bob-token"));
    let carol = Api::new(&sim, Some("carol-token"));
    let table = sim.entity_id("T/samples").unwrap();
    let project = sim.project_id("T").unwrap();
    let (status, entity) = bob.get(&format!("/entity/{table}")).await;
    assert_eq!(status, StatusCode::OK, "{entity}");
    assert_eq!(
        entity["concreteType"],
        "org.sagebionetworks.repo.model.table.TableEntity"
    );
    assert_eq!(entity["versionLabel"], "in progress");
    assert_eq!(entity["versionComment"], "in progress");
    let file = column_id(&sim, "T/samples", "file");
    assert_eq!(entity["columnIds"][0], file.as_str());
    // A table is a child only when "table" is asked for.
    let (_, files) = bob
        .post(
            "/entity/children",
            json!({"parentId": project, "includeTypes": ["folder", "file"]}),
        )
        .await;
    assert_eq!(files["page"].as_array().unwrap().len(), 1, "{files}");
    let (_, all) = bob
        .post(
            "/entity/children",
            json!({"parentId": project, "includeTypes": ["folder", "file", "table"]}),
        )
        .await;
    let types: Vec<&str> = all["page"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "org.sagebionetworks.repo.model.Folder",
            "org.sagebionetworks.repo.model.table.TableEntity",
            "org.sagebionetworks.repo.model.table.TableEntity"
        ]
    );
    let (status, columns) = bob.get(&format!("/entity/{table}/column")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(columns["totalNumberOfResults"], 4);
    assert_eq!(columns["results"][1]["name"], "label");
    assert_eq!(columns["results"][1]["maximumSize"], 20);
    let (status, column) = carol.get(&format!("/column/{file}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        column,
        json!({"id": file, "name": "file", "columnType": "FILEHANDLEID"})
    );
    // Equal columns of two tables are one column model.
    assert_eq!(column_id(&sim, "T/empty", "file"), file);
    assert_refused(
        &carol.get("/column/999999").await,
        StatusCode::NOT_FOUND,
        "Column model: '999999' does not exist",
    );
    assert_refused(
        &carol.get(&format!("/entity/{table}/column")).await,
        StatusCode::FORBIDDEN,
        "You lack READ access to the requested entity.",
    );
    assert_refused(
        &carol.get("/entity/syn999999/column").await,
        StatusCode::NOT_FOUND,
        "Resource: 'syn999999' does not exist",
    );
    // A folder has no columns.
    let folder = sim.entity_id("T/data").unwrap();
    let (_, none) = bob.get(&format!("/entity/{folder}/column")).await;
    assert_eq!(none, json!({"results": [], "totalNumberOfResults": 0}));
    sim.shutdown().await;
}

/// Starts a job and reads it back: (status of the get, its body).
async fn job(api: &Api, table: &str, kind: &str, body: Value) -> (StatusCode, Value) {
    let (status, started) = api
        .post(&format!("/entity/{table}/table/{kind}/async/start"), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let token = started["token"].as_str().unwrap();
    api.get(&format!("/entity/{table}/table/{kind}/async/get/{token}"))
        .await
}

/// Every endpoint the official client's table migration calls (a file entity's included), in
/// the request log's (alphabetical) order.
const CLIENT_MIGRATION_CALLS: [&str; 18] = [
    "GET /column/{id}",
    "GET /entity/{id}/column",
    "GET /entity/{id}/table/download/csv/async/get/{token}",
    "GET /entity/{id}/table/transaction/async/get/{token}",
    "GET /storageLocation/{id}",
    "GET /userProfile",
    "POST /entity/children",
    "POST /entity/{id}/bundle2",
    "POST /entity/{id}/table/download/csv/async/start",
    "POST /entity/{id}/table/snapshot",
    "POST /entity/{id}/table/transaction/async/start",
    "POST /entity/{id}/version/{version}/bundle2",
    "POST /file/multipart",
    "POST /file/multipart/{upload}/presigned/url/batch",
    "POST /fileHandle/batch",
    "PUT /entity/{id}",
    "PUT /file/multipart/{upload}/add/{part}",
    "PUT /file/multipart/{upload}/complete",
];

/// The official client's table migration by mia, who created none of the cells' handles, so each
/// copy is authorised through its `TableEntity` association (`index_files_for_migration` with
/// `include_table_files=True` and strategy `new`, which also walks the folders (with `skip` the
/// client lists only the project's tables), then `migrate_indexed_files`): every FILEHANDLEID
/// cell of every table under the project ends up on a copy in 7002 with the same bytes, other
/// cells and rows untouched, each table snapshotted first. Then a second index finds everything
/// already migrated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_migrates_table_attached_files() {
    let sim = start(&table_fixture()).await;
    let samples = sim.entity_id("T/samples").unwrap();
    let nested = sim.entity_id("T/data/nested").unwrap();
    let project = sim.project_id("T").unwrap();
    let before = sim.table(&samples).unwrap();
    let (dir, config) = client_dir(&sim, "table-migration");
    let script = r#"
import sys, synapseclient, synapseutils
config, token, project, db = sys.argv[1:5]
syn = synapseclient.Synapse(configPath=config, skip_checks=True, silent=True)
syn.login(authToken=token, silent=True)
synapseutils.index_files_for_migration(
    syn, project, "7002", db, file_version_strategy="new", include_table_files=True)
result = synapseutils.migrate_indexed_files(syn, db, force=True)
fields = ["id", "type", "row_id", "col_name", "status", "from_file_handle_id", "to_file_handle_id"]
rows = [tuple(m.get(f, "-") for f in fields) for m in result.get_migrations()]
for row in sorted(rows, key=str):
    print(*row)
"#;
    let run = |db: &str| {
        let db = dir.join(db).to_str().unwrap().to_owned();
        let (dir, config, project) = (dir.clone(), config.clone(), project.clone());
        async move { client_script(&dir, &config, script, "mia-token", &[project, db]).await }
    };
    let out = run("first.db").await;
    // The calls of a table migration, every one answered without an error.
    let counts = sim.request_counts();
    let endpoints: Vec<&str> = counts.by_endpoint.keys().map(String::as_str).collect();
    assert_eq!(endpoints, CLIENT_MIGRATION_CALLS, "{counts:?}");
    assert!(counts.by_status.keys().all(|s| *s < 300), "{counts:?}");
    let lines: Vec<&str> = out.lines().collect();
    // Three cells of samples, one of nested, one file entity.
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines.iter().all(|l| l.contains(" MIGRATED ")), "{out}");
    let after = sim.table(&samples).unwrap();
    let s3 = sim.stack().s3_client().await;
    for (row, column) in [(0, "file"), (0, "other"), (1, "file")] {
        let old = &before.rows[row].values[column];
        let new = &after.rows[row].values[column];
        assert_ne!(old, new);
        assert!(out.contains(&format!("table {} {column} MIGRATED {old} {new}", row + 1)));
        let (old, new) = (sim.file_handle(old).unwrap(), sim.file_handle(new).unwrap());
        assert_eq!(old.created_by.as_deref(), Some("101"));
        assert_eq!(new.storage_location_id, Some(7002));
        assert_eq!(new.created_by.as_deref(), Some("105"));
        assert_eq!(new.content_md5, old.content_md5);
        let bytes = |h: &synapse_model::FileHandle| {
            let s3 = s3.clone();
            let (bucket, key) = (h.bucket_name.clone().unwrap(), h.key.clone().unwrap());
            async move {
                synmigrate_testkit::object_bytes(&s3, &bucket, &key)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(bytes(&new).await, bytes(&old).await);
    }
    assert_eq!(
        after.rows[1].values["label"],
        before.rows[1].values["label"]
    );
    assert_eq!(after.rows[2], before.rows[2]);
    let nested_after = sim.table(&nested).unwrap();
    let doc = sim
        .file_handle(&nested_after.rows[0].values["doc"])
        .unwrap();
    assert_eq!(doc.storage_location_id, Some(7002));
    // Each table was snapshotted once before its first cell changed.
    for table in [&samples, &nested] {
        let versions = sim.entity(table).unwrap().versions;
        assert_eq!(versions.len(), 2, "{table}");
    }
    let again = run("second.db").await;
    assert_eq!(again.lines().count(), 5, "{again}");
    assert!(
        again.lines().all(|l| l.contains(" ALREADY_MIGRATED ")),
        "{again}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
