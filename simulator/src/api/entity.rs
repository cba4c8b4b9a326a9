//! Repo-service endpoints: profile, storage locations, entities, versions, children, annotations.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use synapse_model::{
    Annotations2, Entity, EntityBundle, EntityBundleRequest, EntityChildrenRequest,
    EntityChildrenResponse, EntityHeader, FileHandleVersionUpdate, PaginatedResults,
    StorageLocationSetting, UserProfile, VersionInfo,
};

use super::{parse, parse_number};
use crate::error::ApiError;
use crate::fixture::Permission;
use crate::guard::lock;
use crate::server::App;
use crate::store::{EntityKind, EntityRec, Store, User, VersionRec};
use crate::util::iso_now;

const CHILDREN_PAGE: usize = 50;

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
        .ok_or_else(|| ApiError::NotFound(format!("Storage location {id} does not exist")))?;
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
                ApiError::NotFound(format!("Version {number} of {id} does not exist"))
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

fn bundle_of(
    app: &App,
    user: &User,
    id: &str,
    version: Option<&str>,
    body: &[u8],
) -> Result<Json<EntityBundle>, ApiError> {
    let request: EntityBundleRequest = parse(body)?;
    let store = lock(&app.store);
    let (rec, version) = readable(&store, user, id, version)?;
    let handles = version
        .and_then(|v| v.file_handle_id.as_deref())
        .and_then(|h| store.handle(h))
        .cloned()
        .into_iter()
        .collect();
    Ok(Json(EntityBundle {
        entity: request.include_entity.then(|| rec.to_entity(version)),
        entity_type: Some(rec.kind.type_name().to_owned()),
        annotations: request.include_annotations.then(|| rec.annotations2()),
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

/// `{limit}a{offset}`, the server's token format.
fn parse_token(token: &str) -> Result<usize, ApiError> {
    token
        .split_once('a')
        .and_then(|(_, offset)| offset.parse().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("Invalid nextPageToken: {token}")))
}

pub async fn children(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Json<EntityChildrenResponse>, ApiError> {
    let request: EntityChildrenRequest = parse(&body)?;
    let parent_id = request
        .parent_id
        .ok_or_else(|| ApiError::BadRequest("parentId is required".into()))?;
    let store = lock(&app.store);
    let parent = store.entity(&parent_id)?;
    store.require(&user, parent, Permission::Read)?;
    let types: Option<Vec<String>> = request
        .include_types
        .map(|t| t.iter().map(|s| s.to_lowercase()).collect());
    let mut kids: Vec<&EntityRec> = store
        .entities
        .values()
        .filter(|e| e.parent == Some(parent.id))
        .filter(|e| {
            types
                .as_ref()
                .is_none_or(|t| t.iter().any(|n| n == e.kind.type_name()))
        })
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
    let offset = request
        .next_page_token
        .as_deref()
        .map(parse_token)
        .transpose()?
        .unwrap_or(0);
    let page: Vec<EntityHeader> = kids
        .iter()
        .skip(offset)
        .take(CHILDREN_PAGE)
        .map(|e| EntityHeader {
            id: e.syn_id(),
            name: e.name.clone(),
            kind: e.kind.concrete_type().to_owned(),
            version_number: e.latest().map(|v| v.number),
            version_label: e.latest().map(|v| v.label.clone()),
            is_latest_version: e.latest().map(|_| true),
        })
        .collect();
    let next = offset + CHILDREN_PAGE;
    Ok(Json(EntityChildrenResponse {
        page,
        next_page_token: (next < kids.len()).then(|| format!("{CHILDREN_PAGE}a{next}")),
    }))
}

pub async fn versions(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PaginatedResults<VersionInfo>>, ApiError> {
    let offset: usize = query
        .get("offset")
        .map(|v| parse_number("offset", v))
        .transpose()?
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .map(|v| parse_number("limit", v))
        .transpose()?
        .unwrap_or(10);
    let store = lock(&app.store);
    let (rec, _) = readable(&store, &user, &id, None)?;
    let latest = rec.latest().map(|v| v.number);
    let results = rec
        .versions
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .map(|v| {
            let handle = v.file_handle_id.as_deref().and_then(|h| store.handle(h));
            VersionInfo {
                id: rec.syn_id(),
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
    Ok(Json(PaginatedResults {
        results,
        total_number_of_results: Some(rec.versions.len() as u64),
    }))
}

fn stale(id: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Object: {id} was updated since you last fetched it, retrieve it again and re-apply the update"
    ))
}

/// 403 unless `user` created handle `handle_id` (Synapse lets only the creator attach a handle).
fn require_owned_handle(store: &Store, user: &User, handle_id: &str) -> Result<(), ApiError> {
    let handle = store
        .handle(handle_id)
        .ok_or_else(|| ApiError::NotFound(format!("File handle {handle_id} does not exist")))?;
    if handle.created_by.as_deref() != Some(user.id.as_str()) {
        return Err(ApiError::Forbidden(format!(
            "Only the creator of a file handle can assign it to an entity (file handle {handle_id})"
        )));
    }
    Ok(())
}

fn md5_of(store: &Store, handle_id: Option<&str>) -> Option<String> {
    handle_id
        .and_then(|h| store.handle(h))
        .and_then(|h| h.content_md5.clone())
}

pub async fn put_entity(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Entity>, ApiError> {
    let new_version_requested = query.get("newVersion").is_some_and(|v| v == "true");
    let body: Entity = parse(&body)?;
    let mut store = lock(&app.store);
    let rec = store.entity(&id)?;
    store.require(&user, rec, Permission::Update)?;
    if body.id.as_deref().is_some_and(|b| b != rec.syn_id()) {
        return Err(ApiError::BadRequest(
            "The entity id does not match the URL".into(),
        ));
    }
    if body.etag.as_deref() != Some(rec.etag.as_str()) {
        return Err(stale(&rec.syn_id()));
    }
    if body.name.trim().is_empty() {
        return Err(ApiError::BadRequest("Entity name cannot be empty".into()));
    }
    let mut new_version = None;
    if rec.kind == EntityKind::File {
        let new_handle = body
            .data_file_handle_id
            .clone()
            .ok_or_else(|| ApiError::BadRequest("dataFileHandleId is required".into()))?;
        let latest = rec.latest().expect("files have a version");
        let changed = latest.file_handle_id.as_deref() != Some(new_handle.as_str());
        if changed {
            require_owned_handle(&store, &user, &new_handle)?;
        }
        let old_md5 = md5_of(&store, latest.file_handle_id.as_deref());
        let new_md5 = md5_of(&store, Some(&new_handle));
        let md5_differs = old_md5.is_none() || old_md5 != new_md5;
        if new_version_requested || (changed && md5_differs) {
            let number = latest.number + 1;
            let label = body
                .version_label
                .clone()
                .filter(|l| *l != latest.label)
                .unwrap_or_else(|| number.to_string());
            new_version = Some((number, label, new_handle));
        } else if changed {
            new_version = Some((latest.number, latest.label.clone(), new_handle));
        }
    }
    let rec = store.entity_mut(&id)?;
    rec.name = body.name.clone();
    if let Some((number, label, handle)) = new_version {
        let version = VersionRec {
            number,
            label,
            comment: body
                .extra
                .get("versionComment")
                .and_then(|c| c.as_str())
                .map(str::to_owned),
            file_handle_id: Some(handle),
            modified_on: iso_now(),
            modified_by: user.id.clone(),
        };
        match rec.versions.last_mut() {
            Some(last) if last.number == number => {
                last.file_handle_id = version.file_handle_id;
                last.modified_on = version.modified_on;
                last.modified_by = version.modified_by;
            }
            _ => rec.versions.push(version),
        }
    }
    rec.touch(&user);
    Ok(Json(rec.to_entity(None)))
}

pub async fn swap_handle(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path((id, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<(), ApiError> {
    let update: FileHandleVersionUpdate = parse(&body)?;
    let number: i64 = parse_number("version number", &version)?;
    let mut store = lock(&app.store);
    let rec = store.entity(&id)?;
    store.require(&user, rec, Permission::Update)?;
    let current = rec
        .version(number)
        .ok_or_else(|| ApiError::NotFound(format!("Version {number} of {id} does not exist")))?;
    if current.file_handle_id.as_deref() != Some(update.old_file_handle_id.as_str()) {
        return Err(ApiError::Conflict(format!(
            "The old file handle {} is not the current file handle of version {number} of {id}",
            update.old_file_handle_id
        )));
    }
    require_owned_handle(&store, &user, &update.new_file_handle_id)?;
    let old_md5 = md5_of(&store, Some(&update.old_file_handle_id));
    if old_md5.is_none() || old_md5 != md5_of(&store, Some(&update.new_file_handle_id)) {
        return Err(ApiError::Conflict(
            "The MD5 of the new file handle does not match the MD5 of the current file handle"
                .into(),
        ));
    }
    let rec = store.entity_mut(&id)?;
    if let Some(v) = rec.versions.iter_mut().find(|v| v.number == number) {
        v.file_handle_id = Some(update.new_file_handle_id);
        v.modified_on = iso_now();
        v.modified_by = user.id.clone();
    }
    rec.touch(&user);
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

pub async fn put_annotations(
    State(app): State<Arc<App>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Annotations2>, ApiError> {
    let annotations: Annotations2 = parse(&body)?;
    let mut store = lock(&app.store);
    let rec = store.entity(&id)?;
    store.require(&user, rec, Permission::Update)?;
    if annotations.etag != rec.etag {
        return Err(stale(&rec.syn_id()));
    }
    let rec = store.entity_mut(&id)?;
    rec.annotations = annotations.annotations;
    rec.touch(&user);
    Ok(Json(rec.annotations2()))
}
