//! Turns a [`Fixture`] into simulator state and puts the bytes into S3.
//! Entities and handles are created first (ids are deterministic, depth-first in fixture order);
//! the S3 uploads then run a few at a time and fill in each handle's MD5.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use synapse_model::{concrete, AnnotationValue, FileHandle, StorageLocationSetting};

use crate::error::{sdk_message, SimError};
use crate::fixture::{
    AclSpec, CellSpec, ColumnSpec, ColumnType, Content, Fixture, HandleKind, HandleSpec,
    LocationKind, NodeSpec, Permission, VersionSpec,
};
use crate::store::{
    Acl, EntityKind, EntityRec, Location, Store, User, VersionRec, DEFAULT_STORAGE_LOCATION_ID,
};
use crate::tables::{PartialRow, TableData, IN_PROGRESS, RESERVED_COLUMN_NAMES};
use crate::util::{iso_now, new_etag};

/// Objects above this size are uploaded with S3 multipart so memory stays bounded.
const SINGLE_PUT_LIMIT: u64 = 16 * 1024 * 1024;
const SEED_PART_SIZE: u64 = 8 * 1024 * 1024;
const UPLOAD_CONCURRENCY: usize = 4;
/// The first entity gets `syn1000`.
const FIRST_ENTITY_ID: u64 = 1000;

/// Deterministic pseudo-random bytes of a generated content, produced chunk by chunk.
pub struct ContentStream {
    rng: ChaCha8Rng,
    remaining: u64,
}

impl ContentStream {
    pub fn new(seed: u64, size: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            remaining: size,
        }
    }

    /// The next at most `max` bytes (`max` a multiple of 4 keeps the stream chunking-independent).
    pub fn next_chunk(&mut self, max: u64) -> Option<Vec<u8>> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.remaining.min(max);
        let mut buf = vec![0u8; len as usize];
        self.rng.fill_bytes(&mut buf);
        self.remaining -= len;
        Some(buf)
    }
}

/// The whole content in memory (for small files and tests).
pub fn content_bytes(content: &Content) -> Vec<u8> {
    match content {
        Content::Text { text } => text.as_bytes().to_vec(),
        Content::Generated { size, seed } => {
            let mut stream = ContentStream::new(*seed, *size);
            stream.next_chunk(*size).unwrap_or_default()
        }
    }
}

struct UploadJob {
    handle_id: u64,
    bucket: String,
    key: String,
    content: Content,
    content_type: Option<String>,
    md5: Md5Claim,
}

/// The `contentMd5` a seeded S3 handle claims.
#[derive(Clone)]
enum Md5Claim {
    /// The MD5 of the uploaded bytes.
    Real,
    Omitted,
    Declared(String),
}

impl Md5Claim {
    fn of(spec: &HandleSpec) -> Result<Self, SimError> {
        match (&spec.declared_md5, spec.omit_md5) {
            (None, false) => Ok(Self::Real),
            (None, true) => Ok(Self::Omitted),
            (Some(_), true) => Err(SimError::Fixture(
                "a handle cannot both omit and declare its MD5".into(),
            )),
            (Some(md5), false) if md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Self::Declared(md5.to_lowercase()))
            }
            (Some(md5), false) => Err(SimError::Fixture(format!(
                "declaredMd5 {md5:?} is not 32 hexadecimal digits"
            ))),
        }
    }

    /// The handle's `contentMd5`, given the MD5 of its bytes.
    fn claim(self, real: String) -> Option<String> {
        match self {
            Self::Real => Some(real),
            Self::Omitted => None,
            Self::Declared(md5) => Some(md5),
        }
    }
}

struct Seeder<'a> {
    store: &'a mut Store,
    default_region: &'a str,
    named: BTreeMap<String, String>,
    /// (parent, name) of every entity seeded, so a sibling's name is checked without reading
    /// every entity (which made seeding quadratic in the project's size).
    seeded_names: HashSet<(Option<u64>, String)>,
    jobs: Vec<UploadJob>,
}

