//! Table endpoints: column models, the asynchronous query, CSV download and transaction jobs, and
//! snapshots. Each rule, its order and its text follow the server (`TableController`,
//! `TableQueryManagerImpl`, `TableEntityUpdateRequestManager`, `TableEntityManagerImpl`,
//! `AsynchronousJobServicesImpl`); `simulator/rules/repo-service.md` lists them with their tests.
//!
//! A job runs to its end when it is started (the server's worker could have finished by the
//! time of the first `get`), so `get` answers its result or its failure at once and never 202.
//! A failure is the exception the worker threw, rethrown by `get` with its own status
//! (`AsynchJobUtils.throwExceptionIfFailed`).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use synapse_model::{concrete, FileHandle};

use super::parse;
use crate::app::App;
use crate::error::ApiError;
use crate::fixture::Permission;
use crate::sql::{self, Selected};
use crate::store::{EntityRec, Store, User, VersionRec, DEFAULT_STORAGE_LOCATION_ID};
use crate::tables::{csv_line, file_handles_in, ColumnModel, Job, PartialRow, Tables, IN_PROGRESS};
use crate::util::{iso_now, lock, new_etag};

type Created = (StatusCode, Json<Value>);

const TABLE_MODEL: &str = "org.sagebionetworks.repo.model.table";

/// The job families, one per `.../async/start` route.
const QUERY: &str = "query";
const NEXT_PAGE: &str = "query/nextPage";
const CSV: &str = "download/csv";
const TRANSACTION: &str = "transaction";

fn model(name: &str) -> String {
    format!("{TABLE_MODEL}.{name}")
}

/// `IdAndVersionParser`: `syn123`, `123` or `syn123.4`, else 400.
fn id_and_version(id: &str) -> Result<(u64, Option<u64>), ApiError> {
    let invalid = || ApiError::BadRequest(format!("Invalid Entity ID: {id}"));
    let bare = id
        .strip_prefix("syn")
        .or_else(|| id.strip_prefix("SYN"))
        .unwrap_or(id);
    let (number, version) = match bare.split_once('.') {
        Some((n, v)) => (n, Some(v.parse().map_err(|_| invalid())?)),
        None => (bare, None),
    };
    Ok((number.parse().map_err(|_| invalid())?, version))
}

/// `TableManagerSupportImpl.getTableType`: the entity must exist (`NodeDAOImpl.getNodeTypeById`,
/// 404 with the numeric id) and be a table (400).
fn table_entity(store: &Store, id: u64, version: Option<u64>) -> Result<&EntityRec, ApiError> {
    let rec = store
        .entities
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("Resource: '{id}' does not exist")))?;
    if rec.table.is_none() {
        let suffix = version.map(|v| format!(".{v}")).unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "syn{id}{suffix} is not a table or view"
        )));
    }
    Ok(rec)
}

