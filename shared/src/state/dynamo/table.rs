//! Creating the table: what a deployment or a test does once.

use super::*;

/// Creates the table (keys `PK`/`SK`, on-demand, the status index, TTL on `expiresAt`) and
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
        .key_schema(key(SSK, KeyType::Range)?)
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
        .attribute_definitions(string_attribute(SSK)?)
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
