//! `synmigrate-local up` announces the deployment as `KEY=VALUE` lines and `READY`, writes the same
//! lines to its env file, and stops when its standard input closes (the parent went away). With
//! `--synapse-repo-endpoint` and friends it runs the pipeline against a Synapse it did not start:
//! here a separately started `synapse-sim`, migrated through the `synmigrate` CLI.
//!
//! The second test needs the workspace's binaries (`cargo build --workspace --bins`; `make test`
//! does): the functions, `synapse-sim` and `synmigrate`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use synmigrate_testkit::{workspace_binary, AwsStack};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Under nextest's 5-minute kill, with the start-ups above.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(150);

/// Starts `command` with piped standard input and output and returns it with every line it printed
/// up to `READY` (killing it if that takes more than [`READY_TIMEOUT`]).
fn launch(command: &mut Command) -> (Child, Vec<String>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?} starts: {e}", command.get_program()));
    let stdout = child.stdout.take().expect("piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let ready = line == "READY";
            let _ = lines.send(line);
            if ready {
                break;
            }
        }
    });
    let mut announced = Vec::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    while announced.last().map(String::as_str) != Some("READY") {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => announced.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{:?}: no READY within {READY_TIMEOUT:?}; got {announced:?}",
                    command.get_program()
                );
            }
        }
    }
    announced.pop();
    (child, announced)
}

/// Closes the child's standard input and waits (bounded) for it to exit successfully.
fn stop(mut child: Child, what: &str) {
    drop(child.stdin.take());
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running {STOP_TIMEOUT:?} after its standard input closed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{what}: {status}");
}

/// The announced value of `key`.
fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} missing from {lines:?}"))
}

fn keys(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| line.split_once('=').map(|(key, _)| key))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synmigrate-local-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

