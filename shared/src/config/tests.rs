use std::collections::BTreeMap;

use super::*;

#[test]
fn empty_input_takes_the_defaults() {
    let options: MigrationOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(options, MigrationOptions::default());
    assert_eq!(options.part_size_bytes, 100 * MIB);
    assert!(options.sanitize_file_names);
    assert_eq!(options.max_attempts, 3);
    assert_eq!(options.file_version_strategy, FileVersionStrategy::New);
    options.validate().unwrap();
}

#[test]
fn camel_case_input_parses() {
    let options: MigrationOptions = serde_json::from_value(serde_json::json!({
        "fileVersionStrategy": "all",
        "sourceStorageLocationIds": [1, 2],
        "continueOnError": true,
        "dryRun": true,
        "copyMode": "auto",
        "partSizeBytes": 5 * MIB,
        "maxConcurrency": 4,
        "maxSynapseRequestsPerMinute": 600,
        "sanitizeFileNames": false,
        "maxAttempts": 5,
        "verify": "bytes",
        "deleteSourceFileHandles": true
    }))
    .unwrap();
    assert_eq!(options.file_version_strategy, FileVersionStrategy::All);
    assert_eq!(options.verify, VerifyLevel::Bytes);
    assert!(options.delete_source_file_handles);
    assert_eq!(options.copy_mode, CopyMode::Auto);
    assert!(options.dry_run && options.continue_on_error && !options.sanitize_file_names);
    options.validate().unwrap();
    assert!(options.selects_source(Some(2)));
    assert!(!options.selects_source(Some(3)));
    assert!(!options.selects_source(None));
    assert!(MigrationOptions::default().selects_source(None));
}

