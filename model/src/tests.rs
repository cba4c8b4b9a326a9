//! Round trips of JSON shaped like the real server's answers.

use super::*;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Parses `value`, serialises it back and checks nothing was lost or invented.
fn round_trip<T: Serialize + DeserializeOwned>(value: Value) -> T {
    let parsed: T = serde_json::from_value(value.clone()).expect("parses");
    assert_eq!(serde_json::to_value(&parsed).expect("serialises"), value);
    parsed
}

#[test]
fn s3_file_handle_round_trips() {
    let fh: FileHandle = round_trip(json!({
        "id": "3412", "concreteType": concrete::S3_FILE_HANDLE, "etag": "9f0c-11",
        "createdBy": "3350000", "createdOn": "2024-01-02T03:04:05.000Z",
        "bucketName": "proddata.sagebase.org", "key": "3350000/aa/data.csv",
        "contentType": "text/csv", "contentMd5": "0cc175b9c0f1b6a831c399e269772661",
        "contentSize": 1, "fileName": "data.csv", "storageLocationId": 1, "status": "AVAILABLE"
    }));
    assert!(fh.is_s3());
    assert_eq!(fh.content_size, Some(1));
    assert_eq!(fh.storage_location_id, Some(1));
}

#[test]
fn external_and_proxy_handles_are_not_s3() {
    let ext: FileHandle = round_trip(json!({
        "id": "7", "concreteType": concrete::EXTERNAL_FILE_HANDLE,
        "externalURL": "https://example.org/x.txt", "fileName": "x.txt"
    }));
    assert!(!ext.is_s3());
    assert_eq!(
        ext.external_url.as_deref(),
        Some("https://example.org/x.txt")
    );
    let proxy: FileHandle = round_trip(json!({
        "id": "8", "concreteType": concrete::PROXY_FILE_HANDLE, "filePath": "/a/b", "storageLocationId": 9
    }));
    assert!(!proxy.is_s3());
}

#[test]
fn entity_keeps_unknown_fields_for_put() {
    let original = json!({
        "concreteType": concrete::FILE_ENTITY, "id": "syn123", "name": "a.txt", "parentId": "syn100",
        "etag": "e-1", "versionNumber": 2, "versionLabel": "2", "dataFileHandleId": "55",
        "createdOn": "2024-01-01T00:00:00.000Z", "modifiedOn": "2024-01-02T00:00:00.000Z",
        "isLatestVersion": true, "createdBy": "3350000", "versionComment": "re-upload"
    });
    let mut entity: Entity = round_trip(original.clone());
    assert!(entity.is_file());
    assert_eq!(entity.extra["versionComment"], "re-upload");
    entity.data_file_handle_id = Some("56".into());
    let sent = serde_json::to_value(&entity).expect("serialises");
    assert_eq!(sent["dataFileHandleId"], "56");
    assert_eq!(sent["isLatestVersion"], true);
}

#[test]
fn bundle_with_annotations_parses() {
    let bundle: EntityBundle = round_trip(json!({
        "entity": {"concreteType": concrete::FOLDER, "id": "syn5", "name": "f", "etag": "x"},
        "entityType": "folder",
        "annotations": {"id": "syn5", "etag": "x", "annotations": {
            "tissue": {"type": "STRING", "value": ["liver", "lung"]}}},
        "fileHandles": [],
        "restrictionInformation": {"hasUnmetAccessRequirement": false}
    }));
    let ann = bundle.annotations.expect("annotations");
    assert_eq!(ann.annotations["tissue"].kind, "STRING");
    assert!(bundle.entity.expect("entity").is_container());
}

#[test]
fn children_page_and_versions_parse() {
    let page: EntityChildrenResponse = round_trip(json!({
        "page": [{"id": "syn9", "name": "b", "type": concrete::FILE_ENTITY, "versionNumber": 3,
                  "isLatestVersion": true}],
        "nextPageToken": "50a50"
    }));
    assert_eq!(page.page[0].kind, concrete::FILE_ENTITY);
    let versions: PaginatedResults<VersionInfo> = round_trip(json!({
        "results": [{"id": "syn9", "versionNumber": 3, "contentSize": "12", "isLatestVersion": true}],
        "totalNumberOfResults": 3
    }));
    assert_eq!(versions.results[0].version_number, 3);
    let request: EntityChildrenRequest = round_trip(json!({
        "parentId": "syn1", "includeTypes": ["folder", "file"], "sortBy": "NAME", "sortDirection": "ASC"
    }));
    assert_eq!(request.parent_id.as_deref(), Some("syn1"));
}

