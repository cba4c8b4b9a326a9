//! Differential test against the official client: one simulator holds two identical projects,
//! TwinA and TwinB. The pinned `synapse migrate` migrates TwinA (into destination 7001) while
//! synmigrate migrates TwinB (into 7002) through the real state machine, and the two end states
//! are compared entity by entity, read through the REST API as a client reads them: version
//! count, labels, comments, the annotations of each version, each version's file handle
//! (type, storage location, size, MD5, file name, content type, whether it is the one it had
//! before, which other versions share it), whether the etag changed, and the objects in each
//! destination bucket (by name, size and MD5; keys hold uuids).
//!
//! They must be equal except where synmigrate is deliberately better; each such difference is
//! listed below ([`expected_differences`]) with its reason, and must occur exactly as listed.
//!
//! Both tools migrate as the same user (`migrator`), who created both destinations: Synapse lets
//! only a location's creator copy into it, and only a handle's creator attach it to an entity.
//! The history the migration must keep (labels, comments, per-version annotations) is written
//! through the API by the projects' owner before the migrations, as a user would have made it.
//!
//! The function binaries must be built first (`cargo build --workspace --bins`; `make test` does).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context};
use aws_sdk_sfn::types::ExecutionStatus;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate_local::{LocalDeployment, LocalOptions};
use synmigrate_testkit::official_client::{synapse_migrate, SynapseMigrate};

const OWNER_TOKEN: &str = "twin-owner-token";
/// The migrating user of both tools: the functions' token and the official client's.
const MIGRATOR_TOKEN: &str = "twin-migrator-token";
const SOURCE_LOCATION: i64 = 1;
const SOURCE_BUCKET: &str = "twin-source";
/// A file name Synapse refuses for a copy (accents and `#`); the entity's own name is valid.
const INVALID_NAME: &str = "résumé #1.txt";
/// What synmigrate copies it as: each refused character becomes `_`.
const SANITISED_NAME: &str = "r_sum_ _1.txt";
/// The entity whose handle carries [`INVALID_NAME`].
const RENAMED: &str = "resume.txt";
/// Under nextest's 5-minute kill.
const TEST_TIMEOUT: Duration = Duration::from_secs(280);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(200);
const EXECUTION_TIMEOUT: Duration = Duration::from_secs(200);
const FILE_ENTITY: &str = "org.sagebionetworks.repo.model.FileEntity";

/// One of the two identical projects, with its own destination (both created by `migrator`).
struct Twin {
    project: &'static str,
    destination: i64,
    bucket: &'static str,
}

/// Migrated by the official client.
const OFFICIAL: Twin = Twin {
    project: "TwinA",
    destination: 7001,
    bucket: "twin-a-destination",
};

/// Migrated by synmigrate.
const SYNMIGRATE: Twin = Twin {
    project: "TwinB",
    destination: 7002,
    bucket: "twin-b-destination",
};

fn string_values(values: &[&str]) -> Value {
    json!({ "type": "STRING", "value": values })
}

fn shared_handle(twin: &Twin) -> String {
    format!("{}-shared", twin.project)
}

/// Files of the `Donors` project whose handles become later versions of `versions.txt`: the
/// setup attaches them with `PUT /entity/{id}?newVersion=true` (only the handle's creator may).
fn donor(twin: &Twin, version: u32) -> String {
    format!("{}-versions-v{version}", twin.project)
}

fn donors(twin: &Twin) -> Vec<Value> {
    [(2, "version two\n"), (3, "version three, the final one\n")]
        .into_iter()
        .map(|(version, text)| {
            json!({"type": "file", "name": donor(twin, version), "versions": [
                {"content": {"text": text}, "fileName": "versions.txt", "contentType": "text/plain"}
            ]})
        })
        .collect()
}

