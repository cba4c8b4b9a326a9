//! The state one running simulator shares between its handlers, its middleware and its owner:
//! the store, the S3 client, the presigner, the throttle, the injected faults and the request log.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use synapse_model::{Annotations2, Entity, FileHandle};

use crate::config::SimConfig;
use crate::faults::Faults;
use crate::presign::Presigner;
use crate::request_log::RequestLog;
use crate::store::Store;
use crate::throttle::Throttle;
use crate::util::lock;

/// Shared state of one running simulator.
pub struct App {
    pub store: Mutex<Store>,
    pub s3: aws_sdk_s3::Client,
    pub presigner: Presigner,
    pub throttle: Throttle,
    pub faults: Faults,
    pub log: RequestLog,
    presign_expiry: Mutex<Duration>,
}

impl App {
    /// The state of a simulator serving `store`, with the throttle, faults and presigned-URL expiry
    /// of `config`; presigned URLs point at `endpoint` (the local S3).
    pub fn new(store: Store, s3: aws_sdk_s3::Client, endpoint: String, config: &SimConfig) -> Self {
        Self {
            store: Mutex::new(store),
            s3,
            presigner: Presigner {
                endpoint,
                region: config.region.clone(),
                access_key: config.presign_access_key.clone(),
                secret_key: config.presign_secret_key.clone(),
            },
            throttle: Throttle::new(config.throttle.clone()),
            faults: Faults::new(config.faults.clone()),
            log: RequestLog::default(),
            presign_expiry: Mutex::new(config.presign_expiry),
        }
    }

    pub fn presign_expiry(&self) -> Duration {
        *lock(&self.presign_expiry)
    }

    pub fn set_presign_expiry(&self, expiry: Duration) {
        *lock(&self.presign_expiry) = expiry;
    }

    pub fn table(&self, id: &str) -> Option<TableView> {
        let store = lock(&self.store);
        let table = store.entity(id).ok()?.table.as_ref()?;
        let schema = store.tables.schema(table);
        let name_of = |column: &u64| {
            schema
                .iter()
                .find(|c| c.id == column.to_string())
                .map(|c| c.name.clone())
        };
        Some(TableView {
            column_ids: schema
                .iter()
                .map(|c| (c.name.clone(), c.id.clone()))
                .collect(),
            rows: table
                .rows
                .iter()
                .map(|(id, row)| TableRowView {
                    row_id: *id,
                    version_number: row.version,
                    values: row
                        .values
                        .iter()
                        .filter_map(|(c, v)| Some((name_of(c)?, v.clone())))
                        .collect(),
                })
                .collect(),
        })
    }

    pub fn snapshot(&self, id: &str) -> Option<EntitySnapshot> {
        let store = lock(&self.store);
        let rec = store.entity(id).ok()?;
        let mut handle_ids: Vec<&str> = rec
            .versions
            .iter()
            .filter_map(|v| v.file_handle_id.as_deref())
            .collect();
        handle_ids.sort_unstable();
        handle_ids.dedup();
        Some(EntitySnapshot {
            entity: rec.to_entity(None),
            versions: rec
                .versions
                .iter()
                .map(|v| rec.to_entity(Some(v)))
                .collect(),
            annotations: rec.annotations2(),
            file_handles: handle_ids
                .into_iter()
                .filter_map(|h| store.handle(h).cloned())
                .collect(),
        })
    }
}

/// A table's current rows as the admin API shows them, cells by column name.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableView {
    /// Column name -> column model id.
    pub column_ids: BTreeMap<String, String>,
    /// ROW_ID ascending.
    pub rows: Vec<TableRowView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRowView {
    pub row_id: i64,
    pub version_number: i64,
    /// Non-null cells by column name.
    pub values: BTreeMap<String, String>,
}

/// An entity as the admin API shows it: latest, every version (oldest first), its handles.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntitySnapshot {
    pub entity: Entity,
    pub versions: Vec<Entity>,
    pub annotations: Annotations2,
    pub file_handles: Vec<FileHandle>,
}
