//! Repo-service endpoints: profile, storage locations, entities, versions, children, annotations.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use synapse_model::{
    Annotations2, Entity, EntityBundle, EntityBundleRequest, EntityChildrenRequest,
    EntityChildrenResponse, EntityHeader, PaginatedResults, StorageLocationSetting, UserProfile,
    VersionInfo,
};

use super::{parse, parse_number};
use crate::app::App;
use crate::error::ApiError;
use crate::fixture::Permission;
use crate::names::{validate_name, MAX_NAME_LENGTH};
use crate::store::{EntityKind, EntityRec, Store, User, VersionRec};
use crate::util::iso_now;
use crate::util::lock;

/// `NextPageToken.MAX_LIMIT` (also the default) of a children page.
const CHILDREN_PAGE: usize = 50;
/// `EntityManagerImpl.MAX_NUMBER_OF_REVISIONS`.
const MAX_VERSIONS: usize = 15_000;
/// Longest version comment (`NodeUtils`).
const MAX_COMMENT_LENGTH: usize = 256;
/// The label of a revision written without one (`NodeConstants.DEFAULT_VERSION_LABEL`).
const DEFAULT_LABEL: &str = "1";
/// Entity types `includeTypes` accepts (`EntityType`, lower case).
const ENTITY_TYPES: &[&str] = &[
    "project",
    "folder",
    "file",
    "table",
    "link",
    "entityview",
    "dockerrepo",
    "submissionview",
    "dataset",
    "datasetcollection",
    "materializedview",
    "virtualtable",
];

pub async fn user_profile(Extension(user): Extension<User>) -> Json<UserProfile> {
    Json(UserProfile {
        owner_id: user.id,
        user_name: user.user_name,
        etag: None,
        first_name: None,
        last_name: None,
    })
}

pub async fn storage_location(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<StorageLocationSetting>, ApiError> {
    let id: i64 = parse_number("storage location id", &id)?;
    let store = lock(&app.store);
    let location = store
        .locations
        .get(&id)
        .ok_or_else(|| super::files::no_storage_location(id))?;
    if location.setting.created_by.map(|c| c.to_string()) != Some(user.id.clone()) {
        return Err(ApiError::Forbidden(
            "Only the creator can access storage location settings".into(),
        ));
    }
    Ok(Json(location.setting.clone()))
}

/// The readable entity and the requested version (latest when `version` is `None`).
fn readable<'a>(
    store: &'a Store,
    user: &User,
    id: &str,
    version: Option<&str>,
) -> Result<(&'a EntityRec, Option<&'a VersionRec>), ApiError> {
    let rec = store.entity(id)?;
    store.require(user, rec, Permission::Read)?;
    let version = match version {
        None => rec.latest(),
        Some(v) => {
            let number: i64 = parse_number("version number", v)?;
            Some(rec.version(number).ok_or_else(|| {
                // NodeDAOImpl: CANNOT_FIND_A_NODE_WITH_ID_AND_VERSION.
                ApiError::NotFound(format!(
                    "Cannot find a node with id {id} and version {number}"
                ))
            })?)
        }
    };
    Ok((rec, version))
}

