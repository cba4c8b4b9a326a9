//! The copy proofs against moto's S3: a single-request copy is proven by its ETag, a multipart
//! copy by a full-object CRC64NVME on both objects, a copy with neither is marked unproven with
//! the reason, `bytes` reads the destination and finds what a claimed MD5 hides, and a file over
//! the read limit falls back to `checksum` and says so.

use std::time::Duration;

use anyhow::{ensure, Context};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use md5::{Digest, Md5};
use synmigrate::config::VerifyLevel;
use synmigrate::copy::verify::{CopiedObject, ObjectRef, Proof, Verifier, VerifyLimits};
use synmigrate_testkit::AwsStack;

use crate::common::bounded;

const BUCKET: &str = "proofs";
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn object(key: &str) -> ObjectRef {
    ObjectRef {
        bucket: BUCKET.to_owned(),
        key: key.to_owned(),
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// `source` copied to `destination`, the source claiming `md5`.
fn copied(source: &str, destination: &str, size: usize, md5: &str) -> CopiedObject {
    CopiedObject {
        source: Some(object(source)),
        source_md5: Some(md5.to_owned()),
        size: size as u64,
        destination: object(destination),
    }
}

async fn put(
    s3: &aws_sdk_s3::Client,
    key: &str,
    bytes: &[u8],
    checksum: Option<ChecksumAlgorithm>,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(BUCKET)
        .key(key)
        .set_checksum_algorithm(checksum)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await?;
    Ok(())
}

/// A one-part multipart copy of `source` (as Synapse's copy makes them: the ETag is `…-1`),
/// with S3's full-object CRC64NVME when `crc` is set.
async fn multipart_copy(
    s3: &aws_sdk_s3::Client,
    source: &str,
    destination: &str,
    crc: bool,
) -> anyhow::Result<()> {
    let mut create = s3.create_multipart_upload().bucket(BUCKET).key(destination);
    if crc {
        create = create
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject);
    }
    let upload = create.send().await?;
    let upload_id = upload.upload_id().context("no upload id")?;
    let part = s3
        .upload_part_copy()
        .bucket(BUCKET)
        .key(destination)
        .upload_id(upload_id)
        .part_number(1)
        .copy_source(format!("{BUCKET}/{source}"))
        .send()
        .await?;
    let etag = part
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .context("no part ETag")?;
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key(destination)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_find_what_s3_can_show_and_say_when_it_cannot() -> anyhow::Result<()> {
    bounded(TEST_TIMEOUT, async {
        let stack = tokio::task::spawn_blocking(AwsStack::start).await??;
        let s3 = stack.s3_client().await;
        s3.create_bucket().bucket(BUCKET).send().await?;
        let verifier = Verifier::new(s3.clone(), VerifyLimits::default());
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let md5 = md5_hex(&bytes);
        let size = bytes.len();

        // A single-request copy: its ETag is the MD5 of its bytes.
        put(&s3, "plain", &bytes, None).await?;
        s3.copy_object()
            .bucket(BUCKET)
            .key("plain-copy")
            .copy_source(format!("{BUCKET}/plain"))
            .send()
            .await?;
        let single = copied("plain", "plain-copy", size, &md5);
        let proven = verifier.prove(VerifyLevel::Checksum, &single).await?;
        ensure!(proven.proof == Proof::EtagMd5, "{proven}");
        // A claimed MD5 that is not the bytes' is found by the ETag too.
        let claimed = copied("plain", "plain-copy", size, &md5_hex(b"other"));
        let refused = verifier.prove(VerifyLevel::Checksum, &claimed).await;
        ensure!(
            matches!(&refused, Err(e) if e.error_type() == "Fatal.Verification"),
            "{refused:?}"
        );

        // Multipart copies: the ETag proves nothing; a full-object CRC64NVME on both does.
        put(&s3, "crc", &bytes, Some(ChecksumAlgorithm::Crc64Nvme)).await?;
        multipart_copy(&s3, "crc", "crc-copy", true).await?;
        let proven = verifier
            .prove(
                VerifyLevel::Checksum,
                &copied("crc", "crc-copy", size, &md5),
            )
            .await?;
        ensure!(
            proven.proof == Proof::Checksum("CRC64NVME".into()),
            "{proven}"
        );
        // Different bytes under the same algorithm are a failed proof.
        let mut changed = bytes.clone();
        changed[7] ^= 1;
        put(
            &s3,
            "crc-changed",
            &changed,
            Some(ChecksumAlgorithm::Crc64Nvme),
        )
        .await?;
        let refused = verifier
            .prove(
                VerifyLevel::Checksum,
                &copied("crc-changed", "crc-copy", size, &md5),
            )
            .await;
        ensure!(
            matches!(&refused, Err(e) if e.error_type() == "Fatal.Verification"),
            "{refused:?}"
        );
        // No checksum on the copy: marked unproven, with what each side has.
        multipart_copy(&s3, "crc", "bare-copy", false).await?;
        let unproven = verifier
            .prove(
                VerifyLevel::Checksum,
                &copied("crc", "bare-copy", size, &md5),
            )
            .await?;
        ensure!(unproven.is_unproven(), "{unproven}");
        let text = unproven.to_string();
        ensure!(
            text.contains("source: CRC64NVME") && text.contains("destination: none"),
            "{text}"
        );

        // `bytes` reads the copy whatever S3 says of it, in ranges, and compares MD5s.
        let small_ranges = Verifier::new(
            s3.clone(),
            VerifyLimits {
                range_size: 4096,
                ..VerifyLimits::default()
            },
        );
        let proven = small_ranges
            .prove(VerifyLevel::Bytes, &copied("crc", "bare-copy", size, &md5))
            .await?;
        ensure!(proven.proof == Proof::BytesMd5, "{proven}");
        let refused = small_ranges
            .prove(
                VerifyLevel::Bytes,
                &copied("crc", "bare-copy", size, &md5_hex(&changed)),
            )
            .await;
        ensure!(
            matches!(&refused, Err(e) if e.error_type() == "Fatal.Verification"
                     && e.to_string().contains(&md5)),
            "{refused:?}"
        );
        // Over the read limit: the checksum proof, and why the bytes were not read.
        let limited = Verifier::new(
            s3.clone(),
            VerifyLimits {
                max_bytes_read: 1000,
                ..VerifyLimits::default()
            },
        );
        let fallback = limited
            .prove(VerifyLevel::Bytes, &copied("crc", "crc-copy", size, &md5))
            .await?;
        ensure!(
            fallback.proof == Proof::Checksum("CRC64NVME".into())
                && fallback.to_string().contains("over the 1000"),
            "{fallback}"
        );
        // Unbounded (the CLI) it reads the bytes after all.
        let read = limited
            .prove_bytes_unbounded(&copied("crc", "crc-copy", size, &md5))
            .await?;
        ensure!(read.proof == Proof::BytesMd5, "{read}");
        // A copy of the wrong size fails before any checksum is compared.
        let refused = verifier
            .prove(
                VerifyLevel::Checksum,
                &copied("plain", "plain-copy", size + 1, &md5),
            )
            .await;
        ensure!(
            matches!(&refused, Err(e) if e.error_type() == "Fatal.Verification"),
            "{refused:?}"
        );
        Ok(())
    })
    .await
}