/// The project as seeded; [`prepare`] then adds the later versions, labels, comments and
/// per-version annotations.
fn project(twin: &Twin) -> Value {
    let shared = shared_handle(twin);
    json!({
        "name": twin.project, "owner": "owner",
        "acl": {"migrator": ["READ", "DOWNLOAD", "UPDATE"]},
        "children": [
            {"type": "file", "name": "versions.txt", "annotations": {"stage": ["raw"]},
             "versions": [{"content": {"text": "version one\n"}, "contentType": "text/plain"}]},
            {"type": "folder", "name": "data", "children": [
                {"type": "file", "name": "table.csv",
                 "annotations": {"tissue": ["liver"], "assay": ["rnaSeq", "wgs"]},
                 "versions": [{"content": {"text": "a,b\n1,2\n"}, "contentType": "text/csv"}]},
                {"type": "file", "name": "shared-one.txt", "versions": [{"handle": shared}]},
                {"type": "folder", "name": "nested", "children": [
                    {"type": "file", "name": "deep.bin", "versions": [
                        {"content": {"size": 3000, "seed": 1}},
                        {"content": {"size": 5000, "seed": 2}, "contentType": "application/octet-stream"}
                    ]}
                ]}
            ]},
            {"type": "file", "name": "shared-two.txt", "versions": [{"handle": shared}]},
            {"type": "file", "name": "relabelled.bin",
             "versions": [{"content": {"size": 4096, "seed": 3}}]},
            {"type": "file", "name": "numbered.txt",
             "versions": [{"content": {"text": "labelled ahead\n"}, "contentType": "text/plain"}]},
            {"type": "file", "name": "already.txt", "versions": [
                {"content": {"text": "already there"}, "storageLocationId": twin.destination,
                 "createdBy": "migrator"}
            ]},
            {"type": "file", "name": "link.txt",
             "versions": [{"kind": "external", "externalUrl": "https://example.org/x"}]},
            {"type": "file", "name": "empty.txt", "versions": [{"content": {"text": ""}}]},
            {"type": "file", "name": RENAMED, "annotations": {"kind": ["cv"]}, "versions": [
                {"content": {"text": "curriculum vitae\n"}, "fileName": INVALID_NAME,
                 "contentType": "text/plain"}
            ]}
        ]
    })
}

fn fixture() -> anyhow::Result<Fixture> {
    let twins = [&OFFICIAL, &SYNMIGRATE];
    let handles: serde_json::Map<String, Value> = twins
        .iter()
        .map(|twin| {
            (
                shared_handle(twin),
                json!({"content": {"text": "bytes shared by two entities"},
                       "fileName": "shared.txt", "contentType": "text/plain", "createdBy": "owner"}),
            )
        })
        .collect();
    let destinations: Vec<Value> = twins
        .iter()
        .map(|twin| {
            json!({"storageLocationId": twin.destination, "kind": "externalS3",
                   "bucket": twin.bucket, "baseKey": "migrated", "createdBy": "migrator"})
        })
        .collect();
    let source = json!({"storageLocationId": SOURCE_LOCATION, "kind": "synapse",
                        "bucket": SOURCE_BUCKET});
    let mut locations = vec![source];
    locations.extend(destinations);
    let fixture = json!({
        "users": [
            {"userName": "owner", "ownerId": "3350001", "token": OWNER_TOKEN},
            {"userName": "migrator", "ownerId": "3350002", "token": MIGRATOR_TOKEN}
        ],
        "storageLocations": locations,
        "fileHandles": handles,
        "projects": [
            project(&OFFICIAL),
            project(&SYNMIGRATE),
            {"name": "Donors", "owner": "owner",
             "children": twins.iter().flat_map(|twin| donors(twin)).collect::<Vec<_>>()}
        ]
    });
    Ok(Fixture::from_json(&fixture.to_string())?)
}

/// Synapse's REST API as a client calls it, with one user's token.
struct Rest {
    http: reqwest::Client,
    repo: String,
    token: &'static str,
}

impl Rest {
    fn new(deployment: &LocalDeployment, token: &'static str) -> Self {
        Self {
            http: synmigrate_testkit::http_client(),
            repo: deployment.sim().repo_endpoint(),
            token,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.repo))
            .bearer_auth(self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "{method} {path}: {status} {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{method} {path}: {text}"))?
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// A new version as a user makes one: the entity as read, another handle (or the same),
    /// a label and a comment, `newVersion=true`.
    async fn new_version(
        &self,
        id: &str,
        handle: Option<&str>,
        label: &str,
        comment: &str,
    ) -> anyhow::Result<()> {
        let mut entity = self.get(&format!("/entity/{id}")).await?;
        if let Some(handle) = handle {
            entity["dataFileHandleId"] = json!(handle);
        }
        entity["versionLabel"] = json!(label);
        entity["versionComment"] = json!(comment);
        self.put(&format!("/entity/{id}?newVersion=true"), &entity)
            .await?;
        Ok(())
    }

    /// Replaces the current annotations (on Synapse: those of the latest version).
    async fn set_annotations(&self, id: &str, annotations: Value) -> anyhow::Result<()> {
        let mut current = self.get(&format!("/entity/{id}/annotations2")).await?;
        current["annotations"] = annotations;
        self.put(&format!("/entity/{id}/annotations2"), &current)
            .await?;
        Ok(())
    }
}

