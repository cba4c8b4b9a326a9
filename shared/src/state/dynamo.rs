//! DynamoDB state store. Layout and rules: see the module docs of [`crate::state`].
//!
//! Each write is one conditional request. When a condition fails, the record is read back and
//! the same pure check the in-memory store uses tells *why* (lease held, wrong status, gone),
//! so both stores report the same error for the same situation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::*;

/// Name of the index over (`SPK`, `SK`) that lists items by status.
pub const STATUS_INDEX: &str = "ByStatus";
/// The table's TTL attribute; only the lock and frontiers carry it.
pub const TTL_ATTRIBUTE: &str = "expiresAt";

const PK: &str = "PK";
const SK: &str = "SK";
const SPK: &str = "SPK";
const COUNT_PREFIX: &str = "count_";

type Attrs = HashMap<String, AttributeValue>;

/// See the module docs.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Narrows a query to the migration's records whose sort key starts with `prefix`, read
/// strongly consistent (the base table allows it; the status index does not).
fn with_prefix(
    query: QueryFluentBuilder,
    migration: &MigrationKey,
    prefix: &str,
) -> QueryFluentBuilder {
    query
        .consistent_read(true)
        .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#sk", SK)
        .expression_attribute_values(":pk", s(migration.pk()))
        .expression_attribute_values(":prefix", s(prefix))
}

/// Sends the query and parses one page of records.
async fn read_page<T>(
    query: QueryFluentBuilder,
    parse: impl Fn(&Attrs) -> Result<T, StateError>,
) -> Result<Page<T>, StateError> {
    let output = query.send().await.map_err(|e| service_error("Query", e))?;
    let items = output
        .items()
        .iter()
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    let next_token = output.last_evaluated_key().map(encode_token).transpose()?;
    Ok(Page { items, next_token })
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Creates the table (keys `PK`/`SK`, on-demand, the `ByStatus` index, TTL on `expiresAt`) and
/// waits until it is active. An existing table is left as it is.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StateError> {
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(invalid_request)
    };
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(invalid_request)
    };
    let by_status = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX)
        .key_schema(key(SPK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(invalid_request)?;
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(string_attribute(PK)?)
        .attribute_definitions(string_attribute(SK)?)
        .attribute_definitions(string_attribute(SPK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(by_status)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error) if error.code() == Some("ResourceInUseException") => return Ok(()),
        Err(error) => return Err(service_error("CreateTable", error)),
    }
    wait_until_active(client, table).await?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(invalid_request)?,
        )
        .send()
        .await
        .map_err(|e| service_error("UpdateTimeToLive", e))?;
    Ok(())
}

/// Polls for up to a minute; a new on-demand table is usually active within seconds.
async fn wait_until_active(client: &Client, table: &str) -> Result<(), StateError> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| service_error("DescribeTable", e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StateError::Transient(format!(
        "table {table} did not become active within a minute"
    )))
}

fn invalid_request(error: impl std::error::Error) -> StateError {
    StateError::Invalid(error.to_string())
}

/// Outcome of a failed request: a failed condition (to be explained) or a final error.
enum Failure {
    ConditionFailed,
    Error(StateError),
}

fn classify<E, R>(operation: &str, error: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let message = || format!("{operation}: {}", DisplayErrorContext(&error));
    match error.code() {
        Some("ConditionalCheckFailedException") => Failure::ConditionFailed,
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => Failure::Error(StateError::Throttled(message())),
        Some(
            "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionConflictException"
            | "TransactionInProgressException",
        ) => Failure::Error(StateError::Transient(message())),
        None if matches!(
            error,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) =>
        {
            Failure::Error(StateError::Transient(message()))
        }
        _ => Failure::Error(StateError::Service(message())),
    }
}

/// For requests without a condition: every failure is final.
fn service_error<E, R>(operation: &str, error: SdkError<E, R>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match classify(operation, error) {
        Failure::Error(error) => error,
        Failure::ConditionFailed => StateError::Service(format!(
            "{operation}: condition failed on a request without a condition"
        )),
    }
}

