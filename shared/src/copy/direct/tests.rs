use super::*;
use md5::{Digest, Md5};
use synapse_model::{concrete, StorageLocationSetting};

fn request(base_key: Option<&str>, key: &str, file_name: Option<&str>) -> CopyRequest {
    CopyRequest {
        entity_id: "syn1".into(),
        in_table: false,
        version: Some(1),
        source: FileHandle {
            id: "987".into(),
            concrete_type: concrete::S3_FILE_HANDLE.into(),
            etag: None,
            created_by: None,
            created_on: None,
            bucket_name: Some("source".into()),
            key: Some(key.into()),
            content_type: None,
            content_md5: None,
            content_size: Some(10),
            file_name: Some("data.csv".into()),
            storage_location_id: Some(1),
            external_url: None,
            file_path: None,
            status: None,
        },
        destination: StorageLocationSetting {
            concrete_type: concrete::EXTERNAL_S3_STORAGE_LOCATION.into(),
            storage_location_id: 7001,
            upload_type: None,
            bucket: Some("dest".into()),
            base_key: base_key.map(str::to_owned),
            sts_enabled: None,
            endpoint_url: None,
            banner: None,
            description: None,
            etag: None,
            created_on: None,
            created_by: None,
        },
        part_size: 5 << 20,
        file_name: file_name.map(str::to_owned),
    }
}

#[test]
fn destination_keys_are_deterministic_and_under_the_base_key() {
    let key = |base, name| destination_key(&request(base, "k", name)).unwrap();
    assert_eq!(
        key(Some("migrated"), None),
        ("dest".into(), "migrated/synmigrate/987/data.csv".into())
    );
    assert_eq!(key(Some("/a/b/"), None).1, "a/b/synmigrate/987/data.csv");
    assert_eq!(key(None, Some("r_sum_.pdf")).1, "synmigrate/987/r_sum_.pdf");
    assert_eq!(key(Some(""), None).1, "synmigrate/987/data.csv");
}

#[test]
fn copy_source_encodes_the_key_but_not_its_slashes() {
    let source = copy_source(&request(None, "dir/my file#1+é.txt", None)).unwrap();
    assert_eq!(source, "source/dir/my%20file%231%2B%C3%A9.txt");
}

#[test]
fn multipart_etag_matches_s3s_rule() {
    // Two parts whose MD5s are those of "a" and "b".
    let a = hex::encode(Md5::digest(b"a"));
    let b = format!("\"{}\"", hex::encode(Md5::digest(b"b")));
    let mut both = Md5::digest(b"a").to_vec();
    both.extend_from_slice(&Md5::digest(b"b"));
    let expected = format!("{}-2", hex::encode(Md5::digest(&both)));
    assert_eq!(
        multipart_etag([a.as_str(), b.as_str()].into_iter()).unwrap(),
        expected
    );
    assert!(multipart_etag(["zz"].into_iter()).is_err());
}

#[test]
fn only_single_part_etags_are_md5s() {
    assert!(etag_is_md5("\"9b2cf535f27731c974343645a3985328\""));
    assert!(!etag_is_md5("\"9b2cf535f27731c974343645a3985328-3\""));
    assert!(!etag_is_md5("abc"));
}
