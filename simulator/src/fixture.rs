//! The seeding format (see the crate docs for a full description) and the synthetic-project generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::SimError;
pub use crate::tables::ColumnType;

/// A whole simulated Synapse: users, storage locations, shared handles and projects.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fixture {
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub storage_locations: Vec<StorageLocationSpec>,
    /// Handles referred to by name from several versions (a shared handle).
    #[serde(default)]
    pub file_handles: BTreeMap<String, HandleSpec>,
    #[serde(default)]
    pub projects: Vec<ProjectSpec>,
    /// userNames of the users who have not passed Synapse's certification quiz (every other user
    /// has). The server refuses them UPDATE on anything but a project
    /// (`EntityDeciderFunctions.DENY_IF_NOT_PROJECT_AND_NOT_CERTIFIED`), whatever the ACL grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertified_users: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    pub user_name: String,
    pub owner_id: String,
    /// The personal access token; never logged nor printed by the simulator.
    pub token: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LocationKind {
    /// Synapse's own S3 storage (`S3StorageLocationSetting`); id 1 in production.
    Synapse,
    /// A user's bucket (`ExternalS3StorageLocationSetting`).
    ExternalS3,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageLocationSpec {
    pub storage_location_id: i64,
    pub kind: LocationKind,
    pub bucket: String,
    #[serde(default)]
    pub base_key: Option<String>,
    /// userName of the creator; only the creator may read the setting or copy into it.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Defaults to the simulator's region.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub sts_enabled: bool,
}

/// Permissions of the ACL model: the server's entity `ACCESS_TYPE`s. The simulator's endpoints
/// check READ, DOWNLOAD and UPDATE; the others only show in `GET /entity/{id}/permissions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    Read,
    Download,
    Update,
    Create,
    Delete,
    ChangePermissions,
    ChangeSettings,
    Moderate,
}

impl Permission {
    /// What a project's creator is granted (`ModelConstants.ENTITY_ADMIN_ACCESS_PERMISSIONS`,
    /// `AccessControlListUtil.createACLToGrantEntityAdminAccess`).
    pub const ADMIN: [Permission; 8] = [
        Self::Read,
        Self::Download,
        Self::Update,
        Self::Create,
        Self::Delete,
        Self::ChangePermissions,
        Self::ChangeSettings,
        Self::Moderate,
    ];
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Read => "READ",
            Self::Download => "DOWNLOAD",
            Self::Update => "UPDATE",
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::ChangePermissions => "CHANGE_PERMISSIONS",
            Self::ChangeSettings => "CHANGE_SETTINGS",
            Self::Moderate => "MODERATE",
        })
    }
}

/// userName -> permissions. An entity's ACL replaces the inherited one for it and its descendants.
pub type AclSpec = BTreeMap<String, Vec<Permission>>;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    pub name: String,
    /// userName of the creator, who gets every permission ([`Permission::ADMIN`]).
    pub owner: String,
    /// Other users' permissions on the whole project.
    #[serde(default)]
    pub acl: AclSpec,
    /// The project's upload setting (`UploadDestinationListSetting.locations`); empty: none.
    #[serde(default)]
    pub upload_locations: Vec<i64>,
    #[serde(default)]
    pub children: Vec<NodeSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum NodeSpec {
    Folder {
        name: String,
        #[serde(default)]
        acl: Option<AclSpec>,
        /// The folder's own upload setting (its first location is where files in it go, and in
        /// its sub-folders without one of their own); empty: the nearest ancestor's.
        #[serde(default, rename = "uploadLocations")]
        upload_locations: Vec<i64>,
        #[serde(default)]
        children: Vec<NodeSpec>,
    },
    File {
        name: String,
        /// Oldest first; the last one is the latest version.
        versions: Vec<VersionSpec>,
        /// String annotations of every version (Synapse copies them into each new version).
        #[serde(default)]
        annotations: BTreeMap<String, Vec<String>>,
        /// Label, comment and annotations of each version, in the order of `versions`
        /// (missing entries: label = the version number, no comment, `annotations`).
        #[serde(default, rename = "versionMeta")]
        version_meta: Vec<VersionMeta>,
        #[serde(default)]
        acl: Option<AclSpec>,
    },
    /// A `TableEntity` (one version, `in progress`, as the server creates it) with its columns
    /// and rows; row ids are 1, 2, ... in order, all rows one change (row version 1).
    Table {
        name: String,
        /// At least one column; names distinct, none a reserved row column name (`ROW_ID`,
        /// `ROW_VERSION`, ... in any case).
        columns: Vec<ColumnSpec>,
        /// Each row: column name -> cell; a column left out is null.
        #[serde(default)]
        rows: Vec<BTreeMap<String, CellSpec>>,
        #[serde(default)]
        acl: Option<AclSpec>,
    },
}