#[test]
fn up_announces_the_deployment_and_stops_on_stdin_eof() {
    let dir = temp_dir("up");
    let env_file = dir.join("env");
    let (child, announced) = launch(
        Command::new(env!("CARGO_BIN_EXE_synmigrate-local"))
            .args(["up", "--generate", "3", "--env-file"])
            .arg(&env_file)
            .stderr(Stdio::inherit()),
    );
    let keys = keys(&announced);
    for key in [
        "AWS_ENDPOINT_URL",
        "SYNMIGRATE_STATE_MACHINE_ARN",
        "SYNMIGRATE_TABLE",
        "SYNMIGRATE_BUCKET",
        "SYNMIGRATE_FAILURE_QUEUE_URL",
        "SYNMIGRATE_S3_FORCE_PATH_STYLE",
        "SYNAPSE_REPO_ENDPOINT",
        "SYNAPSE_FILE_ENDPOINT",
        "SYNAPSE_PROJECT",
        "SYNAPSE_DESTINATION",
    ] {
        assert!(keys.contains(&key), "{key} missing from {announced:?}");
    }
    assert!(
        !announced.iter().any(|line| line.contains("migrator-token")),
        "the token is never printed"
    );
    let written = std::fs::read_to_string(&env_file).expect("the env file is written");
    assert_eq!(written.lines().collect::<Vec<_>>(), announced);

    stop(child, "synmigrate-local up");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The token of the external server's migrator: it must show up nowhere.
const TOKEN: &str = "external-secret-4f1c9a";
const DESTINATION: i64 = 7001;

/// Three small files (one in a folder) the migrator may update, and its external S3 destination.
fn external_fixture() -> Value {
    let file = |name: &str, text: &str| json!({"type": "file", "name": name, "versions": [{"content": {"text": text}}]});
    json!({
        "users": [
            {"userName": "owner", "ownerId": "3350001", "token": "owner-token"},
            {"userName": "migrator", "ownerId": "3350002", "token": TOKEN}
        ],
        "storageLocations": [
            {"storageLocationId": 1, "kind": "synapse", "bucket": "synapse-storage"},
            {"storageLocationId": DESTINATION, "kind": "externalS3", "bucket": "destination",
             "baseKey": "migrated", "createdBy": "migrator"}
        ],
        "projects": [{
            "name": "External", "owner": "owner",
            "acl": {"migrator": ["READ", "DOWNLOAD", "UPDATE"]},
            "children": [
                file("a.txt", "first file"),
                file("b.txt", "second file"),
                {"type": "folder", "name": "folder", "children": [file("c.txt", "third file")]}
            ]
        }]
    })
}

/// A workspace binary, which `cargo build --workspace --bins` must have made.
fn built(name: &str) -> PathBuf {
    let path = workspace_binary(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs the `synmigrate` CLI with the deployment's settings, at most until `deadline`.
fn cli(settings: &[(String, String)], args: &[&str], log: &Path, deadline: Instant) -> Output {
    let mut child = Command::new(built("synmigrate"))
        .args(args)
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).expect("the CLI's log"))
        .spawn()
        .expect("the CLI starts");
    while child.try_wait().expect("waitable").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("synmigrate {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().expect("its output")
}

/// The file entities below `parent`, walked through the Synapse API with the migrator's token.
async fn files(http: &reqwest::Client, repo: &str, parent: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![parent.to_owned()];
    while let Some(folder) = folders.pop() {
        let page: Value = http
            .post(format!("{repo}/entity/children"))
            .bearer_auth(TOKEN)
            .json(&json!({"parentId": folder, "includeTypes": ["folder", "file"]}))
            .send()
            .await
            .expect("the children")
            .json()
            .await
            .expect("their JSON");
        for child in page["page"].as_array().expect("a page") {
            let id = child["id"].as_str().expect("an id").to_owned();
            if child["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("FileEntity"))
            {
                found.push(id);
            } else {
                folders.push(id);
            }
        }
    }
    found.sort();
    found
}

/// The storage location of the file handle the entity's current version points at.
async fn current_location(http: &reqwest::Client, admin: &str, id: &str) -> Option<i64> {
    let snapshot: Value = http
        .get(format!("{admin}/entities/{id}"))
        .send()
        .await
        .expect("the entity")
        .json()
        .await
        .expect("its JSON");
    let handle = snapshot["entity"]["dataFileHandleId"].as_str()?;
    snapshot["fileHandles"]
        .as_array()?
        .iter()
        .find(|h| h["id"].as_str() == Some(handle))?["storageLocationId"]
        .as_i64()
}

#[test]
fn up_runs_the_pipeline_against_an_external_synapse() {
    let dir = temp_dir("external");
    let fixture = dir.join("fixture.json");
    std::fs::write(&fixture, external_fixture().to_string()).expect("the fixture is written");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("the token is written");
    let (env_file, up_log, cli_log) = (dir.join("env"), dir.join("up.log"), dir.join("cli.log"));

    // The "real" Synapse: its own process, keeping its buckets in an S3 of its own, which the
    // functions are then pointed at with --s3-endpoint.
    let s3 = AwsStack::start().expect("the S3 of the external Synapse starts");
    let (sim, sim_lines) = launch(
        Command::new(built("synapse-sim"))
            .args(["--no-throttle", "--fixture"])
            .arg(&fixture)
            .envs(s3.env_vars())
            .stderr(Stdio::inherit()),
    );
    let repo = value(&sim_lines, "SYNAPSE_REPO_ENDPOINT").to_owned();
    let file_endpoint = value(&sim_lines, "SYNAPSE_FILE_ENDPOINT").to_owned();
    let project = value(&sim_lines, "SYNAPSE_PROJECT")
        .split(' ')
        .next()
        .expect("a project id")
        .to_owned();

    let (up, announced) = launch(
        Command::new(env!("CARGO_BIN_EXE_synmigrate-local"))
            .args(["up", "--synapse-repo-endpoint", &repo])
            .args(["--synapse-file-endpoint", &file_endpoint])
            .arg("--synapse-token-file")
            .arg(&token_file)
            .args(["--s3-endpoint", s3.endpoint_url()])
            .args(["--project", &project])
            .args(["--destination", &DESTINATION.to_string()])
            .arg("--env-file")
            .arg(&env_file)
            .env_remove(synmigrate::synapse::TOKEN_ENV_VAR)
            // Its own and the functions' error output, searched for the token below.
            .stderr(File::create(&up_log).expect("the log file")),
    );
    assert_eq!(value(&announced, "SYNAPSE_REPO_ENDPOINT"), repo);
    assert_eq!(value(&announced, "SYNAPSE_FILE_ENDPOINT"), file_endpoint);
    assert_eq!(value(&announced, "SYNAPSE_PROJECT"), project);
    assert_eq!(
        value(&announced, "SYNAPSE_DESTINATION"),
        DESTINATION.to_string()
    );
    assert!(
        !keys(&announced).contains(&synmigrate_local::S3_ENDPOINT_ENV),
        "the CLI only needs the artifacts bucket, in the stack: {announced:?}"
    );
    assert_ne!(
        value(&announced, "AWS_ENDPOINT_URL"),
        s3.endpoint_url(),
        "the pipeline runs on a stack of its own"
    );
    let written = std::fs::read_to_string(&env_file).expect("the env file is written");
    assert_eq!(written.lines().collect::<Vec<_>>(), announced);

    // A migration with the direct engine: its copies are the functions' own S3 calls, so they
    // only find the source bytes if --s3-endpoint reached them, while the plan they write must
    // land in the stack's artifacts bucket for Step Functions to read it.
    let settings: Vec<(String, String)> = announced
        .iter()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    let destination = DESTINATION.to_string();
    let migration = ["--project", &project, "--destination", &destination];
    let started = cli(
        &settings,
        &[&["start", "--copy-mode", "direct"], &migration[..]].concat(),
        &cli_log,
        deadline,
    );
    let log = || std::fs::read_to_string(&cli_log).unwrap_or_default();
    assert!(started.status.success(), "start: {}", log());
    let arn = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    assert!(arn.starts_with("arn:aws:states:"), "{arn}");
    let watched = cli(
        &settings,
        &["watch", "--interval", "0.5", "--execution", &arn],
        &cli_log,
        deadline,
    );
    assert!(
        watched.status.success(),
        "watch: {}\n{}",
        String::from_utf8_lossy(&watched.stdout),
        log()
    );

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let admin = format!("{}/admin", repo.trim_end_matches("/repo/v1"));
    let (files, locations) = runtime.block_on(async {
        let http = synmigrate_testkit::http_client();
        let files = files(&http, &repo, &project).await;
        let mut locations = Vec::new();
        for id in &files {
            locations.push(current_location(&http, &admin, id).await);
        }
        (files, locations)
    });
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        locations.iter().all(|l| *l == Some(DESTINATION)),
        "every file points into the destination: {files:?} {locations:?}"
    );

    stop(up, "synmigrate-local up");
    stop(sim, "synapse-sim");
    drop(s3);
    let output = [
        announced.join("\n"),
        written,
        std::fs::read_to_string(&up_log).unwrap_or_default(),
        log(),
        String::from_utf8_lossy(&watched.stdout).into_owned(),
    ];
    assert!(
        !output.iter().any(|text| text.contains(TOKEN)),
        "the token appears in no announcement, env file, log or CLI output"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
