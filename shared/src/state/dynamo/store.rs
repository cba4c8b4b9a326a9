//! The [`StateStore`] operations on DynamoDB: one conditional request each, explained by the
//! shared rules when its condition fails.

use super::*;

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
            .item(SK, s(FRONTIER_SK))
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
    ) -> Result<Option<SavedFrontier>, StateError> {
        let Some(attrs) = self.get(migration.pk(), FRONTIER_SK.to_owned()).await? else {
            return Ok(None);
        };
        let reader = Reader { attrs: &attrs };
        Ok(reader
            .opt_json("frontier")?
            .map(|frontier| -> Result<SavedFrontier, StateError> {
                Ok(SavedFrontier {
                    run_id: reader.s("runId")?.to_owned(),
                    frontier,
                })
            })
            .transpose()?)
    }

    async fn put_folder(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        folder: &FolderRecord,
        expires_at: EpochSeconds,
    ) -> Result<(), StateError> {
        check_id("run id", run_id)?;
        check_id("folder id", &folder.folder_id)?;
        let document = serde_json::to_string(folder)
            .map_err(|e| StateError::Invalid(format!("folder record does not encode: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(migration.pk()))
            .item(SK, s(folder_sk(run_id, &folder.folder_id)))
            .item("folder", s(document))
            .item(TTL_ATTRIBUTE, n(expires_at))
            .send()
            .await
            .map_err(|e| service_error("PutItem", e))?;
        Ok(())
    }

    async fn list_folders(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<FolderRecord>, StateError> {
        check_id("run id", run_id)?;
        let query = self.page_query(limit, page_token)?;
        read_page(
            with_prefix(query, migration, &folder_prefix(run_id)),
            parse_folder,
        )
        .await
    }

    async fn get_seen(
        &self,
        migration: &MigrationKey,
        entity_ids: &[String],
    ) -> Result<BTreeMap<String, SeenFile>, StateError> {
        let mut seen = BTreeMap::new();
        for chunk in entity_ids.chunks(BATCH_GET_KEYS) {
            let keys = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        (PK.to_owned(), s(migration.pk())),
                        (SK.to_owned(), s(seen_sk(id))),
                    ])
                })
                .collect();
            for attrs in self.batch_get(keys).await? {
                let reader = Reader { attrs: &attrs };
                let entity = reader.s("entityId")?.to_owned();
                seen.insert(
                    entity,
                    SeenFile {
                        version: reader.n("version")?,
                        modified_on: reader.s("modifiedOn")?.to_owned(),
                        scope: reader.s("scope")?.to_owned(),
                    },
                );
            }
        }
        Ok(seen)
    }

    async fn put_seen(
        &self,
        migration: &MigrationKey,
        entity_id: &str,
        seen: &SeenFile,
    ) -> Result<(), StateError> {
        check_id("entity id", entity_id)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(migration.pk()))
            .item(SK, s(seen_sk(entity_id)))
            .item("entityId", s(entity_id))
            .item("version", n(seen.version))
            .item("modifiedOn", s(&seen.modified_on))
            .item("scope", s(&seen.scope))
            .send()
            .await
            .map_err(|e| service_error("PutItem", e))?;
        Ok(())
    }

    async fn put_item(
        &self,
        migration: &MigrationKey,
        item: &ItemRecord,
        max_attempts: u32,
    ) -> Result<PutOutcome, StateError> {
        check_put(item)?;
        let entity = item
            .entity
            .as_ref()
            .map(|entity| check_document("entity", &serde_json::json!(entity)))
            .transpose()?;
        let mut expr = Expr::default();
        let cell = item.key.cell;
        expr.set("entityId", s(&item.key.entity_id))
            .set("version", n(item.key.version))
            .set_or_remove("rowId", cell.map(|c| n(c.row_id)))
            .set_or_remove("columnId", cell.map(|c| n(c.column_id)))
            .set_or_remove("columnName", item.column_name.as_deref().map(s))
            .set("sourceFileHandleId", s(&item.source_file_handle_id))
            .set("size", n(item.size))
            .set(SSK, s(item.plan_order()))
            .set_or_remove("contentMd5", item.content_md5.as_deref().map(s))
            .set_or_remove(
                "sourceStorageLocationId",
                item.source_storage_location_id.map(n),
            )
            .set("fileName", s(&item.file_name))
            .set_or_remove(
                "destinationStorageLocationId",
                item.destination_storage_location_id.map(n),
            )
            .set_or_remove(
                "destinationFileName",
                item.destination_file_name.as_deref().map(s),
            )
            .set_or_remove("entity", entity.map(s))
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

    async fn list_items_of_source(
        &self,
        migration: &MigrationKey,
        status: StatusName,
        size: u64,
        source: &str,
        limit: u32,
        page_token: Option<&str>,
    ) -> Result<Page<ItemRecord>, StateError> {
        let query = self
            .page_query(limit, page_token)?
            .index_name(STATUS_INDEX)
            .key_condition_expression("#spk = :spk AND begins_with(#ssk, :prefix)")
            .expression_attribute_names("#spk", SPK)
            .expression_attribute_names("#ssk", SSK)
            .expression_attribute_values(":spk", s(status_pk(migration, status)))
            .expression_attribute_values(":prefix", s(source_order_prefix(size, source)));
        read_page(query, parse_item).await
    }

    async fn set_source_handle(
        &self,
        migration: &MigrationKey,
        key: &ItemKey,
        outcome: &str,
    ) -> Result<(), StateError> {
        let mut expr = Expr::default();
        expr.set("sourceHandle", s(outcome));
        let condition = format!("attribute_exists({})", expr.name(PK));
        match self
            .update(migration.pk(), key.sk(), expr, condition)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(StateError::NotFound(key.sk())),
        }
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
        if let Some(proof) = &transition.verified_by {
            expr.set("verifiedBy", s(proof));
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
        self.update_leased_copy(migration, source_file_handle_id, owner, expr)
            .await
    }

    async fn note_handle_request(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let mut expr = Expr::default();
        expr.add("handleRequests", n(1)).set("updatedAt", n(now));
        self.update_leased_copy(migration, source_file_handle_id, owner, expr)
            .await
    }

    async fn release_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        now: EpochSeconds,
    ) -> Result<(), StateError> {
        let mut expr = Expr::default();
        expr.set("updatedAt", n(now))
            .remove("leaseOwner")
            .remove("leaseExpiresAt");
        let released = self
            .update_leased_copy(migration, source_file_handle_id, owner, expr)
            .await
            .map(drop);
        not_ours(released).map(drop)
    }

    async fn complete_copy(
        &self,
        migration: &MigrationKey,
        source_file_handle_id: &str,
        owner: &str,
        destination_file_handle_id: &str,
        verification: Option<&serde_json::Value>,
        now: EpochSeconds,
    ) -> Result<CopyRecord, StateError> {
        let mut expr = Expr::default();
        expr.set("status", s(CopyStatus::Copied.as_str()))
            .set("destinationFileHandleId", s(destination_file_handle_id))
            .set("updatedAt", n(now))
            .remove("leaseOwner")
            .remove("leaseExpiresAt");
        if let Some(verification) = verification {
            expr.set(
                "verification",
                s(check_document("copy verification", verification)?),
            );
        }
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

    async fn get_budget(
        &self,
        migration: &MigrationKey,
        run_id: &str,
    ) -> Result<Option<BudgetRecord>, StateError> {
        match self.get(migration.pk(), budget_sk(run_id)).await? {
            None => Ok(None),
            Some(attrs) => parse_budget(&attrs).map(Some),
        }
    }

    async fn put_budget(
        &self,
        migration: &MigrationKey,
        run_id: &str,
        budget: &BudgetRecord,
        expected: Option<u64>,
        expires_at: EpochSeconds,
    ) -> Result<bool, StateError> {
        check_id("run id", run_id)?;
        let mut expr = Expr::default();
        expr.set("version", n(budget.version))
            .set("nextSlotMs", n(budget.next_slot_ms))
            .set("pausedUntilMs", n(budget.paused_until_ms))
            .set("cutAtMs", n(budget.cut_at_ms))
            .set("cutRate", n(budget.cut_rate))
            .set(TTL_ATTRIBUTE, n(expires_at));
        let condition = match expected {
            None => format!("attribute_not_exists({})", expr.name(PK)),
            Some(version) => {
                let (name, value) = (expr.name("version"), expr.value("c_version", n(version)));
                format!("{name} = {value}")
            }
        };
        let written = self
            .update(migration.pk(), budget_sk(run_id), expr, condition)
            .await?;
        Ok(written.is_some())
    }
}