/// Fills `store` from `fixture` and uploads every S3 object.
pub async fn seed(
    store: &mut Store,
    s3: &aws_sdk_s3::Client,
    fixture: &Fixture,
    default_region: &str,
) -> Result<(), SimError> {
    store.next_entity_id = FIRST_ENTITY_ID - 1;
    let mut seeder = Seeder {
        store,
        default_region,
        named: BTreeMap::new(),
        seeded_names: HashSet::new(),
        jobs: Vec::new(),
    };
    seeder.users_and_locations(fixture)?;
    let default_creator = fixture
        .users
        .first()
        .map(|u| u.user_name.clone())
        .ok_or_else(|| SimError::Fixture("at least one user is required".into()))?;
    for (name, spec) in &fixture.file_handles {
        let id = seeder.handle(spec, name, &default_creator)?;
        seeder.named.insert(name.clone(), id);
    }
    for project in &fixture.projects {
        let owner = seeder.user(&project.owner)?;
        let mut acl = seeder.acl(&project.acl)?;
        acl.insert(owner.id.clone(), Permission::ADMIN.into());
        let id = seeder.entity(EntityKind::Project, &project.name, None, &owner, Some(acl))?;
        seeder.upload_setting(id, &project.upload_locations)?;
        seeder.nodes(&project.children, id, &project.name, &owner)?;
    }
    let buckets: BTreeSet<String> = seeder
        .store
        .locations
        .values()
        .filter_map(|l| l.setting.bucket.clone())
        .collect();
    for bucket in buckets {
        create_bucket(s3, &bucket).await?;
    }
    let jobs = std::mem::take(&mut seeder.jobs);
    let results: Vec<(u64, String, Md5Claim)> = futures::stream::iter(jobs)
        .map(|job| async move {
            let md5 = put_content(s3, &job).await?;
            Ok::<_, SimError>((job.handle_id, md5, job.md5))
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect()
        .await?;
    for (handle_id, md5, claim) in results {
        if let Some(handle) = store.handles.get_mut(&handle_id) {
            handle.content_md5 = claim.claim(md5);
        }
    }
    Ok(())
}

impl Seeder<'_> {
    fn users_and_locations(&mut self, fixture: &Fixture) -> Result<(), SimError> {
        for u in &fixture.users {
            let user = User {
                id: u.owner_id.clone(),
                user_name: u.user_name.clone(),
                certified: !fixture.uncertified_users.contains(&u.user_name),
            };
            self.store
                .users_by_token
                .insert(u.token.clone(), user.clone());
            self.store.users_by_name.insert(u.user_name.clone(), user);
        }
        for name in &fixture.uncertified_users {
            self.user(name)?;
        }
        for spec in &fixture.storage_locations {
            let created_by = match &spec.created_by {
                Some(name) => Some(self.user(name)?.id.parse::<i64>().map_err(|_| {
                    SimError::Fixture(format!("ownerId of {name} must be numeric"))
                })?),
                None => None,
            };
            let concrete_type = match spec.kind {
                LocationKind::Synapse => concrete::S3_STORAGE_LOCATION,
                LocationKind::ExternalS3 => concrete::EXTERNAL_S3_STORAGE_LOCATION,
            };
            let setting = StorageLocationSetting {
                concrete_type: concrete_type.to_owned(),
                storage_location_id: spec.storage_location_id,
                upload_type: Some("S3".into()),
                bucket: Some(spec.bucket.clone()),
                base_key: spec.base_key.clone(),
                sts_enabled: Some(spec.sts_enabled),
                endpoint_url: None,
                banner: None,
                description: None,
                etag: Some(new_etag()),
                created_on: Some(iso_now()),
                created_by,
            };
            let region = spec
                .region
                .clone()
                .unwrap_or_else(|| self.default_region.to_owned());
            self.store
                .locations
                .insert(spec.storage_location_id, Location { setting, region });
        }
        Ok(())
    }

    fn user(&self, name: &str) -> Result<User, SimError> {
        self.store
            .users_by_name
            .get(name)
            .cloned()
            .ok_or_else(|| SimError::Fixture(format!("unknown user {name}")))
    }

    fn acl(&self, spec: &AclSpec) -> Result<Acl, SimError> {
        spec.iter()
            .map(|(name, perms)| Ok((self.user(name)?.id, perms.iter().copied().collect())))
            .collect()
    }

    /// A folder's or project's upload setting: at most 10 locations that exist
    /// (`ProjectSettingsManagerImpl.validateUploadDestinationListSetting`).
    fn upload_setting(&mut self, node: u64, locations: &[i64]) -> Result<(), SimError> {
        if locations.is_empty() {
            return Ok(());
        }
        if locations.len() > 10 {
            return Err(SimError::Fixture(
                "an upload setting holds at most 10 locations".into(),
            ));
        }
        if let Some(unknown) = locations.iter().find(|id| {
            !self.store.locations.contains_key(id) && **id != DEFAULT_STORAGE_LOCATION_ID
        }) {
            return Err(SimError::Fixture(format!(
                "upload location {unknown} is not a storage location of the fixture"
            )));
        }
        self.store.upload_settings.insert(node, locations.to_vec());
        Ok(())
    }

    fn entity(
        &mut self,
        kind: EntityKind,
        name: &str,
        parent: Option<u64>,
        creator: &User,
        acl: Option<Acl>,
    ) -> Result<u64, SimError> {
        // Synapse never holds an entity whose name breaks its rule, nor two siblings of one name.
        crate::names::validate_name(name)
            .map_err(|e| SimError::Fixture(format!("entity name {name:?}: {e}")))?;
        if !self.seeded_names.insert((parent, name.to_owned())) {
            return Err(SimError::Fixture(format!(
                "two entities named {name:?} under one parent"
            )));
        }
        self.store.next_entity_id += 1;
        let id = self.store.next_entity_id;
        let now = iso_now();
        self.store.entities.insert(
            id,
            EntityRec {
                id,
                kind,
                name: name.to_owned(),
                parent,
                etag: new_etag(),
                created_by: creator.id.clone(),
                created_on: now.clone(),
                modified_on: now,
                modified_by: creator.id.clone(),
                versions: Vec::new(),
                annotations: BTreeMap::new(),
                acl,
                table: None,
            },
        );
        Ok(id)
    }

    fn nodes(
        &mut self,
        nodes: &[NodeSpec],
        parent: u64,
        parent_path: &str,
        owner: &User,
    ) -> Result<(), SimError> {
        for node in nodes {
            match node {
                NodeSpec::Folder {
                    name,
                    acl,
                    upload_locations,
                    children,
                } => {
                    let acl = self.override_acl(acl.as_ref(), owner)?;
                    let id = self.entity(EntityKind::Folder, name, Some(parent), owner, acl)?;
                    self.upload_setting(id, upload_locations)?;
                    let path = format!("{parent_path}/{name}");
                    self.store.paths.insert(path.clone(), format!("syn{id}"));
                    self.nodes(children, id, &path, owner)?;
                }
                NodeSpec::File {
                    name,
                    versions,
                    annotations,
                    version_meta,
                    acl,
                } => {
                    let acl = self.override_acl(acl.as_ref(), owner)?;
                    let id = self.entity(EntityKind::File, name, Some(parent), owner, acl)?;
                    self.store
                        .paths
                        .insert(format!("{parent_path}/{name}"), format!("syn{id}"));
                    let mut recs = Vec::new();
                    for (index, version) in versions.iter().enumerate() {
                        let handle_id = match version {
                            VersionSpec::Shared { handle } => {
                                self.named.get(handle).cloned().ok_or_else(|| {
                                    SimError::Fixture(format!("unknown shared handle {handle}"))
                                })?
                            }
                            VersionSpec::Own(spec) => self.handle(spec, name, &owner.user_name)?,
                        };
                        let number = index as i64 + 1;
                        let meta = version_meta.get(index).cloned().unwrap_or_default();
                        let label = meta.label.unwrap_or_else(|| number.to_string());
                        if recs.iter().any(|v: &VersionRec| v.label == label) {
                            return Err(SimError::Fixture(format!(
                                "file {name} uses the version label {label} twice"
                            )));
                        }
                        recs.push(VersionRec {
                            number,
                            label,
                            comment: meta.comment,
                            file_handle_id: Some(handle_id),
                            annotations: string_annotations(
                                meta.annotations.as_ref().unwrap_or(annotations),
                            ),
                            modified_on: iso_now(),
                            modified_by: owner.id.clone(),
                        });
                    }
                    if recs.is_empty() {
                        return Err(SimError::Fixture(format!("file {name} has no versions")));
                    }
                    let rec = self.store.entities.get_mut(&id).expect("just inserted");
                    rec.versions = recs;
                }
                NodeSpec::Table {
                    name,
                    columns,
                    rows,
                    acl,
                } => {
                    let acl = self.override_acl(acl.as_ref(), owner)?;
                    let id = self.entity(EntityKind::Table, name, Some(parent), owner, acl)?;
                    self.store
                        .paths
                        .insert(format!("{parent_path}/{name}"), format!("syn{id}"));
                    let table = self.table(name, columns, rows, owner)?;
                    let rec = self.store.entities.get_mut(&id).expect("just inserted");
                    // TableEntityMetadataProvider.validateEntity: a new table's version is
                    // labelled and commented "in progress".
                    rec.versions = vec![VersionRec {
                        number: 1,
                        label: IN_PROGRESS.into(),
                        comment: Some(IN_PROGRESS.into()),
                        file_handle_id: None,
                        annotations: BTreeMap::new(),
                        modified_on: rec.modified_on.clone(),
                        modified_by: owner.id.clone(),
                    }];
                    rec.table = Some(table);
                }
            }
        }
        Ok(())
    }

    /// A table's data: its column models (shared with equal columns of other tables), then its
    /// rows as one change, each cell checked as the server checks a written value.
    fn table(
        &mut self,
        name: &str,
        columns: &[ColumnSpec],
        rows: &[BTreeMap<String, CellSpec>],
        owner: &User,
    ) -> Result<TableData, SimError> {
        let invalid = |what: String| SimError::Fixture(format!("table {name}: {what}"));
        if columns.is_empty() {
            return Err(invalid("a table needs at least one column".into()));
        }
        let mut ids = Vec::new();
        for column in columns {
            // ColumnModelManagerImpl.checkColumnNaming (TableConstants.isReservedColumnName):
            // so a WHERE on ROW_ID never names a schema column.
            if RESERVED_COLUMN_NAMES.contains(&column.name.trim().to_uppercase().as_str()) {
                return Err(invalid(format!(
                    "The column name: {} is a system reserved column name.",
                    column.name
                )));
            }
            if columns.iter().filter(|c| c.name == column.name).count() > 1 {
                return Err(invalid(format!("column {} declared twice", column.name)));
            }
            ids.push(self.store.tables.column(
                &column.name,
                column.column_type,
                column.maximum_size,
            ));
        }
        let mut partial = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            let mut values = Vec::new();
            for (column_name, cell) in row {
                let Some(at) = columns.iter().position(|c| &c.name == column_name) else {
                    return Err(invalid(format!(
                        "row {} names no column {column_name}",
                        index + 1
                    )));
                };
                let value = match (columns[at].column_type, cell) {
                    (ColumnType::FILEHANDLEID, CellSpec::File(VersionSpec::Shared { handle })) => {
                        self.named.get(handle).cloned().ok_or_else(|| {
                            SimError::Fixture(format!("unknown shared handle {handle}"))
                        })?
                    }
                    (ColumnType::FILEHANDLEID, CellSpec::File(VersionSpec::Own(spec))) => {
                        let default_name = format!("{name}-row{}-{column_name}", index + 1);
                        self.handle(spec, &default_name, &owner.user_name)?
                    }
                    (ColumnType::STRING, CellSpec::Text(text)) => text.clone(),
                    (ColumnType::INTEGER, CellSpec::Number(n)) => n.to_string(),
                    (column_type, _) => {
                        return Err(invalid(format!(
                            "row {} cell {column_name} does not fit a {column_type:?} column",
                            index + 1
                        )))
                    }
                };
                values.push((ids[at].to_string(), Some(value)));
            }
            partial.push(PartialRow {
                row_id: None,
                values,
            });
        }
        let mut table = TableData::new(ids);
        let cells = table
            .validate_partial_rows(&self.store.tables, &partial)
            .map_err(|e| invalid(e.to_string()))?;
        if !cells.is_empty() {
            table
                .append(&self.store.tables, cells)
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(table)
    }

    /// An entity-level ACL replaces the inherited one; the project owner keeps full control.
    fn override_acl(&self, spec: Option<&AclSpec>, owner: &User) -> Result<Option<Acl>, SimError> {
        spec.map(|spec| {
            let mut acl = self.acl(spec)?;
            acl.insert(owner.id.clone(), Permission::ADMIN.into());
            Ok(acl)
        })
        .transpose()
    }

    /// Creates the handle and, for S3 ones, queues the upload of its bytes. Returns the handle id.
    fn handle(
        &mut self,
        spec: &HandleSpec,
        default_name: &str,
        default_creator: &str,
    ) -> Result<String, SimError> {
        let creator = self.user(spec.created_by.as_deref().unwrap_or(default_creator))?;
        let file_name = spec
            .file_name
            .clone()
            .unwrap_or_else(|| default_name.to_owned());
        let mut handle = FileHandle {
            id: String::new(),
            concrete_type: String::new(),
            etag: Some(new_etag()),
            created_by: Some(creator.id.clone()),
            created_on: Some(iso_now()),
            bucket_name: None,
            key: None,
            content_type: spec.content_type.clone(),
            content_md5: None,
            content_size: spec
                .declared_size
                .or_else(|| spec.content.as_ref().map(Content::size)),
            file_name: Some(file_name.clone()),
            storage_location_id: spec.storage_location_id,
            external_url: None,
            file_path: None,
            status: Some("AVAILABLE".into()),
        };
        let mut job = None;
        match spec.kind {
            HandleKind::S3 => {
                let content = spec.content.clone().ok_or_else(|| {
                    SimError::Fixture(format!("S3 handle for {default_name} needs content"))
                })?;
                let location_id = match spec.storage_location_id {
                    Some(id) => id,
                    None => self.default_synapse_location()?,
                };
                let location = self.store.locations.get(&location_id).ok_or_else(|| {
                    SimError::Fixture(format!("unknown storage location {location_id}"))
                })?;
                let bucket = location.setting.bucket.clone().unwrap_or_default();
                let prefix = location
                    .setting
                    .base_key
                    .as_ref()
                    .map(|b| format!("{b}/"))
                    .unwrap_or_default();
                let key = format!(
                    "{prefix}{}/{}/{file_name}",
                    creator.id,
                    uuid::Uuid::new_v4()
                );
                handle.concrete_type = concrete::S3_FILE_HANDLE.into();
                handle.bucket_name = Some(bucket.clone());
                handle.key = Some(key.clone());
                handle.storage_location_id = Some(location_id);
                job = Some(UploadJob {
                    handle_id: 0,
                    bucket,
                    key,
                    content,
                    content_type: spec.content_type.clone(),
                    md5: Md5Claim::of(spec)?,
                });
            }
            HandleKind::External => {
                handle.concrete_type = concrete::EXTERNAL_FILE_HANDLE.into();
                handle.external_url = Some(
                    spec.external_url
                        .clone()
                        .unwrap_or_else(|| format!("https://example.org/{file_name}")),
                );
            }
            HandleKind::GoogleCloud => {
                handle.concrete_type = concrete::GOOGLE_CLOUD_FILE_HANDLE.into();
                handle.bucket_name = Some("synapse-gcs".into());
                handle.key = Some(format!("{}/{file_name}", creator.id));
            }
            HandleKind::Proxy => {
                handle.concrete_type = concrete::PROXY_FILE_HANDLE.into();
                handle.file_path = Some(format!("/proxy/{file_name}"));
            }
        }
        if spec.kind != HandleKind::S3 && !spec.omit_md5 {
            handle.content_md5 = spec
                .content
                .as_ref()
                .map(|c| hex::encode(Md5::digest(content_bytes(c))));
        }
        let handle = self.store.add_handle(handle);
        if let Some(mut job) = job {
            job.handle_id = self.store.next_handle_id;
            self.jobs.push(job);
        }
        Ok(handle.id)
    }

    fn default_synapse_location(&self) -> Result<i64, SimError> {
        self.store
            .locations
            .iter()
            .find(|(_, l)| l.setting.concrete_type == concrete::S3_STORAGE_LOCATION)
            .map(|(id, _)| *id)
            .ok_or_else(|| SimError::Fixture("no storage location of kind synapse".into()))
    }
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), SimError> {
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            let code = err
                .as_service_error()
                .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e).map(str::to_owned));
            match code.as_deref() {
                Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists") => Ok(()),
                _ => Err(SimError::s3(
                    format!("creating bucket {bucket}"),
                    sdk_message(&err),
                )),
            }
        }
    }
}