/// The read-back check passed, so the record changed between the write and the read.
fn raced(record: String) -> StateError {
    StateError::ConditionFailed {
        record,
        detail: "changed concurrently; read it again".to_owned(),
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Builds update and condition expressions with a placeholder for every name, so reserved words
/// (`status`, `size`, `version`, `owner`) need no special care.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: Attrs,
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
}

impl Expr {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, label: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{label}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(attribute, value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(attribute, value));
        self.set
            .push(format!("{name} = if_not_exists({name}, {value})"));
        self
    }

    fn set_or_remove(&mut self, attribute: &str, value: Option<AttributeValue>) -> &mut Self {
        match value {
            Some(value) => self.set(attribute, value),
            None => self.remove(attribute),
        }
    }

    fn remove(&mut self, attribute: &str) -> &mut Self {
        let name = self.name(attribute);
        self.remove.push(name);
        self
    }

    fn add(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(attribute, value));
        self.add.push(format!("{name} {value}"));
        self
    }

    fn update_expression(&self) -> String {
        [
            ("SET", &self.set),
            ("REMOVE", &self.remove),
            ("ADD", &self.add),
        ]
        .into_iter()
        .filter(|(_, clauses)| !clauses.is_empty())
        .map(|(action, clauses)| format!("{action} {}", clauses.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// "the lease is free, expired or `owner`'s", as a condition.
    fn lease_free(&mut self, owner: &str, now: EpochSeconds) -> String {
        let (lease_owner, lease_expires) = (self.name("leaseOwner"), self.name("leaseExpiresAt"));
        let (owner, now) = (self.value("c_owner", s(owner)), self.value("c_now", n(now)));
        format!(
            "(attribute_not_exists({lease_owner}) OR {lease_owner} = {owner} OR {lease_expires} <= {now})"
        )
    }

    /// (names, values), or `None` for empty maps, which DynamoDB rejects.
    fn into_maps(self) -> (Option<HashMap<String, String>>, Option<Attrs>) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
}

/// Typed reads of one record's attributes; a missing or mistyped attribute is `Corrupt`.
struct Reader<'a> {
    attrs: &'a Attrs,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, detail: String) -> StateError {
        let record = match (self.attrs.get(PK), self.attrs.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => format!("{pk} {sk}"),
            _ => "?".to_owned(),
        };
        StateError::Corrupt { record, detail }
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StateError> {
        match self.attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(other) => Err(self.corrupt(format!("{name} is not a string: {other:?}"))),
        }
    }

    fn s(&self, name: &str) -> Result<&'a str, StateError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    fn opt_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, StateError> {
        match self.attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(text)) => text
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name} is not a valid number: {text}"))),
            Some(other) => Err(self.corrupt(format!("{name} is not a number: {other:?}"))),
        }
    }

    fn n<T: FromStr>(&self, name: &str) -> Result<T, StateError> {
        self.opt_n(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    fn bool(&self, name: &str) -> Result<bool, StateError> {
        match self.attrs.get(name) {
            Some(AttributeValue::Bool(value)) => Ok(*value),
            other => Err(self.corrupt(format!("{name} is not a boolean: {other:?}"))),
        }
    }

    fn opt_json(&self, name: &str) -> Result<Option<serde_json::Value>, StateError> {
        self.opt_s(name)?
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| self.corrupt(format!("{name} is not JSON: {e}")))
            })
            .transpose()
    }

    fn parsed<T>(&self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StateError> {
        let text = self.s(name)?;
        parse(text).ok_or_else(|| self.corrupt(format!("{name} has an unknown value: {text}")))
    }

    fn lease(&self, owner: &str, expires_at: &str) -> Result<Option<Lease>, StateError> {
        match self.opt_s(owner)? {
            None => Ok(None),
            Some(owner) => Ok(Some(Lease {
                owner: owner.to_owned(),
                expires_at: self.n(expires_at)?,
            })),
        }
    }
}

fn parse_lock(attrs: &Attrs) -> Result<Lease, StateError> {
    let reader = Reader { attrs };
    reader
        .lease("owner", TTL_ATTRIBUTE)?
        .ok_or_else(|| reader.corrupt("owner is missing".to_owned()))
}

