//! Tables with FILEHANDLEID columns: the official client's table calls (`getTableColumns`,
//! `tableQuery`, `create_snapshot_version`, `store(PartialRowset)`) and its table migration
//! (`synapseutils.index_files_for_migration(..., include_table_files=True)` then
//! `migrate_indexed_files`) run against the simulator, and every refusal of the table endpoints is
//! checked with the server's status and reason over raw HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};
use synapse_sim::{FaultConfig, Fixture};

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
/// iterated as the migration does (row id, row version, then the file cells), queries of given
/// rows (`WHERE ROW_ID IN (...)`, `WHERE ROW_ID = n`), a snapshot, and a partial row set that
/// points a cell at a new handle.
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
for row in syn.tableQuery('select "label" from %s where ROW_ID in (3, 1, 99)' % table_id):
    print("picked", ",".join(str(v) for v in row))
for row in syn.tableQuery("select n from %s where ROW_ID = 2" % table_id):
    print("one", ",".join(str(v) for v in row))
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
         picked 1,1,a\npicked 3,1,no file\none 2,1,2\n\
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
    // The admin view shows the rows by column name, without auth.
    let admin: Value = reqwest::get(format!("{}/admin/tables/{table}", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        admin["rows"][2],
        json!({"rowId": 3, "versionNumber": 1,
                                        "values": {"label": "no file", "n": "3"}})
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

/// While a job runs, `get` answers 202 with its status; then, as ever after, its result.
#[tokio::test]
async fn a_running_job_answers_202_with_its_status_until_done() {
    let sim = start(&table_fixture()).await;
    sim.set_faults(FaultConfig {
        running_job_polls: 2,
        ..FaultConfig::default()
    });
    let bob = Api::new(&sim, Some("bob-token"));
    let table = sim.entity_id("T/samples").unwrap();
    let (status, started) = bob
        .post(
            &format!("/entity/{table}/table/query/async/start"),
            query(&format!("select label from {table}")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let token = started["token"].as_str().unwrap();
    let get = format!("/entity/{table}/table/query/async/get/{token}");
    for _ in 0..2 {
        let (status, running) = bob.get(&get).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{running}");
        assert_eq!(running["jobState"], "PROCESSING");
        assert_eq!(running["jobId"], token);
    }
    for _ in 0..2 {
        let (status, done) = bob.get(&get).await;
        assert_eq!(status, StatusCode::CREATED, "{done}");
        assert_eq!(done["queryCount"], 3);
    }
    sim.shutdown().await;
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

/// A query body as the official client sends it.
fn query(sql: &str) -> Value {
    json!({"concreteType": "org.sagebionetworks.repo.model.table.QueryBundleRequest",
           "query": {"sql": sql, "isConsistent": true, "includeEntityEtag": true}})
}

/// Queries, CSV downloads and the job tokens: answers and refusals, with the server's texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_queries_csv_downloads_and_jobs_follow_the_server() {
    let sim = start(&table_fixture()).await;
    let (bob, carol, dave) = (
        Api::new(&sim, Some("bob-token")),
        Api::new(&sim, Some("carol-token")),
        Api::new(&sim, Some("dave-token")),
    );
    let table = sim.entity_id("T/samples").unwrap();
    let folder = sim.entity_id("T/data").unwrap();
    let rows = sim.table(&table).unwrap().rows;
    let (status, bundle) = job(
        &bob,
        &table,
        "query",
        query(&format!("SELECT \"file\", label FROM {table}")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bundle}");
    let results = &bundle["queryResult"]["queryResults"];
    assert_eq!(results["tableId"], table.as_str());
    assert_eq!(results["headers"][0]["columnType"], "FILEHANDLEID");
    assert_eq!(results["headers"][1]["name"], "label");
    assert_eq!(
        results["rows"][0],
        json!({"rowId": 1, "versionNumber": 1,
               "values": [rows[0].values["file"], "a"]})
    );
    assert_eq!(results["rows"][2]["values"], json!([null, "no file"]));
    assert_eq!(bundle["queryCount"], 3);
    assert_eq!(bundle["maxRowsPerPage"], 2_097_152 / (20 + 4 * 20));
    assert_eq!(bundle["columnModels"].as_array().unwrap().len(), 4);
    assert!(bundle["queryResult"].get("nextPageToken").is_none());
    // The SQL's LIMIT and OFFSET combine with the request's; the part mask picks the parts.
    let mut paged = query(&format!("select * from {table} limit 2 offset 1"));
    paged["query"]["offset"] = json!(1);
    paged["partMask"] = json!(1);
    let (_, page) = job(&bob, &table, "query", paged).await;
    let page_rows = page["queryResult"]["queryResults"]["rows"]
        .as_array()
        .unwrap();
    assert_eq!(page_rows.len(), 1);
    assert_eq!(page_rows[0]["rowId"], 3);
    assert!(page.get("queryCount").is_none());
    // The CSV, as the official client asks for it.
    let (status, csv) = job(
        &bob,
        &table,
        "download/csv",
        json!({"sql": format!("select \"label\", \"n\" from {table}"),
               "csvTableDescriptor": {"separator": ",", "quoteCharacter": "\"",
                                      "escapeCharacter": "\\", "lineEnd": "\n"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{csv}");
    let handle_id = csv["resultsFileHandleId"].as_str().unwrap();
    let handle = sim.file_handle(handle_id).unwrap();
    assert_eq!(handle.created_by.as_deref(), Some("102"));
    assert_eq!(handle.content_type.as_deref(), Some("text/csv"));
    let (_, batch) = bob
        .file_post(
            "/fileHandle/batch",
            json!({"includeFileHandles": true, "includePreSignedURLs": true,
                   "requestedFiles": [{"fileHandleId": handle_id, "associateObjectId": table,
                                       "associateObjectType": "TableEntity"}]}),
        )
        .await;
    let url = batch["requestedFiles"][0]["preSignedURL"].as_str().unwrap();
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert_eq!(
        text,
        "\"ROW_ID\",\"ROW_VERSION\",\"label\",\"n\"\n\"1\",\"1\",\"a\",\"1\"\n\
         \"2\",\"1\",\"b \\\"quoted\\\"\",\"2\"\n\"3\",\"1\",\"no file\",\"3\"\n"
    );
    assert_eq!(handle.content_size, Some(text.len() as u64));

    // Refusals, in the server's order: the request, the SQL, the table, READ, DOWNLOAD, columns.
    let refused = |api: &Api, body: Value, status: StatusCode, reason: String| {
        let (api, table) = (api.clone(), table.clone());
        async move { assert_refused(&job(&api, &table, "query", body).await, status, &reason) }
    };
    let bad = StatusCode::BAD_REQUEST;
    refused(&bob, json!({}), bad, "query is required.".into()).await;
    refused(
        &bob,
        json!({"query": {}}),
        bad,
        "query.sql is required.".into(),
    )
    .await;
    let sql = format!("select label from {table} where n > 1");
    refused(&bob, query(&sql), bad, beyond_the_simulator(&sql)).await;
    refused(
        &bob,
        query("select * from syn999999"),
        StatusCode::NOT_FOUND,
        "Resource: '999999' does not exist".into(),
    )
    .await;
    refused(
        &bob,
        query(&format!("select * from {folder}")),
        bad,
        format!("{folder} is not a table or view"),
    )
    .await;
    refused(
        &carol,
        query(&format!("select * from {table}")),
        StatusCode::FORBIDDEN,
        "You lack READ access to the requested entity.".into(),
    )
    .await;
    refused(
        &dave,
        query(&format!("select * from {table}")),
        StatusCode::FORBIDDEN,
        "You lack DOWNLOAD access to the requested entity.".into(),
    )
    .await;
    refused(
        &bob,
        query(&format!("select \"nope\" from {table}")),
        bad,
        "Unknown column nope".into(),
    )
    .await;
    refused(
        &bob,
        query(&format!("select * from {table}.1")),
        bad,
        format!("The simulator keeps no rows of table snapshots: select * from {table}.1"),
    )
    .await;
    assert_refused(
        &job(&bob, &table, "download/csv", json!({})).await,
        bad,
        "Query is required.",
    );
    assert_refused(
        &job(
            &carol,
            &table,
            "download/csv",
            json!({"sql": format!("select * from {table}")}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "You lack READ access to the requested entity.",
    );
    assert_refused(
        &job(
            &bob,
            &table,
            "download/csv",
            json!({"sql": format!("select * from {table}"),
                   "csvTableDescriptor": {"separator": ";;"}}),
        )
        .await,
        bad,
        "CsvTableDescriptor.separator must be exactly one character.",
    );

    // Tokens: a number, known, the caller's own, of this kind of job.
    let (_, started) = bob
        .post(
            &format!("/entity/{table}/table/query/async/start"),
            query(&format!("select * from {table}")),
        )
        .await;
    let token = started["token"].as_str().unwrap();
    assert_refused(
        &bob.get(&format!("/entity/{table}/table/query/async/get/abc"))
            .await,
        bad,
        "Cannot read job id: For input string: \"abc\"",
    );
    assert_refused(
        &bob.get(&format!("/entity/{table}/table/query/async/get/999999"))
            .await,
        StatusCode::NOT_FOUND,
        "Asynchronous job: '999999' does not exist",
    );
    assert_refused(
        &carol
            .get(&format!("/entity/{table}/table/query/async/get/{token}"))
            .await,
        StatusCode::FORBIDDEN,
        "Only the user that created a job can access the job's status.",
    );
    let (status, _) = bob
        .get(&format!(
            "/entity/{table}/table/transaction/async/get/{token}"
        ))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // The path's id is not the query's: the SQL names the table.
    let (status, _) = bob
        .get(&format!("/entity/syn1/table/query/async/get/{token}"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    sim.shutdown().await;
}

/// The simulator's refusal of SQL it does not answer (the server would).
fn beyond_the_simulator(sql: &str) -> String {
    format!(
        "The simulator only answers SQL of the form SELECT <columns> FROM syn<id> \
         [WHERE ROW_ID = <n> | WHERE ROW_ID IN (<n>, ...)] [LIMIT <n> [OFFSET <m>]]: {sql}"
    )
}

/// The row ids of a query bundle's first page.
fn row_ids(bundle: &Value) -> Vec<i64> {
    bundle["queryResult"]["queryResults"]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {bundle}"))
        .iter()
        .map(|row| row["rowId"].as_i64().unwrap())
        .collect()
}

/// `WHERE ROW_ID IN (...)` and `WHERE ROW_ID = n` (the server's `SQLUtils.buildSelectRowIds`
/// form, `ROW_ID` resolved as row metadata in any case, bare or quoted): exactly the named rows,
/// ROW_ID ascending, an unknown id matching nothing, LIMIT/OFFSET applied after the filter, in
/// queries and CSV downloads alike; the current values after an update. Every other WHERE, and a
/// malformed one, is still refused as beyond the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_id_filters_select_exactly_the_named_rows() {
    let sim = start(&table_fixture()).await;
    let (alice, bob) = (
        Api::new(&sim, Some("alice-token")),
        Api::new(&sim, Some("bob-token")),
    );
    let table = sim.entity_id("T/samples").unwrap();
    let run = |sql: String| {
        let (bob, table) = (bob.clone(), table.clone());
        async move {
            let (status, bundle) = job(&bob, &table, "query", query(&sql)).await;
            assert_eq!(status, StatusCode::CREATED, "{sql}: {bundle}");
            bundle
        }
    };
    let bundle = run(format!(
        "SELECT \"label\", \"n\" FROM {table} WHERE ROW_ID IN (3, 1)"
    ))
    .await;
    assert_eq!(row_ids(&bundle), [1, 3]);
    assert_eq!(bundle["queryCount"], 2);
    assert_eq!(
        bundle["queryResult"]["queryResults"]["rows"],
        json!([{"rowId": 1, "versionNumber": 1, "values": ["a", "1"]},
               {"rowId": 3, "versionNumber": 1, "values": ["no file", "3"]}])
    );
    let bundle = run(format!("select label from {table} where row_id = 2")).await;
    assert_eq!(row_ids(&bundle), [2]);
    assert_eq!(
        bundle["queryResult"]["queryResults"]["rows"][0]["values"],
        json!(["b \"quoted\""])
    );
    let bundle = run(format!(
        "select * from {table} where \"ROW_ID\" in (2, 99, 2)"
    ))
    .await;
    assert_eq!(row_ids(&bundle), [2], "an unknown id matches nothing");
    assert_eq!(bundle["queryCount"], 1);
    let bundle = run(format!("select * from {table} where ROW_ID = 99")).await;
    assert_eq!(row_ids(&bundle), Vec::<i64>::new());
    let bundle = run(format!(
        "select * from {table} where ROW_ID in (1, 2, 3) limit 1 offset 1"
    ))
    .await;
    assert_eq!(
        row_ids(&bundle),
        [2],
        "LIMIT and OFFSET page the filtered rows"
    );
    let bundle = run(format!(
        "select * from {table} where ROW_ID in (1, 3) limit 5 offset 1"
    ))
    .await;
    assert_eq!(row_ids(&bundle), [3]);

    // A CSV download filters alike.
    let (status, csv) = job(
        &bob,
        &table,
        "download/csv",
        json!({"sql": format!("select \"n\" from {table} where ROW_ID in (2, 3)")}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{csv}");
    let handle_id = csv["resultsFileHandleId"].as_str().unwrap();
    let (_, batch) = bob
        .file_post(
            "/fileHandle/batch",
            json!({"includeFileHandles": true, "includePreSignedURLs": true,
                   "requestedFiles": [{"fileHandleId": handle_id, "associateObjectId": table,
                                       "associateObjectType": "TableEntity"}]}),
        )
        .await;
    let url = batch["requestedFiles"][0]["preSignedURL"].as_str().unwrap();
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert_eq!(
        text,
        "\"ROW_ID\",\"ROW_VERSION\",\"n\"\n\"2\",\"1\",\"2\"\n\"3\",\"1\",\"3\"\n"
    );

    // The current value of a cell, after an update of it.
    let label = column_id(&sim, "T/samples", "label");
    let (status, written) = job(
        &alice,
        &table,
        "transaction",
        transaction(&table, &[(json!(1), label.as_str(), json!("z"))]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    let bundle = run(format!("select label from {table} where ROW_ID = 1")).await;
    assert_eq!(
        bundle["queryResult"]["queryResults"]["rows"],
        json!([{"rowId": 1, "versionNumber": 2, "values": ["z"]}])
    );

    // Every other WHERE is refused as beyond the simulator, and so is a malformed one.
    for filter in [
        "where ROW_ID > 1",
        "where ROW_ID not in (1)",
        "where label = 'a'",
        "where ROW_ID = 1 and n = 1",
        "where ROW_VERSION = 1",
        "where ROW_ID in ()",
        "where ROW_ID in (1, 2",
    ] {
        let sql = format!("select label from {table} {filter}");
        assert_refused(
            &job(&bob, &table, "query", query(&sql)).await,
            StatusCode::BAD_REQUEST,
            &beyond_the_simulator(&sql),
        );
    }
    sim.shutdown().await;
}

/// A page holds `maxRowsPerPage` rows (the 2 MiB budget over the selected columns' sizes: 524
/// rows of a 1,000-character column); a full page carries a `nextPageToken` that the next-page
/// job follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_hold_max_rows_per_page_and_chain_by_token() {
    let rows: Vec<Value> = (0..530).map(|i| json!({"s": format!("row {i}")})).collect();
    let fixture = Fixture::from_json(
        &json!({
            "users": [{"userName": "alice", "ownerId": "101", "token": "alice-token"}],
            "storageLocations": [{"storageLocationId": 1, "kind": "synapse", "bucket": "sim-synapse"}],
            "projects": [{"name": "W", "owner": "alice", "children": [
                {"type": "table", "name": "wide",
                 "columns": [{"name": "s", "columnType": "STRING", "maximumSize": 1000}],
                 "rows": rows}
            ]}]
        })
        .to_string(),
    )
    .unwrap();
    let sim = start(&fixture).await;
    let alice = Api::new(&sim, Some("alice-token"));
    let table = sim.entity_id("W/wide").unwrap();
    let (_, bundle) = job(
        &alice,
        &table,
        "query",
        query(&format!("select s from {table}")),
    )
    .await;
    assert_eq!(bundle["maxRowsPerPage"], 524);
    assert_eq!(bundle["queryCount"], 530);
    let first = &bundle["queryResult"];
    assert_eq!(first["queryResults"]["rows"].as_array().unwrap().len(), 524);
    let token = first["nextPageToken"].clone();
    assert_eq!(token["entityId"], table.as_str());
    let (status, next) = job(&alice, &table, "query/nextPage", token).await;
    assert_eq!(status, StatusCode::CREATED, "{next}");
    let rows = next["queryResults"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0]["values"][0], "row 524");
    assert!(next.get("nextPageToken").is_none());
    sim.shutdown().await;
}

/// A transaction of one partial row set, as the official client's `store(PartialRowset)` sends
/// it: `cells` is `[(row id, column id, value)]`.
fn transaction(table: &str, cells: &[(Value, &str, Value)]) -> Value {
    let rows: Vec<Value> = cells
        .iter()
        .map(|(row, column, value)| json!({"rowId": row, "values": [{"key": column, "value": value}]}))
        .collect();
    json!({"changes": [append(table, rows)], "createSnapshot": false, "snapshotOptions": {}})
}

/// An `AppendableRowSetRequest` of `rows` (partial rows) to `table`.
fn append(table: &str, rows: Vec<Value>) -> Value {
    json!({"concreteType": "org.sagebionetworks.repo.model.table.AppendableRowSetRequest",
           "entityId": table,
           "toAppend": {"concreteType": "org.sagebionetworks.repo.model.table.PartialRowSet",
                        "tableId": table, "rows": rows}})
}

/// Table transactions: what they write, and every refusal in the server's order and text. A
/// refused transaction changes nothing, not even the etag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_transactions_follow_the_server() {
    let sim = start(&table_fixture()).await;
    let (alice, bob, mia) = (
        Api::new(&sim, Some("alice-token")),
        Api::new(&sim, Some("bob-token")),
        Api::new(&sim, Some("mia-token")),
    );
    let table = sim.entity_id("T/samples").unwrap();
    let folder = sim.entity_id("T/data").unwrap();
    let (file, label, n) = (
        column_id(&sim, "T/samples", "file"),
        column_id(&sim, "T/samples", "label"),
        column_id(&sim, "T/samples", "n"),
    );
    let before = sim.table(&table).unwrap();
    let shared = before.rows[0].values["other"].clone();
    let etag = sim.entity(&table).unwrap().entity.etag;
    let (_, mine) = register(&sim, &mia, "sim-mia", "m.txt", 7002, b"mia\n").await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    let f_handle = alice.bundle(&sim.entity_id("T/data/f.txt").unwrap()).await["fileHandles"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let bad = StatusCode::BAD_REQUEST;
    let refused = |api: &Api, id: &str, body: Value, status: StatusCode, reason: String| {
        let (api, id) = (api.clone(), id.to_owned());
        async move { assert_refused(&job(&api, &id, "transaction", body).await, status, &reason) }
    };
    let one = |value: Value| transaction(&table, &[(json!(1), file.as_str(), value)]);
    refused(
        &mia,
        "syn999999",
        one(json!(mine)),
        StatusCode::NOT_FOUND,
        "Resource: '999999' does not exist".into(),
    )
    .await;
    refused(
        &mia,
        &folder,
        one(json!(mine)),
        bad,
        format!("{folder} is not a table or view"),
    )
    .await;
    refused(
        &mia,
        "abc",
        one(json!(mine)),
        bad,
        "Invalid Entity ID: abc".into(),
    )
    .await;
    refused(
        &mia,
        &format!("{table}.1"),
        one(json!(mine)),
        bad,
        "A snapshot is immutable and cannot be updated.".into(),
    )
    .await;
    refused(
        &mia,
        &table,
        json!({"changes": [], "snapshotOptions": {}}),
        bad,
        "Included SnapshotOptions but the createSnapshot boolean is null".into(),
    )
    .await;
    refused(
        &mia,
        &table,
        json!({"changes": [], "createSnapshot": false}),
        bad,
        "Must include be at least one change or create a snapshot.".into(),
    )
    .await;
    let mut other = one(json!(mine));
    other["changes"][0]["entityId"] = json!(folder);
    refused(
        &mia,
        &table,
        other,
        bad,
        "EntityId of TableUpdateRequest does not match the requested transaction entityId".into(),
    )
    .await;
    refused(
        &bob,
        &table,
        one(json!(mine)),
        StatusCode::FORBIDDEN,
        "You lack UPDATE access to the requested entity.".into(),
    )
    .await;
    let mut schema = one(json!(mine));
    schema["changes"][0]["concreteType"] =
        json!("org.sagebionetworks.repo.model.table.TableSchemaChangeRequest");
    refused(
        &mia,
        &table,
        schema,
        bad,
        "The simulator only applies AppendableRowSetRequest changes, not: \
             org.sagebionetworks.repo.model.table.TableSchemaChangeRequest"
            .into(),
    )
    .await;
    let mut no_rows = one(json!(mine));
    no_rows["changes"][0]["toAppend"] = Value::Null;
    refused(
        &mia,
        &table,
        no_rows,
        bad,
        "AppendableRowSetRequest.toAppend is required.".into(),
    )
    .await;
    let mut row_set = one(json!(mine));
    row_set["changes"][0]["toAppend"]["concreteType"] =
        json!("org.sagebionetworks.repo.model.table.RowSet");
    refused(
        &mia,
        &table,
        row_set,
        bad,
        "The simulator only appends a PartialRowSet, not: \
             org.sagebionetworks.repo.model.table.RowSet"
            .into(),
    )
    .await;
    let mut elsewhere = one(json!(mine));
    elsewhere["changes"][0]["toAppend"]["tableId"] = json!(folder);
    refused(
        &mia,
        &table,
        elsewhere,
        bad,
        format!("The simulator only appends rows to the transaction's own table, not: {folder}"),
    )
    .await;
    refused(
        &mia,
        &table,
        json!({"changes": [append(&table, vec![json!({"rowId": 1})])]}),
        bad,
        "The simulator does not delete rows: a PartialRow needs values".into(),
    )
    .await;
    refused(
        &mia,
        &table,
        transaction(&table, &[(json!(2), "999", json!("1"))]),
        bad,
        "PartialRow.value.key: '999' is not a valid column ID for row ID: 2".into(),
    )
    .await;
    refused(
        &mia,
        &table,
        transaction(&table, &[(json!(1), n.as_str(), json!("x1"))]),
        bad,
        "Value at [0,2] was not a valid INTEGER. For input string: \"x1\"".into(),
    )
    .await;
    refused(
        &mia,
        &table,
        transaction(&table, &[(json!(1), label.as_str(), json!("x".repeat(21)))]),
        bad,
        format!(
            "Value at [0,1] was not a valid STRING. String '{}' exceeds the maximum \
                          length of 20 characters.",
            "x".repeat(21)
        ),
    )
    .await;
    // Handles neither the caller's nor already in the table (an unknown one alike).
    refused(
        &mia,
        &table,
        transaction(
            &table,
            &[
                (json!(1), file.as_str(), json!(f_handle)),
                (json!(2), file.as_str(), json!("999999")),
            ],
        ),
        StatusCode::FORBIDDEN,
        format!("Cannot access files: [{f_handle}, 999999]"),
    )
    .await;
    refused(
        &mia,
        &table,
        transaction(&table, &[(json!(9), file.as_str(), json!(mine))]),
        bad,
        "Cannot update row: 9 because it does not exist.".into(),
    )
    .await;
    // All or nothing: the first change is valid, the second is not.
    let mut two = one(json!(mine));
    let second =
        transaction(&table, &[(json!(9), file.as_str(), json!(mine))])["changes"][0].clone();
    two["changes"].as_array_mut().unwrap().push(second);
    refused(
        &mia,
        &table,
        two,
        bad,
        "Cannot update row: 9 because it does not exist.".into(),
    )
    .await;
    assert_eq!(sim.table(&table).unwrap(), before);
    assert_eq!(sim.entity(&table).unwrap().entity.etag, etag);

    // Accepted: one's own handle, a handle already in the table (another cell's), a null, a new
    // row (no id), and a snapshot in the same transaction.
    let body = json!({
        "changes": [append(&table, vec![
            json!({"rowId": 1, "values": [{"key": file, "value": mine}]}),
            json!({"rowId": 2, "values": [{"key": file, "value": shared}, {"key": n, "value": null}]}),
            json!({"values": [{"key": label, "value": "new"}]}),
            json!({"rowId": 3, "values": []})
        ])],
        "createSnapshot": true,
        "snapshotOptions": {"snapshotLabel": "before-copy", "snapshotComment": "c"}
    });
    let (status, response) = job(&mia, &table, "transaction", body).await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    assert_eq!(response["snapshotVersionNumber"], 1);
    let reference = &response["results"][0]["rowReferenceSet"];
    assert_eq!(
        response["results"][0]["concreteType"],
        "org.sagebionetworks.repo.model.table.RowReferenceSetResults"
    );
    assert_eq!(
        reference["rows"],
        json!([{"rowId": 1, "versionNumber": 2}, {"rowId": 2, "versionNumber": 2},
               {"rowId": 4, "versionNumber": 2}])
    );
    assert_eq!(reference["headers"].as_array().unwrap().len(), 4);
    let after = sim.table(&table).unwrap();
    assert_eq!(after.rows[0].values["file"], mine);
    assert_eq!(after.rows[1].values["file"], shared);
    assert!(!after.rows[1].values.contains_key("n"));
    assert_eq!(after.rows[2], before.rows[2]);
    assert_eq!(after.rows[3].values["label"], "new");
    let entity = sim.entity(&table).unwrap();
    assert_ne!(entity.entity.etag, etag);
    assert_eq!(
        entity.versions[0].version_label.as_deref(),
        Some("before-copy")
    );
    assert_eq!(entity.versions[0].extra["versionComment"], "c");
    assert_eq!(entity.entity.version_number, Some(2));

    // A table that never had a row change takes every row as new, whatever its id (PLFM-3155).
    let empty = sim.entity_id("T/empty").unwrap();
    let empty_file = column_id(&sim, "T/empty", "file");
    let (status, response) = job(
        &mia,
        &empty,
        "transaction",
        transaction(&empty, &[(json!(5), empty_file.as_str(), json!(mine))]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{response}");
    assert_eq!(
        response["results"][0]["rowReferenceSet"]["rows"],
        json!([{"rowId": 1, "versionNumber": 1}])
    );
    sim.shutdown().await;
}

/// `POST /entity/{id}/table/snapshot`: the refusals, then a snapshot of the version in progress
/// and a new one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_snapshots_follow_the_server() {
    let sim = start(&table_fixture()).await;
    let (bob, mia) = (
        Api::new(&sim, Some("bob-token")),
        Api::new(&sim, Some("mia-token")),
    );
    let table = sim.entity_id("T/samples").unwrap();
    let folder = sim.entity_id("T/data").unwrap();
    let snap = |api: &Api, id: &str, body: Value| {
        let (api, id) = (api.clone(), id.to_owned());
        async move {
            api.post(&format!("/entity/{id}/table/snapshot"), body)
                .await
        }
    };
    assert_refused(
        &snap(&mia, "syn999999", json!({})).await,
        StatusCode::NOT_FOUND,
        "Resource: '999999' does not exist",
    );
    assert_refused(
        &snap(&mia, &folder, json!({})).await,
        StatusCode::BAD_REQUEST,
        &format!("{folder} is not a table or view"),
    );
    assert_refused(
        &snap(&bob, &table, json!({})).await,
        StatusCode::FORBIDDEN,
        "You lack UPDATE access to the requested entity.",
    );
    assert_refused(
        &snap(&mia, &table, json!({"snapshotActivityId": "5"})).await,
        StatusCode::BAD_REQUEST,
        "The simulator keeps no activities: snapshotActivityId cannot be used",
    );
    let (status, first) = snap(&mia, &table, json!({"snapshotLabel": "v1"})).await;
    assert_eq!(
        (status, first),
        (StatusCode::CREATED, json!({"snapshotVersionNumber": 1}))
    );
    assert_refused(
        &snap(&mia, &table, json!({"snapshotLabel": "v1"})).await,
        StatusCode::BAD_REQUEST,
        "The label 'v1' has already been used for a version of this entity",
    );
    let (_, second) = snap(&mia, &table, json!({})).await;
    assert_eq!(second, json!({"snapshotVersionNumber": 2}));
    let (_, versions) = bob.get(&format!("/entity/{table}/version")).await;
    let labels: Vec<&str> = versions["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["versionLabel"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["in progress", "2", "v1"]);
    // A table is not updated through PUT /entity (its schema would change).
    let (_, entity) = mia.get(&format!("/entity/{table}")).await;
    assert_refused(
        &mia.put(&format!("/entity/{table}"), entity).await,
        StatusCode::BAD_REQUEST,
        "The simulator does not update table entities",
    );
    sim.shutdown().await;
}

/// A cell's handle is downloadable and copyable through `TableEntity` by whoever may download
/// the table, also once the cell points elsewhere (the index keeps it); any other handle is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_cells_authorise_downloads_and_copies() {
    let sim = start(&table_fixture()).await;
    let (alice, bob, carol, dave, mia) = (
        Api::new(&sim, Some("alice-token")),
        Api::new(&sim, Some("bob-token")),
        Api::new(&sim, Some("carol-token")),
        Api::new(&sim, Some("dave-token")),
        Api::new(&sim, Some("mia-token")),
    );
    let table = sim.entity_id("T/samples").unwrap();
    let cell = sim.table(&table).unwrap().rows[0].values["file"].clone();
    let f_handle = alice.bundle(&sim.entity_id("T/data/f.txt").unwrap()).await["fileHandles"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fetch = |api: &Api, handle: &str, kind: &str| {
        let (api, handle, table, kind) = (
            api.clone(),
            handle.to_owned(),
            table.clone(),
            kind.to_owned(),
        );
        async move {
            let (status, body) = api
                .file_post(
                    "/fileHandle/batch",
                    json!({"includeFileHandles": true, "includePreSignedURLs": true,
                           "requestedFiles": [{"fileHandleId": handle, "associateObjectId": table,
                                               "associateObjectType": kind}]}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["requestedFiles"][0].clone()
        }
    };
    let got = fetch(&bob, &cell, "TableEntity").await;
    assert_eq!(got["fileHandle"]["id"], cell.as_str());
    let url = got["preSignedURL"].as_str().unwrap();
    assert!(url.contains("X-Amz-Expires=30"), "{url}");
    assert_eq!(
        reqwest::get(url).await.unwrap().text().await.unwrap(),
        "row one\n"
    );
    for (api, handle, kind) in [
        (&carol, &cell, "TableEntity"),
        (&dave, &cell, "TableEntity"),
        (&bob, &f_handle, "TableEntity"),
        (&bob, &cell, "FileEntity"),
    ] {
        assert_eq!(
            fetch(api, handle, kind).await["failureCode"],
            "UNAUTHORIZED",
            "{handle} {kind}"
        );
    }
    // Copies: a cell's handle through its table; another handle through the table is refused.
    let copy = |handle: &str| {
        json!({"concreteType": "org.sagebionetworks.repo.model.file.MultipartUploadCopyRequest",
               "partSizeBytes": 5 * 1024 * 1024, "storageLocationId": 7002,
               "sourceFileHandleAssociation": {"fileHandleId": handle, "associateObjectId": table,
                                               "associateObjectType": "TableEntity"}})
    };
    assert_refused(
        &mia.file_post("/file/multipart", copy(&f_handle)).await,
        StatusCode::FORBIDDEN,
        "The user is not authorized to access the source file.",
    );
    let done = crate::common::finish_copy(&mia, &{
        let (status, upload) = mia.file_post("/file/multipart", copy(&cell)).await;
        assert_eq!(status, StatusCode::CREATED, "{upload}");
        upload
    })
    .await;
    let copied = done["resultFileHandleId"].as_str().unwrap().to_owned();
    let file = column_id(&sim, "T/samples", "file");
    let (status, _) = job(
        &mia,
        &table,
        "transaction",
        transaction(&table, &[(json!(1), file.as_str(), json!(copied))]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // The replaced handle stays associated with the table; the copy is now too.
    assert!(fetch(&bob, &cell, "TableEntity")
        .await
        .get("failureCode")
        .is_none());
    assert!(fetch(&bob, &copied, "TableEntity")
        .await
        .get("failureCode")
        .is_none());
    sim.shutdown().await;
}