/// `GET /column/{columnId}` (`ColumnModelManagerImpl.getColumnModel`): any caller; 404 for an
/// unknown id (`DBOColumnModelDAOImpl.getColumnModel`).
pub async fn get_column(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<ColumnModel>, ApiError> {
    lock(&app.store)
        .tables
        .columns
        .get(&id.parse().unwrap_or(0))
        .filter(|c| c.id == id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Column model: '{id}' does not exist")))
}

/// `GET /entity/{id}/column` (`ColumnModelManagerImpl.getColumnModelsForTable`): READ on the
/// entity; the whole schema in one page (an entity that is no table has none).
pub async fn entity_columns(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = lock(&app.store);
    let rec = store.entity(&id)?;
    store.require(&user, rec, Permission::Read)?;
    let schema = rec
        .table
        .as_ref()
        .map(|t| store.tables.schema(t))
        .unwrap_or_default();
    Ok(Json(json!({
        "results": schema,
        "totalNumberOfResults": schema.len(),
    })))
}

/// The rows a query selects, with what its answers describe them by.
struct Selection {
    table_id: String,
    etag: String,
    headers: Vec<Value>,
    selected: Vec<ColumnModel>,
    schema: Vec<ColumnModel>,
    /// (row id, row version, values in select order), ROW_ID ascending (the index's key order:
    /// the SQL has no ORDER BY).
    rows: Vec<(i64, i64, Vec<Option<String>>)>,
}

/// `TableQueryManagerImpl.queryPreflight` and the query itself: the table of the SQL (the path's
/// id is not read), READ then DOWNLOAD on it (`TableManagerSupportImpl.validateTableReadAccess`),
/// every selected column known (`SQLTranslatorUtils.validateSelectColumn`), the rows of a
/// `WHERE ROW_ID` filter (an unknown id matches nothing), then the SQL's pagination combined with
/// the request's (`SqlElementUtils.overridePagination`), applied to the filtered rows.
fn select(
    store: &Store,
    user: &User,
    sql: &str,
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<Selection, ApiError> {
    let parsed = sql::parse(sql)?;
    let rec = table_entity(store, parsed.table, parsed.version)?;
    store.require(user, rec, Permission::Read)?;
    store.require(user, rec, Permission::Download)?;
    let table = rec.table.as_ref().expect("table_entity checked");
    if parsed.version.is_some() {
        return Err(ApiError::BadRequest(format!(
            "The simulator keeps no rows of table snapshots: {sql}"
        )));
    }
    let schema = store.tables.schema(table);
    let mut selected = Vec::new();
    for column in &parsed.columns {
        match column {
            Selected::All => selected.extend(schema.iter().cloned()),
            Selected::Column(name) => selected.push(
                schema
                    .iter()
                    .find(|c| &c.name == name)
                    .cloned()
                    .ok_or_else(|| ApiError::BadRequest(format!("Unknown column {name}")))?,
            ),
        }
    }
    let (sql_offset, sql_limit) = (parsed.offset.unwrap_or(0), parsed.limit.unwrap_or(u64::MAX));
    let (skip, take) = match (offset, limit) {
        (None, None) => (sql_offset, sql_limit),
        (offset, limit) => {
            let offset = offset.unwrap_or(0);
            (
                sql_offset + offset,
                limit
                    .unwrap_or(u64::MAX)
                    .min(sql_limit.saturating_sub(offset)),
            )
        }
    };
    let rows = table
        .rows
        .iter()
        .filter(|(id, _)| {
            parsed
                .row_ids
                .as_ref()
                .is_none_or(|ids| u64::try_from(**id).is_ok_and(|id| ids.contains(&id)))
        })
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .map(|(id, row)| {
            let values = selected
                .iter()
                .map(|c| row.values.get(&c.id.parse().unwrap_or(0)).cloned())
                .collect();
            (*id, row.version, values)
        })
        .collect();
    Ok(Selection {
        table_id: rec.syn_id(),
        etag: table.change_etag.clone(),
        headers: selected.iter().map(ColumnModel::select_column).collect(),
        selected,
        schema,
        rows,
    })
}

/// A page of a query (`TableQueryManagerImpl.querySinglePage`): at most `maxRowsPerPage` rows,
/// and a `nextPageToken` (offset + page size) when the page is full.
fn query_page(
    store: &Store,
    user: &User,
    sql: &str,
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<(Selection, Value, u64), ApiError> {
    let mut selection = select(store, user, sql, offset, limit)?;
    let per_page = Tables::max_rows_per_page(&selection.selected);
    let count = selection.rows.len() as u64;
    selection
        .rows
        .truncate(usize::try_from(per_page).unwrap_or(usize::MAX));
    let rows: Vec<Value> = selection
        .rows
        .iter()
        .map(|(id, version, values)| json!({"rowId": id, "versionNumber": version, "values": values}))
        .collect();
    let mut result = json!({
        "concreteType": model("QueryResult"),
        "queryResults": {
            "concreteType": model("RowSet"),
            "tableId": selection.table_id,
            "etag": selection.etag,
            "headers": selection.headers,
            "rows": rows,
        },
    });
    if rows.len() as u64 == per_page {
        let next = json!({
            "sql": sql,
            "offset": offset.unwrap_or(0) + per_page,
            "limit": limit,
        });
        result["nextPageToken"] = json!({
            "concreteType": model("QueryNextPageToken"),
            "entityId": selection.table_id,
            "token": next.to_string(),
        });
    }
    Ok((selection, result, count))
}

/// An optional non-negative number field of a JSON object.
fn number(value: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid JSON: {field} {v}"))),
    }
}

/// `TableQueryManagerImpl.queryBundle`: `query` and `query.sql` required; the parts of
/// `partMask` (all when absent) the simulator knows: results 0x1, count 0x2, select columns 0x4,
/// max rows per page 0x8, column models 0x10.
fn run_query(store: &Store, user: &User, request: &Value) -> Result<Value, ApiError> {
    let query = request
        .get("query")
        .filter(|q| !q.is_null())
        .ok_or_else(|| ApiError::required("query"))?;
    let sql = query
        .get("sql")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("query.sql"))?;
    let mask = request
        .get("partMask")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let (selection, result, count) = query_page(
        store,
        user,
        sql,
        number(query, "offset")?,
        number(query, "limit")?,
    )?;
    let mut bundle = json!({"concreteType": model("QueryResultBundle")});
    let parts = [
        (0x1, "queryResult", result),
        (0x2, "queryCount", json!(count)),
        (0x4, "selectColumns", json!(selection.headers)),
        (
            0x8,
            "maxRowsPerPage",
            json!(Tables::max_rows_per_page(&selection.selected)),
        ),
        (0x10, "columnModels", json!(selection.schema)),
    ];
    for (bit, field, value) in parts {
        if mask & bit != 0 {
            bundle[field] = value;
        }
    }
    Ok(bundle)
}

/// `TableQueryManagerImpl.queryNextPage`: the token's query, results only.
fn run_next_page(store: &Store, user: &User, request: &Value) -> Result<Value, ApiError> {
    let token: Value = request
        .get("token")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| ApiError::BadRequest("Invalid JSON: QueryNextPageToken.token".into()))?;
    let sql = token
        .get("sql")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("query.sql"))?;
    let (_, result, _) = query_page(
        store,
        user,
        sql,
        number(&token, "offset")?,
        number(&token, "limit")?,
    )?;
    Ok(result)
}

