//! Real SigV4 query-string presigned UploadPartCopy URLs, as Synapse hands out for a copy.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::BTreeMap;
use synapse_model::PartPresignedUrl;

use crate::error::ApiError;
use crate::store::Upload;

/// Everything but the RFC 3986 unreserved characters, as AWS encodes.
const AWS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same for paths, where `/` separates segments.
const AWS_ENCODE_PATH: &AsciiSet = &AWS_ENCODE.remove(b'/');

pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, AWS_ENCODE).to_string()
}

pub fn encode_path(value: &str) -> String {
    utf8_percent_encode(value, AWS_ENCODE_PATH).to_string()
}

pub struct Presigner {
    /// Path-style S3 endpoint without a trailing slash.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Byte range `(first, last)` of part `n` (1-based) of a `size`-byte file cut in `part_size` parts.
pub fn part_range(n: u32, part_size: u64, size: u64) -> (u64, u64) {
    let first = u64::from(n - 1) * part_size;
    (first, (u64::from(n) * part_size).min(size) - 1)
}

impl Presigner {
    pub fn presign_part(
        &self,
        upload: &Upload,
        part: u32,
        content_type: Option<&str>,
        expires_in: Duration,
    ) -> Result<PartPresignedUrl, ApiError> {
        let (first, last) = part_range(part, upload.part_size, upload.size);
        let mut headers = BTreeMap::new();
        headers.insert(
            "x-amz-copy-source".to_owned(),
            format!(
                "{}/{}",
                encode(&upload.source_bucket),
                encode_path(&upload.source_key)
            ),
        );
        headers.insert(
            "x-amz-copy-source-range".to_owned(),
            format!("bytes={first}-{last}"),
        );
        headers.insert(
            "x-amz-copy-source-if-match".to_owned(),
            upload.source_etag.clone(),
        );
        // Signed and listed only when given (`StringUtils.isNotEmpty`), named as Java's
        // `HttpHeaders.CONTENT_TYPE`.
        if let Some(content_type) = content_type.filter(|t| !t.is_empty()) {
            headers.insert("Content-Type".to_owned(), content_type.to_owned());
        }
        let base = format!(
            "{}/{}/{}?partNumber={part}&uploadId={}",
            self.endpoint,
            encode(&upload.dest_bucket),
            encode_path(&upload.dest_key),
            encode(&upload.s3_upload_id)
        );
        let url = self.sign("PUT", base, &headers, expires_in)?;
        Ok(PartPresignedUrl {
            part_number: part,
            upload_presigned_url: url,
            signed_headers: headers,
        })
    }

    /// A presigned GET of an object, as `FileHandleManagerImpl.getURLForFileHandle` hands out
    /// for an S3 file handle (no response-header overrides).
    pub fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, ApiError> {
        let base = format!("{}/{}/{}", self.endpoint, encode(bucket), encode_path(key));
        self.sign("GET", base, &BTreeMap::new(), expires_in)
    }

    /// `base` with the SigV4 query-string signature of `method` and `headers` appended.
    fn sign(
        &self,
        method: &str,
        base: String,
        headers: &BTreeMap<String, String>,
        expires_in: Duration,
    ) -> Result<String, ApiError> {
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "synapse-sim",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| ApiError::Internal(format!("presign: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method,
            base.as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| ApiError::Internal(format!("presign: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ApiError::Internal(format!("presign: {e}")))?
            .into_parts();
        let separator = if base.contains('?') { '&' } else { '?' };
        let mut url = base;
        for (i, (name, value)) in instructions.params().iter().enumerate() {
            url.push(if i == 0 { separator } else { '&' });
            url.push_str(name);
            url.push('=');
            url.push_str(&encode(value));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_ranges_cover_the_file() {
        let ps = 100 * 1024 * 1024;
        let size = 101 * 1024 * 1024;
        assert_eq!(part_range(1, ps, size), (0, ps - 1));
        assert_eq!(part_range(2, ps, size), (ps, size - 1));
        assert_eq!(part_range(1, ps, 1), (0, 0));
    }

    #[test]
    fn encoding_keeps_slashes_only_in_paths() {
        assert_eq!(encode_path("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(encode("a/b=c"), "a%2Fb%3Dc");
    }
}