fn parse_run(attrs: &Attrs) -> Result<RunRecord, StateError> {
    let reader = Reader { attrs };
    let mut by_status = BTreeMap::new();
    for status in StatusName::ALL {
        if let Some(count) = reader.opt_n(&format!("{COUNT_PREFIX}{}", status.as_str()))? {
            by_status.insert(status, count);
        }
    }
    Ok(RunRecord {
        run_id: reader.s("runId")?.to_owned(),
        settings: reader.opt_json("settings")?.unwrap_or_default(),
        status: reader.parsed("status", RunStatus::parse)?,
        counters: RunCounters {
            by_status,
            bytes_copied: reader.opt_n("bytesCopied")?.unwrap_or_default(),
        },
        started_at: reader.n("startedAt")?,
        ended_at: reader.opt_n("endedAt")?,
    })
}

fn parse_item(attrs: &Attrs) -> Result<ItemRecord, StateError> {
    let reader = Reader { attrs };
    let status = match reader.parsed("status", StatusName::parse)? {
        StatusName::Indexed => ItemStatus::Indexed,
        StatusName::Copying => ItemStatus::Copying,
        StatusName::Copied => ItemStatus::Copied,
        StatusName::Migrated => ItemStatus::Migrated,
        StatusName::AlreadyMigrated => ItemStatus::AlreadyMigrated,
        StatusName::Skipped => ItemStatus::Skipped {
            reason: reader.parsed("skipReason", SkipReason::parse)?,
        },
        StatusName::Errored => ItemStatus::Errored(ItemError {
            class: reader.s("errorClass")?.to_owned(),
            message: reader.s("errorMessage")?.to_owned(),
            retryable: reader.bool("retryable")?,
        }),
    };
    Ok(ItemRecord {
        key: ItemKey::new(reader.s("entityId")?, reader.n("version")?)?,
        source_file_handle_id: reader.s("sourceFileHandleId")?.to_owned(),
        size: reader.n("size")?,
        content_md5: reader.opt_s("contentMd5")?.map(str::to_owned),
        source_storage_location_id: reader.opt_n("sourceStorageLocationId")?,
        file_name: reader.s("fileName")?.to_owned(),
        destination_file_name: reader.opt_s("destinationFileName")?.map(str::to_owned),
        status,
        destination_file_handle_id: reader.opt_s("destinationFileHandleId")?.map(str::to_owned),
        attempts: reader.opt_n("attempts")?.unwrap_or_default(),
        lease: reader.lease("leaseOwner", "leaseExpiresAt")?,
        updated_at: reader.n("updatedAt")?,
        run_id: reader.s("runId")?.to_owned(),
    })
}

fn parse_copy(attrs: &Attrs) -> Result<CopyRecord, StateError> {
    let reader = Reader { attrs };
    Ok(CopyRecord {
        source_file_handle_id: reader.s("sourceFileHandleId")?.to_owned(),
        status: reader.parsed("status", CopyStatus::parse)?,
        engine_state: reader.opt_json("engineState")?,
        destination_file_handle_id: reader.opt_s("destinationFileHandleId")?.map(str::to_owned),
        unused_reason: reader.opt_s("unusedReason")?.map(str::to_owned),
        lease: reader.lease("leaseOwner", "leaseExpiresAt")?,
        updated_at: reader.n("updatedAt")?,
    })
}

/// Writes an item status and its details, removing the details of other statuses.
fn set_status(expr: &mut Expr, migration: &MigrationKey, status: &ItemStatus) {
    expr.set("status", s(status.name().as_str()))
        .set(SPK, s(status_pk(migration, status.name())));
    match status {
        ItemStatus::Skipped { reason } => expr.set("skipReason", s(reason.as_str())),
        _ => expr.remove("skipReason"),
    };
    match status {
        ItemStatus::Errored(error) => expr
            .set("errorClass", s(&error.class))
            .set("errorMessage", s(&error.message))
            .set("retryable", AttributeValue::Bool(error.retryable)),
        _ => expr
            .remove("errorClass")
            .remove("errorMessage")
            .remove("retryable"),
    };
}

/// Opaque page token: the last evaluated key as JSON (all key attributes are strings).
fn encode_token(key: &Attrs) -> Result<String, StateError> {
    let reader = Reader { attrs: key };
    let mut map = BTreeMap::new();
    for name in key.keys() {
        map.insert(name.as_str(), reader.s(name)?);
    }
    serde_json::to_string(&map).map_err(|e| StateError::Invalid(e.to_string()))
}