pub async fn get_entity(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Entity>, ApiError> {
    let store = lock(&app.store);
    let (rec, version) = readable(&store, &user, &id, None)?;
    Ok(Json(rec.to_entity(version)))
}

pub async fn get_entity_version(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<Entity>, ApiError> {
    let store = lock(&app.store);
    let (rec, version) = readable(&store, &user, &id, Some(&version))?;
    Ok(Json(rec.to_entity(version)))
}

/// A bundle of the latest or one version. File handles need DOWNLOAD: without it (or without a
/// handle) the list is empty, as `EntityBundleServiceImpl` swallows the refusal. A version's
/// annotations come with the zero etag.
fn bundle_of(
    app: &App,
    user: &User,
    id: &str,
    version: Option<&str>,
    body: &[u8],
) -> Result<Json<EntityBundle>, ApiError> {
    let request: EntityBundleRequest = parse(body)?;
    let store = lock(&app.store);
    let (rec, at) = readable(&store, user, id, version)?;
    let handles = at
        .filter(|_| store.allowed(user, rec, Permission::Download))
        .and_then(|v| v.file_handle_id.as_deref())
        .and_then(|h| store.handle(h))
        .cloned()
        .into_iter()
        .collect();
    let annotations = match (version, at) {
        (Some(_), Some(v)) => rec.version_annotations2(v),
        _ => rec.annotations2(),
    };
    Ok(Json(EntityBundle {
        entity: request.include_entity.then(|| rec.to_entity(at)),
        entity_type: request
            .include_entity
            .then(|| rec.kind.type_name().to_owned()),
        annotations: request.include_annotations.then_some(annotations),
        file_handles: request.include_file_handles.then_some(handles),
        restriction_information: request.include_restriction_information.then(|| {
            serde_json::json!({
                "objectId": rec.id,
                "restrictionLevel": "OPEN",
                "hasUnmetAccessRequirement": false
            })
        }),
    }))
}

pub async fn bundle(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<EntityBundle>, ApiError> {
    bundle_of(&app, &user, &id, None, &body)
}

pub async fn bundle_version(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((id, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<EntityBundle>, ApiError> {
    bundle_of(&app, &user, &id, Some(&version), &body)
}

/// `NextPageToken`: `{limit}a{offset}`; the limit is honoured up to 50.
fn parse_token(token: &str) -> Result<(usize, usize), ApiError> {
    let parts: Vec<&str> = token.split('a').collect();
    let [limit, offset] = parts[..] else {
        return Err(ApiError::BadRequest(format!(
            "Unknow token format: {token}"
        )));
    };
    let number = |text: &str| {
        text.parse::<usize>()
            .map_err(|_| ApiError::BadRequest(format!("For input string: \"{text}\"")))
    };
    let (limit, offset) = (number(limit)?, number(offset)?);
    if limit > CHILDREN_PAGE {
        return Err(ApiError::BadRequest(format!(
            "Limit must not exceed: {CHILDREN_PAGE}"
        )));
    }
    Ok((limit, offset))
}

/// `EntityManagerImpl.getChildren`: `includeTypes` is required and not empty; no `parentId`
/// lists the projects; children the caller cannot read are left out.
pub async fn children(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Json<EntityChildrenResponse>, ApiError> {
    let request: EntityChildrenRequest = parse(&body)?;
    let store = lock(&app.store);
    let (parent, types) = match &request.parent_id {
        None => (None, vec![EntityKind::Project.type_name().to_owned()]),
        Some(parent_id) => {
            let parent = store.entity(parent_id)?;
            store.require(&user, parent, Permission::Read)?;
            let types = request
                .include_types
                .clone()
                .ok_or_else(|| ApiError::required("EntityChildrenRequest.includeTypes"))?;
            (Some(parent.id), types)
        }
    };
    if types.is_empty() {
        return Err(ApiError::BadRequest(
            "EntityChildrenRequest.includeTypes must include at least one type".into(),
        ));
    }
    if let Some(unknown) = types.iter().find(|t| !ENTITY_TYPES.contains(&t.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "Invalid JSON: unknown entity type {unknown}"
        )));
    }
    let mut kids: Vec<&EntityRec> = store
        .entities
        .values()
        .filter(|e| e.parent == parent)
        .filter(|e| types.iter().any(|t| t == e.kind.type_name()))
        .filter(|e| store.allowed(&user, e, Permission::Read))
        .collect();
    match request.sort_by.as_deref().unwrap_or("NAME") {
        "NAME" => kids.sort_by(|a, b| a.name.cmp(&b.name)),
        "CREATED_ON" | "MODIFIED_ON" => kids.sort_by_key(|e| e.id),
        other => return Err(ApiError::BadRequest(format!("Unknown sortBy: {other}"))),
    }
    match request.sort_direction.as_deref().unwrap_or("ASC") {
        "ASC" => {}
        "DESC" => kids.reverse(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "Unknown sortDirection: {other}"
            )))
        }
    }
    let (limit, offset) = request
        .next_page_token
        .as_deref()
        .map(parse_token)
        .transpose()?
        .unwrap_or((CHILDREN_PAGE, 0));
    let page: Vec<EntityHeader> = kids
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| EntityHeader {
            id: e.syn_id(),
            name: e.name.clone(),
            kind: e.kind.concrete_type().to_owned(),
            version_number: e.latest().map(|v| v.number),
            version_label: e.latest().map(|v| v.label.clone()),
            is_latest_version: e.latest().map(|_| true),
            // `NodeDAOImpl.ENTITY_HEADER_ROWMAPPER`: the current revision's MODIFIED_ON.
            modified_on: Some(
                e.latest()
                    .map_or(&e.modified_on, |v| &v.modified_on)
                    .clone(),
            ),
        })
        .collect();
    let next = offset + limit;
    Ok(Json(EntityChildrenResponse {
        page,
        next_page_token: (next < kids.len()).then(|| format!("{limit}a{next}")),
    }))
}

/// `ServiceConstants.validatePaginationParams` and `PaginatedResults.createWithLimitAndOffset`:
/// the total is an estimate (one more than seen when the page is full), so a client pages until
/// a short page.
pub async fn versions(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PaginatedResults<VersionInfo>>, ApiError> {
    let param = |name: &str, default: i64| -> Result<i64, ApiError> {
        query
            .get(name)
            .map(|v| parse_number(name, v))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let (offset, limit) = (param("offset", 0)?, param("limit", 10)?);
    if offset < 0 {
        return Err(ApiError::BadRequest(
            "pagination offset must be 0 or greater".into(),
        ));
    }
    if limit < 1 {
        return Err(ApiError::BadRequest(
            "pagination limit must be 1 or greater".into(),
        ));
    }
    let (offset, limit) = (offset as usize, limit as usize);
    let store = lock(&app.store);
    let (rec, _) = readable(&store, &user, &id, None)?;
    let latest = rec.latest().map(|v| v.number);
    let results: Vec<VersionInfo> = rec
        .versions
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .map(|v| {
            let handle = v.file_handle_id.as_deref().and_then(|h| store.handle(h));
            VersionInfo {
                id: id.clone(),
                version_number: v.number,
                version_label: Some(v.label.clone()),
                version_comment: v.comment.clone(),
                content_md5: handle.and_then(|h| h.content_md5.clone()),
                content_size: handle.and_then(|h| h.content_size).map(|s| s.to_string()),
                modified_by: Some(v.modified_by.clone()),
                modified_on: Some(v.modified_on.clone()),
                is_latest_version: Some(Some(v.number) == latest),
            }
        })
        .collect();
    let seen = (offset + results.len()) as u64;
    let total = if results.len() >= limit {
        seen + 1
    } else {
        seen
    };
    Ok(Json(PaginatedResults {
        results,
        total_number_of_results: Some(total),
    }))
}

fn stale(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Object: {id} was updated since you last fetched it, retrieve it again and re-apply the update"
    ))
}

/// What a PUT does to the versions of a file.
enum VersionChange {
    /// `NodeDAOImpl.createNewVersion`: a copy of the current revision (annotations included)
    /// numbered max + 1, with the body's label (its number when none) and comment.
    New {
        label: Option<String>,
        comment: Option<String>,
    },
    /// `NodeDAOImpl.updateNode`: the body's label (`"1"` when none) and comment are written onto
    /// the current revision.
    InPlace {
        label: Option<String>,
        comment: Option<String>,
    },
}

/// `PUT /entity/{id}` (`EntityServiceImpl.updateEntity` -> `EntityManagerImpl.updateEntity` ->
/// `NodeManagerImpl.update`): the body's id picks the entity; the checks run in the server's
/// order, every 400/403/404 before the 412 of a stale etag.
pub async fn put_entity(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Entity>, ApiError> {
    // `Boolean.parseBoolean`.
    let mut new_version = query
        .get("newVersion")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let body: Entity = parse(&body)?;
    let id = body
        .id
        .clone()
        .ok_or_else(|| ApiError::BadRequest("Updated Entity cannot have a null id".into()))?;
    if body.name.chars().count() > MAX_NAME_LENGTH {
        return Err(ApiError::BadRequest(format!(
            "Name must be {MAX_NAME_LENGTH} characters or less"
        )));
    }
    // AllTypesValidatorImpl: only a project may be without a parent.
    if body.parent_id.is_none() && body.concrete_type != EntityKind::Project.concrete_type() {
        return Err(ApiError::BadRequest(format!(
            "Entity type: {} cannot have a parent of type: null",
            body.concrete_type
        )));
    }
    let mut store = lock(&app.store);
    let rec = store
        .entity(&id)
        .map_err(|_| ApiError::NotFound(format!("Entity {id} does not exist")))?;
    if rec.kind == EntityKind::Table {
        // TableEntityMetadataProvider.entityUpdated changes the schema, which is not simulated.
        return Err(ApiError::BadRequest(
            "The simulator does not update table entities".into(),
        ));
    }
    let is_file = rec.kind == EntityKind::File;
    if is_file && body.data_file_handle_id.is_none() {
        return Err(ApiError::BadRequest(
            "FileEntity.dataFileHandleId cannot be null".into(),
        ));
    }
    store.require(&user, rec, Permission::Read)?;
    let mut comment = body
        .extra
        .get("versionComment")
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    let mut label = body.version_label.clone();
    let current_handle = rec.latest().and_then(|v| v.file_handle_id.clone());
    if is_file && !new_version {
        let new_handle = body.data_file_handle_id.as_deref().unwrap_or_default();
        if current_handle.as_deref() != Some(new_handle)
            && !store.matching_md5(current_handle.as_deref().unwrap_or_default(), new_handle)
        {
            // Auto-versioning (PLFM-1744, PLFM-6429): label and comment are reset.
            new_version = true;
            label = None;
            comment = None;
        }
    }
    if new_version && rec.versions.len() + 1 > MAX_VERSIONS {
        return Err(ApiError::BadRequest(format!(
            "Exceeded the maximum number of {MAX_VERSIONS} versions for a single Entity"
        )));
    }
    let name = validate_name(&body.name)?.to_owned();
    if body.etag.is_none() {
        return Err(ApiError::required("The eTag of the node"));
    }
    store.require(&user, rec, Permission::Update)?;
    if let Some(new_handle) = body.data_file_handle_id.as_deref() {
        if current_handle.as_deref() != Some(new_handle) {
            store.require_own_handle(&user, new_handle)?;
        }
    }
    if body.etag.as_deref() != Some(rec.etag.as_str()) {
        return Err(stale(&id));
    }
    check_unchanged(rec, &id, &body)?;
    if store
        .entities
        .values()
        .any(|e| e.parent == rec.parent && e.id != rec.id && e.name == name)
    {
        return Err(ApiError::NameConflict(format!(
            "An entity with the name: {name} already exists with a parentId: {}",
            body.parent_id.as_deref().unwrap_or_default()
        )));
    }
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_LENGTH)
    {
        return Err(ApiError::BadRequest(format!(
            "Version comment length exceeds {MAX_COMMENT_LENGTH}."
        )));
    }
    let change = if new_version {
        VersionChange::New { label, comment }
    } else {
        VersionChange::InPlace { label, comment }
    };
    let rec = store.entity_mut(&id)?;
    if is_file {
        apply_version_change(rec, &id, change, body.data_file_handle_id, &user)?;
    }
    rec.name = name;
    rec.touch(&user);
    Ok(Json(rec.to_entity(None)))
}

/// Fields a PUT cannot change: the type (`EntityManagerImpl.validateType`, 400) and the parent
/// (moves are not simulated; refused rather than ignored).
fn check_unchanged(rec: &EntityRec, id: &str, body: &Entity) -> Result<(), ApiError> {
    if body.concrete_type != rec.kind.concrete_type() {
        return Err(ApiError::BadRequest(format!(
            "The Entity: syn{id} has an entityType={} and cannot be changed to entityType={}",
            rec.kind.concrete_type(),
            body.concrete_type
        )));
    }
    let parent = rec.parent.map(|p| format!("syn{p}"));
    if rec.kind != EntityKind::Project && body.parent_id != parent {
        return Err(ApiError::BadRequest(
            "Moving an entity to another parent is not supported by this simulator".into(),
        ));
    }
    Ok(())
}

/// Applies a PUT's version change to a file. A label another version has violates
/// `UNIQUE_REVISION_LABEL (OWNER_NODE_ID, LABEL)`: `DBOBasicDaoImpl.insert` turns that into a 400
/// for a new version; the unwrapped `DuplicateKeyException` of an in-place update is a 500.
fn apply_version_change(
    rec: &mut EntityRec,
    id: &str,
    change: VersionChange,
    handle: Option<String>,
    user: &User,
) -> Result<(), ApiError> {
    let latest = rec.latest().expect("files have a version").clone();
    let used = |label: &str, except: Option<i64>| {
        rec.versions
            .iter()
            .any(|v| v.label == label && Some(v.number) != except)
    };
    let duplicate = |label: &str| {
        format!(
            "org.springframework.dao.DuplicateKeyException: PreparedStatementCallback; Duplicate \
             entry '{}-{label}' for key 'JDOREVISION.UNIQUE_REVISION_LABEL'",
            rec.id
        )
    };
    match change {
        VersionChange::New { label, comment } => {
            let number = latest.number + 1;
            let label = label.unwrap_or_else(|| number.to_string());
            if used(&label, None) {
                return Err(ApiError::BadRequest(format!(
                    "java.lang.IllegalArgumentException: {}",
                    duplicate(&label)
                )));
            }
            rec.versions.push(VersionRec {
                number,
                label,
                comment,
                file_handle_id: handle,
                annotations: latest.annotations,
                modified_on: iso_now(),
                modified_by: user.id.clone(),
            });
        }
        VersionChange::InPlace { label, comment } => {
            let label = label.unwrap_or_else(|| DEFAULT_LABEL.to_owned());
            if used(&label, Some(latest.number)) {
                tracing::debug!(%id, %label, "in-place label collision");
                return Err(ApiError::Internal(duplicate(&label)));
            }
            let current = rec.versions.last_mut().expect("files have a version");
            current.label = label;
            current.comment = comment;
            current.file_handle_id = handle;
        }
    }
    Ok(())
}

/// Body of the handle swap; both ids are required (`ValidateArgument.required`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandleSwap {
    old_file_handle_id: Option<String>,
    new_file_handle_id: Option<String>,
}