/// A table column: `columnType` is `FILEHANDLEID`, `STRING` (`maximumSize`, default 50) or
/// `INTEGER`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    pub column_type: ColumnType,
    #[serde(default)]
    pub maximum_size: Option<u64>,
}

/// A table cell: text for STRING, a number for INTEGER, and for FILEHANDLEID a file handle
/// written as a file version is (`{"handle": "name"}` for a named handle, or the handle itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CellSpec {
    Text(String),
    Number(i64),
    File(VersionSpec),
}

/// What a file version carries besides its handle.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionMeta {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// Replaces the file's `annotations` on this version.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Vec<String>>>,
}

/// A file version points either at a named shared handle or at its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VersionSpec {
    Shared {
        #[serde(rename = "handle")]
        handle: String,
    },
    Own(HandleSpec),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HandleKind {
    #[default]
    S3,
    External,
    GoogleCloud,
    Proxy,
}

/// One file handle. S3 handles need `content`; the others only describe where they point.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandleSpec {
    #[serde(default)]
    pub kind: HandleKind,
    #[serde(default)]
    pub content: Option<Content>,
    /// Defaults to the lowest storage location of kind `synapse`.
    #[serde(default)]
    pub storage_location_id: Option<i64>,
    /// Defaults to the entity's name.
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// userName; defaults to the project owner (for shared handles: the first user).
    #[serde(default)]
    pub created_by: Option<String>,
    /// ExternalFileHandle target.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Leave `contentMd5` out of the handle (a copy must then be refused).
    #[serde(default)]
    pub omit_md5: bool,
    /// A `contentMd5` to claim instead of the bytes' own. Synapse stores the MD5 its uploader
    /// declares and never compares it with the data (`MultipartManagerV2Impl.createFileHandle`
    /// takes `MultipartUploadRequest.contentMD5Hex`; a multipart copy's handle takes the source
    /// handle's, `MultipartUploadCopyRequestHandler`), so such a handle exists and is copied as
    /// is; only reading the bytes shows the difference.
    #[serde(default)]
    pub declared_md5: Option<String>,
    /// A `contentSize` to claim instead of the real one, to reach size limits (such as 10,000
    /// parts) without storing the bytes; copying such a file cannot complete.
    #[serde(default)]
    pub declared_size: Option<u64>,
}

/// File bytes: generated deterministically from a seed, or given inline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Generated { size: u64, seed: u64 },
    Text { text: String },
}

impl Content {
    pub fn size(&self) -> u64 {
        match self {
            Self::Generated { size, .. } => *size,
            Self::Text { text } => text.len() as u64,
        }
    }
}