/// The answer of a `.../async/start`: 201 with the job's token.
fn started(token: String) -> Created {
    (StatusCode::CREATED, Json(json!({ "token": token })))
}

/// Runs a job that needs only the store, records its outcome, answers its token.
fn start_job(
    app: &App,
    user: &User,
    kind: &'static str,
    run: impl FnOnce(&mut Store) -> Result<Value, ApiError>,
) -> Created {
    let mut store = lock(&app.store);
    let outcome = run(&mut store);
    let token = store.tables.add_job(Job {
        started_by: user.id.clone(),
        kind,
        outcome,
        running_polls: app.faults.running_job_polls(),
    });
    started(token)
}

/// `POST /entity/{id}/table/query/async/start` (`TableController.queryAsyncStart`), 201.
pub async fn start_query(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Created, ApiError> {
    let request: Value = parse(&body)?;
    Ok(start_job(&app, &user, QUERY, |store| {
        run_query(store, &user, &request)
    }))
}

/// `POST /entity/{id}/table/query/nextPage/async/start` (deprecated on the server, still what the
/// official client's row-set queries page with), 201.
pub async fn start_next_page(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Created, ApiError> {
    let request: Value = parse(&body)?;
    Ok(start_job(&app, &user, NEXT_PAGE, |store| {
        run_next_page(store, &user, &request)
    }))
}

/// `AsynchronousJobServicesImpl.getJobStatusAndThrow` for a job started by `kind`'s route: 400
/// for a token that is no number (`AsynchJobStatusDAOImpl.getJobStatus`), 404 for an unknown
/// one, 403 for another user's (`AsynchJobStatusManagerImpl.getJobStatus`), then the job's
/// failure or 201 with its result. A token of another kind of job fails the controller's cast
/// (500).
fn job_result(app: &App, user: &User, kind: &str, token: &str) -> Result<Created, ApiError> {
    let id: u64 = token.parse().map_err(|_| {
        ApiError::BadRequest(format!("Cannot read job id: For input string: \"{token}\""))
    })?;
    let mut store = lock(&app.store);
    let job =
        store.tables.jobs.get_mut(&id).ok_or_else(|| {
            ApiError::NotFound(format!("Asynchronous job: '{id}' does not exist"))
        })?;
    if job.started_by != user.id {
        return Err(ApiError::Forbidden(
            "Only the user that created a job can access the job's status.".into(),
        ));
    }
    if job.kind != kind {
        return Err(ApiError::Internal(format!(
            "java.lang.ClassCastException: job {id} is a {} job, not a {kind} job",
            job.kind
        )));
    }
    // Still running (`AsynchronousJobServicesImpl.getJobStatusAndThrow`: 202 with the status).
    if job.running_polls > 0 {
        job.running_polls -= 1;
        let status = json!({"jobId": id.to_string(), "jobState": "PROCESSING",
                            "startedByUserId": job.started_by});
        return Ok((StatusCode::ACCEPTED, Json(status)));
    }
    job.outcome
        .clone()
        .map(|result| (StatusCode::CREATED, Json(result)))
}

pub async fn get_query(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((_, token)): Path<(String, String)>,
) -> Result<Created, ApiError> {
    job_result(&app, &user, QUERY, &token)
}

pub async fn get_next_page(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((_, token)): Path<(String, String)>,
) -> Result<Created, ApiError> {
    job_result(&app, &user, NEXT_PAGE, &token)
}

pub async fn get_csv(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((_, token)): Path<(String, String)>,
) -> Result<Created, ApiError> {
    job_result(&app, &user, CSV, &token)
}

pub async fn get_transaction(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((_, token)): Path<(String, String)>,
) -> Result<Created, ApiError> {
    job_result(&app, &user, TRANSACTION, &token)
}

/// One character of a `CsvTableDescriptor` (`CSVUtils.createCSVWriter`).
fn descriptor_char(descriptor: &Value, field: &str, default: char) -> Result<char, ApiError> {
    match descriptor.get(field).and_then(Value::as_str) {
        None => Ok(default),
        Some(text) if text.chars().count() == 1 => Ok(text.chars().next().unwrap_or(default)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "CsvTableDescriptor.{field} must be exactly one character."
        ))),
    }
}

