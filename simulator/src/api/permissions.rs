//! `GET /entity/{id}/permissions`: what the caller may do with an entity
//! (`EntityController.getUserEntityPermissions` -> `EntityServiceImpl.getUserEntityPermissions` ->
//! `EntityAuthorizationManagerImpl.getUserPermissionsForEntity` ->
//! `EntityAuthorizationUtils.getUserPermissionsForEntity`). The server refuses nothing but an id
//! that is no number: an entity that does not exist, or that the caller cannot read, gets the
//! answer of its deciders, every permission false.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;

use crate::app::App;
use crate::error::ApiError;
use crate::fixture::Permission;
use crate::store::{EntityKind, EntityRec, Store, User};
use crate::util::lock;

/// `org.sagebionetworks.repo.model.auth.UserEntityPermissions`; a null field is left out, as the
/// server's JSON writer leaves it out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEntityPermissions {
    can_view: bool,
    can_edit: bool,
    can_move: bool,
    can_add_child: bool,
    can_certified_user_edit: bool,
    can_certified_user_add_child: bool,
    is_certified_user: bool,
    can_change_permissions: bool,
    can_change_settings: bool,
    can_delete: bool,
    can_download: bool,
    can_upload: bool,
    can_enable_inheritance: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_principal_id: Option<serde_json::Value>,
    can_public_read: bool,
    can_moderate: bool,
    is_certification_required: bool,
    is_entity_open_data: bool,
    is_data_contributor: bool,
}

/// `KeyFactory.stringToKey`: trimmed, lower case, an optional `syn`, then a `Long`; anything
/// else is `IllegalArgumentException` (400) `<id> is not a valid Synapse ID.`
fn entity_key(id: &str) -> Result<i64, ApiError> {
    let decoded = id.trim_matches(|c: char| c <= ' ').to_lowercase();
    let number = decoded.strip_prefix("syn").unwrap_or(&decoded);
    number
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id} is not a valid Synapse ID.")))
}

pub async fn get_permissions(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<UserEntityPermissions>, ApiError> {
    let key = entity_key(&id)?;
    let store = lock(&app.store);
    let entity = u64::try_from(key).ok().and_then(|n| store.entities.get(&n));
    Ok(Json(permissions(&store, &user, entity)))
}

/// `EntityAuthorizationUtils.getUserPermissionsForEntity` for a signed-in caller who is no
/// administrator, on an entity (or none: `DENY_IF_DOES_NOT_EXIST` denies everything) that is not
/// in the trash, has no access requirements and no data type (so not `OPEN_DATA`), under an ACL
/// that grants the PUBLIC group nothing (the simulator has none of these).
fn permissions(store: &Store, user: &User, entity: Option<&EntityRec>) -> UserEntityPermissions {
    // UserEntityPermissionsState.has*: the benefactor's ACL alone, false when the entity is missing.
    let has = |p: Permission| entity.is_some_and(|e| store.granted(user, e, p));
    let is_project = entity.is_some_and(|e| e.kind == EntityKind::Project);
    let certified = user.certified;
    // determineUpdateAccess: DENY_IF_NOT_PROJECT_AND_NOT_CERTIFIED, GRANT_IF_HAS_UPDATE.
    let can_edit = has(Permission::Update) && (certified || is_project);
    // determineChangePermissionAccess: GRANT_IF_HAS_CHANGE_PERMISSION.
    let can_change_permissions = has(Permission::ChangePermissions);
    UserEntityPermissions {
        // determineReadAccess: GRANT_IF_HAS_READ.
        can_view: has(Permission::Read),
        can_edit,
        can_move: can_edit && can_change_permissions,
        // determineCreateAccess with no type to create: DENY_IF_CREATE_TYPE_IS_NOT_PROJECT_AND_NOT_CERTIFIED.
        can_add_child: certified && has(Permission::Create),
        can_certified_user_edit: has(Permission::Update),
        can_certified_user_add_child: has(Permission::Create),
        // AuthorizationUtils.isCertifiedUser.
        is_certified_user: certified,
        can_change_permissions,
        // determineChangeSettingsAccess: DENY_IF_NOT_CERTIFIED, GRANT_IF_USER_IS_CREATOR,
        // GRANT_IF_HAS_CHANGE_SETTINGS.
        can_change_settings: certified
            && entity.is_some_and(|e| e.created_by == user.id || has(Permission::ChangeSettings)),
        // determineDeleteAccess: GRANT_IF_HAS_DELETE.
        can_delete: has(Permission::Delete),
        // determineDownloadAccess: no unmet access requirement, no 2FA rule; GRANT_IF_HAS_DOWNLOAD.
        can_download: has(Permission::Download),
        // !AuthorizationUtils.isUserAnonymous: every caller of the simulator signed in.
        can_upload: true,
        // determineCanDeleteACL: DENY_IF_PARENT_IS_ROOT_OR_NULL (a project), then
        // GRANT_IF_HAS_CHANGE_PERMISSION.
        can_enable_inheritance: entity.is_some_and(|e| e.parent.is_some())
            && can_change_permissions,
        // permissionsState.getEntityCreatedBy: null (left out) when the entity is missing.
        owner_principal_id: entity.map(|e| match e.created_by.parse::<i64>() {
            Ok(n) => n.into(),
            Err(_) => e.created_by.clone().into(),
        }),
        // hasPublicRead: READ granted to the PUBLIC group, which the simulator's ACLs never hold.
        can_public_read: false,
        // determineModerateAccess: GRANT_IF_HAS_MODERATE.
        can_moderate: has(Permission::Moderate),
        is_certification_required: true,
        // DataType.OPEN_DATA.equals(state.getDataType()): no entity has a data type.
        is_entity_open_data: false,
        // UserAccessRestrictionUtils.isUserDataContributor.
        is_data_contributor: has(Permission::Update) && has(Permission::Delete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_like_key_factory() {
        assert_eq!(entity_key("syn123").unwrap(), 123);
        assert_eq!(entity_key(" SYN123 ").unwrap(), 123);
        assert_eq!(entity_key("123").unwrap(), 123);
        assert_eq!(entity_key("+7").unwrap(), 7);
        assert_eq!(entity_key("syn-5").unwrap(), -5);
        for bad in ["abc", "syn", "", "syn12x", "syn 12", "99999999999999999999"] {
            match entity_key(bad) {
                Err(ApiError::BadRequest(m)) => {
                    assert_eq!(m, format!("{bad} is not a valid Synapse ID."))
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