#[test]
fn copy_request_matches_the_official_client_body() {
    let req: MultipartUploadCopyRequest = round_trip(json!({
        "concreteType": concrete::MULTIPART_UPLOAD_COPY_REQUEST, "fileName": null,
        "generatePreview": false, "partSizeBytes": 104857600, "storageLocationId": 7001,
        "sourceFileHandleAssociation": {"fileHandleId": "12", "associateObjectId": "syn3",
                                        "associateObjectType": "FileEntity"}
    }));
    assert_eq!(req.source_file_handle_association.file_handle_id, "12");
    let status: MultipartUploadStatus = round_trip(json!({
        "uploadId": "9", "state": upload_state::UPLOADING, "partsState": "01",
        "startedBy": "3350000", "startedOn": "2024-01-01T00:00:00.000Z",
        "updatedOn": "2024-01-01T00:00:00.000Z"
    }));
    assert_eq!(status.parts_state.as_deref(), Some("01"));
}

#[test]
fn presign_add_part_and_batch_round_trip() {
    let resp: BatchPresignedUploadUrlResponse = round_trip(json!({
        "partPresignedUrls": [{"partNumber": 1, "uploadPresignedUrl": "http://s3/b/k?partNumber=1",
            "signedHeaders": {"x-amz-copy-source": "a/b", "x-amz-copy-source-range": "bytes=0-9"}}]
    }));
    assert_eq!(resp.part_presigned_urls[0].signed_headers.len(), 2);
    let add: AddPartResponse = round_trip(json!({
        "uploadId": "9", "partNumber": 1, "addPartState": add_part_state::ADD_SUCCESS
    }));
    assert_eq!(add.add_part_state, "ADD_SUCCESS");
    let batch: BatchFileRequest = round_trip(json!({
        "requestedFiles": [{"fileHandleId": "1", "associateObjectId": "syn2",
                            "associateObjectType": "FileEntity"}],
        "includeFileHandles": true, "includePreSignedURLs": false, "includePreviewPreSignedURLs": false
    }));
    assert!(batch.include_file_handles);
    let result: BatchFileResult = round_trip(json!({
        "requestedFiles": [{"fileHandleId": "1", "failureCode": "NOT_FOUND"}]
    }));
    assert_eq!(
        result.requested_files[0].failure_code.as_deref(),
        Some("NOT_FOUND")
    );
}

#[test]
fn storage_location_and_profile_round_trip() {
    let loc: StorageLocationSetting = round_trip(json!({
        "concreteType": concrete::EXTERNAL_S3_STORAGE_LOCATION, "storageLocationId": 7001,
        "uploadType": "S3", "bucket": "dest", "baseKey": "migrated", "stsEnabled": false,
        "createdBy": 3350000, "createdOn": "2024-01-01T00:00:00.000Z", "etag": "e"
    }));
    assert!(loc.is_external_s3());
    let me: UserProfile = round_trip(json!({"ownerId": "3350000", "userName": "alice"}));
    assert_eq!(me.owner_id, "3350000");
    let err: ErrorResponse = round_trip(json!({"reason": "Invalid Name"}));
    assert_eq!(err.reason, "Invalid Name");
    let err: ErrorResponse = round_trip(json!({
        "concreteType": "org.sagebionetworks.repo.model.ErrorResponse", "reason": "bad request"
    }));
    assert_eq!(err, ErrorResponse::new("bad request"));
    let swap: FileHandleVersionUpdate =
        round_trip(json!({"oldFileHandleId": "1", "newFileHandleId": "2"}));
    assert_eq!(swap.new_file_handle_id, "2");
}

#[test]
fn numbers_may_arrive_as_strings_like_the_server_accepts() {
    let request: MultipartUploadCopyRequest = serde_json::from_value(serde_json::json!({
        "concreteType": "org.sagebionetworks.repo.model.file.MultipartUploadCopyRequest",
        "partSizeBytes": "104857600",
        "storageLocationId": "7001",
        "sourceFileHandleAssociation": {
            "fileHandleId": "12", "associateObjectId": "syn1", "associateObjectType": "FileEntity"
        }
    }))
    .unwrap();
    assert_eq!(
        (request.part_size_bytes, request.storage_location_id),
        (104_857_600, 7001)
    );
    let handle: FileHandle = serde_json::from_value(serde_json::json!({
        "id": "1", "concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle",
        "storageLocationId": "7001", "contentSize": 5
    }))
    .unwrap();
    assert_eq!(
        (handle.storage_location_id, handle.content_size),
        (Some(7001), Some(5))
    );
    let bad = serde_json::from_value::<MultipartUploadCopyRequest>(serde_json::json!({
        "concreteType": "x", "partSizeBytes": "lots", "storageLocationId": 1,
        "sourceFileHandleAssociation": {
            "fileHandleId": "12", "associateObjectId": "syn1", "associateObjectType": "FileEntity"
        }
    }));
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("\"lots\" is not a number"));
}