/// `PUT /entity/{id}/version/{v}/filehandle` (`NodeManagerImpl.updateNodeFileHandle`), checks in
/// the server's order; swapping to the handle already there is a no-op that keeps the etag.
pub async fn swap_handle(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((id, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<(), ApiError> {
    let swap: HandleSwap = parse(&body)?;
    let old = swap
        .old_file_handle_id
        .ok_or_else(|| ApiError::required("The updateRequest.oldFileHandleId"))?;
    let new = swap
        .new_file_handle_id
        .ok_or_else(|| ApiError::required("The updateRequest.newFileHandleId"))?;
    let number: i64 = parse_number("version number", &version)?;
    let mut store = lock(&app.store);
    let rec = store.entity(&id)?;
    store.require(&user, rec, Permission::Read)?;
    let current = rec
        .version(number)
        .filter(|_| rec.kind == EntityKind::File)
        .and_then(|v| v.file_handle_id.clone())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "A file entity with id {id} and revision {number} does not exist."
            ))
        })?;
    store.require(&user, rec, Permission::Update)?;
    store.require_own_handle(&user, &new)?;
    if current != old {
        return Err(ApiError::Conflict(format!(
            "The id of the provided file handle id (request.oldFileHandleId: {old}) does not \
             match the current file handle id."
        )));
    }
    if new == current {
        return Ok(());
    }
    if !store.matching_md5(&current, &new) {
        return Err(ApiError::Conflict(
            "The MD5 of the new file handle does not match the MD5 of the current file handle, \
             a new version must be created."
                .into(),
        ));
    }
    let rec = store.entity_mut(&id)?;
    rec.touch(&user);
    if let Some(v) = rec.versions.iter_mut().find(|v| v.number == number) {
        v.file_handle_id = Some(new);
    }
    Ok(())
}

