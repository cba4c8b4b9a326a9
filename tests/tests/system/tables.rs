//! Table-attached files (`includeTableFiles`) through the state machine: without the option a
//! table's cells are not touched; with it every FILEHANDLEID cell's file is copied (a handle a
//! file entity shares is copied once), the table is kept as a snapshot version, the cells point
//! at the copies, the report has `row_id` and `col_name` as the official client's log does, a cell
//! already in the destination is ALREADY_MIGRATED, the clean-up keeps an old handle the snapshot
//! still names, and a re-run writes nothing.

use std::collections::BTreeMap;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use synmigrate_local::{LocalDeployment, LocalOptions};

use super::common::{
    bounded, csv_rows, input_with, latest_handle, project, run_to_end, snapshots, DEST,
};

fn fixture() -> synapse_sim::Fixture {
    project(json!([
        {"type": "file", "name": "shared.txt", "versions": [{"handle": "shared"}]},
        {"type": "folder", "name": "data", "children": [
            {"type": "table", "name": "samples",
             "columns": [{"name": "file", "columnType": "FILEHANDLEID"},
                         {"name": "label", "columnType": "STRING"},
                         {"name": "extra file", "columnType": "FILEHANDLEID"}],
             "rows": [
                {"file": {"content": {"text": "row 1"}, "fileName": "r1.txt",
                          "createdBy": "migrator"}, "label": "a"},
                {"file": {"handle": "shared"}, "label": "b",
                 "extra file": {"content": {"text": "row 2 extra"}, "fileName": "r2.txt"}},
                {"label": "no file"},
                {"file": {"content": {"text": "there"}, "fileName": "t.txt",
                          "storageLocationId": DEST}}
             ]}
        ]}
    ]))
}

/// The report's rows of type `table`, by (row_id, col_name): (status, to_file_handle_id,
/// source_handle).
async fn table_rows(
    deployment: &LocalDeployment,
    summary: &Value,
) -> anyhow::Result<BTreeMap<(String, String), (String, String, String)>> {
    let rows = csv_rows(deployment, summary, &summary["reportKey"]).await?;
    Ok(rows
        .into_iter()
        .filter(|row| row["type"] == "table")
        .map(|row| {
            let key = (row["row_id"].clone(), row["col_name"].clone());
            let value = (
                row["status"].clone(),
                row["to_file_handle_id"].clone(),
                row["source_handle"].clone(),
            );
            (key, value)
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_cells_point_at_their_copies() -> anyhow::Result<()> {
    bounded(async {
        let deployment = LocalDeployment::start(&fixture(), LocalOptions::default()).await?;
        let table_id = deployment
            .sim()
            .paths()
            .into_iter()
            .find(|(path, _)| path.ends_with("/data/samples"))
            .map(|(_, id)| id)
            .context("the table was seeded")?;
        let before = deployment.sim().table(&table_id).context("the table")?;
        let versions_before = deployment
            .sim()
            .entity(&table_id)
            .context("the table entity")?
            .versions
            .len();

        // Without the option, the table is not read.
        let plain = run_to_end(
            &deployment,
            "tables-off",
            &input_with(&deployment, json!({})),
        )
        .await?;
        let summary: Value = serde_json::from_str(plain.output().context("output")?)?;
        ensure!(
            table_rows(&deployment, &summary).await?.is_empty(),
            "{summary}"
        );
        ensure!(
            deployment.sim().table(&table_id) == Some(before.clone()),
            "cells changed"
        );

        // With `all` and the clean-up of old handles: the migrator's own handle of row 1 is kept,
        // since the table's snapshot still names it.
        let old_row_1 = before.rows[0].values["file"].clone();
        let options = json!({"includeTableFiles": true, "fileVersionStrategy": "all",
                             "deleteSourceFileHandles": true});
        let done = run_to_end(
            &deployment,
            "tables-1",
            &input_with(&deployment, options.clone()),
        )
        .await?;
        let summary: Value = serde_json::from_str(done.output().context("output")?)?;
        let rows = table_rows(&deployment, &summary).await?;
        let after = deployment.sim().table(&table_id).context("the table")?;
        let cell = |row: i64, column: &str| {
            after
                .rows
                .iter()
                .find(|r| r.row_id == row)
                .and_then(|r| r.values.get(column).cloned())
        };
        for (row, column, status) in [
            (1, "file", "MIGRATED"),
            (2, "file", "MIGRATED"),
            (2, "extra file", "MIGRATED"),
            (4, "file", "ALREADY_MIGRATED"),
        ] {
            let (got, to, _) = rows
                .get(&(row.to_string(), column.to_owned()))
                .with_context(|| format!("row {row} {column} in {rows:?}"))?;
            ensure!(got == status, "row {row} {column}: {got}");
            let now = cell(row, column).context("the cell")?;
            ensure!(
                &now == to,
                "row {row} {column} names {now}, the report {to}"
            );
            let handle = deployment
                .sim()
                .file_handle(&now)
                .context("the cell's handle")?;
            ensure!(
                handle.storage_location_id == Some(DEST),
                "row {row} {column} is in {:?}",
                handle.storage_location_id
            );
        }
        ensure!(rows.len() == 4, "one report row per file cell: {rows:?}");
        let fate = &rows[&("1".to_owned(), "file".to_owned())].2;
        ensure!(
            fate.starts_with(&format!("kept: the snapshot of table {table_id}")),
            "row 1's old handle: {fate:?}"
        );
        ensure!(
            deployment.sim().file_handle(&old_row_1).is_some(),
            "row 1's old handle {old_row_1} was deleted"
        );
        ensure!(
            cell(3, "label").as_deref() == Some("no file"),
            "other cells kept"
        );
        // The entity and the cell that shared a handle share its one copy.
        let shared = latest_handle(&snapshots(&deployment)["shared.txt"].1)?;
        ensure!(
            cell(2, "file") == Some(shared),
            "the shared handle was copied twice"
        );
        let versions = deployment
            .sim()
            .entity(&table_id)
            .context("table")?
            .versions
            .len();
        ensure!(
            versions == versions_before + 1,
            "{versions} table versions: no snapshot"
        );

        // A re-run reads the table again and writes nothing.
        deployment.sim().reset_requests();
        let again = run_to_end(&deployment, "tables-2", &input_with(&deployment, options)).await?;
        let summary: Value = serde_json::from_str(again.output().context("output")?)?;
        let migrated = summary["runCounters"]["byStatus"]["MIGRATED"]
            .as_i64()
            .unwrap_or(0);
        ensure!(migrated == 0, "the re-run migrated {migrated}");
        let writes = deployment
            .sim()
            .requests()
            .into_iter()
            .filter(|r| {
                r.method != "GET"
                    && (r.route.contains("transaction")
                        || r.route.contains("snapshot")
                        || r.route.contains("multipart"))
            })
            .count();
        ensure!(writes == 0, "the re-run wrote {writes} times");
        ensure!(
            deployment.sim().table(&table_id) == Some(after),
            "the re-run changed cells"
        );
        deployment.shutdown().await;
        Ok(())
    })
    .await
}