/// The CSV of a download request and the result without its file handle
/// (`TableCSVDownloadWorker`, `TableQueryManagerImpl.runQueryDownloadAsStream`,
/// `CSVWriterRowHandler`): the query's checks, then the descriptor's; the header and ROW_ID,
/// ROW_VERSION unless switched off (both default to true), every field quoted.
fn csv_of(store: &Store, user: &User, request: &Value) -> Result<(String, Value), ApiError> {
    // TableQueryManagerImpl.queryPreflight: `ValidateArgument.required(query.getSql(), "Query")`.
    let sql = request
        .get("sql")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("Query"))?;
    // The worker counts the rows (every check of the query) before it makes the CSV writer.
    let selection = select(
        store,
        user,
        sql,
        number(request, "offset")?,
        number(request, "limit")?,
    )?;
    let flag = |field: &str| request.get(field).and_then(Value::as_bool).unwrap_or(true);
    let (write_header, with_ids) = (flag("writeHeader"), flag("includeRowIdAndRowVersion"));
    let descriptor = request
        .get("csvTableDescriptor")
        .cloned()
        .unwrap_or(Value::Null);
    let separator = descriptor_char(&descriptor, "separator", ',')?;
    let quote = descriptor_char(&descriptor, "quoteCharacter", '"')?;
    let escape = descriptor_char(&descriptor, "escapeCharacter", '\\')?;
    let line_end = descriptor
        .get("lineEnd")
        .and_then(Value::as_str)
        .unwrap_or("\n")
        .to_owned();
    let line = |fields: &[Option<&str>]| csv_line(fields, separator, quote, escape, &line_end);
    let mut csv = String::new();
    if write_header {
        let mut names: Vec<Option<&str>> = Vec::new();
        if with_ids {
            names.extend([Some("ROW_ID"), Some("ROW_VERSION")]);
        }
        names.extend(selection.selected.iter().map(|c| Some(c.name.as_str())));
        csv.push_str(&line(&names));
    }
    for (id, version, values) in &selection.rows {
        let (id, version) = (id.to_string(), version.to_string());
        let mut fields: Vec<Option<&str>> = Vec::new();
        if with_ids {
            fields.extend([Some(id.as_str()), Some(version.as_str())]);
        }
        fields.extend(values.iter().map(Option::as_deref));
        csv.push_str(&line(&fields));
    }
    let result = json!({
        "concreteType": model("DownloadFromTableResult"),
        "tableId": selection.table_id,
        "etag": selection.etag,
        "headers": selection.headers,
    });
    Ok((csv, result))
}