pub async fn get_annotations(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Annotations2>, ApiError> {
    let store = lock(&app.store);
    let (rec, _) = readable(&store, &user, &id, None)?;
    Ok(Json(rec.annotations2()))
}

/// `GET /entity/{id}/version/{v}/annotations2`: that version's annotations, zero etag.
pub async fn get_version_annotations(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<Annotations2>, ApiError> {
    let store = lock(&app.store);
    let (rec, at) = readable(&store, &user, &id, Some(&version))?;
    Ok(Json(match at {
        Some(v) => rec.version_annotations2(v),
        None => rec.annotations2(),
    }))
}

/// Body of `PUT /entity/{id}/annotations2` with the fields the server checks itself.
#[derive(Deserialize)]
struct AnnotationsUpdate {
    id: Option<String>,
    etag: Option<String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, synapse_model::AnnotationValue>,
}

/// `PUT /entity/{id}/annotations2` (`NodeManagerImpl.updateUserAnnotations`): onto the current
/// version, with a new etag.
pub async fn put_annotations(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Annotations2>, ApiError> {
    let update: AnnotationsUpdate = parse(&body)?;
    if update.id.is_none() {
        return Err(ApiError::BadRequest(
            "Annotations must have a non-null id".into(),
        ));
    }
    let etag = update
        .etag
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::required_not_empty("etag"))?;
    let mut store = lock(&app.store);
    let rec = store.entity(&id)?;
    store.require(&user, rec, Permission::Update)?;
    if etag != rec.etag {
        return Err(stale(&id));
    }
    let rec = store.entity_mut(&id)?;
    rec.set_annotations(update.annotations);
    rec.touch(&user);
    Ok(Json(rec.annotations2()))
}