fn decode_token(token: &str) -> Result<Attrs, StateError> {
    let map: BTreeMap<String, String> = serde_json::from_str(token)
        .map_err(|_| StateError::Invalid("malformed page token".to_owned()))?;
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl DynamoStore {
    /// Strongly consistent read of one record.
    async fn get(&self, pk: String, sk: String) -> Result<Option<Attrs>, StateError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| service_error("GetItem", e))?;
        Ok(output.item)
    }

    /// A conditional UpdateItem returning the new record, or `None` if the condition failed.
    async fn update(
        &self,
        pk: String,
        sk: String,
        expr: Expr,
        condition: String,
    ) -> Result<Option<Attrs>, StateError> {
        let update = expr.update_expression();
        let (names, values) = expr.into_maps();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Some(output.attributes.unwrap_or_default())),
            Err(error) => match classify("UpdateItem", error) {
                Failure::ConditionFailed => Ok(None),
                Failure::Error(error) => Err(error),
            },
        }
    }

    /// A conditional update of a copy record; when the condition fails, `explain` names the rule
    /// the record as it stands breaks (or the write raced another).
    async fn update_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        expr: Expr,
        condition: String,
        explain: impl FnOnce(Option<&CopyRecord>) -> Result<(), StateError>,
    ) -> Result<CopyRecord, StateError> {
        let sk = copy_sk(source_file_handle_id);
        match self
            .update(migration.pk(), sk.clone(), expr, condition)
            .await?
        {
            Some(attrs) => parse_copy(&attrs),
            None => {
                let current = self.get_copy(migration, source_file_handle_id).await?;
                explain(current.as_ref())?;
                Err(raced(sk))
            }
        }
    }

    /// A Query of at most `limit` records from `page_token` on.
    fn page_query(
        &self,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<QueryFluentBuilder, StateError> {
        if limit == 0 {
            return Err(StateError::Invalid("page limit must be at least 1".into()));
        }
        Ok(self
            .client
            .query()
            .table_name(&self.table)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(page_token.map(decode_token).transpose()?))
    }

    async fn get_lock_record(&self, migration: &MigrationKey) -> Result<Option<Lease>, StateError> {
        self.get(migration.pk(), LOCK_SK.to_owned())
            .await?
            .map(|attrs| parse_lock(&attrs))
            .transpose()
    }

    /// Every run of a migration, in run id order: what `synmigrate status` and `report` show.
    /// One Query on the migration's partition (runs are few; items are skipped by the key range).
    pub async fn list_runs(&self, migration: &MigrationKey) -> Result<Vec<RunRecord>, StateError> {
        let mut runs = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(migration.pk()))
                .expression_attribute_values(":prefix", s(run_sk("")))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| service_error("Query", e))?;
            for attrs in output.items() {
                runs.push(parse_run(attrs)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => return Ok(runs),
            }
        }
    }
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn acquire_lock(
        &self,
        migration: &MigrationKey,
        owner: &str,
        expires_at: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<Lease, StateError> {
        let mut expr = Expr::default();
        expr.set("owner", s(owner))
            .set(TTL_ATTRIBUTE, n(expires_at))
            .set("acquiredAt", n(now));
        let (pk, lease_owner, lease_expires) =
            (expr.name(PK), expr.name("owner"), expr.name(TTL_ATTRIBUTE));
        let (me, now_value) = (expr.value("c_owner", s(owner)), expr.value("c_now", n(now)));
        let condition = format!(
            "attribute_not_exists({pk}) OR {lease_owner} = {me} OR {lease_expires} <= {now_value}"
        );
        match self
            .update(migration.pk(), LOCK_SK.to_owned(), expr, condition)
            .await?
        {
            Some(attrs) => parse_lock(&attrs),
            None => {
                check_lock_acquire(self.get_lock_record(migration).await?.as_ref(), owner, now)?;
                Err(raced(LOCK_SK.to_owned()))
            }
        }
    }

    async fn renew_lock(
        &self,
        migration: &MigrationKey,
        owner: &str,
        expires_at: EpochSeconds,
    ) -> Result<Lease, StateError> {
        let mut expr = Expr::default();
        expr.set(TTL_ATTRIBUTE, n(expires_at));
        let (pk, lease_owner) = (expr.name(PK), expr.name("owner"));
        let me = expr.value("c_owner", s(owner));
        let condition = format!("attribute_exists({pk}) AND {lease_owner} = {me}");
        match self
            .update(migration.pk(), LOCK_SK.to_owned(), expr, condition)
            .await?
        {
            Some(attrs) => parse_lock(&attrs),
            None => {
                check_lock_owned(self.get_lock_record(migration).await?.as_ref(), owner)?;
                Err(raced(LOCK_SK.to_owned()))
            }
        }
    }

    async fn release_lock(&self, migration: &MigrationKey, owner: &str) -> Result<(), StateError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(migration.pk()))
            .key(SK, s(LOCK_SK))
            .condition_expression("attribute_not_exists(#pk) OR #owner = :owner")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match classify("DeleteItem", error) {
                Failure::Error(error) => Err(error),
                Failure::ConditionFailed => {
                    match check_lock_owned(self.get_lock_record(migration).await?.as_ref(), owner) {
                        // Gone by now: released, which is what the caller wanted.
                        Err(StateError::NotFound(_)) => Ok(()),
                        Ok(()) => Err(raced(LOCK_SK.to_owned())),
                        Err(other) => Err(other),
                    }
                }
            },
        }
    }

    async fn get_lock(&self, migration: &MigrationKey) -> Result<Option<Lease>, StateError> {
        self.get_lock_record(migration).await
    }

    async fn create_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        settings: &serde_json::Value,
        now: EpochSeconds,
    ) -> Result<RunRecord, StateError> {
        check_id("run id", run_id)?;
        let settings = check_document("run settings", settings)?;
        let mut expr = Expr::default();
        expr.set("runId", s(run_id))
            .set("settings", s(settings))
            .set("status", s(RunStatus::Running.as_str()))
            .set("startedAt", n(now))
            .set("bytesCopied", n(0));
        let condition = format!("attribute_not_exists({})", expr.name(PK));
        match self
            .update(migration.pk(), run_sk(run_id), expr, condition)
            .await?
        {
            Some(attrs) => parse_run(&attrs),
            None => self
                .get_run(migration, run_id)
                .await?
                .ok_or_else(|| raced(run_sk(run_id))),
        }
    }

    async fn get_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<RunRecord>, StateError> {
        self.get(migration.pk(), run_sk(run_id))
            .await?
            .map(|attrs| parse_run(&attrs))
            .transpose()
    }

    async fn add_to_counters(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        delta: &RunCounters,
    ) -> Result<(), StateError> {
        let mut expr = Expr::default();
        for (status, count) in &delta.by_status {
            expr.add(&format!("{COUNT_PREFIX}{}", status.as_str()), n(count));
        }
        expr.add("bytesCopied", n(delta.bytes_copied));
        let condition = format!("attribute_exists({})", expr.name(PK));
        match self
            .update(migration.pk(), run_sk(run_id), expr, condition)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(StateError::NotFound(run_sk(run_id))),
        }
    }

    async fn finish_run(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        status: RunStatus,
        now: EpochSeconds,
    ) -> Result<RunRecord, StateError> {
        let mut expr = Expr::default();
        expr.set("status", s(status.as_str()))
            .set("endedAt", n(now));
        let condition = format!("attribute_exists({})", expr.name(PK));
        match self
            .update(migration.pk(), run_sk(run_id), expr, condition)
            .await?
        {
            Some(attrs) => parse_run(&attrs),
            None => Err(StateError::NotFound(run_sk(run_id))),
        }
    }

    async fn save_frontier(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        frontier: &serde_json::Value,
        expires_at: EpochSeconds,
    ) -> Result<(), StateError> {
        check_id("run id", run_id)?;
        let frontier = check_document("frontier", frontier)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(migration.pk()))
            .item(SK, s(frontier_sk(run_id)))
            .item("runId", s(run_id))
            .item("frontier", s(frontier))
            .item(TTL_ATTRIBUTE, n(expires_at))
            .send()
            .await
            .map_err(|e| service_error("PutItem", e))?;
        Ok(())
    }

    async fn load_frontier(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<serde_json::Value>, StateError> {
        match self.get(migration.pk(), frontier_sk(run_id)).await? {
            None => Ok(None),
            Some(attrs) => Reader { attrs: &attrs }.opt_json("frontier"),
        }
    }

    async fn put_item(
        &self,
        migration: &MigrationKey,
        item: &ItemRecord,
        max_attempts: u32,
    ) -> Result<PutOutcome, StateError> {
        check_put(item)?;
        let mut expr = Expr::default();
        expr.set("entityId", s(&item.key.entity_id))
            .set("version", n(item.key.version))
            .set("sourceFileHandleId", s(&item.source_file_handle_id))
            .set("size", n(item.size))
            .set_or_remove("contentMd5", item.content_md5.as_deref().map(s))
            .set_or_remove(
                "sourceStorageLocationId",
                item.source_storage_location_id.map(n),
            )
            .set("fileName", s(&item.file_name))
            .set_or_remove(
                "destinationFileName",
                item.destination_file_name.as_deref().map(s),
            )
            .set_or_remove(
                "destinationFileHandleId",
                item.destination_file_handle_id.as_deref().map(s),
            )
            .set_if_absent("attempts", n(item.attempts))
            .set("updatedAt", n(item.updated_at))
            .set("runId", s(&item.run_id))
            .remove("leaseOwner")
            .remove("leaseExpiresAt");
        set_status(&mut expr, migration, &item.status);
        // The database side of `ItemStatus::reindexable`.
        let (pk, status, retryable, attempts, reason) = (
            expr.name(PK),
            expr.name("status"),
            expr.name("retryable"),
            expr.name("attempts"),
            expr.name("skipReason"),
        );
        let indexed = expr.value("c_indexed", s(StatusName::Indexed.as_str()));
        let errored = expr.value("c_errored", s(StatusName::Errored.as_str()));
        let skipped = expr.value("c_skipped", s(StatusName::Skipped.as_str()));
        let filtered = expr.value("c_filtered", s(SkipReason::FilteredOut.as_str()));
        let yes = expr.value("c_true", AttributeValue::Bool(true));
        let max = expr.value("c_max", n(max_attempts));
        let condition = format!(
            "attribute_not_exists({pk}) OR {status} = {indexed} \
             OR ({status} = {errored} AND {retryable} = {yes} AND {attempts} < {max}) \
             OR ({status} = {skipped} AND {reason} = {filtered})"
        );

        let update = expr.update_expression();
        let (names, values) = expr.into_maps();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(migration.pk()))
            .key(SK, s(item.key.sk()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => match output.attributes.filter(|old| !old.is_empty()) {
                None => Ok(PutOutcome::Created),
                Some(old) => Ok(PutOutcome::Replaced {
                    previous: Reader { attrs: &old }.parsed("status", StatusName::parse)?,
                }),
            },
            Err(error) => match classify("UpdateItem", error) {
                Failure::Error(error) => Err(error),
                Failure::ConditionFailed => match self.get_item(migration, &item.key).await? {
                    Some(current) => Ok(PutOutcome::Kept {
                        current: current.status.name(),
                    }),
                    None => Err(raced(item.key.sk())),
                },
            },
        }
    }

    async fn get_item(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
    ) -> Result<Option<ItemRecord>, StateError> {
        self.get(migration.pk(), key.sk())
            .await?
            .map(|attrs| parse_item(&attrs))
            .transpose()
    }

    async fn list_items(
        &self,
        migration: &MigrationKey,
        status: Option<StatusName>,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError> {
        if limit == 0 {
            return Err(StateError::Invalid("page limit must be at least 1".into()));
        }
        let query = self.page_query(limit, page_token)?;
        let query = match status {
            Some(status) => query
                .index_name(STATUS_INDEX)
                .key_condition_expression("#spk = :spk")
                .expression_attribute_names("#spk", SPK)
                .expression_attribute_values(":spk", s(status_pk(migration, status))),
            None => with_prefix(query, migration, ITEM_PREFIX),
        };
        read_page(query, parse_item).await
    }

    async fn transition_item(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
        transition: &Transition,
    ) -> Result<ItemRecord, StateError> {
        check_transition_request(transition)?;
        let mut expr = Expr::default();
        set_status(&mut expr, migration, &transition.to);
        match transition.lease_until {
            Some(until) => expr
                .set("leaseOwner", s(&transition.owner))
                .set("leaseExpiresAt", n(until)),
            None => expr.remove("leaseOwner").remove("leaseExpiresAt"),
        };
        if let Some(destination) = &transition.destination_file_handle_id {
            expr.set("destinationFileHandleId", s(destination));
        }
        if transition.count_attempt {
            expr.add("attempts", n(1));
        }
        expr.set("runId", s(&transition.run_id))
            .set("updatedAt", n(transition.now));
        let (pk, status) = (expr.name(PK), expr.name("status"));
        let from = expr.value("c_from", s(transition.from.as_str()));
        let lease_free = expr.lease_free(&transition.owner, transition.now);
        let condition = format!("attribute_exists({pk}) AND {status} = {from} AND {lease_free}");
        match self
            .update(migration.pk(), key.sk(), expr, condition)
            .await?
        {
            Some(attrs) => parse_item(&attrs),
            None => {
                let current = self.get_item(migration, key).await?;
                check_transition(current.as_ref(), key, transition)?;
                Err(raced(key.sk()))
            }
        }
    }

    async fn claim_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        lease_until: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        check_id("source file handle id", source_file_handle_id)?;
        let mut expr = Expr::default();
        expr.set("sourceFileHandleId", s(source_file_handle_id))
            .set("status", s(CopyStatus::Copying.as_str()))
            .set("leaseOwner", s(owner))
            .set("leaseExpiresAt", n(lease_until))
            .set("updatedAt", n(now));
        let (pk, status) = (expr.name(PK), expr.name("status"));
        let copying = expr.value("c_copying", s(CopyStatus::Copying.as_str()));
        let lease_free = expr.lease_free(owner, now);
        let condition =
            format!("attribute_not_exists({pk}) OR ({status} = {copying} AND {lease_free})");
        let sk = copy_sk(source_file_handle_id);
        match self
            .update(migration.pk(), sk.clone(), expr, condition)
            .await?
        {
            Some(attrs) => parse_copy(&attrs),
            None => {
                let current = self.get_copy(migration, source_file_handle_id).await?;
                match (
                    check_copy_claim(current.as_ref(), source_file_handle_id, owner, now)?,
                    current,
                ) {
                    (false, Some(finished)) => Ok(finished),
                    _ => Err(raced(sk)),
                }
            }
        }
    }

    async fn save_copy_state(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        engine_state: &serde_json::Value,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let engine_state = check_document("engine state", engine_state)?;
        let mut expr = Expr::default();
        expr.set("engineState", s(engine_state))
            .set("updatedAt", n(now));
        let (status, lease_owner) = (expr.name("status"), expr.name("leaseOwner"));
        let copying = expr.value("c_copying", s(CopyStatus::Copying.as_str()));
        let me = expr.value("c_owner", s(owner));
        let condition = format!("{status} = {copying} AND {lease_owner} = {me}");
        self.update_copy(
            migration,
            source_file_handle_id,
            expr,
            condition,
            |current| check_copy_state_save(current, source_file_handle_id, owner),
        )
        .await
    }

    async fn complete_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        destination_file_handle_id: &str,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let mut expr = Expr::default();
        expr.set("status", s(CopyStatus::Copied.as_str()))
            .set("destinationFileHandleId", s(destination_file_handle_id))
            .set("updatedAt", n(now))
            .remove("leaseOwner")
            .remove("leaseExpiresAt");
        let status = expr.name("status");
        let copying = expr.value("c_copying", s(CopyStatus::Copying.as_str()));
        let lease_free = expr.lease_free(owner, now);
        let condition = format!("{status} = {copying} AND {lease_free}");
        let sk = copy_sk(source_file_handle_id);
        match self
            .update(migration.pk(), sk.clone(), expr, condition)
            .await?
        {
            Some(attrs) => parse_copy(&attrs),
            None => {
                let current = self.get_copy(migration, source_file_handle_id).await?;
                let needs_write = check_copy_complete(
                    current.as_ref(),
                    source_file_handle_id,
                    owner,
                    destination_file_handle_id,
                    now,
                )?;
                match (needs_write, current) {
                    (false, Some(finished)) => Ok(finished),
                    _ => Err(raced(sk)),
                }
            }
        }
    }

    async fn get_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
    ) -> Result<Option<CopyRecord>, StateError> {
        self.get(migration.pk(), copy_sk(source_file_handle_id))
            .await?
            .map(|attrs| parse_copy(&attrs))
            .transpose()
    }

    async fn set_copy_unused(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        reason: Option<&str>,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let mut expr = Expr::default();
        expr.set_or_remove("unusedReason", reason.map(s))
            .set("updatedAt", n(now));
        let status = expr.name("status");
        let copied = expr.value("c_copied", s(CopyStatus::Copied.as_str()));
        let condition = format!("{status} = {copied}");
        self.update_copy(
            migration,
            source_file_handle_id,
            expr,
            condition,
            |current| check_copy_finished(current, source_file_handle_id),
        )
        .await
    }

    async fn list_copies(
        &self,
        migration: &MigrationKey,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<CopyRecord>, StateError> {
        let query = self.page_query(limit, page_token)?;
        read_page(with_prefix(query, migration, COPY_PREFIX), parse_copy).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_use_placeholders_for_every_name() {
        let mut expr = Expr::default();
        expr.set("status", s("INDEXED"))
            .set_if_absent("attempts", n(0))
            .remove("leaseOwner")
            .add("count_MIGRATED", n(2));
        assert_eq!(
            expr.update_expression(),
            "SET #status = :status, #attempts = if_not_exists(#attempts, :attempts) \
             REMOVE #leaseOwner ADD #count_MIGRATED :count_MIGRATED"
        );
        let (names, values) = expr.into_maps();
        assert_eq!(names.unwrap()["#status"], "status");
        assert_eq!(values.unwrap()[":count_MIGRATED"], n(2));
        assert_eq!(Expr::default().into_maps(), (None, None));
    }

    #[test]
    fn service_errors_are_classified_by_code() {
        use aws_sdk_dynamodb::error::ErrorMetadata;
        use aws_sdk_dynamodb::operation::put_item::PutItemError;

        let with_code = |code: &str| {
            let error = PutItemError::generic(ErrorMetadata::builder().code(code).build());
            classify("PutItem", SdkError::<_, ()>::service_error(error, ()))
        };
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            match with_code(code) {
                Failure::Error(error @ StateError::Throttled(_)) => {
                    assert_eq!(error.error_type(), crate::error::types::THROTTLED);
                }
                _ => panic!("{code} should be throttling"),
            }
        }
        assert!(matches!(
            with_code("ConditionalCheckFailedException"),
            Failure::ConditionFailed
        ));
        assert!(matches!(
            with_code("InternalServerError"),
            Failure::Error(StateError::Transient(_))
        ));
        assert!(matches!(
            with_code("ResourceNotFoundException"),
            Failure::Error(StateError::Service(_))
        ));
        let timeout = SdkError::<PutItemError, ()>::timeout_error("no answer");
        assert!(matches!(
            classify("PutItem", timeout),
            Failure::Error(StateError::Transient(_))
        ));
    }

    #[test]
    fn page_tokens_round_trip() {
        let key: Attrs = [
            (PK, "MIG#syn1#2"),
            (SK, "ITEM#syn3#1"),
            (SPK, "MIG#syn1#2#INDEXED"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), s(v)))
        .collect();
        assert_eq!(decode_token(&encode_token(&key).unwrap()).unwrap(), key);
        assert!(matches!(decode_token("nope"), Err(StateError::Invalid(_))));
    }

    #[test]
    fn corrupt_records_name_the_record_and_attribute() {
        let attrs: Attrs = [
            (PK.to_owned(), s("MIG#syn1#2")),
            (SK.to_owned(), s("ITEM#syn3#1")),
            ("status".to_owned(), s("LOST")),
        ]
        .into_iter()
        .collect();
        match parse_item(&attrs) {
            Err(StateError::Corrupt { record, detail }) => {
                assert_eq!(record, "MIG#syn1#2 ITEM#syn3#1");
                assert!(detail.contains("status"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
