//! Proof that a finished copy holds its source's bytes, at the run's `verify` level
//! ([`VerifyLevel`]), before any entity points at it; and again later, from the copy's record
//! (`synmigrate verify`).
//!
//! - `metadata`: the engines' own checks (the new handle's size and MD5 fields; the direct
//!   engine's ETag checks). No further request.
//! - `checksum`: equality without reading the data, where S3 gives a proof. The ETag of an
//!   object written in one request (no `-N` suffix) without KMS is the MD5 of its bytes, so it
//!   must equal the source's `contentMd5`; otherwise both objects must carry the same
//!   full-object checksum of one algorithm (S3 stores a CRC64NVME for new objects, multipart
//!   ones included, and CopyObject keeps the source's). Where S3 offers neither, the proof is
//!   `none`, with the reason.
//! - `bytes`: reads the destination in ranges (several in flight, hashed in order) and compares
//!   its MD5 with the source's `contentMd5`. A source without an MD5, or a file over the
//!   functions' read limit, gets the `checksum` proof instead, and says why.
//!
//! A proof that fails is `Fatal.Verification`: the entities keep their old file.

use std::fmt;

use aws_sdk_s3::types::{ChecksumMode, ChecksumType, ServerSideEncryption};
use futures::{stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use synapse_model::FileHandle;

use super::direct::{bare, etag_is_md5};
use super::parts::MIB;
use super::s3error::s3_error;
use crate::error::{Error, Result};

/// How a finished copy is proven equal to its source before any entity points at it
/// (this module; the request's "force MD5 check").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLevel {
    /// The copy engines' own checks: the new handle's size and MD5 fields match the source's.
    #[default]
    Metadata,
    /// Also an S3 proof that reads no data: the destination's ETag as MD5, or the same
    /// full-object checksum on both objects; the file is marked when S3 offers neither.
    Checksum,
    /// Read the destination and compare its MD5 with the source's `contentMd5`.
    Bytes,
}

impl VerifyLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyLevel::Metadata => "metadata",
            VerifyLevel::Checksum => "checksum",
            VerifyLevel::Bytes => "bytes",
        }
    }
}

/// An S3 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    /// The object a file handle names, if it is an S3 one.
    pub fn of(handle: &FileHandle) -> Option<Self> {
        match (&handle.bucket_name, &handle.key) {
            (Some(bucket), Some(key)) if handle.is_s3() => Some(Self {
                bucket: bucket.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// What proving a copy needs: kept on the copy's record, so that it can be proven again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopiedObject {
    pub source: Option<ObjectRef>,
    /// The source handle's `contentMd5` (hex).
    pub source_md5: Option<String>,
    pub size: u64,
    pub destination: ObjectRef,
}

impl CopiedObject {
    /// The copy of `source` that `copy` names; `None` when either handle names no S3 object.
    pub fn of(source: &FileHandle, copy: &FileHandle) -> Option<Self> {
        Some(Self {
            source: ObjectRef::of(source),
            source_md5: source.content_md5.clone(),
            size: copy.content_size.or(source.content_size)?,
            destination: ObjectRef::of(copy)?,
        })
    }
}

/// A finished copy's proof as its record keeps it (`CopyRecord::verification`), with what
/// proving it again needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyProof {
    pub level: VerifyLevel,
    /// [`Verified`] as text.
    pub proof: String,
    /// `None` when a handle names no S3 object (nothing to prove with S3).
    pub object: Option<CopiedObject>,
}

impl CopyProof {
    /// The JSON the copy's record keeps.
    pub fn to_document(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a copy proof always serialises")
    }

    /// Reads what [`Self::to_document`] wrote; `None` for records written before proofs were.
    pub fn from_document(document: Option<&serde_json::Value>) -> Option<Self> {
        serde_json::from_value(document?.clone()).ok()
    }
}

/// How a copy was proven equal to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The engines' checks of the handles' fields only (level `metadata`).
    Metadata,
    /// The destination's ETag is an MD5 and equals the source's `contentMd5`.
    EtagMd5,
    /// Both objects carry this full-object checksum algorithm's value, and they are equal.
    Checksum(String),
    /// The destination's bytes were read; their MD5 equals the source's `contentMd5`.
    BytesMd5,
    /// No proof beyond the handles' fields was possible; why.
    None(String),
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proof::Metadata => f.write_str("metadata"),
            Proof::EtagMd5 => f.write_str("etag-md5"),
            Proof::Checksum(algorithm) => write!(f, "checksum-{}", algorithm.to_lowercase()),
            Proof::BytesMd5 => f.write_str("bytes-md5"),
            Proof::None(reason) => write!(f, "none: {reason}"),
        }
    }
}

/// A proof, and why it is not the one the level asked for (if it is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub proof: Proof,
    pub fallback: Option<String>,
}

impl Verified {
    pub fn plain(proof: Proof) -> Self {
        Self {
            proof,
            fallback: None,
        }
    }

