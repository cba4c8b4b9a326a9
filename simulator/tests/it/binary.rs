//! The `synapse-sim` binary: seeds, announces its endpoints, serves, and exits when stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{small_fixture, stack};

/// Starts the binary with `args` and the local AWS stack's `env`, and returns it with every stdout
/// line up to `READY`.
fn launch(env: &[(String, String)], args: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synapse-sim"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let ready = line == "READY";
            let _ = send.send(line);
            if ready {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("READY") {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no READY line, got {lines:?}");
            }
        }
    }
    (child, lines)
}

fn value<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} announced in {lines:?}"))
}

/// Closes stdin and waits (bounded) for the process to exit.
fn stop(mut child: Child) {
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the simulator did not exit after stdin closed");
}

/// Sends `request` to the running binary and parses its JSON answer.
async fn json_body(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Stops the binary off the async runtime, then removes the test's file.
async fn stop_and_remove(child: Child, path: std::path::PathBuf) {
    tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    let _ = std::fs::remove_file(path);
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("synapse-sim-{}-{name}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_fixture_and_exits_on_stdin_eof() {
    let path = temp_path("fixture.json");
    std::fs::write(&path, serde_json::to_string(&small_fixture()).unwrap()).unwrap();
    let arg = path.to_str().unwrap().to_owned();
    let aws = stack().await;
    let env = aws.env_vars();
    let (child, lines) =
        tokio::task::spawn_blocking(move || launch(&env, &["--fixture", &arg, "--port", "0"]))
            .await
            .unwrap();
    let repo = value(&lines, "SYNAPSE_REPO_ENDPOINT").to_owned();
    assert!(repo.starts_with("http://127.0.0.1:") && repo.ends_with("/repo/v1"));
    assert!(value(&lines, "SYNAPSE_FILE_ENDPOINT").ends_with("/file/v1"));
    assert!(value(&lines, "SYNAPSE_AUTH_ENDPOINT").ends_with("/auth/v1"));
    assert_eq!(value(&lines, "SYNAPSE_PROJECT"), "syn1000 P");
    assert!(
        !lines.join("\n").contains("-token"),
        "tokens are never printed"
    );
    let me = json_body(
        synmigrate_testkit::http_client()
            .get(format!("{repo}/userProfile"))
            .bearer_auth("alice-token"),
    )
    .await;
    assert_eq!(me["userName"], "alice");
    stop_and_remove(child, path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_a_project_and_writes_its_fixture() {
    let path = temp_path("generated.json");
    let arg = path.to_str().unwrap().to_owned();
    let aws = stack().await;
    let env = aws.env_vars();
    let (child, lines) = tokio::task::spawn_blocking(move || {
        launch(
            &env,
            &["--generate", "45", "--seed", "3", "--write-fixture", &arg],
        )
    })
    .await
    .unwrap();
    let written = synapse_sim::Fixture::from_file(&path).unwrap();
    let expected = synapse_sim::Fixture::generate(45, 3);
    assert_eq!(
        serde_json::to_value(&written).unwrap(),
        serde_json::to_value(&expected).unwrap()
    );
    let repo = value(&lines, "SYNAPSE_REPO_ENDPOINT").to_owned();
    let project = value(&lines, "SYNAPSE_PROJECT")
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let children = json_body(
        synmigrate_testkit::http_client()
            .post(format!("{repo}/entity/children"))
            .bearer_auth("migrator-token")
            .json(&serde_json::json!({"parentId": project, "includeTypes": ["folder", "file"]})),
    )
    .await;
    // 45 files at 40 per folder: two folders at the top.
    assert_eq!(children["page"].as_array().unwrap().len(), 2);
    stop_and_remove(child, path).await;
}
