//! Serde types for the part of the Synapse REST JSON that a storage-location migration reads and writes.
//!
//! Field names and JSON types follow the real server: file handle ids, user ids inside file handles
//! and entity ids are strings (`"123"`, `"syn123"`); storage location ids, sizes and version numbers
//! are numbers. Optional fields are omitted when `None`, as the server does. Shared by the simulator
//! (which serves these) and the migration client (which consumes them), so both agree by construction.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The server (Jackson) reads a JSON number from a number or a numeric string, and clients rely on it:
/// the official client sends `storageLocationId` as `"7001"` when it came from the command line.
pub mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString<T> {
        Number(T),
        Text(String),
    }

    fn parse<'de, D, T>(value: NumberOrString<T>) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr,
    {
        match value {
            NumberOrString::Number(n) => Ok(n),
            NumberOrString::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a number"))),
        }
    }

    /// A number, or a string holding one.
    pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr + Deserialize<'de>,
    {
        parse::<D, T>(NumberOrString::deserialize(deserializer)?)
    }

    /// An optional number, or a string holding one.
    pub fn optional_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr + Deserialize<'de>,
    {
        Option::<NumberOrString<T>>::deserialize(deserializer)?
            .map(parse::<D, T>)
            .transpose()
    }
}

/// Fully-qualified `concreteType` strings the migration cares about.
pub mod concrete {
    pub const FILE_ENTITY: &str = "org.sagebionetworks.repo.model.FileEntity";
    pub const FOLDER: &str = "org.sagebionetworks.repo.model.Folder";
    pub const PROJECT: &str = "org.sagebionetworks.repo.model.Project";
    pub const TABLE_ENTITY: &str = "org.sagebionetworks.repo.model.table.TableEntity";

    pub const S3_FILE_HANDLE: &str = "org.sagebionetworks.repo.model.file.S3FileHandle";
    pub const EXTERNAL_FILE_HANDLE: &str = "org.sagebionetworks.repo.model.file.ExternalFileHandle";
    pub const GOOGLE_CLOUD_FILE_HANDLE: &str =
        "org.sagebionetworks.repo.model.file.GoogleCloudFileHandle";
    pub const PROXY_FILE_HANDLE: &str = "org.sagebionetworks.repo.model.file.ProxyFileHandle";

    pub const S3_STORAGE_LOCATION: &str =
        "org.sagebionetworks.repo.model.project.S3StorageLocationSetting";
    pub const EXTERNAL_S3_STORAGE_LOCATION: &str =
        "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting";
    pub const S3_UPLOAD_DESTINATION: &str =
        "org.sagebionetworks.repo.model.file.S3UploadDestination";
    pub const EXTERNAL_S3_UPLOAD_DESTINATION: &str =
        "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination";

    pub const MULTIPART_UPLOAD_COPY_REQUEST: &str =
        "org.sagebionetworks.repo.model.file.MultipartUploadCopyRequest";

    pub const ERROR_RESPONSE: &str = "org.sagebionetworks.repo.model.ErrorResponse";
}

/// Lower-case entity type names used by `includeTypes` in a children request.
pub mod entity_type {
    pub const FILE: &str = "file";
    pub const FOLDER: &str = "folder";
    pub const PROJECT: &str = "project";
    pub const TABLE: &str = "table";
}

/// `GET /userProfile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub owner_id: String,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

/// A storage location setting (`S3StorageLocationSetting` or `ExternalS3StorageLocationSetting`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageLocationSetting {
    pub concrete_type: String,
    pub storage_location_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<i64>,
}

/// What the caller may do with an entity (`GET /entity/{id}/permissions`), the fields the
/// migration reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEntityPermissions {
    #[serde(default)]
    pub can_view: bool,
    /// UPDATE, and certified unless the entity is a project (a project's `canEdit` alone does
    /// not say the caller may update the files in it: see `is_certified_user`).
    #[serde(default)]
    pub can_edit: bool,
    #[serde(default)]
    pub is_certified_user: bool,
    /// Absent when the entity does not exist (Synapse still answers 200).
    #[serde(default)]
    pub owner_principal_id: Option<i64>,
}

