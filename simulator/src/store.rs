//! The simulator's in-memory Synapse: users, storage locations, entities with versions, file handles,
//! ACLs and multipart uploads. Guarded by one mutex that is never held across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use synapse_model::{
    concrete, AnnotationValue, Annotations2, Entity, FileHandle, StorageLocationSetting,
};

use crate::error::ApiError;
use crate::fixture::Permission;
use crate::util::{iso_now, new_etag};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub user_name: String,
}

#[derive(Clone, Debug)]
pub struct Location {
    pub setting: StorageLocationSetting,
    pub region: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    Project,
    Folder,
    File,
}

impl EntityKind {
    pub fn concrete_type(self) -> &'static str {
        match self {
            Self::Project => concrete::PROJECT,
            Self::Folder => concrete::FOLDER,
            Self::File => concrete::FILE_ENTITY,
        }
    }

    /// The lower-case name used by `includeTypes` and `entityType`.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Project => "project",
            Self::Folder => "folder",
            Self::File => "file",
        }
    }
}

#[derive(Clone, Debug)]
pub struct VersionRec {
    pub number: i64,
    pub label: String,
    pub comment: Option<String>,
    pub file_handle_id: Option<String>,
    pub modified_on: String,
    pub modified_by: String,
}

/// userId -> permissions.
pub type Acl = BTreeMap<String, BTreeSet<Permission>>;

#[derive(Clone, Debug)]
pub struct EntityRec {
    pub id: u64,
    pub kind: EntityKind,
    pub name: String,
    pub parent: Option<u64>,
    pub etag: String,
    pub created_by: String,
    pub created_on: String,
    pub modified_on: String,
    pub modified_by: String,
    /// Oldest first; empty for containers.
    pub versions: Vec<VersionRec>,
    pub annotations: BTreeMap<String, AnnotationValue>,
    /// Present on projects and on entities with their own ACL (they are their own benefactor).
    pub acl: Option<Acl>,
}

impl EntityRec {
    pub fn syn_id(&self) -> String {
        format!("syn{}", self.id)
    }

    pub fn latest(&self) -> Option<&VersionRec> {
        self.versions.last()
    }

    pub fn version(&self, number: i64) -> Option<&VersionRec> {
        self.versions.iter().find(|v| v.number == number)
    }

    /// The entity JSON as the server renders it, at `version` (default: latest).
    pub fn to_entity(&self, version: Option<&VersionRec>) -> Entity {
        let mut extra = serde_json::Map::new();
        extra.insert("createdBy".into(), self.created_by.clone().into());
        let version = version.or(self.latest());
        let modified_by = version.map_or(&self.modified_by, |v| &v.modified_by);
        extra.insert("modifiedBy".into(), modified_by.clone().into());
        if let Some(v) = version {
            extra.insert(
                "isLatestVersion".into(),
                (Some(v.number) == self.latest().map(|l| l.number)).into(),
            );
            if let Some(comment) = &v.comment {
                extra.insert("versionComment".into(), comment.clone().into());
            }
        }
        Entity {
            concrete_type: self.kind.concrete_type().to_owned(),
            id: Some(self.syn_id()),
            name: self.name.clone(),
            parent_id: self.parent.map(|p| format!("syn{p}")),
            etag: Some(self.etag.clone()),
            version_number: version.map(|v| v.number),
            version_label: version.map(|v| v.label.clone()),
            data_file_handle_id: version.and_then(|v| v.file_handle_id.clone()),
            created_on: Some(self.created_on.clone()),
            modified_on: Some(
                version
                    .map_or(&self.modified_on, |v| &v.modified_on)
                    .clone(),
            ),
            extra,
        }
    }

    pub fn annotations2(&self) -> Annotations2 {
        Annotations2 {
            id: self.syn_id(),
            etag: self.etag.clone(),
            annotations: self.annotations.clone(),
        }
    }

    /// Records a change: new etag and modification stamp.
    pub fn touch(&mut self, user: &User) {
        self.etag = new_etag();
        self.modified_on = iso_now();
        self.modified_by = user.id.clone();
    }
}

