//! The simulator's in-memory Synapse: users, storage locations, entities with versions, file handles,
//! ACLs and multipart uploads. Guarded by one mutex that is never held across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use synapse_model::{
    concrete, AnnotationValue, Annotations2, Entity, FileHandle, StorageLocationSetting,
};

use crate::error::ApiError;
use crate::fixture::Permission;
use crate::tables::{TableData, Tables};
use crate::util::{iso_now, new_etag};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub user_name: String,
    /// Passed the certification quiz (in the `CERTIFIED_USERS` group): true unless the fixture
    /// lists the user in `uncertifiedUsers`.
    pub certified: bool,
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
    Table,
}

impl EntityKind {
    pub fn concrete_type(self) -> &'static str {
        match self {
            Self::Project => concrete::PROJECT,
            Self::Folder => concrete::FOLDER,
            Self::File => concrete::FILE_ENTITY,
            Self::Table => concrete::TABLE_ENTITY,
        }
    }

    /// The lower-case name used by `includeTypes` and `entityType`.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Project => "project",
            Self::Folder => "folder",
            Self::File => "file",
            Self::Table => "table",
        }
    }
}

/// One revision of a file. Synapse keeps the user annotations per revision
/// (`NODE_REVISION.USER_ANNOTATIONS`) and copies them into each new version.
#[derive(Clone, Debug)]
pub struct VersionRec {
    pub number: i64,
    pub label: String,
    pub comment: Option<String>,
    pub file_handle_id: Option<String>,
    pub annotations: BTreeMap<String, AnnotationValue>,
    pub modified_on: String,
    pub modified_by: String,
}

