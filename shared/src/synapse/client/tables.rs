//! The table calls: a table's schema, a query of its rows, a transaction that rewrites cells, a
//! snapshot; the last three are Synapse's asynchronous jobs (start, then poll until done).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use synapse_model::{PaginatedColumnModels, QueryPage, Row};

use super::*;

/// How long a job may keep answering "processing" before the call gives up (retryable).
const JOB_PATIENCE: Duration = Duration::from_secs(300);
/// The longest wait between two polls of a job.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);

impl SynapseClient {
    /// `GET /entity/{id}/column`: the table's columns.
    pub async fn table_columns(
        &self,
        table_id: &str,
    ) -> Result<PaginatedColumnModels, SynapseError> {
        let call = Call::new(
            Method::GET,
            Service::Repo,
            format!("/entity/{table_id}/column"),
            "GET /entity/{id}/column",
        );
        self.send_json(call).await
    }

    /// A page of `sql` from row `offset` (`POST /entity/{id}/table/query/async/start`, then
    /// `GET .../async/get/{token}`), results only (`partMask` 1). Synapse caps a page by its
    /// bytes; `more` says another page follows.
    pub async fn query_table(
        &self,
        table_id: &str,
        sql: &str,
        offset: u64,
        limit: u64,
    ) -> Result<QueryPage, SynapseError> {
        let body = json!({
            "concreteType": "org.sagebionetworks.repo.model.table.QueryBundleRequest",
            "entityId": table_id,
            "query": {"sql": sql, "offset": offset, "limit": limit},
            "partMask": 1,
        });
        let path = format!("/entity/{table_id}/table/query/async");
        let bundle = self.async_job(&path, "table query", &body).await?;
        let result = &bundle["queryResult"];
        let rows: Vec<Row> = match &result["queryResults"]["rows"] {
            Value::Null => Vec::new(),
            rows => serde_json::from_value(rows.clone()).map_err(|e| SynapseError::Protocol {
                endpoint: "table query".to_owned(),
                message: format!("cannot decode the rows: {e}"),
            })?,
        };
        Ok(QueryPage {
            rows,
            more: !result["nextPageToken"].is_null(),
        })
    }

    /// Rewrites cells of a table (`POST /entity/{id}/table/transaction/async/start` with one
    /// `PartialRowSet`): `rows` of (row id, [(column id, value)]).
    pub async fn update_cells(
        &self,
        table_id: &str,
        rows: &[(i64, Vec<(String, String)>)],
    ) -> Result<Value, SynapseError> {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(row_id, cells)| {
                let values: Vec<Value> = cells
                    .iter()
                    .map(|(column, value)| json!({"key": column, "value": value}))
                    .collect();
                json!({"rowId": row_id, "values": values})
            })
            .collect();
        let body = json!({
            "concreteType": "org.sagebionetworks.repo.model.table.TableUpdateTransactionRequest",
            "entityId": table_id,
            "changes": [{
                "concreteType": "org.sagebionetworks.repo.model.table.AppendableRowSetRequest",
                "entityId": table_id,
                "toAppend": {
                    "concreteType": "org.sagebionetworks.repo.model.table.PartialRowSet",
                    "tableId": table_id,
                    "rows": rows,
                },
            }],
        });
        let path = format!("/entity/{table_id}/table/transaction/async");
        self.async_job(&path, "table transaction", &body).await
    }

    /// `POST /entity/{id}/table/snapshot`: keeps the table as it is now as a version of its own
    /// (what the official client does before it rewrites a table's cells).
    pub async fn snapshot_table(
        &self,
        table_id: &str,
        comment: &str,
    ) -> Result<Value, SynapseError> {
        let call = Call::new(
            Method::POST,
            Service::Repo,
            format!("/entity/{table_id}/table/snapshot"),
            "POST /entity/{id}/table/snapshot",
        )
        .json(&json!({"snapshotComment": comment}))?;
        self.send_json(call).await
    }

    /// Starts the job at `{path}/start` and polls `{path}/get/{token}` until it answers with
    /// its result: while it runs Synapse answers 202 with the job's status (`jobState`), a failed
    /// job answers with its error's status.
    async fn async_job(&self, path: &str, what: &str, body: &Value) -> Result<Value, SynapseError> {
        #[derive(serde::Deserialize)]
        struct Started {
            token: String,
        }
        let start =
            Call::new(Method::POST, Service::Repo, format!("{path}/start"), what).json(body)?;
        let Started { token } = self.send_json(start).await?;
        let began = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            let get = Call::new(
                Method::GET,
                Service::Repo,
                format!("{path}/get/{token}"),
                what,
            );
            let answer: Value = self.send_json(get).await?;
            if answer.get("jobState").is_none() {
                return Ok(answer);
            }
            if began.elapsed() > JOB_PATIENCE {
                return Err(SynapseError::Transport {
                    endpoint: what.to_owned(),
                    message: format!(
                        "job {token} is still {} after {} s",
                        answer["jobState"],
                        JOB_PATIENCE.as_secs()
                    ),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_POLL_INTERVAL);
        }
    }
}