impl Fixture {
    pub fn from_json(text: &str) -> Result<Self, SimError> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, SimError> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }

    /// A synthetic project of `files` files spread over a folder tree, sizes drawn from `seed`:
    /// mostly small (1 KiB..256 KiB), some medium (..8 MiB), a few large (..40 MiB).
    /// Users `owner` (token `owner-token`) and `migrator` (token `migrator-token`, READ/DOWNLOAD/UPDATE);
    /// Synapse storage id 1 in `synapse-storage`; destination 7001 in `migration-destination` created
    /// by `migrator`.
    pub fn generate(files: usize, seed: u64) -> Self {
        const PER_FOLDER: usize = 40;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut leaves: Vec<NodeSpec> = (0..files)
            .map(|i| {
                let roll: f64 = rng.gen();
                let size = if roll < 0.80 {
                    rng.gen_range(1024..=256 * 1024)
                } else if roll < 0.98 {
                    rng.gen_range(256 * 1024..=8 * 1024 * 1024)
                } else {
                    rng.gen_range(8 * 1024 * 1024..=40 * 1024 * 1024)
                };
                NodeSpec::File {
                    name: format!("file-{i:06}.bin"),
                    versions: vec![VersionSpec::Own(HandleSpec {
                        content: Some(Content::Generated {
                            size,
                            seed: rng.gen(),
                        }),
                        content_type: Some("application/octet-stream".into()),
                        ..HandleSpec::default()
                    })],
                    annotations: BTreeMap::new(),
                    version_meta: Vec::new(),
                    acl: None,
                }
            })
            .collect();
        // Group into folders of PER_FOLDER until one level holds few enough nodes.
        let mut level = 0;
        while leaves.len() > PER_FOLDER {
            let mut grouped = Vec::new();
            let mut iter = leaves.into_iter().peekable();
            let mut index = 0;
            while iter.peek().is_some() {
                let children: Vec<NodeSpec> = iter.by_ref().take(PER_FOLDER).collect();
                grouped.push(NodeSpec::Folder {
                    name: format!("level{level}-folder{index:04}"),
                    acl: None,
                    upload_locations: Vec::new(),
                    children,
                });
                index += 1;
            }
            leaves = grouped;
            level += 1;
        }
        let mut acl = AclSpec::new();
        acl.insert(
            "migrator".into(),
            vec![Permission::Read, Permission::Download, Permission::Update],
        );
        Self {
            users: vec![
                UserSpec {
                    user_name: "owner".into(),
                    owner_id: "3350001".into(),
                    token: "owner-token".into(),
                },
                UserSpec {
                    user_name: "migrator".into(),
                    owner_id: "3350002".into(),
                    token: "migrator-token".into(),
                },
            ],
            storage_locations: vec![
                StorageLocationSpec {
                    storage_location_id: 1,
                    kind: LocationKind::Synapse,
                    bucket: "synapse-storage".into(),
                    base_key: None,
                    created_by: None,
                    region: None,
                    sts_enabled: false,
                },
                StorageLocationSpec {
                    storage_location_id: 7001,
                    kind: LocationKind::ExternalS3,
                    bucket: "migration-destination".into(),
                    base_key: Some("migrated".into()),
                    created_by: Some("migrator".into()),
                    region: None,
                    sts_enabled: false,
                },
            ],
            file_handles: BTreeMap::new(),
            projects: vec![ProjectSpec {
                name: format!("Generated project ({files} files, seed {seed})"),
                owner: "owner".into(),
                acl,
                upload_locations: Vec::new(),
                children: leaves,
            }],
            uncertified_users: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_files(nodes: &[NodeSpec]) -> usize {
        nodes
            .iter()
            .map(|n| match n {
                NodeSpec::Folder { children, .. } => count_files(children),
                NodeSpec::File { .. } => 1,
                NodeSpec::Table { .. } => 0,
            })
            .sum()
    }

    #[test]
    fn generator_is_deterministic_and_complete() {
        let a = serde_json::to_string(&Fixture::generate(150, 9)).unwrap();
        let b = serde_json::to_string(&Fixture::generate(150, 9)).unwrap();
        assert_eq!(a, b);
        let fixture = Fixture::generate(150, 9);
        assert_eq!(count_files(&fixture.projects[0].children), 150);
        assert!(fixture.projects[0].children.len() <= 40);
        assert_ne!(
            a,
            serde_json::to_string(&Fixture::generate(150, 10)).unwrap()
        );
    }

    #[test]
    fn sample_fixture_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/sample-project.json"
        );
        let fixture = Fixture::from_file(std::path::Path::new(path)).unwrap();
        assert!(count_files(&fixture.projects[0].children) > 60);
    }
}