    /// Whether the copy has no proof beyond the handles' fields though one was asked for.
    pub fn is_unproven(&self) -> bool {
        matches!(self.proof, Proof::None(_))
    }
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fallback {
            None => write!(f, "{}", self.proof),
            Some(why) => write!(f, "{} (bytes not read: {why})", self.proof),
        }
    }
}

/// How much `bytes` reads, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyLimits {
    /// Bytes of one ranged GET.
    pub range_size: u64,
    /// Ranged GETs of one file in flight (their bytes are hashed in order).
    pub ranges_in_flight: usize,
    /// Larger files are not read inside a function (its time is bounded); they get the
    /// `checksum` proof, and `synmigrate verify --verify bytes` can read them.
    pub max_bytes_read: u64,
}

impl Default for VerifyLimits {
    fn default() -> Self {
        Self {
            range_size: 8 * MIB,
            ranges_in_flight: 4,
            // About a minute at the throughput of a few parallel GETs in a function.
            max_bytes_read: 4 * 1024 * MIB,
        }
    }
}

/// Proves copies with S3 requests.
#[derive(Debug, Clone)]
pub struct Verifier {
    s3: aws_sdk_s3::Client,
    limits: VerifyLimits,
}

/// What HeadObject says of an object, for a proof.
struct Head {
    size: Option<u64>,
    etag: String,
    kms: bool,
    /// Full-object checksums by algorithm (composite ones are left out: they cover parts).
    checksums: Vec<(&'static str, String)>,
}

impl Verifier {
    pub fn new(s3: aws_sdk_s3::Client, limits: VerifyLimits) -> Self {
        Self { s3, limits }
    }

    /// Proves `copy` at `level`; `Fatal.Verification` when the proof shows a difference.
    pub async fn prove(&self, level: VerifyLevel, copy: &CopiedObject) -> Result<Verified> {
        match level {
            VerifyLevel::Metadata => Ok(Verified::plain(Proof::Metadata)),
            VerifyLevel::Checksum => Ok(Verified::plain(self.checksum(copy).await?)),
            VerifyLevel::Bytes => self.bytes_within(copy, self.limits.max_bytes_read).await,
        }
    }

    /// Reads the whole destination and compares its MD5 with the source's, whatever its size
    /// (the CLI's `verify --level bytes`, which has no function's time limit).
    pub async fn prove_bytes_unbounded(&self, copy: &CopiedObject) -> Result<Verified> {
        self.bytes_within(copy, u64::MAX).await
    }

    /// The `bytes` proof of a copy of at most `max_bytes`; the `checksum` proof, saying why,
    /// for a bigger copy or a source without an MD5.
    async fn bytes_within(&self, copy: &CopiedObject, max_bytes: u64) -> Result<Verified> {
        let fallback = match &copy.source_md5 {
            None => "the source file handle has no MD5".to_owned(),
            Some(_) if copy.size > max_bytes => format!(
                "{} bytes is over the {max_bytes} read inside a function",
                copy.size
            ),
            Some(md5) => return self.bytes(copy, md5).await.map(Verified::plain),
        };
        Ok(Verified {
            proof: self.checksum(copy).await?,
            fallback: Some(fallback),
        })
    }

    async fn checksum(&self, copy: &CopiedObject) -> Result<Proof> {
        let destination = match self.head(&copy.destination).await {
            Ok(head) => head,
            Err(Error::Forbidden(reason)) => {
                return Ok(Proof::None(format!(
                    "this deployment may not read {} ({reason})",
                    copy.destination
                )))
            }
            Err(other) => return Err(other),
        };
        if destination.size != Some(copy.size) {
            return Err(Error::Verification(format!(
                "{} has {:?} bytes, the source {}",
                copy.destination, destination.size, copy.size
            )));
        }
        if let Some(md5) = &copy.source_md5 {
            if etag_is_md5(&destination.etag) && !destination.kms {
                let etag = bare(&destination.etag);
                return if etag.eq_ignore_ascii_case(md5) {
                    Ok(Proof::EtagMd5)
                } else {
                    Err(Error::Verification(format!(
                        "{} has MD5 {etag} (its ETag), the source {md5}",
                        copy.destination
                    )))
                };
            }
        }
        let Some(source_ref) = &copy.source else {
            return Ok(Proof::None(
                "the destination's ETag is no MD5 and the source is no S3 object".to_owned(),
            ));
        };
        let source = match self.head(source_ref).await {
            Ok(head) => head,
            Err(Error::Forbidden(reason) | Error::NotFound(reason)) => {
                return Ok(Proof::None(format!(
                    "the destination's ETag is no MD5, and this deployment may not read the \
                     source's checksum ({reason})"
                )))
            }
            Err(other) => return Err(other),
        };
        for (algorithm, value) in &destination.checksums {
            let Some((_, theirs)) = source.checksums.iter().find(|(a, _)| a == algorithm) else {
                continue;
            };
            return if theirs == value {
                Ok(Proof::Checksum((*algorithm).to_owned()))
            } else {
                Err(Error::Verification(format!(
                    "{} has {algorithm} {value}, the source {source_ref} {theirs}",
                    copy.destination
                )))
            };
        }
        let names = |head: &Head| match head.checksums.as_slice() {
            [] => "none".to_owned(),
            sums => sums.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", "),
        };
        Ok(Proof::None(format!(
            "the destination's ETag is no MD5 and no full-object checksum is on both objects \
             (source: {}; destination: {})",
            names(&source),
            names(&destination)
        )))
    }