/// The etag of a version's annotations (`NodeConstants.ZERO_E_TAG`): old versions cannot change.
pub const ZERO_ETAG: &str = "00000000-0000-0000-0000-000000000000";

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
    /// Oldest first; empty for containers. A table's versions are its snapshots and the
    /// version in progress (no file handle).
    pub versions: Vec<VersionRec>,
    /// A container's annotations; a file's live on its versions.
    pub annotations: BTreeMap<String, AnnotationValue>,
    /// Present on projects and on entities with their own ACL (they are their own benefactor).
    pub acl: Option<Acl>,
    /// A table's columns and rows.
    pub table: Option<TableData>,
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
        if let Some(table) = &self.table {
            // TableEntityMetadataProvider.addTypeSpecificMetadata: the schema's column ids.
            let ids: Vec<String> = table.column_ids.iter().map(u64::to_string).collect();
            extra.insert("columnIds".into(), ids.into());
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

    /// The current annotations (the latest version's, for a file) with the entity's etag.
    pub fn annotations2(&self) -> Annotations2 {
        Annotations2 {
            id: self.syn_id(),
            etag: self.etag.clone(),
            annotations: self
                .latest()
                .map_or(&self.annotations, |v| &v.annotations)
                .clone(),
        }
    }

    /// The annotations of one version, with the zero etag (`NodeDAOImpl.getUserAnnotationsForVersion`).
    pub fn version_annotations2(&self, version: &VersionRec) -> Annotations2 {
        Annotations2 {
            id: self.syn_id(),
            etag: ZERO_ETAG.to_owned(),
            annotations: version.annotations.clone(),
        }
    }

    /// Replaces the current annotations (the latest version's, for a file).
    pub fn set_annotations(&mut self, annotations: BTreeMap<String, AnnotationValue>) {
        match self.versions.last_mut() {
            Some(latest) => latest.annotations = annotations,
            None => self.annotations = annotations,
        }
    }

    /// Records a change (`NodeDAOImpl.touch`): a new etag, and the modification stamp of the
    /// entity and of its latest version.
    pub fn touch(&mut self, user: &User) {
        self.etag = new_etag();
        self.modified_on = iso_now();
        self.modified_by = user.id.clone();
        if let Some(latest) = self.versions.last_mut() {
            latest.modified_on = self.modified_on.clone();
            latest.modified_by = user.id.clone();
        }
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
    /// Upload settings (`UploadDestinationListSetting.locations`) by the folder or project that
    /// owns them.
    pub upload_settings: BTreeMap<u64, Vec<i64>>,
    /// Column models and asynchronous table jobs.
    pub tables: Tables,
}

/// `AuthorizationConstants.ERR_MSG_CERTIFIED_USER_CONTENT`.
pub const CERTIFIED_ONLY: &str = "Only certified users may create or update content in Synapse.";

/// Synapse's own storage (`StorageLocationDAO.DEFAULT_STORAGE_LOCATION_ID`).
pub const DEFAULT_STORAGE_LOCATION_ID: i64 = 1;

/// Parses `syn123` (or `123`) into the numeric id.
pub fn parse_syn_id(id: &str) -> Option<u64> {
    id.strip_prefix("syn").unwrap_or(id).parse().ok()
}

impl Store {
    /// The entity, or the 404 of Synapse's access check on a missing entity
    /// (`EntityDeciderFunctions.DENY_IF_DOES_NOT_EXIST`).
    pub fn entity(&self, id: &str) -> Result<&EntityRec, ApiError> {
        parse_syn_id(id)
            .and_then(|n| self.entities.get(&n))
            .ok_or_else(|| ApiError::NotFound(format!("Resource: '{id}' does not exist")))
    }

    pub fn entity_mut(&mut self, id: &str) -> Result<&mut EntityRec, ApiError> {
        parse_syn_id(id)
            .and_then(|n| self.entities.get_mut(&n))
            .ok_or_else(|| ApiError::NotFound(format!("Resource: '{id}' does not exist")))
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

    /// The storage location files under `node` upload to: the first location of the nearest
    /// upload setting, the node's own or an ancestor's, else Synapse storage (1)
    /// (`DBOProjectSettingsDAOImpl.getInheritedProjectSetting`, a walk up from the node itself;
    /// `FileHandleManagerImpl.getDefaultUploadDestination`).
    pub fn upload_location(&self, node: u64) -> i64 {
        let mut at = Some(node);
        while let Some(id) = at {
            if let Some(first) = self.upload_settings.get(&id).and_then(|l| l.first()) {
                return *first;
            }
            at = self.entities.get(&id).and_then(|e| e.parent);
        }
        DEFAULT_STORAGE_LOCATION_ID
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

    /// True when the ACL that governs `entity` grants `user` `permission`
    /// (`UserEntityPermissionsState.has*`, read by `UsersEntityPermissionsDaoImpl`).
    pub fn granted(&self, user: &User, entity: &EntityRec, permission: Permission) -> bool {
        self.benefactor_acl(entity)
            .and_then(|acl| acl.get(&user.id))
            .is_some_and(|perms| perms.contains(&permission))
    }

    /// `EntityAuthorizationUtils.determineUpdateAccess`: `DENY_IF_NOT_PROJECT_AND_NOT_CERTIFIED`
    /// comes before `GRANT_IF_HAS_UPDATE`, so a user who has not passed the certification quiz
    /// may update projects only, whatever the ACL grants.
    fn uncertified_update(user: &User, entity: &EntityRec, permission: Permission) -> bool {
        permission == Permission::Update && !user.certified && entity.kind != EntityKind::Project
    }

    /// The server's access decision for READ, DOWNLOAD and UPDATE on an existing entity (the
    /// simulator has no trash, no admins, no anonymous callers, no access requirements and no
    /// open data, so the ACL decides, but for the certification rule of UPDATE).
    pub fn allowed(&self, user: &User, entity: &EntityRec, permission: Permission) -> bool {
        !Self::uncertified_update(user, entity, permission)
            && self.granted(user, entity, permission)
    }

    /// 403 unless `user` holds `permission` on `entity`.
    pub fn require(
        &self,
        user: &User,
        entity: &EntityRec,
        permission: Permission,
    ) -> Result<(), ApiError> {
        if Self::uncertified_update(user, entity, permission) {
            // AuthorizationConstants.ERR_MSG_CERTIFIED_USER_CONTENT.
            Err(ApiError::Forbidden(CERTIFIED_ONLY.into()))
        } else if self.granted(user, entity, permission) {
            Ok(())
        } else {
            // EntityDeciderFunctions: ERR_MSG_YOU_LACK_ACCESS_TO_REQUESTED_ENTITY_TEMPLATE.
            Err(ApiError::Forbidden(format!(
                "You lack {permission} access to the requested entity."
            )))
        }
    }

    /// 404 unless handle `handle_id` exists, 403 unless `user` created it: Synapse lets only the
    /// creator use a handle by its id (`AuthorizationUtils.canAccessRawFileHandleByCreator`).
    pub fn require_own_handle(&self, user: &User, handle_id: &str) -> Result<(), ApiError> {
        let handle = self.handle(handle_id).ok_or_else(|| {
            ApiError::NotFound(format!("The FileHandle does not exist: {handle_id}"))
        })?;
        if handle.created_by.as_deref() != Some(user.id.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "Only the creator of a FileHandle can access it directly by its ID.  FileHandleId = '{handle_id}', UserId = '{}'",
                user.id
            )));
        }
        Ok(())
    }

    /// Synapse's `isMatchingMD5`: both handles exist and carry the same non-null MD5.
    pub fn matching_md5(&self, a: &str, b: &str) -> bool {
        let md5 = |id| self.handle(id).and_then(|h| h.content_md5.as_deref());
        md5(a).is_some() && md5(a) == md5(b)
    }

    /// True when some version of `entity` points at handle `handle_id` (the file handle association).
    pub fn is_associated(&self, entity: &EntityRec, handle_id: &str) -> bool {
        entity
            .versions
            .iter()
            .any(|v| v.file_handle_id.as_deref() == Some(handle_id))
    }
}