/// A table column (`GET /column/{id}`, `GET /entity/{id}/column`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnModel {
    pub id: String,
    pub name: String,
    pub column_type: String,
}

/// The column type whose cells name file handles.
pub const FILE_HANDLE_COLUMN: &str = "FILEHANDLEID";

/// `GET /entity/{id}/column`: the table's schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedColumnModels {
    #[serde(default)]
    pub results: Vec<ColumnModel>,
}

/// One row of a query's results: its id, version and the selected cells (null: empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub row_id: i64,
    #[serde(default)]
    pub version_number: Option<i64>,
    #[serde(default)]
    pub values: Vec<Option<String>>,
}

/// A page of a table query's rows (`QueryResultBundle.queryResult` with `partMask` 1), and
/// whether more follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPage {
    pub rows: Vec<Row>,
    pub more: bool,
}

/// Where files uploaded under a node go (`GET /entity/{id}/uploadDestination`): the nearest
/// upload setting's first storage location, Synapse's own storage otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadDestination {
    pub concrete_type: String,
    pub storage_location_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_type: Option<String>,
}

impl StorageLocationSetting {
    /// True for a bucket the user registered (as opposed to Synapse's own storage).
    pub fn is_external_s3(&self) -> bool {
        self.concrete_type == concrete::EXTERNAL_S3_STORAGE_LOCATION
    }
}

/// Any file handle. One struct for all kinds: `concreteType` tells which optional fields apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileHandle {
    pub id: String,
    pub concrete_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::optional_number"
    )]
    pub content_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::optional_number"
    )]
    pub storage_location_id: Option<i64>,
    /// ExternalFileHandle only.
    #[serde(
        rename = "externalURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_url: Option<String>,
    /// ProxyFileHandle only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl FileHandle {
    /// Only S3 file handles can be copied by the multipart copy API.
    pub fn is_s3(&self) -> bool {
        self.concrete_type == concrete::S3_FILE_HANDLE
    }
}

/// An entity as returned by `GET /entity/{id}`. Unknown fields are kept in `extra` so that a
/// GET, edit, PUT cycle sends back everything the server sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    pub concrete_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_file_handle_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Entity {
    pub fn is_file(&self) -> bool {
        self.concrete_type == concrete::FILE_ENTITY
    }

    pub fn is_container(&self) -> bool {
        self.concrete_type == concrete::FOLDER || self.concrete_type == concrete::PROJECT
    }
}

/// Body of `POST /entity/{id}/bundle2` (and the versioned form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityBundleRequest {
    #[serde(default)]
    pub include_entity: bool,
    #[serde(default)]
    pub include_annotations: bool,
    #[serde(default)]
    pub include_file_handles: bool,
    #[serde(default)]
    pub include_restriction_information: bool,
}

impl EntityBundleRequest {
    /// What a migration asks for: everything it reads about one entity version.
    pub fn migration() -> Self {
        Self {
            include_entity: true,
            include_annotations: true,
            include_file_handles: true,
            include_restriction_information: true,
        }
    }
}

/// Response of the bundle calls; parts not requested are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityBundle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<Entity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Annotations2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_handles: Option<Vec<FileHandle>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction_information: Option<Value>,
}

/// One annotation value list with its type (`STRING`, `DOUBLE`, `LONG`, `TIMESTAMP_MS`, `BOOLEAN`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationValue {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Vec<String>,
}

/// The `annotations2` form: `{id, etag, annotations: {key: {type, value: [...]}}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations2 {
    pub id: String,
    pub etag: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, AnnotationValue>,
}

/// Body of `POST /entity/children`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityChildrenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One child in a children page; `type` is the full concrete type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityHeader {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_latest_version: Option<bool>,
    /// When the current version last changed (any update, including a version's handle swap,
    /// touches it): what a re-run compares to know a file is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
}

