//! A manifest: the entities a run migrates instead of its whole project. Files (one version,
//! or as the run's strategy says), and folders or projects, which are walked. Given inline
//! (`entities`, a few) or as a CSV or JSON file in the deployment's bucket (`manifest`, up to
//! [`MAX_MANIFEST_BYTES`]), which Init checks and Index reads once per invocation.
//!
//! - CSV: a header row naming an `id` (or `entity_id`) column and, optionally, a `version` column
//!   (so the official client's migration log, or this tool's report, can be fed back); an empty
//!   version means "as the strategy says".
//! - JSON (a key ending in `.json`): an array of `"syn123"`, `"syn123.4"` or
//!   `{"id": "syn123", "version": 4}`.

use std::str::FromStr;

use serde::Deserialize;

use crate::{Error, Result};

/// Most entities an execution input may carry inline: options travel in every Step Functions
/// payload (256 KiB), so longer lists go in a manifest file.
pub const MAX_INLINE_ENTITIES: usize = 100;

/// Largest manifest file Index reads (about a million entries of a short CSV).
pub const MAX_MANIFEST_BYTES: i64 = 16 * 1024 * 1024;

/// One entity of a manifest, with the one version to migrate if it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub entity_id: String,
    pub version: Option<u64>,
}

impl FromStr for ManifestEntry {
    type Err = String;

    /// `syn123` or `syn123.4`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let (id, version) = match text.split_once('.') {
            Some((id, version)) => (id, Some(version)),
            None => (text, None),
        };
        let version = version
            .map(|v| v.parse::<u64>().ok().filter(|v| *v > 0))
            .map(|v| v.ok_or_else(|| format!("{text:?} names no version number")))
            .transpose()?;
        entry(id, version)
    }
}

/// An entry, checked: a Synapse id (`syn` and digits) and a version from 1.
fn entry(id: &str, version: Option<u64>) -> std::result::Result<ManifestEntry, String> {
    let valid = id
        .strip_prefix("syn")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(format!("{id:?} is not a Synapse id like syn123"));
    }
    if version == Some(0) {
        return Err(format!("{id}: versions start at 1"));
    }
    Ok(ManifestEntry {
        entity_id: id.to_owned(),
        version,
    })
}

/// Where a manifest file is: `s3://<bucket>/<key>`.
pub fn parse_location(uri: &str) -> std::result::Result<(&str, &str), String> {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| format!("{uri:?} is not an S3 location like s3://bucket/key"))
}

/// The entries of a CSV manifest (see the module docs); errors name the line.
pub fn parse_csv(bytes: &[u8]) -> std::result::Result<Vec<ManifestEntry>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h));
    let id = column(&["id", "entity_id"])
        .ok_or("the CSV has no id (or entity_id) column in its header row")?;
    let version = column(&["version"]);
    let mut entries = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| format!("line {line}: {e}"))?;
        let text = |at: usize| record.get(at).unwrap_or_default();
        let number = match version.map(text).filter(|v| !v.is_empty()) {
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| format!("line {line}: version {v:?} is not a number"))?,
            ),
            None => None,
        };
        entries.push(entry(text(id), number).map_err(|e| format!("line {line}: {e}"))?);
    }
    Ok(entries)
}

/// The entries of a JSON manifest (see the module docs); errors name the position.
pub fn parse_json(bytes: &[u8]) -> std::result::Result<Vec<ManifestEntry>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Json {
        Text(String),
        Object {
            #[serde(alias = "entityId")]
            id: String,
            #[serde(default)]
            version: Option<u64>,
        },
    }
    let values: Vec<Json> = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a JSON array of \"syn123\", \"syn123.4\" or {{\"id\", \"version\"}}: {e}")
    })?;
    values
        .into_iter()
        .enumerate()
        .map(|(at, value)| {
            match value {
                Json::Text(text) => text.parse(),
                Json::Object { id, version } => entry(&id, version),
            }
            .map_err(|e| format!("entry {at}: {e}"))
        })
        .collect()
}

