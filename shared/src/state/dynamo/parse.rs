//! Reading records: typed attribute access and the parsing of each kind of record, and the
//! opaque page tokens.

use super::*;

/// Typed reads of one record's attributes; a missing or mistyped attribute is `Corrupt`.
pub(super) struct Reader<'a> {
    pub(super) attrs: &'a Attrs,
}

impl<'a> Reader<'a> {
    pub(super) fn corrupt(&self, detail: String) -> StateError {
        let record = match (self.attrs.get(PK), self.attrs.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => format!("{pk} {sk}"),
            _ => "?".to_owned(),
        };
        StateError::Corrupt { record, detail }
    }

    pub(super) fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StateError> {
        match self.attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(other) => Err(self.corrupt(format!("{name} is not a string: {other:?}"))),
        }
    }

    pub(super) fn s(&self, name: &str) -> Result<&'a str, StateError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    pub(super) fn opt_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, StateError> {
        match self.attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(text)) => text
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name} is not a valid number: {text}"))),
            Some(other) => Err(self.corrupt(format!("{name} is not a number: {other:?}"))),
        }
    }

    pub(super) fn n<T: FromStr>(&self, name: &str) -> Result<T, StateError> {
        self.opt_n(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    pub(super) fn bool(&self, name: &str) -> Result<bool, StateError> {
        match self.attrs.get(name) {
            Some(AttributeValue::Bool(value)) => Ok(*value),
            other => Err(self.corrupt(format!("{name} is not a boolean: {other:?}"))),
        }
    }

    pub(super) fn opt_json(&self, name: &str) -> Result<Option<serde_json::Value>, StateError> {
        self.opt_s(name)?
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| self.corrupt(format!("{name} is not JSON: {e}")))
            })
            .transpose()
    }

    pub(super) fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, StateError> {
        let text = self.s(name)?;
        parse(text).ok_or_else(|| self.corrupt(format!("{name} has an unknown value: {text}")))
    }

    pub(super) fn lease(&self, owner: &str, expires_at: &str) -> Result<Option<Lease>, StateError> {
        match self.opt_s(owner)? {
            None => Ok(None),
            Some(owner) => Ok(Some(Lease {
                owner: owner.to_owned(),
                expires_at: self.n(expires_at)?,
            })),
        }
    }
}

pub(super) fn parse_lock(attrs: &Attrs) -> Result<Lease, StateError> {
    let reader = Reader { attrs };
    reader
        .lease("owner", TTL_ATTRIBUTE)?
        .ok_or_else(|| reader.corrupt("owner is missing".to_owned()))
}

pub(super) fn parse_budget(attrs: &Attrs) -> Result<BudgetRecord, StateError> {
    let reader = Reader { attrs };
    Ok(BudgetRecord {
        version: reader.n("version")?,
        next_slot_ms: reader.n("nextSlotMs")?,
        paused_until_ms: reader.n("pausedUntilMs")?,
        cut_at_ms: reader.n("cutAtMs")?,
        cut_rate: reader.n("cutRate")?,
    })
}

pub(super) fn parse_run(attrs: &Attrs) -> Result<RunRecord, StateError> {
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

pub(super) fn parse_item(attrs: &Attrs) -> Result<ItemRecord, StateError> {
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
        key: match (reader.opt_n("rowId")?, reader.opt_n("columnId")?) {
            (Some(row), Some(column)) => ItemKey::cell(reader.s("entityId")?, row, column)?,
            _ => ItemKey::new(reader.s("entityId")?, reader.n("version")?)?,
        },
        source_file_handle_id: reader.s("sourceFileHandleId")?.to_owned(),
        size: reader.n("size")?,
        content_md5: reader.opt_s("contentMd5")?.map(str::to_owned),
        source_storage_location_id: reader.opt_n("sourceStorageLocationId")?,
        file_name: reader.s("fileName")?.to_owned(),
        destination_file_name: reader.opt_s("destinationFileName")?.map(str::to_owned),
        entity: reader
            .opt_json("entity")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| reader.corrupt(format!("entity is not an entity: {e}")))?,
        status,
        destination_file_handle_id: reader.opt_s("destinationFileHandleId")?.map(str::to_owned),
        attempts: reader.opt_n("attempts")?.unwrap_or_default(),
        lease: reader.lease("leaseOwner", "leaseExpiresAt")?,
        updated_at: reader.n("updatedAt")?,
        run_id: reader.s("runId")?.to_owned(),
        verified_by: reader.opt_s("verifiedBy")?.map(str::to_owned),
        source_handle: reader.opt_s("sourceHandle")?.map(str::to_owned),
        destination_storage_location_id: reader.opt_n("destinationStorageLocationId")?,
        column_name: reader.opt_s("columnName")?.map(str::to_owned),
    })
}

pub(super) fn parse_copy(attrs: &Attrs) -> Result<CopyRecord, StateError> {
    let reader = Reader { attrs };
    Ok(CopyRecord {
        source_file_handle_id: reader.s("sourceFileHandleId")?.to_owned(),
        status: reader.parsed("status", CopyStatus::parse)?,
        engine_state: reader.opt_json("engineState")?,
        destination_file_handle_id: reader.opt_s("destinationFileHandleId")?.map(str::to_owned),
        unused_reason: reader.opt_s("unusedReason")?.map(str::to_owned),
        handle_requests: reader.opt_n("handleRequests")?.unwrap_or_default(),
        verification: reader.opt_json("verification")?,
        lease: reader.lease("leaseOwner", "leaseExpiresAt")?,
        updated_at: reader.n("updatedAt")?,
    })
}

pub(super) fn parse_folder(attrs: &Attrs) -> Result<FolderRecord, StateError> {
    let reader = Reader { attrs };
    serde_json::from_str(reader.s("folder")?)
        .map_err(|e| StateError::Invalid(format!("stored folder record does not parse: {e}")))
}

/// Opaque page token: the last evaluated key as JSON (all key attributes are strings).
pub(super) fn encode_token(key: &Attrs) -> Result<String, StateError> {
    let reader = Reader { attrs: key };
    let mut map = BTreeMap::new();
    for name in key.keys() {
        map.insert(name.as_str(), reader.s(name)?);
    }
    serde_json::to_string(&map).map_err(|e| StateError::Invalid(e.to_string()))
}

pub(super) fn decode_token(token: &str) -> Result<Attrs, StateError> {
    let map: BTreeMap<String, String> = serde_json::from_str(token)
        .map_err(|_| StateError::Invalid("malformed page token".to_owned()))?;
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}