fn entity_id(deployment: &LocalDeployment, path: &str) -> anyhow::Result<String> {
    deployment
        .sim()
        .entity_id(path)
        .with_context(|| format!("no entity at {path}"))
}

/// The history both twins get before the migrations, identically:
/// - `versions.txt`: v1 `1` (stage raw), v2 `draft-2` "second draft" (stage reviewed, a
///   reviewer), v3 `final` "final cut" (stage final, a LONG), each with its own bytes;
/// - `relabelled.bin` and `resume.txt`: a second version on the same handle, relabelled and
///   commented (so two versions of one entity share a handle);
/// - `numbered.txt`: the same, labelled `3`, the label a `new` migration would give version 3.
async fn prepare(owner: &Rest, deployment: &LocalDeployment, twin: &Twin) -> anyhow::Result<()> {
    let id = |path: &str| entity_id(deployment, &format!("{}/{path}", twin.project));
    let donor_handle = |version| -> anyhow::Result<String> {
        let donor = entity_id(deployment, &format!("Donors/{}", donor(twin, version)))?;
        deployment
            .sim()
            .entity(&donor)
            .and_then(|d| d.entity.data_file_handle_id)
            .context("donor handle")
    };
    let versions = id("versions.txt")?;
    owner
        .new_version(
            &versions,
            Some(&donor_handle(2)?),
            "draft-2",
            "second draft",
        )
        .await?;
    owner
        .set_annotations(
            &versions,
            json!({"stage": string_values(&["reviewed"]), "reviewer": string_values(&["ann"])}),
        )
        .await?;
    owner
        .new_version(&versions, Some(&donor_handle(3)?), "final", "final cut")
        .await?;
    owner
        .set_annotations(
            &versions,
            json!({"stage": string_values(&["final"]),
                   "reads": {"type": "LONG", "value": ["42"]}}),
        )
        .await?;
    owner
        .new_version(&id("relabelled.bin")?, None, "v1.1", "metadata only")
        .await?;
    owner
        .new_version(&id(RENAMED)?, None, "cv-2024", "updated CV")
        .await?;
    // The label `new` gives the next version (str(versionNumber + 1)) is already taken: Synapse
    // refuses that version (labels are unique per entity), for both tools alike.
    owner
        .new_version(&id("numbered.txt")?, None, "3", "labelled ahead")
        .await?;
    Ok(())
}