#[test]
fn lists_that_would_swell_every_payload_are_refused() {
    let options = MigrationOptions {
        source_storage_location_ids: (1..=MAX_SOURCE_LOCATIONS as i64 + 1).collect(),
        ..MigrationOptions::default()
    };
    let error = options.validate().unwrap_err().to_string();
    assert!(error.contains("sourceStorageLocationIds"), "{error}");
    MigrationOptions {
        source_storage_location_ids: (1..=MAX_SOURCE_LOCATIONS as i64).collect(),
        ..MigrationOptions::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn manifests_are_checked_before_anything_starts() {
    let with = |entities: &[&str], manifest: Option<&str>| MigrationOptions {
        entities: entities.iter().map(|e| (*e).to_owned()).collect(),
        manifest: manifest.map(str::to_owned),
        file_version_strategy: FileVersionStrategy::All,
        ..MigrationOptions::default()
    };
    with(&["syn1", "syn2.3"], None).validate().unwrap();
    with(&[], Some("s3://bucket/list.csv")).validate().unwrap();
    let refused = |options: MigrationOptions, field: &str, text: &str| {
        let error = options.validate().unwrap_err().to_string();
        assert!(error.contains(field) && error.contains(text), "{error}");
    };
    refused(with(&["syn1", "x"], None), "entities", "\"x\"");
    refused(with(&["syn1"], Some("s3://b/k")), "manifest", "not both");
    refused(with(&[], Some("list.csv")), "manifest", "s3://bucket/key");
    let many: Vec<String> = (0..=MAX_INLINE_ENTITIES)
        .map(|i| format!("syn{i}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    refused(with(&many, None), "entities", "manifest file");
    let new = MigrationOptions {
        file_version_strategy: FileVersionStrategy::New,
        ..with(&["syn1.2"], None)
    };
    refused(new, "entities", "all or latest");
}

#[test]
fn deleting_source_handles_needs_a_strategy_that_swaps_them() {
    let options = MigrationOptions {
        delete_source_file_handles: true,
        ..MigrationOptions::default()
    };
    let error = options.validate().unwrap_err().to_string();
    assert!(
        error.contains("deleteSourceFileHandles") && error.contains("all or latest"),
        "{error}"
    );
    for strategy in [FileVersionStrategy::All, FileVersionStrategy::Latest] {
        MigrationOptions {
            file_version_strategy: strategy,
            ..options.clone()
        }
        .validate()
        .unwrap();
    }
}

#[test]
fn unknown_fields_and_values_are_refused() {
    let typo = serde_json::from_str::<MigrationOptions>(r#"{"dryrun": true}"#);
    assert!(typo.unwrap_err().to_string().contains("dryrun"));
    let strategy = serde_json::from_str::<MigrationOptions>(r#"{"fileVersionStrategy":"x"}"#);
    assert!(strategy.is_err());
}

#[test]
fn validation_names_the_field() {
    let cases: [(MigrationOptions, &str); 6] = [
        (
            MigrationOptions {
                part_size_bytes: MIB,
                ..Default::default()
            },
            "partSizeBytes",
        ),
        (
            MigrationOptions {
                max_concurrency: 0,
                ..Default::default()
            },
            "maxConcurrency",
        ),
        (
            MigrationOptions {
                max_synapse_requests_per_minute: 601,
                ..Default::default()
            },
            "maxSynapseRequestsPerMinute",
        ),
        (
            MigrationOptions {
                max_attempts: 0,
                ..Default::default()
            },
            "maxAttempts",
        ),
        (
            MigrationOptions {
                tolerated_failure_percentage: 101,
                ..Default::default()
            },
            "toleratedFailurePercentage",
        ),
        (
            MigrationOptions {
                source_storage_location_ids: vec![-1],
                ..Default::default()
            },
            "sourceStorageLocationIds",
        ),
    ];
    for (options, field) in cases {
        let error = options.validate().unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[tokio::test]
async fn one_bucket_can_live_at_another_endpoint() {
    use aws_sdk_s3::config::endpoint::{Params, ResolveEndpoint};
    let resolver = BucketEndpoint {
        bucket: "artifacts".to_owned(),
        endpoint: "http://127.0.0.1:2".to_owned(),
        default: aws_sdk_s3::config::endpoint::DefaultResolver::new(),
    };
    for (bucket, expected) in [
        ("artifacts", "http://127.0.0.1:2/artifacts"),
        ("data", "http://127.0.0.1:1/data"),
    ] {
        let params = Params::builder()
            .bucket(bucket)
            .region("us-east-1")
            .endpoint("http://127.0.0.1:1")
            .force_path_style(true)
            .build()
            .unwrap();
        let endpoint = resolver.resolve_endpoint(&params).await.unwrap();
        assert_eq!(endpoint.url(), expected);
    }
}

#[test]
fn settings_name_the_missing_variable() {
    let vars = BTreeMap::from([(env::TABLE, "t"), (env::BUCKET, "b")]);
    let lookup = |vars: BTreeMap<&'static str, &'static str>| {
        move |name: &str| vars.get(name).map(|v| (*v).to_owned())
    };
    let settings = Settings::from_lookup(lookup(vars.clone())).unwrap();
    assert_eq!(
        (settings.table.as_str(), settings.bucket.as_str()),
        ("t", "b")
    );
    assert_eq!(settings.token_source, TokenSource::default());
    assert_eq!(settings.repo_endpoint, None);

    let mut missing = vars.clone();
    missing.remove(env::BUCKET);
    assert_eq!(
        Settings::from_lookup(lookup(missing)).unwrap_err(),
        ConfigError::MissingVariable(env::BUCKET)
    );

    let mut with_file = vars.clone();
    with_file.insert(env::TOKEN_FILE, "/run/secret");
    with_file.insert(env::REPO_ENDPOINT, "not a url");
    let error = Settings::from_lookup(lookup(with_file.clone())).unwrap_err();
    assert!(error.to_string().contains(env::REPO_ENDPOINT), "{error}");
    // The token travels with every request: https, or http to a loopback address only.
    for (endpoint, allowed) in [
        ("https://repo-prod.prod.sagebase.org/repo/v1", true),
        ("http://localhost:8080/repo/v1", true),
        ("http://[::1]:8080/repo/v1", true),
        ("http://repo.example.org/repo/v1", false),
        ("http://10.0.0.5/repo/v1", false),
        ("ftp://127.0.0.1/repo/v1", false),
    ] {
        with_file.insert(env::REPO_ENDPOINT, endpoint);
        let result = Settings::from_lookup(lookup(with_file.clone()));
        assert_eq!(result.is_ok(), allowed, "{endpoint}: {result:?}");
        if let Err(error) = result {
            assert!(error.to_string().contains(env::REPO_ENDPOINT), "{error}");
        }
    }
    with_file.insert(env::REPO_ENDPOINT, "http://127.0.0.1:1/repo/v1");
    let settings = Settings::from_lookup(lookup(with_file)).unwrap();
    assert_eq!(
        settings.token_source,
        TokenSource::File(PathBuf::from("/run/secret"))
    );
}