/// Uploads one object (multipart above [`SINGLE_PUT_LIMIT`]) and returns the MD5 hex of its bytes.
async fn put_content(s3: &aws_sdk_s3::Client, job: &UploadJob) -> Result<String, SimError> {
    let size = job.content.size();
    let context = || format!("uploading s3://{}/{}", job.bucket, job.key);
    if size <= SINGLE_PUT_LIMIT {
        let bytes = content_bytes(&job.content);
        let md5 = hex::encode(Md5::digest(&bytes));
        s3.put_object()
            .bucket(&job.bucket)
            .key(&job.key)
            .set_content_type(job.content_type.clone())
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| SimError::s3(context(), sdk_message(&e)))?;
        return Ok(md5);
    }
    let Content::Generated { seed, .. } = job.content else {
        return Err(SimError::Fixture("inline text above 16 MiB".into()));
    };
    let created = s3
        .create_multipart_upload()
        .bucket(&job.bucket)
        .key(&job.key)
        .set_content_type(job.content_type.clone())
        .send()
        .await
        .map_err(|e| SimError::s3(context(), sdk_message(&e)))?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let mut stream = ContentStream::new(seed, size);
    let mut md5 = Md5::new();
    let mut parts = Vec::new();
    let mut number = 1;
    while let Some(chunk) = stream.next_chunk(SEED_PART_SIZE) {
        md5.update(&chunk);
        let part = s3
            .upload_part()
            .bucket(&job.bucket)
            .key(&job.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk))
            .send()
            .await
            .map_err(|e| SimError::s3(context(), sdk_message(&e)))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        );
        number += 1;
    }
    s3.complete_multipart_upload()
        .bucket(&job.bucket)
        .key(&job.key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| SimError::s3(context(), sdk_message(&e)))?;
    Ok(hex::encode(md5.finalize()))
}