/// Response of `POST /entity/children`; `nextPageToken` is absent on the last page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityChildrenResponse {
    #[serde(default)]
    pub page: Vec<EntityHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Offset/limit pages such as `GET /entity/{id}/version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaginatedResults<T> {
    pub results: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_number_of_results: Option<u64>,
}

/// One entry of `GET /entity/{id}/version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub id: String,
    pub version_number: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    /// The server sends this one as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_latest_version: Option<bool>,
}

/// Names the object through which a caller may read a file handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileHandleAssociation {
    pub file_handle_id: String,
    pub associate_object_id: String,
    pub associate_object_type: String,
}

/// The official name of the association inside a copy request.
pub type SourceFileHandleAssociation = FileHandleAssociation;

/// Body of `POST /file/multipart` for a server-side copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipartUploadCopyRequest {
    pub concrete_type: String,
    /// A name for the new handle; `None` keeps the source's.
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_preview: Option<bool>,
    #[serde(deserialize_with = "lenient::number")]
    pub part_size_bytes: u64,
    #[serde(deserialize_with = "lenient::number")]
    pub storage_location_id: i64,
    pub source_file_handle_association: SourceFileHandleAssociation,
}

/// `UPLOADING` or `COMPLETED`.
pub mod upload_state {
    pub const UPLOADING: &str = "UPLOADING";
    pub const COMPLETED: &str = "COMPLETED";
}

/// State of a multipart upload; `partsState` has one `0`/`1` per part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipartUploadStatus {
    pub upload_id: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_file_handle_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_on: Option<String>,
}

/// Body of `POST /file/multipart/{uploadId}/presigned/url/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPresignedUploadUrlRequest {
    pub upload_id: String,
    pub part_numbers: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// One presigned part URL plus the headers the PUT must send exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartPresignedUrl {
    pub part_number: u32,
    pub upload_presigned_url: String,
    #[serde(default)]
    pub signed_headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPresignedUploadUrlResponse {
    pub part_presigned_urls: Vec<PartPresignedUrl>,
}

/// `ADD_SUCCESS` or `ADD_FAILED`.
pub mod add_part_state {
    pub const ADD_SUCCESS: &str = "ADD_SUCCESS";
    pub const ADD_FAILED: &str = "ADD_FAILED";
}

/// Response of `PUT /file/multipart/{uploadId}/add/{n}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddPartResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<u32>,
    pub add_part_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// Body of `PUT /entity/{id}/version/{v}/filehandle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileHandleVersionUpdate {
    pub old_file_handle_id: String,
    pub new_file_handle_id: String,
}

/// Body of `POST /externalFileHandle/s3`: register an object the caller put in its own bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3FileHandleCreate {
    pub concrete_type: String,
    pub bucket_name: String,
    pub key: String,
    pub storage_location_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// Body of `POST /fileHandle/batch` (at most 100 requested files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchFileRequest {
    pub requested_files: Vec<FileHandleAssociation>,
    #[serde(default)]
    pub include_file_handles: bool,
    #[serde(rename = "includePreSignedURLs", default)]
    pub include_pre_signed_urls: bool,
    #[serde(rename = "includePreviewPreSignedURLs", default)]
    pub include_preview_pre_signed_urls: bool,
}

/// One answer in a batch; `failureCode` (`NOT_FOUND`, `UNAUTHORIZED`) when it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileResult {
    pub file_handle_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_handle: Option<FileHandle>,
    #[serde(
        rename = "preSignedURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pre_signed_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchFileResult {
    pub requested_files: Vec<FileResult>,
}

/// The server's error body: `{"concreteType":"org.sagebionetworks.repo.model.ErrorResponse",
/// "reason":"..."}`. Clients only need `reason`; `concreteType` is kept when present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concrete_type: Option<String>,
    pub reason: String,
}

impl ErrorResponse {
    /// The body the server sends for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            concrete_type: Some(concrete::ERROR_RESPONSE.to_owned()),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests;