/// The bucket of Synapse's own storage: location 1, else the lowest location of that kind.
fn synapse_bucket(store: &Store) -> Result<String, ApiError> {
    store
        .locations
        .get(&DEFAULT_STORAGE_LOCATION_ID)
        .into_iter()
        .chain(store.locations.values())
        .find(|l| l.setting.concrete_type == concrete::S3_STORAGE_LOCATION)
        .and_then(|l| l.setting.bucket.clone())
        .ok_or_else(|| ApiError::Internal("no Synapse storage location".into()))
}

/// `POST /entity/{id}/table/download/csv/async/start` (`TableCSVDownloadWorker`), 201: the query's
/// CSV is put in Synapse storage and becomes a file handle of the caller's
/// (`FileHandleManagerImpl.uploadLocalFile`: `text/csv`, no storage location id, named after the
/// request's `fileName` or the job), which the caller downloads through `POST /fileHandle/batch`.
pub async fn start_csv(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Created, ApiError> {
    let request: Value = parse(&body)?;
    let (id, prepared) = {
        let mut store = lock(&app.store);
        let id = store.tables.next_job_id();
        let prepared = csv_of(&store, &user, &request)
            .and_then(|(csv, result)| Ok((csv, result, synapse_bucket(&store)?)));
        (id, prepared)
    };
    let outcome = match prepared {
        Err(e) => Err(e),
        Ok((csv, mut result, bucket)) => {
            let file_name = request
                .get("fileName")
                .and_then(Value::as_str)
                .map_or_else(|| format!("Job-{id}.csv"), str::to_owned);
            let key = format!("{}/{}/{file_name}", user.id, uuid::Uuid::new_v4());
            let md5 = hex::encode(Md5::digest(csv.as_bytes()));
            let size = csv.len() as u64;
            app.s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .content_type("text/csv")
                .body(csv.into_bytes().into())
                .send()
                .await
                .map_err(|e| ApiError::BadGateway(format!("putting the CSV: {e}")))?;
            let handle = lock(&app.store).add_handle(FileHandle {
                id: String::new(),
                concrete_type: concrete::S3_FILE_HANDLE.into(),
                etag: Some(new_etag()),
                created_by: Some(user.id.clone()),
                created_on: Some(iso_now()),
                bucket_name: Some(bucket),
                key: Some(key),
                content_type: Some("text/csv".into()),
                content_md5: Some(md5),
                content_size: Some(size),
                file_name: Some(file_name),
                storage_location_id: None,
                external_url: None,
                file_path: None,
                status: Some("AVAILABLE".into()),
            });
            result["resultsFileHandleId"] = json!(handle.id);
            Ok(result)
        }
    };
    lock(&app.store).tables.jobs.insert(
        id,
        Job {
            started_by: user.id.clone(),
            kind: CSV,
            outcome,
            running_polls: app.faults.running_job_polls(),
        },
    );
    Ok(started(id.to_string()))
}

/// `TableEntityManagerImpl.validateFileHandles`: every handle written must be the caller's own or
/// already in the table's file index; the others are listed (ascending) in a 403.
fn validate_file_handles(
    store: &Store,
    user: &User,
    rec: &EntityRec,
    handles: &BTreeSet<u64>,
) -> Result<(), ApiError> {
    let table = rec.table.as_ref().expect("a table");
    let refused: Vec<String> = handles
        .iter()
        .filter(|h| {
            let own = store
                .handles
                .get(h)
                .is_some_and(|fh| fh.created_by.as_deref() == Some(user.id.as_str()));
            !own && !table.is_associated(&h.to_string())
        })
        .map(u64::to_string)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "Cannot access files: [{}]",
        refused.join(", ")
    )))
}