/// Fixture annotations as Synapse's typed values.
fn string_annotations(
    annotations: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, AnnotationValue> {
    annotations
        .iter()
        .map(|(key, values)| {
            let value = AnnotationValue {
                kind: "STRING".into(),
                value: values.clone(),
            };
            (key.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_content_does_not_depend_on_chunking() {
        let whole = content_bytes(&Content::Generated {
            size: 1000,
            seed: 5,
        });
        let mut stream = ContentStream::new(5, 1000);
        let mut pieces = Vec::new();
        while let Some(chunk) = stream.next_chunk(256) {
            pieces.extend(chunk);
        }
        assert_eq!(whole, pieces);
        assert_ne!(
            whole,
            content_bytes(&Content::Generated {
                size: 1000,
                seed: 6
            })
        );
    }

    /// A seeder over `store`, nothing seeded yet.
    fn seeder(store: &mut Store) -> Seeder<'_> {
        Seeder {
            store,
            default_region: "us-east-1",
            named: BTreeMap::new(),
            seeded_names: HashSet::new(),
            jobs: Vec::new(),
        }
    }

    #[test]
    fn uncertified_users_are_known_users() {
        let fixture = |uncertified: &str| -> Fixture {
            serde_json::from_value(serde_json::json!({
                "users": [{"userName": "a", "ownerId": "1", "token": "ta"},
                          {"userName": "b", "ownerId": "2", "token": "tb"}],
                "uncertifiedUsers": [uncertified]
            }))
            .unwrap()
        };
        let mut store = Store::default();
        seeder(&mut store)
            .users_and_locations(&fixture("b"))
            .unwrap();
        assert!(store.users_by_name["a"].certified);
        assert!(!store.users_by_name["b"].certified);
        assert!(!store.users_by_token["tb"].certified);
        let mut store = Store::default();
        match seeder(&mut store).users_and_locations(&fixture("ghost")) {
            Err(SimError::Fixture(message)) => assert_eq!(message, "unknown user ghost"),
            other => panic!("expected the fixture refused, got {other:?}"),
        }
    }

    #[test]
    fn a_fixture_with_two_siblings_of_one_name_is_refused() {
        let mut store = Store::default();
        let mut seeder = seeder(&mut store);
        let owner = User {
            id: "1".into(),
            user_name: "owner".into(),
            certified: true,
        };
        let mut add =
            |name: &str, parent| seeder.entity(EntityKind::Folder, name, parent, &owner, None);
        let root = add("project", None).unwrap();
        let folder = add("a", Some(root)).unwrap();
        // The same name elsewhere is fine; under the same parent it is not.
        add("a", Some(folder)).unwrap();
        add("b", Some(root)).unwrap();
        match add("a", Some(root)) {
            Err(SimError::Fixture(message)) => assert!(message.contains("under one parent")),
            other => panic!("expected the fixture refused, got {other:?}"),
        }
    }

    #[test]
    fn a_declared_md5_replaces_the_bytes_own_and_must_be_one() {
        let spec = |declared: Option<&str>, omit: bool| -> HandleSpec {
            serde_json::from_value(serde_json::json!({
                "content": {"text": "x"}, "declaredMd5": declared, "omitMd5": omit
            }))
            .unwrap()
        };
        let real = "9dd4e461268c8034f5c8564e155c67a6".to_owned();
        let declared = "0123456789ABCDEF0123456789abcdef";
        let claim = Md5Claim::of(&spec(Some(declared), false)).unwrap();
        assert_eq!(claim.claim(real.clone()), Some(declared.to_lowercase()));
        assert_eq!(
            Md5Claim::of(&spec(None, false))
                .unwrap()
                .claim(real.clone()),
            Some(real.clone())
        );
        assert_eq!(Md5Claim::of(&spec(None, true)).unwrap().claim(real), None);
        for (bad, omit, part) in [
            (Some(declared), true, "both omit and declare"),
            (Some("abc"), false, "not 32 hexadecimal digits"),
        ] {
            match Md5Claim::of(&spec(bad, omit)) {
                Err(SimError::Fixture(message)) => assert!(message.contains(part), "{message}"),
                Ok(_) => panic!("{bad:?} accepted"),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_fixture_table_is_checked_like_a_written_row() {
        let mut store = Store::default();
        let owner = User {
            id: "1".into(),
            user_name: "owner".into(),
            certified: true,
        };
        store.users_by_name.insert("owner".into(), owner.clone());
        let mut seeder = seeder(&mut store);
        let column = |name: &str, kind: &str| -> ColumnSpec {
            serde_json::from_value(serde_json::json!({"name": name, "columnType": kind,
                                                      "maximumSize": 3}))
            .unwrap()
        };
        let row = |cells: serde_json::Value| -> BTreeMap<String, CellSpec> {
            serde_json::from_value(cells).unwrap()
        };
        let good = seeder
            .table(
                "t",
                &[column("s", "STRING"), column("n", "INTEGER")],
                &[
                    row(serde_json::json!({"s": "ab", "n": 2})),
                    row(serde_json::json!({})),
                ],
                &owner,
            )
            .unwrap();
        assert_eq!(good.rows.len(), 1, "a row with no cell is skipped");
        assert_eq!((good.sequence, good.version), (1, 1));
        for (columns, rows, part) in [
            (vec![], vec![], "at least one column"),
            (
                vec![column("s", "STRING"), column("s", "INTEGER")],
                vec![],
                "declared twice",
            ),
            (
                vec![column("row_id ", "INTEGER")],
                vec![],
                "The column name: row_id  is a system reserved column name.",
            ),
            (
                vec![column("s", "STRING")],
                vec![row(serde_json::json!({"x": "a"}))],
                "names no column x",
            ),
            (
                vec![column("n", "INTEGER")],
                vec![row(serde_json::json!({"n": "a"}))],
                "does not fit a INTEGER column",
            ),
            (
                vec![column("s", "STRING")],
                vec![row(serde_json::json!({"s": "abcd"}))],
                "exceeds the maximum length of 3",
            ),
        ] {
            match seeder.table("t", &columns, &rows, &owner) {
                Err(SimError::Fixture(message)) => assert!(message.contains(part), "{message}"),
                other => panic!("expected the fixture refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_upload_setting_names_at_most_ten_known_locations() {
        let mut store = Store::default();
        store.locations.insert(
            7001,
            Location {
                setting: serde_json::from_value(serde_json::json!({
                    "concreteType": synapse_model::concrete::EXTERNAL_S3_STORAGE_LOCATION,
                    "storageLocationId": 7001
                }))
                .unwrap(),
                region: "us-east-1".into(),
            },
        );
        let mut seeder = seeder(&mut store);
        seeder.upload_setting(5, &[7001, 1]).unwrap();
        for (locations, part) in [
            (vec![7001; 11], "at most 10"),
            (vec![7001, 999], "upload location 999"),
        ] {
            match seeder.upload_setting(6, &locations) {
                Err(SimError::Fixture(message)) => assert!(message.contains(part), "{message}"),
                other => panic!("expected the fixture refused, got {other:?}"),
            }
        }
        assert_eq!(store.upload_settings.get(&5), Some(&vec![7001, 1]));
        assert_eq!(store.upload_location(5), 7001);
        assert_eq!(store.upload_location(6), 1);
    }
}
