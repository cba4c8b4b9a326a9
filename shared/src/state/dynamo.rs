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
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, ReturnValue, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::*;

mod expr;
mod parse;
mod store;
mod table;

use expr::{n, s, set_status, Expr};
use parse::{
    decode_token, encode_token, parse_budget, parse_copy, parse_folder, parse_item, parse_lock,
    parse_run, Reader,
};
pub use table::create_table;

/// Name of the index over (`SPK`, `SSK`) that lists items by status in plan order.
pub const STATUS_INDEX: &str = "ByStatusPlanOrder";
/// The table's TTL attribute; only the lock, frontiers and budgets carry it.
pub const TTL_ATTRIBUTE: &str = "expiresAt";

const PK: &str = "PK";
const SK: &str = "SK";
const SPK: &str = "SPK";
/// The index's sort key: [`plan_order_key`].
const SSK: &str = "SSK";
const COUNT_PREFIX: &str = "count_";
/// BatchGetItem's most keys per request.
const BATCH_GET_KEYS: usize = 100;

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
    R: fmt::Debug + 'static,
{
    let message = || format!("{operation}: {}", crate::error_chain(&error));
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
    R: fmt::Debug + 'static,
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

    /// BatchGetItem of at most [`BATCH_GET_KEYS`] keys (strongly consistent), asking again with
    /// backoff for the keys DynamoDB leaves unprocessed (it does so when throttled), a bounded
    /// number of times; the records found, in no order.
    async fn batch_get(&self, keys: Vec<Attrs>) -> Result<Vec<Attrs>, StateError> {
        const ROUNDS: u32 = 8;
        let mut found = Vec::new();
        let mut pending = keys;
        for round in 0..ROUNDS {
            if pending.is_empty() {
                return Ok(found);
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(50 << round)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StateError::Invalid(e.to_string()))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| service_error("BatchGetItem", e))?;
            if let Some(mut responses) = output.responses {
                found.extend(responses.remove(&self.table).unwrap_or_default());
            }
            if let Some(left) = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(&self.table))
            {
                pending = left.keys;
            }
        }
        if pending.is_empty() {
            return Ok(found);
        }
        Err(StateError::Throttled(format!(
            "BatchGetItem left {} keys unprocessed after {ROUNDS} rounds",
            pending.len()
        )))
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

    /// [`Self::update_copy`] of an unfinished copy whose lease `owner` holds.
    async fn update_leased_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        mut expr: Expr,
    ) -> Result<CopyRecord, StateError> {
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

#[cfg(test)]
mod tests;