/// One version as read back: its metadata and its handle's fields, already normalised.
#[derive(Debug, Clone)]
struct VersionState {
    number: i64,
    label: String,
    comment: String,
    annotations: String,
    handle_id: Option<String>,
    handle: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
struct EntityState {
    kind: &'static str,
    etag: String,
    /// Oldest first; empty for folders.
    versions: Vec<VersionState>,
}

/// Path below the project -> entity.
type ProjectState = BTreeMap<String, EntityState>;

fn text_of(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key=TYPE[values]; ...` in key order, `-` when there are none.
fn annotations_text(annotations: &Value) -> String {
    let Some(map) = annotations.as_object().filter(|m| !m.is_empty()) else {
        return "-".to_owned();
    };
    let sorted: BTreeMap<&String, &Value> = map.iter().collect();
    sorted
        .into_iter()
        .map(|(key, value)| {
            let values: Vec<String> = value["value"]
                .as_array()
                .map(|vs| vs.iter().map(text_of).collect())
                .unwrap_or_default();
            format!("{key}={}[{}]", text_of(&value["type"]), values.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The fields of a handle that must match, with the twin's own destination named alike.
fn handle_fields(handle: &Value, twin: &Twin) -> Vec<(&'static str, String)> {
    let location = match handle["storageLocationId"].as_i64() {
        Some(SOURCE_LOCATION) => "Synapse storage".to_owned(),
        Some(id) if id == twin.destination => "destination".to_owned(),
        Some(id) => format!("location {id}"),
        None => "-".to_owned(),
    };
    let kind = handle["concreteType"]
        .as_str()
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("-")
        .to_owned();
    vec![
        ("handle.type", kind),
        ("handle.storageLocation", location),
        ("handle.contentSize", text_of(&handle["contentSize"])),
        ("handle.contentMd5", text_of(&handle["contentMd5"])),
        ("handle.fileName", text_of(&handle["fileName"])),
        ("handle.contentType", text_of(&handle["contentType"])),
    ]
}

/// Every version of a file: the version list, then each version's bundle (entity, annotations
/// of that version, file handles).
async fn read_versions(rest: &Rest, id: &str, twin: &Twin) -> anyhow::Result<Vec<VersionState>> {
    let list = rest
        .get(&format!("/entity/{id}/version?offset=0&limit=100"))
        .await?;
    let infos = list["results"].as_array().context("version list")?;
    ensure!(
        list["totalNumberOfResults"].as_u64() == Some(infos.len() as u64),
        "{id}: more versions than one page"
    );
    let request = json!({"includeEntity": true, "includeAnnotations": true,
                         "includeFileHandles": true});
    let mut versions = Vec::new();
    for info in infos {
        let number = info["versionNumber"].as_i64().context("versionNumber")?;
        let bundle = rest
            .post(&format!("/entity/{id}/version/{number}/bundle2"), &request)
            .await?;
        let handle_id = bundle["entity"]["dataFileHandleId"]
            .as_str()
            .map(str::to_owned);
        let handle = bundle["fileHandles"]
            .as_array()
            .and_then(|hs| hs.iter().find(|h| h["id"].as_str() == handle_id.as_deref()))
            .with_context(|| format!("{id} v{number}: the bundle lacks handle {handle_id:?}"))?;
        versions.push(VersionState {
            number,
            label: text_of(&info["versionLabel"]),
            comment: text_of(&info["versionComment"]),
            annotations: annotations_text(&bundle["annotations"]["annotations"]),
            handle_id,
            handle: handle_fields(handle, twin),
        });
    }
    versions.sort_by_key(|v| v.number);
    Ok(versions)
}

async fn read_project(
    rest: &Rest,
    deployment: &LocalDeployment,
    twin: &Twin,
) -> anyhow::Result<ProjectState> {
    let prefix = format!("{}/", twin.project);
    let mut state = ProjectState::new();
    for (path, id) in deployment.sim().paths() {
        let Some(relative) = path.strip_prefix(&prefix) else {
            continue;
        };
        let entity = rest.get(&format!("/entity/{id}")).await?;
        let is_file = entity["concreteType"].as_str() == Some(FILE_ENTITY);
        let versions = if is_file {
            read_versions(rest, &id, twin).await?
        } else {
            Vec::new()
        };
        state.insert(
            relative.to_owned(),
            EntityState {
                kind: if is_file { "file" } else { "folder" },
                etag: entity["etag"].as_str().context("etag")?.to_owned(),
                versions,
            },
        );
    }
    Ok(state)
}

/// Objects of a bucket as `name (size B, md5 M)` -> how many; the name is the key's last part.
async fn destination_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut objects = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            let key = object.key().context("key")?;
            let body = s3.get_object().bucket(bucket).key(key).send().await?;
            let bytes = body.body.collect().await?.into_bytes();
            let name = key.rsplit('/').next().unwrap_or(key);
            let entry = format!(
                "{name} ({} B, md5 {})",
                bytes.len(),
                hex::encode(Md5::digest(&bytes))
            );
            *objects.entry(entry).or_insert(0) += 1;
        }
    }
    Ok(objects)
}

/// Keys and ETags of a bucket: sources must not change.
async fn object_etags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut objects = BTreeMap::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            objects.insert(
                object.key().unwrap_or_default().to_owned(),
                object.e_tag().unwrap_or_default().to_owned(),
            );
        }
    }
    Ok(objects)
}

/// The comparable end state, one line per fact: `path: versions`, `path vN handle.fileName`,
/// `destination object NAME (...)`. Ids are gone: a handle is named by the first version using
/// it (`handle.sharedWith`) and by whether it is the one that version had before (`handle`).
fn flatten(
    before: &ProjectState,
    after: &ProjectState,
    objects: &BTreeMap<String, usize>,
) -> BTreeMap<String, String> {
    let mut first_use: BTreeMap<&str, String> = BTreeMap::new();
    for (path, entity) in after {
        for version in &entity.versions {
            if let Some(handle) = &version.handle_id {
                first_use
                    .entry(handle.as_str())
                    .or_insert_with(|| format!("{path} v{}", version.number));
            }
        }
    }
    let mut facts = BTreeMap::new();
    for (path, entity) in after {
        let old = before.get(path);
        facts.insert(format!("{path}: type"), entity.kind.to_owned());
        facts.insert(
            format!("{path}: etag changed"),
            old.is_none_or(|o| o.etag != entity.etag).to_string(),
        );
        if entity.kind == "file" {
            facts.insert(
                format!("{path}: versions"),
                entity.versions.len().to_string(),
            );
        }
        for version in &entity.versions {
            let at = |field: &str| format!("{path} v{} {field}", version.number);
            facts.insert(at("label"), version.label.clone());
            facts.insert(at("comment"), version.comment.clone());
            facts.insert(at("annotations"), version.annotations.clone());
            let previous = old
                .and_then(|o| o.versions.iter().find(|v| v.number == version.number))
                .map(|v| &v.handle_id);
            let history = match previous {
                None => "new version",
                Some(h) if *h == version.handle_id => "kept",
                Some(_) => "replaced",
            };
            facts.insert(at("handle"), history.to_owned());
            if let Some(handle) = &version.handle_id {
                facts.insert(at("handle.sharedWith"), first_use[handle.as_str()].clone());
            }
            for (field, value) in &version.handle {
                facts.insert(at(field), value.clone());
            }
        }
    }
    for (object, count) in objects {
        facts.insert(format!("destination object {object}"), count.to_string());
    }
    facts
}

/// Where the two end states disagree on one fact (`None`: the fact is absent on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Difference {
    key: String,
    official: Option<String>,
    synmigrate: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |v: &Option<String>| {
            v.as_ref()
                .map_or("(absent)".to_owned(), |v| format!("{v:?}"))
        };
        write!(
            f,
            "{}: official {}, synmigrate {}",
            self.key,
            side(&self.official),
            side(&self.synmigrate)
        )
    }
}

fn differences(
    official: &BTreeMap<String, String>,
    synmigrate: &BTreeMap<String, String>,
) -> Vec<Difference> {
    let mut keys: Vec<&String> = official.keys().chain(synmigrate.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| official.get(*k) != synmigrate.get(*k))
        .map(|k| Difference {
            key: k.clone(),
            official: official.get(k).cloned(),
            synmigrate: synmigrate.get(k).cloned(),
        })
        .collect()
}

/// A difference synmigrate makes on purpose.
struct Expected {
    difference: Difference,
    reason: &'static str,
}

const RENAME_REASON: &str = "the file name of resume.txt's handle is one Synapse refuses for a \
    copy (400 Invalid Name): the official client records the file ERRORED and leaves it as it \
    was; synmigrate copies it under a sanitised name (each refused character becomes `_`) and \
    lists the rename in its report";

const LABEL_REASON: &str = "numbered.txt's version 2 is labelled `3`, the label `new` gives the \
    next version (str(versionNumber + 1)); Synapse refuses a label used twice (400, \
    UNIQUE_REVISION_LABEL): the official client records the file ERRORED and leaves the entity as \
    it was (its copy unused); synmigrate labels the new version `3-migrated` instead";

/// The differences synmigrate must make, and only these, computed from the state before the
/// migrations (`before`): the official side must show those files as they were. They come from
/// the invalid name and, for `new`, the taken label.
fn expected_differences(strategy: &str, before: &BTreeMap<String, String>) -> Vec<Expected> {
    let fact = |key: &str| before.get(key).cloned();
    let differ = |key: String, official: Option<String>, synmigrate: &str| Expected {
        difference: Difference {
            key,
            official,
            synmigrate: Some(synmigrate.to_owned()),
        },
        reason: RENAME_REASON,
    };
    // The file has two versions (v2 relabels v1's handle); `new` copies the latest.
    let latest = 2;
    let source = |field: &str| fact(&format!("{RENAMED} v{latest} {field}")).unwrap_or_default();
    let object = format!(
        "destination object {SANITISED_NAME} ({} B, md5 {})",
        source("handle.contentSize"),
        source("handle.contentMd5")
    );
    let mut expected = vec![
        differ(
            format!("{RENAMED}: etag changed"),
            fact(&format!("{RENAMED}: etag changed")),
            "true",
        ),
        differ(object, None, "1"),
    ];
    match strategy {
        "new" => {
            let next = latest + 1;
            let next_label = next.to_string();
            expected.push(differ(
                format!("{RENAMED}: versions"),
                fact(&format!("{RENAMED}: versions")),
                &next_label,
            ));
            let new_version: [(&str, String); 11] = [
                // The official client's label for the new version: str(versionNumber + 1).
                ("label", next_label.clone()),
                ("comment", source("comment")),
                ("annotations", source("annotations")),
                ("handle", "new version".to_owned()),
                ("handle.sharedWith", format!("{RENAMED} v{next}")),
                ("handle.type", source("handle.type")),
                ("handle.storageLocation", "destination".to_owned()),
                ("handle.contentSize", source("handle.contentSize")),
                ("handle.contentMd5", source("handle.contentMd5")),
                ("handle.fileName", SANITISED_NAME.to_owned()),
                ("handle.contentType", source("handle.contentType")),
            ];
            for (field, value) in new_version {
                expected.push(differ(format!("{RENAMED} v{next} {field}"), None, &value));
            }
            expected.extend(
                labelled_ahead_differences(before)
                    .into_iter()
                    .map(|difference| Expected {
                        difference,
                        reason: LABEL_REASON,
                    }),
            );
        }
        "all" | "latest" => {
            let versions = if strategy == "all" {
                1..=latest
            } else {
                latest..=latest
            };
            for version in versions {
                let at = |field: &str| format!("{RENAMED} v{version} {field}");
                expected.push(differ(at("handle"), fact(&at("handle")), "replaced"));
                expected.push(differ(
                    at("handle.storageLocation"),
                    fact(&at("handle.storageLocation")),
                    "destination",
                ));
                expected.push(differ(
                    at("handle.fileName"),
                    fact(&at("handle.fileName")),
                    SANITISED_NAME,
                ));
            }
            if strategy == "latest" {
                // v2 no longer shares v1's handle: only the latest version was migrated.
                let at = format!("{RENAMED} v{latest} handle.sharedWith");
                expected.push(differ(
                    at.clone(),
                    fact(&at),
                    &format!("{RENAMED} v{latest}"),
                ));
            }
        }
        other => panic!("unknown strategy {other}"),
    }
    expected
}

/// `numbered.txt` under `new`: synmigrate adds version 3, labelled `3-migrated`, with version 2's
/// comment, annotations and a copy of its handle in the destination (the official client's copy
/// exists too, in its own destination, unused: the objects are equal on both sides).
fn labelled_ahead_differences(before: &BTreeMap<String, String>) -> Vec<Difference> {
    const FILE: &str = "numbered.txt";
    let fact = |key: &str| before.get(key).cloned();
    let source = |field: &str| fact(&format!("{FILE} v2 {field}")).unwrap_or_default();
    let mut differences = vec![
        Difference {
            key: format!("{FILE}: etag changed"),
            official: fact(&format!("{FILE}: etag changed")),
            synmigrate: Some("true".to_owned()),
        },
        Difference {
            key: format!("{FILE}: versions"),
            official: fact(&format!("{FILE}: versions")),
            synmigrate: Some("3".to_owned()),
        },
    ];
    let new_version: [(&str, String); 11] = [
        ("label", "3-migrated".to_owned()),
        ("comment", source("comment")),
        ("annotations", source("annotations")),
        ("handle", "new version".to_owned()),
        ("handle.sharedWith", format!("{FILE} v3")),
        ("handle.type", source("handle.type")),
        ("handle.storageLocation", "destination".to_owned()),
        ("handle.contentSize", source("handle.contentSize")),
        ("handle.contentMd5", source("handle.contentMd5")),
        ("handle.fileName", source("handle.fileName")),
        ("handle.contentType", source("handle.contentType")),
    ];
    differences.extend(new_version.map(|(field, value)| Difference {
        key: format!("{FILE} v3 {field}"),
        official: None,
        synmigrate: Some(value),
    }));
    differences
}

/// What running `synapse migrate` on the official twin needs, owned (it runs on a blocking thread).
struct OfficialRun {
    project: String,
    client_config: String,
    env: Vec<(String, String)>,
    workdir: std::path::PathBuf,
    strategy: String,
}

impl OfficialRun {
    fn new(deployment: &LocalDeployment, strategy: &str) -> anyhow::Result<Self> {
        Ok(Self {
            project: deployment
                .sim()
                .project_id(OFFICIAL.project)
                .context("project")?,
            client_config: deployment.sim().python_client_config(),
            env: deployment.env_vars(),
            workdir: std::env::temp_dir().join(format!(
                "synmigrate-differential-{strategy}-{}",
                std::process::id()
            )),
            strategy: strategy.to_owned(),
        })
    }

    /// Runs the client; returns its CSV log. The working directory is removed afterwards.
    fn run(self) -> anyhow::Result<String> {
        std::fs::create_dir_all(&self.workdir)?;
        let result = self.migrate();
        let _ = std::fs::remove_dir_all(&self.workdir);
        result
    }

    fn migrate(&self) -> anyhow::Result<String> {
        let workdir = &self.workdir;
        let config = workdir.join("synapseConfig");
        std::fs::write(&config, &self.client_config)?;
        let csv = workdir.join("migration.csv");
        synapse_migrate(&SynapseMigrate {
            workdir,
            env: self.env.clone(),
            token: MIGRATOR_TOKEN,
            project: &self.project,
            destination: OFFICIAL.destination,
            db: &workdir.join("index.db"),
            options: &[
                "--continue_on_error",
                "--file_version_strategy",
                &self.strategy,
            ],
            csv: &csv,
            timeout: CLIENT_TIMEOUT,
        })?;
        Ok(std::fs::read_to_string(&csv)?)
    }
}

/// Runs synmigrate through the state machine on its twin; returns its CSV report.
async fn run_synmigrate(deployment: &LocalDeployment, strategy: &str) -> anyhow::Result<String> {
    let project = deployment
        .sim()
        .project_id(SYNMIGRATE.project)
        .context("project")?;
    let input = json!({
        "projectId": project,
        "destinationStorageLocationId": SYNMIGRATE.destination,
        "options": {"fileVersionStrategy": strategy, "continueOnError": true}
    });
    let arn = deployment
        .start_execution(&format!("differential-{strategy}"), &input)
        .await?;
    let done = deployment
        .wait_for_execution(&arn, EXECUTION_TIMEOUT)
        .await?;
    ensure!(
        done.status() == &ExecutionStatus::Succeeded,
        "synmigrate ended {:?}: {:?} {:?}",
        done.status(),
        done.error(),
        done.cause()
    );
    let summary: Value = serde_json::from_str(done.output().unwrap_or("null"))?;
    let s3 = deployment.s3_client().await;
    let report = s3
        .get_object()
        .bucket(summary["reportBucket"].as_str().context("reportBucket")?)
        .key(summary["reportKey"].as_str().context("reportKey")?)
        .send()
        .await?;
    Ok(String::from_utf8(
        report.body.collect().await?.into_bytes().to_vec(),
    )?)
}

fn in_destination(facts: &BTreeMap<String, String>) -> usize {
    facts
        .iter()
        .filter(|(k, v)| k.ends_with(" handle.storageLocation") && *v == "destination")
        .count()
}

async fn compare(deployment: &LocalDeployment, strategy: &str) -> anyhow::Result<()> {
    let owner = Rest::new(deployment, OWNER_TOKEN);
    for twin in [&OFFICIAL, &SYNMIGRATE] {
        prepare(&owner, deployment, twin).await?;
    }
    let s3 = deployment.s3_client().await;
    let sources = object_etags(&s3, SOURCE_BUCKET).await?;
    let before_a = read_project(&owner, deployment, &OFFICIAL).await?;
    let before_b = read_project(&owner, deployment, &SYNMIGRATE).await?;
    let start_a = flatten(
        &before_a,
        &before_a,
        &destination_objects(&s3, OFFICIAL.bucket).await?,
    );
    let start_b = flatten(
        &before_b,
        &before_b,
        &destination_objects(&s3, SYNMIGRATE.bucket).await?,
    );
    let twins_differ = differences(&start_a, &start_b);
    ensure!(
        twins_differ.is_empty(),
        "the twins differ before the migrations:\n{}",
        lines(&twins_differ)
    );

    // Both migrations at once: they touch disjoint projects and destinations.
    let official = tokio::task::spawn_blocking({
        let run = OfficialRun::new(deployment, strategy)?;
        move || run.run()
    });
    let synmigrate_report = run_synmigrate(deployment, strategy).await;
    let official_log = official.await.context("the official client's thread")??;
    let synmigrate_report = synmigrate_report?;

    let end_a = flatten(
        &before_a,
        &read_project(&owner, deployment, &OFFICIAL).await?,
        &destination_objects(&s3, OFFICIAL.bucket).await?,
    );
    let end_b = flatten(
        &before_b,
        &read_project(&owner, deployment, &SYNMIGRATE).await?,
        &destination_objects(&s3, SYNMIGRATE.bucket).await?,
    );
    ensure!(
        object_etags(&s3, SOURCE_BUCKET).await? == sources,
        "source objects changed"
    );
    ensure!(
        in_destination(&end_a) > in_destination(&start_a),
        "the official client migrated nothing:\n{official_log}"
    );
    // The listed reason holds: the official client was refused the name, synmigrate renamed it.
    ensure!(
        official_log.contains("Invalid Name"),
        "the official client's log does not show the refused name:\n{official_log}"
    );
    ensure!(
        synmigrate_report.contains(SANITISED_NAME),
        "synmigrate's report does not list the rename:\n{synmigrate_report}"
    );

    let expected = expected_differences(strategy, &start_a);
    let found = differences(&end_a, &end_b);
    let unexpected: Vec<Difference> = found
        .iter()
        .filter(|d| !expected.iter().any(|e| e.difference == **d))
        .cloned()
        .collect();
    let missing: Vec<Difference> = expected
        .iter()
        .map(|e| e.difference.clone())
        .filter(|e| !found.contains(e))
        .collect();
    ensure!(
        unexpected.is_empty() && missing.is_empty(),
        "`{strategy}`: the official client (TwinA) and synmigrate (TwinB) end differently\n\
         unexpected differences:\n{}\nlisted differences that did not occur as listed:\n{}\n\
         (all differences found:\n{})",
        lines(&unexpected),
        lines(&missing),
        lines(&found)
    );
    let mut by_reason: BTreeMap<&str, Vec<&Difference>> = BTreeMap::new();
    for e in &expected {
        by_reason.entry(e.reason).or_default().push(&e.difference);
    }
    eprintln!("`{strategy}`: the end states are equal except the listed differences");
    for (reason, listed) in by_reason {
        eprintln!("  because {reason}:");
        for difference in listed {
            eprintln!("    {difference}");
        }
    }
    Ok(())
}

fn lines(differences: &[Difference]) -> String {
    if differences.is_empty() {
        return "  (none)".to_owned();
    }
    differences
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn differential(strategy: &str) -> anyhow::Result<()> {
    let options = LocalOptions {
        token: MIGRATOR_TOKEN.to_owned(),
        // The official client is slow under the 3-in-flight throttle, and both tools share a user.
        throttle: ThrottleConfig::disabled(),
        max_synapse_rpm: 60_000,
        max_instances: 2,
        ..LocalOptions::default()
    };
    let deployment = LocalDeployment::start(&fixture()?, options).await?;
    let result = tokio::time::timeout(TEST_TIMEOUT, compare(&deployment, strategy)).await;
    deployment.shutdown().await;
    result.context("the differential test timed out")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_new_versions() -> anyhow::Result<()> {
    differential("new").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_all_versions_in_place() -> anyhow::Result<()> {
    differential("all").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_latest_version_in_place() -> anyhow::Result<()> {
    differential("latest").await
}
