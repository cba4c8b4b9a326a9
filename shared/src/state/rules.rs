//! The rules each write enforces, as pure functions: the in-memory store applies them directly,
//! the DynamoDB store encodes them as condition expressions and uses them to explain a failed
//! condition.

use super::*;

/// Rejects JSON documents that would not fit in one record.
pub(crate) fn check_document(
    what: &str,
    document: &serde_json::Value,
) -> Result<String, StateError> {
    let text = document.to_string();
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(StateError::Invalid(format!(
            "{what} is {} bytes of JSON, more than the {MAX_DOCUMENT_BYTES} a record holds",
            text.len()
        )));
    }
    Ok(text)
}

/// Whether `owner` may take the lock as it stands.
pub(crate) fn check_lock_acquire(
    current: Option<&Lease>,
    owner: &str,
    now: EpochSeconds,
) -> Result<(), StateError> {
    match current {
        Some(lease) if lease.blocks(owner, now) => Err(lease_held(LOCK_SK, lease)),
        _ => Ok(()),
    }
}

/// Whether `owner` may renew the lock as it stands (only its own, expired or not).
pub(crate) fn check_lock_owned(current: Option<&Lease>, owner: &str) -> Result<(), StateError> {
    match current {
        None => Err(StateError::NotFound(LOCK_SK.to_owned())),
        Some(lease) if lease.owner != owner => Err(lease_held(LOCK_SK, lease)),
        Some(_) => Ok(()),
    }
}

fn lease_held(record: &str, lease: &Lease) -> StateError {
    StateError::LeaseHeld {
        record: record.to_owned(),
        owner: lease.owner.clone(),
        expires_at: lease.expires_at,
    }
}

/// Rejects statuses `put_item` may not write: in-flight ones need a lease, which only a
/// transition takes.
pub(crate) fn check_put(item: &ItemRecord) -> Result<(), StateError> {
    match item.status.name() {
        StatusName::Copying | StatusName::Copied => Err(StateError::Invalid(format!(
            "{} cannot be written as {}; use a transition",
            item.key,
            item.status.name()
        ))),
        _ => Ok(()),
    }
}

/// Whether the transition is allowed at all, before looking at the stored item.
pub(crate) fn check_transition_request(t: &Transition) -> Result<(), StateError> {
    if transition_allowed(t.from, t.to.name()) {
        Ok(())
    } else {
        Err(StateError::InvalidTransition {
            from: t.from,
            to: t.to.name(),
        })
    }
}

/// Whether the transition applies to the item as stored.
pub(crate) fn check_transition(
    current: Option<&ItemRecord>,
    key: &ItemKey,
    t: &Transition,
) -> Result<(), StateError> {
    let item = current.ok_or_else(|| StateError::NotFound(key.sk()))?;
    if item.status.name() != t.from {
        return Err(StateError::ConditionFailed {
            record: key.sk(),
            detail: format!("expected {}, found {}", t.from, item.status.name()),
        });
    }
    match &item.lease {
        Some(lease) if lease.blocks(&t.owner, t.now) => Err(lease_held(&key.sk(), lease)),
        _ => Ok(()),
    }
}

/// The item after a transition that passed [`check_transition`].
pub(crate) fn apply_transition(item: &mut ItemRecord, t: &Transition) {
    item.status = t.to.clone();
    item.lease = t.lease_until.map(|expires_at| Lease {
        owner: t.owner.clone(),
        expires_at,
    });
    if let Some(proof) = &t.verified_by {
        item.verified_by = Some(proof.clone());
    }
    if let Some(destination) = &t.destination_file_handle_id {
        item.destination_file_handle_id = Some(destination.clone());
    }
    if t.count_attempt {
        item.attempts += 1;
    }
    item.run_id = t.run_id.clone();
    item.updated_at = t.now;
}

/// Whether `owner` may claim the copy as it stands. `Ok(false)`: the copy is finished.
pub(crate) fn check_copy_claim(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
    owner: &str,
    now: EpochSeconds,
) -> Result<bool, StateError> {
    match current {
        None => Ok(true),
        Some(copy) if copy.status == CopyStatus::Copied => Ok(false),
        Some(copy) => match &copy.lease {
            Some(lease) if lease.blocks(owner, now) => {
                Err(lease_held(&copy_sk(source_file_handle_id), lease))
            }
            _ => Ok(true),
        },
    }
}

/// Whether `owner` may save engine state: the copy is unfinished and leased to it.
pub(crate) fn check_copy_state_save(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
    owner: &str,
) -> Result<(), StateError> {
    let sk = copy_sk(source_file_handle_id);
    let copy = current.ok_or_else(|| StateError::NotFound(sk.clone()))?;
    if copy.status == CopyStatus::Copied {
        return Err(StateError::ConditionFailed {
            record: sk,
            detail: "the copy is already finished".to_owned(),
        });
    }
    match &copy.lease {
        Some(lease) if lease.owner == owner => Ok(()),
        Some(lease) => Err(lease_held(&sk, lease)),
        None => Err(StateError::ConditionFailed {
            record: sk,
            detail: format!("{owner} does not hold the lease"),
        }),
    }
}

/// For a release: `Ok(true)` when the copy is not (or no longer) leased to the caller, which
/// leaves nothing to release; other errors stay errors.
pub(crate) fn not_ours(checked: Result<(), StateError>) -> Result<bool, StateError> {
    match checked {
        Ok(()) => Ok(false),
        Err(
            StateError::LeaseHeld { .. }
            | StateError::ConditionFailed { .. }
            | StateError::NotFound(_),
        ) => Ok(true),
        Err(other) => Err(other),
    }
}

/// Whether the copy may get or lose an unused reason: it exists and is finished.
pub(crate) fn check_copy_finished(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
) -> Result<(), StateError> {
    let sk = copy_sk(source_file_handle_id);
    match current {
        None => Err(StateError::NotFound(sk)),
        Some(copy) if copy.status == CopyStatus::Copied => Ok(()),
        Some(_) => Err(StateError::ConditionFailed {
            record: sk,
            detail: "the copy is not finished".to_owned(),
        }),
    }
}

/// Whether the copy may be recorded as finished. `Ok(false)`: it already is, with this handle.
pub(crate) fn check_copy_complete(
    current: Option<&CopyRecord>,
    source_file_handle_id: &str,
    owner: &str,
    destination_file_handle_id: &str,
    now: EpochSeconds,
) -> Result<bool, StateError> {
    let sk = copy_sk(source_file_handle_id);
    let copy = current.ok_or_else(|| StateError::NotFound(sk.clone()))?;
    match copy.status {
        CopyStatus::Copied
            if copy.destination_file_handle_id.as_deref() == Some(destination_file_handle_id) =>
        {
            Ok(false)
        }
        CopyStatus::Copied => Err(StateError::ConditionFailed {
            record: sk,
            detail: format!(
                "already copied to file handle {}",
                copy.destination_file_handle_id.as_deref().unwrap_or("?")
            ),
        }),
        CopyStatus::Copying => match &copy.lease {
            Some(lease) if lease.blocks(owner, now) => Err(lease_held(&sk, lease)),
            _ => Ok(true),
        },
    }
}
