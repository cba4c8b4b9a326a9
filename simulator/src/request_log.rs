//! The request log: every handled `/repo/v1` and `/file/v1` request, with counts per endpoint,
//! user and status. It records user ids, never tokens.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::util::lock;

/// One handled API request. `route` is the template without the `/repo/v1` or `/file/v1` prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub user_id: Option<String>,
    /// The `sessionID` cookie the request carried: with the user (and the IP), the key the
    /// throttle counts under, so a client's throttle keys can be told apart.
    pub session_id: Option<String>,
    /// When the request arrived (epoch milliseconds): rates are measured from it.
    pub received_ms: u64,
}

impl RequestRecord {
    /// `POST /file/multipart`: the key of [`RequestCounts::by_endpoint`].
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.route)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    pub total: usize,
    pub by_endpoint: BTreeMap<String, usize>,
    pub by_user: BTreeMap<String, usize>,
    /// Status code -> count.
    pub by_status: BTreeMap<u16, usize>,
}

#[derive(Default)]
pub struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    pub(crate) fn push(&self, record: RequestRecord) {
        lock(&self.records).push(record);
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        lock(&self.records).clone()
    }

    pub fn counts(&self) -> RequestCounts {
        let records = lock(&self.records);
        let mut counts = RequestCounts {
            total: records.len(),
            ..RequestCounts::default()
        };
        for r in records.iter() {
            *counts.by_endpoint.entry(r.endpoint()).or_default() += 1;
            if let Some(user) = &r.user_id {
                *counts.by_user.entry(user.clone()).or_default() += 1;
            }
            *counts.by_status.entry(r.status).or_default() += 1;
        }
        counts
    }

    pub fn reset(&self) {
        lock(&self.records).clear();
    }
}