/// One multipart copy, from start to completion.
#[derive(Clone, Debug)]
pub struct Upload {
    pub id: String,
    pub started_by: String,
    pub completed: bool,
    /// The part MD5 recorded by add-part, per part.
    pub parts: Vec<Option<String>>,
    pub part_size: u64,
    pub size: u64,
    pub source_bucket: String,
    pub source_key: String,
    pub source_etag: String,
    pub dest_bucket: String,
    pub dest_key: String,
    pub s3_upload_id: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub content_md5: String,
    pub storage_location_id: i64,
    pub result_file_handle_id: Option<String>,
    pub started_on: String,
    pub updated_on: String,
}

impl Upload {
    pub fn status(&self) -> synapse_model::MultipartUploadStatus {
        use synapse_model::upload_state::{COMPLETED, UPLOADING};
        synapse_model::MultipartUploadStatus {
            upload_id: self.id.clone(),
            state: if self.completed { COMPLETED } else { UPLOADING }.to_owned(),
            parts_state: Some(
                self.parts
                    .iter()
                    .map(|p| if p.is_some() { '1' } else { '0' })
                    .collect(),
            ),
            result_file_handle_id: self.result_file_handle_id.clone(),
            started_by: Some(self.started_by.clone()),
            started_on: Some(self.started_on.clone()),
            updated_on: Some(self.updated_on.clone()),
        }
    }
}

#[derive(Default)]
pub struct Store {
    pub users_by_token: HashMap<String, User>,
    pub users_by_name: BTreeMap<String, User>,
    pub locations: BTreeMap<i64, Location>,
    pub entities: BTreeMap<u64, EntityRec>,
    pub handles: BTreeMap<u64, FileHandle>,
    pub uploads: BTreeMap<String, Upload>,
    /// sha256(user, request) -> upload id: what makes start idempotent.
    pub uploads_by_hash: HashMap<String, String>,
    /// "Project/folder/file" -> entity id, for tests and the binary's summary.
    pub paths: BTreeMap<String, String>,
    pub next_entity_id: u64,
    pub next_handle_id: u64,
    pub next_upload_id: u64,
}

/// Parses `syn123` (or `123`) into the numeric id.
pub fn parse_syn_id(id: &str) -> Option<u64> {
    id.strip_prefix("syn").unwrap_or(id).parse().ok()
}

impl Store {
    pub fn entity(&self, id: &str) -> Result<&EntityRec, ApiError> {
        parse_syn_id(id)
            .and_then(|n| self.entities.get(&n))
            .ok_or_else(|| ApiError::NotFound(format!("Entity {id} does not exist")))
    }

    pub fn entity_mut(&mut self, id: &str) -> Result<&mut EntityRec, ApiError> {
        parse_syn_id(id)
            .and_then(|n| self.entities.get_mut(&n))
            .ok_or_else(|| ApiError::NotFound(format!("Entity {id} does not exist")))
    }

    pub fn handle(&self, id: &str) -> Option<&FileHandle> {
        id.parse().ok().and_then(|n: u64| self.handles.get(&n))
    }

    pub fn add_handle(&mut self, mut handle: FileHandle) -> FileHandle {
        self.next_handle_id += 1;
        handle.id = self.next_handle_id.to_string();
        self.handles.insert(self.next_handle_id, handle.clone());
        handle
    }

    /// The ACL that governs `entity`: its own, or the nearest ancestor's.
    fn benefactor_acl<'a>(&'a self, entity: &'a EntityRec) -> Option<&'a Acl> {
        let mut current = Some(entity);
        while let Some(e) = current {
            if let Some(acl) = &e.acl {
                return Some(acl);
            }
            current = e.parent.and_then(|p| self.entities.get(&p));
        }
        None
    }

    pub fn allowed(&self, user: &User, entity: &EntityRec, permission: Permission) -> bool {
        self.benefactor_acl(entity)
            .and_then(|acl| acl.get(&user.id))
            .is_some_and(|perms| perms.contains(&permission))
    }

    /// 403 unless `user` holds `permission` on `entity`.
    pub fn require(
        &self,
        user: &User,
        entity: &EntityRec,
        permission: Permission,
    ) -> Result<(), ApiError> {
        if self.allowed(user, entity, permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "You lack {permission} permission for the requested entity, {}",
                entity.syn_id()
            )))
        }
    }

    /// True when some version of `entity` points at handle `handle_id` (the file handle association).
    pub fn is_associated(&self, entity: &EntityRec, handle_id: &str) -> bool {
        entity
            .versions
            .iter()
            .any(|v| v.file_handle_id.as_deref() == Some(handle_id))
    }
}