/// One `AppendableRowSetRequest` of a transaction (`TableEntityManagerImpl.appendToTable`,
/// `appendPartialRows`, `appendRowsAsStream`, `appendRowsToTable`) applied to `rec` (a copy the
/// caller commits only when the whole transaction succeeds).
fn append_rows(
    store: &Store,
    user: &User,
    rec: &mut EntityRec,
    change: &Value,
) -> Result<Value, ApiError> {
    let to_append = change
        .get("toAppend")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::required("AppendableRowSetRequest.toAppend"))?;
    let kind = to_append
        .get("concreteType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != model("PartialRowSet") {
        return Err(ApiError::BadRequest(format!(
            "The simulator only appends a PartialRowSet, not: {kind}"
        )));
    }
    let table_id = to_append
        .get("tableId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::required("TableId"))?;
    if id_and_version(table_id)?.0 != rec.id {
        return Err(ApiError::BadRequest(format!(
            "The simulator only appends rows to the transaction's own table, not: {table_id}"
        )));
    }
    let rows = partial_rows(to_append)?;
    // ColumnModelManagerImpl.getColumnModelsForTable: READ, before the rows are looked at.
    store.require(user, rec, Permission::Read)?;
    let cells = rec
        .table
        .as_ref()
        .expect("a table")
        .validate_partial_rows(&store.tables, &rows)?;
    // TableManagerSupportImpl.touchTable: every append changes the entity's etag.
    rec.touch(user);
    let handles = file_handles_in(&store.tables, &cells);
    validate_file_handles(store, user, rec, &handles)?;
    let mut reference = json!({"tableId": rec.syn_id()});
    let table = rec.table.as_mut().expect("a table");
    let schema = store.tables.schema(table);
    if !cells.is_empty() {
        let appended = table.append(&store.tables, cells)?;
        reference["etag"] = json!(appended.etag);
        reference["headers"] = json!(schema
            .iter()
            .map(ColumnModel::select_column)
            .collect::<Vec<_>>());
        reference["rows"] = appended
            .rows
            .iter()
            .map(|(id, version)| json!({"rowId": id, "versionNumber": version}))
            .collect();
    }
    Ok(json!({
        "concreteType": model("RowReferenceSetResults"),
        "rowReferenceSet": reference,
    }))
}

/// The rows of a `PartialRowSet` (`values` is a tuple-array map: `[{"key", "value"}]`). A row
/// without `values` deletes the row on the server, which the simulator does not do.
fn partial_rows(set: &Value) -> Result<Vec<PartialRow>, ApiError> {
    let invalid = |what: &str| ApiError::BadRequest(format!("Invalid JSON: PartialRow.{what}"));
    let mut rows = Vec::new();
    for row in set
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::required("PartialRowSet.rows"))?
    {
        let row_id = match row.get("rowId") {
            None | Some(Value::Null) => None,
            Some(id) => Some(id.as_i64().ok_or_else(|| invalid("rowId"))?),
        };
        let Some(values) = row.get("values").and_then(Value::as_array) else {
            return Err(ApiError::BadRequest(
                "The simulator does not delete rows: a PartialRow needs values".into(),
            ));
        };
        let mut cells = Vec::new();
        for pair in values {
            let key = pair
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("values.key"))?;
            let value = match pair.get("value") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            };
            cells.push((key.to_owned(), value));
        }
        rows.push(PartialRow {
            row_id,
            values: cells,
        });
    }
    Ok(rows)
}

/// `NodeManagerImpl.createSnapshotAndVersion` on `rec` (UPDATE checked by the caller): the current
/// version takes the request's label (its number when none) and comment, and a new version
/// `in progress` follows it (`NodeDAOImpl.snapshotVersion`, `createNewVersion`). Returns the
/// snapshot's version number.
fn snapshot(rec: &mut EntityRec, user: &User, request: &Value) -> Result<i64, ApiError> {
    if request
        .get("snapshotActivityId")
        .is_some_and(|a| !a.is_null())
    {
        return Err(ApiError::BadRequest(
            "The simulator keeps no activities: snapshotActivityId cannot be used".into(),
        ));
    }
    let current = rec.latest().cloned().expect("tables have a version");
    let label = request
        .get("snapshotLabel")
        .and_then(Value::as_str)
        .map_or_else(|| current.number.to_string(), str::to_owned);
    if rec
        .versions
        .iter()
        .any(|v| v.label == label && v.number != current.number)
    {
        return Err(ApiError::BadRequest(format!(
            "The label '{label}' has already been used for a version of this entity"
        )));
    }
    let now = iso_now();
    let snapshot = rec.versions.last_mut().expect("tables have a version");
    snapshot.label = label;
    snapshot.comment = request
        .get("snapshotComment")
        .and_then(Value::as_str)
        .map(str::to_owned);
    snapshot.modified_on = now.clone();
    snapshot.modified_by = user.id.clone();
    rec.versions.push(VersionRec {
        number: current.number + 1,
        label: IN_PROGRESS.into(),
        comment: Some(IN_PROGRESS.into()),
        file_handle_id: None,
        annotations: current.annotations,
        modified_on: now,
        modified_by: user.id.clone(),
    });
    rec.touch(user);
    Ok(current.number)
}

