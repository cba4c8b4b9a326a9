//! Update and condition expressions, and the attribute values they carry.

use super::*;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Builds update and condition expressions with a placeholder for every name, so reserved words
/// (`status`, `size`, `version`, `owner`) need no special care.
#[derive(Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: Attrs,
    set: Vec<String>,
    remove: Vec<String>,
    add: Vec<String>,
}

impl Expr {
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, label: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{label}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub(super) fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(attribute, value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    pub(super) fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(attribute, value));
        self.set
            .push(format!("{name} = if_not_exists({name}, {value})"));
        self
    }

    pub(super) fn set_or_remove(
        &mut self,
        attribute: &str,
        value: Option<AttributeValue>,
    ) -> &mut Self {
        match value {
            Some(value) => self.set(attribute, value),
            None => self.remove(attribute),
        }
    }

    pub(super) fn remove(&mut self, attribute: &str) -> &mut Self {
        let name = self.name(attribute);
        self.remove.push(name);
        self
    }

    pub(super) fn add(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(attribute, value));
        self.add.push(format!("{name} {value}"));
        self
    }

    pub(super) fn update_expression(&self) -> String {
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
    pub(super) fn lease_free(&mut self, owner: &str, now: EpochSeconds) -> String {
        let (lease_owner, lease_expires) = (self.name("leaseOwner"), self.name("leaseExpiresAt"));
        let (owner, now) = (self.value("c_owner", s(owner)), self.value("c_now", n(now)));
        format!(
            "(attribute_not_exists({lease_owner}) OR {lease_owner} = {owner} OR {lease_expires} <= {now})"
        )
    }

    /// (names, values), or `None` for empty maps, which DynamoDB rejects.
    pub(super) fn into_maps(self) -> (Option<HashMap<String, String>>, Option<Attrs>) {
        let names = (!self.names.is_empty()).then_some(self.names);
        let values = (!self.values.is_empty()).then_some(self.values);
        (names, values)
    }
}

/// Writes an item status and its details, removing the details of other statuses.
pub(super) fn set_status(expr: &mut Expr, migration: &MigrationKey, status: &ItemStatus) {
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