/// The entries a run migrates: its inline `entities` or its manifest file; `None` for a run of
/// the whole project. A manifest must be in the deployment's bucket (`bucket`: the functions
/// may read nothing else), at most [`MAX_MANIFEST_BYTES`] long.
pub async fn load(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    entities: &[String],
    manifest: Option<&str>,
) -> Result<Option<Vec<ManifestEntry>>> {
    let invalid = |message: String| Error::InvalidInput(format!("manifest: {message}"));
    let Some(uri) = manifest else {
        if entities.is_empty() {
            return Ok(None);
        }
        return entities
            .iter()
            .map(|text| text.parse().map_err(invalid))
            .collect::<Result<Vec<_>>>()
            .map(Some);
    };
    let (manifest_bucket, key) = parse_location(uri).map_err(invalid)?;
    if manifest_bucket != bucket {
        return Err(invalid(format!(
            "{uri} is not in this deployment's bucket {bucket}: put it there (the functions \
             read no other bucket)"
        )));
    }
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(service) if service.is_no_such_key() => invalid(format!("{uri} does not exist")),
            _ => Error::Transient(format!("cannot read {uri}: {}", crate::error_chain(&e))),
        })?;
    if object.content_length().unwrap_or_default() > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "{uri} is longer than {MAX_MANIFEST_BYTES} bytes: split it over several runs"
        )));
    }
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| Error::Transient(format!("cannot read {uri}: {e}")))?
        .into_bytes();
    let entries = if key.ends_with(".json") {
        parse_json(&bytes)
    } else {
        parse_csv(&bytes)
    };
    entries
        .map_err(|e| invalid(format!("{uri}: {e}")))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(id: &str, version: Option<u64>) -> ManifestEntry {
        ManifestEntry {
            entity_id: id.into(),
            version,
        }
    }

    #[test]
    fn entries_are_ids_with_optional_versions() {
        assert_eq!("syn12".parse(), Ok(some("syn12", None)));
        assert_eq!(" syn12.3 ".parse(), Ok(some("syn12", Some(3))));
        for bad in ["12", "syn", "synX", "syn1.0", "syn1.", "syn1.x", "syn1#2"] {
            let error = bad.parse::<ManifestEntry>().unwrap_err();
            assert!(!error.is_empty(), "{bad}");
        }
    }

    #[test]
    fn csv_manifests_need_an_id_column_and_name_the_bad_line() {
        let csv = "id,version,status\nsyn1,,MIGRATED\nsyn2,4,\n";
        assert_eq!(
            parse_csv(csv.as_bytes()).unwrap(),
            vec![some("syn1", None), some("syn2", Some(4))]
        );
        let entity_id = "entity_id\nsyn7\n";
        assert_eq!(
            parse_csv(entity_id.as_bytes()).unwrap(),
            vec![some("syn7", None)]
        );
        let no_id = parse_csv(b"name\nx\n").unwrap_err();
        assert!(no_id.contains("no id"), "{no_id}");
        let bad = parse_csv(b"id,version\nsyn1,1\nsyn2,two\n").unwrap_err();
        assert!(bad.contains("line 3") && bad.contains("two"), "{bad}");
        let bad_id = parse_csv(b"id\nsyn1\nfoo\n").unwrap_err();
        assert!(
            bad_id.contains("line 3") && bad_id.contains("foo"),
            "{bad_id}"
        );
    }

    #[test]
    fn json_manifests_take_strings_and_objects() {
        let json = br#"["syn1", "syn2.5", {"id": "syn3"}, {"entityId": "syn4", "version": 2}]"#;
        assert_eq!(
            parse_json(json).unwrap(),
            vec![
                some("syn1", None),
                some("syn2", Some(5)),
                some("syn3", None),
                some("syn4", Some(2))
            ]
        );
        let bad = parse_json(br#"["syn1", "x"]"#).unwrap_err();
        assert!(bad.contains("entry 1"), "{bad}");
        assert!(parse_json(br#"{"id": "syn1"}"#).is_err());
    }

    #[test]
    fn locations_are_s3_uris() {
        assert_eq!(parse_location("s3://b/k/l.csv"), Ok(("b", "k/l.csv")));
        for bad in ["b/k", "s3://b", "s3:///k", "s3://b/"] {
            assert!(parse_location(bad).is_err(), "{bad}");
        }
    }
}