/// `TableUpdateRequestWorker` and `TableEntityUpdateRequestManager.updateTableWithTransaction`,
/// in their order: the table (404/400), the request (`TableUpdateRequestUtils.validateRequest`),
/// UPDATE, each change, then the snapshot. All or nothing.
fn run_transaction(
    store: &mut Store,
    user: &User,
    entity_id: &str,
    request: &Value,
) -> Result<Value, ApiError> {
    let (id, version) = id_and_version(entity_id)?;
    let rec = table_entity(store, id, version)?;
    if version.is_some() {
        return Err(ApiError::BadRequest(
            "A snapshot is immutable and cannot be updated.".into(),
        ));
    }
    let create_snapshot = request.get("createSnapshot").and_then(Value::as_bool);
    let options = request.get("snapshotOptions").filter(|o| !o.is_null());
    if create_snapshot.is_none() && options.is_some() {
        return Err(ApiError::BadRequest(
            "Included SnapshotOptions but the createSnapshot boolean is null".into(),
        ));
    }
    let changes = request
        .get("changes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if changes.is_empty() && create_snapshot != Some(true) {
        return Err(ApiError::BadRequest(
            "Must include be at least one change or create a snapshot.".into(),
        ));
    }
    if changes.iter().any(|c| {
        c.get("entityId")
            .and_then(Value::as_str)
            .is_some_and(|e| e != entity_id)
    }) {
        return Err(ApiError::BadRequest(
            "EntityId of TableUpdateRequest does not match the requested transaction entityId"
                .into(),
        ));
    }
    store.require(user, rec, Permission::Update)?;
    for change in &changes {
        let kind = change
            .get("concreteType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind != model("AppendableRowSetRequest") {
            return Err(ApiError::BadRequest(format!(
                "The simulator only applies AppendableRowSetRequest changes, not: {kind}"
            )));
        }
    }
    let mut updated = rec.clone();
    let mut results = Vec::new();
    for change in &changes {
        results.push(append_rows(store, user, &mut updated, change)?);
    }
    let mut response = json!({
        "concreteType": model("TableUpdateTransactionResponse"),
        "results": results,
    });
    if create_snapshot == Some(true) {
        let request = options.cloned().unwrap_or_else(|| json!({}));
        response["snapshotVersionNumber"] = json!(snapshot(&mut updated, user, &request)?);
    }
    store.entities.insert(id, updated);
    Ok(response)
}

/// `POST /entity/{id}/table/transaction/async/start` (`TableController.startTableTransactionJob`
/// sets the request's `entityId` to the path's), 201.
pub async fn start_transaction(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Created, ApiError> {
    let request: Value = parse(&body)?;
    Ok(start_job(&app, &user, TRANSACTION, |store| {
        run_transaction(store, &user, &id, &request)
    }))
}

/// `POST /entity/{id}/table/snapshot` (`TableEntityManagerImpl.createTableSnapshot`), 201: the
/// table (404/400), UPDATE (`validateTableWriteAccess`), then the snapshot.
pub async fn create_snapshot(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Created, ApiError> {
    let request: Value = parse(&body)?;
    let (number, version) = id_and_version(&id)?;
    let mut store = lock(&app.store);
    let rec = table_entity(&store, number, version)?;
    store.require(&user, rec, Permission::Update)?;
    let mut updated = rec.clone();
    let snapshot = snapshot(&mut updated, &user, &request)?;
    store.entities.insert(number, updated);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "snapshotVersionNumber": snapshot })),
    ))
}
