//! Where a direct copy goes, how its source is named in a copy request, and S3's ETag rules.

use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::CopyRequest;
use crate::error::{Error, Result};

/// Characters of a key that stay literal in `x-amz-copy-source`: unreserved ones and `/`.
pub(super) const COPY_SOURCE_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The destination key of a direct copy: `{baseKey/}synmigrate/{sourceFileHandleId}/{fileName}`.
///
/// Deterministic, so a retried or resumed copy overwrites its own earlier attempt instead of
/// leaving an orphan; keyed on the source handle, so two sources with the same name never
/// collide, and a source handle is copied once per migration (one `FH#` record); under the
/// location's base key, because Synapse registers only keys below it.
pub fn destination_key(request: &CopyRequest) -> Result<(String, String)> {
    let bucket = request.destination.bucket.clone().ok_or_else(|| {
        Error::InvalidInput(format!(
            "storage location {} has no bucket",
            request.destination.storage_location_id
        ))
    })?;
    let base = request
        .destination
        .base_key
        .as_deref()
        .map(|b| b.trim_matches('/'))
        .filter(|b| !b.is_empty())
        .map(|b| format!("{b}/"))
        .unwrap_or_default();
    let key = format!(
        "{base}synmigrate/{}/{}",
        request.source.id,
        request.target_file_name()?
    );
    Ok((bucket, key))
}

/// The source object's bucket and key.
pub(super) fn source_location(request: &CopyRequest) -> Result<(&str, &str)> {
    match (&request.source.bucket_name, &request.source.key) {
        (Some(bucket), Some(key)) if request.source.is_s3() => Ok((bucket, key)),
        _ => Err(Error::InvalidInput(format!(
            "file handle {} is not an S3 object",
            request.source.id
        ))),
    }
}

/// `x-amz-copy-source` for the source: bucket and URL-encoded key.
pub(super) fn copy_source(request: &CopyRequest) -> Result<String> {
    let (bucket, key) = source_location(request)?;
    Ok(format!(
        "{bucket}/{}",
        utf8_percent_encode(key, COPY_SOURCE_KEY)
    ))
}

/// An ETag without its quotes.
pub(in crate::copy) fn bare(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// The ETag is the object's MD5 only for objects uploaded in one piece (no `-N` suffix) without
/// KMS; then it can be compared with Synapse's `contentMd5`.
pub(in crate::copy) fn etag_is_md5(etag: &str) -> bool {
    let etag = bare(etag);
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// S3's ETag of a multipart object: MD5 of the concatenated part MD5s, `-` part count.
pub(super) fn multipart_etag<'a>(
    part_etags: impl ExactSizeIterator<Item = &'a str>,
) -> Result<String> {
    let count = part_etags.len();
    let mut digest = Md5::new();
    for etag in part_etags {
        let bytes = hex::decode(bare(etag))
            .map_err(|_| Error::Internal(format!("part ETag {etag} is not hex")))?;
        digest.update(bytes);
    }
    Ok(format!("{}-{count}", hex::encode(digest.finalize())))
}