    async fn bytes(&self, copy: &CopiedObject, md5: &str) -> Result<Proof> {
        let range = self.limits.range_size.max(1);
        let ranges = copy.size.div_ceil(range);
        let digest = stream::iter(0..ranges)
            .map(|n| {
                let first = n * range;
                let last = (first + range).min(copy.size) - 1;
                self.read_range(&copy.destination, first, last)
            })
            .buffered(self.limits.ranges_in_flight.max(1))
            .try_fold(Md5::new(), |mut digest, bytes| async move {
                digest.update(&bytes);
                Ok(digest)
            })
            .await?;
        let found = hex::encode(digest.finalize());
        if found.eq_ignore_ascii_case(md5) {
            Ok(Proof::BytesMd5)
        } else {
            Err(Error::Verification(format!(
                "{} has MD5 {found} (its bytes, read), the source {md5}",
                copy.destination
            )))
        }
    }

    async fn read_range(&self, object: &ObjectRef, first: u64, last: u64) -> Result<bytes::Bytes> {
        let answer = self
            .s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(format!("bytes={first}-{last}"))
            .send()
            .await
            .map_err(|e| s3_error("GetObject (verify)", e))?;
        let bytes = answer
            .body
            .collect()
            .await
            .map_err(|e| Error::Transient(format!("reading {object}: {e}")))?
            .into_bytes();
        if bytes.len() as u64 != last - first + 1 {
            return Err(Error::Verification(format!(
                "{object} gave {} bytes for range {first}-{last}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn head(&self, object: &ObjectRef) -> Result<Head> {
        let head = self
            .s3
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| s3_error("HeadObject (verify)", e))?;
        let full = head.checksum_type() != Some(&ChecksumType::Composite);
        let checksums = [
            ("CRC64NVME", head.checksum_crc64_nvme()),
            ("CRC32C", head.checksum_crc32_c()),
            ("CRC32", head.checksum_crc32()),
            ("SHA256", head.checksum_sha256()),
            ("SHA1", head.checksum_sha1()),
        ]
        .into_iter()
        // A composite value ends in `-N` (a checksum of the parts' checksums).
        .filter_map(|(algorithm, value)| {
            let value = value.filter(|v| full && !v.contains('-'))?;
            Some((algorithm, value.to_owned()))
        })
        .collect();
        Ok(Head {
            size: head.content_length().and_then(|n| u64::try_from(n).ok()),
            etag: head.e_tag().unwrap_or_default().to_owned(),
            kms: matches!(
                head.server_side_encryption(),
                Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
            ) || head.sse_customer_algorithm().is_some(),
            checksums,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_read_as_the_report_writes_them() {
        assert_eq!(Proof::Metadata.to_string(), "metadata");
        assert_eq!(Proof::EtagMd5.to_string(), "etag-md5");
        assert_eq!(
            Proof::Checksum("CRC64NVME".into()).to_string(),
            "checksum-crc64nvme"
        );
        assert_eq!(Proof::BytesMd5.to_string(), "bytes-md5");
        let fallback = Verified {
            proof: Proof::None("no checksum".into()),
            fallback: Some("the source file handle has no MD5".into()),
        };
        assert_eq!(
            fallback.to_string(),
            "none: no checksum (bytes not read: the source file handle has no MD5)"
        );
        assert!(fallback.is_unproven());
        assert!(!Verified::plain(Proof::BytesMd5).is_unproven());
    }

    #[test]
    fn a_copied_object_needs_both_objects_named() {
        let handle = |id: &str, bucket: Option<&str>| -> FileHandle {
            serde_json::from_value(serde_json::json!({
                "id": id,
                "concreteType": synapse_model::concrete::S3_FILE_HANDLE,
                "bucketName": bucket, "key": "k", "contentSize": 10, "contentMd5": "abc",
            }))
            .unwrap()
        };
        let copied = CopiedObject::of(&handle("1", Some("src")), &handle("2", Some("dst")))
            .expect("both are S3 objects");
        assert_eq!(copied.destination.to_string(), "s3://dst/k");
        assert_eq!(copied.source_md5.as_deref(), Some("abc"));
        assert_eq!(copied.size, 10);
        assert!(CopiedObject::of(&handle("1", Some("src")), &handle("2", None)).is_none());
    }
}
