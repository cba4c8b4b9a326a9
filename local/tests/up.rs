//! `synmigrate-local up` announces the deployment as `KEY=VALUE` lines and `READY`, writes the same
//! lines to its env file, and stops when its standard input closes (the parent went away).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn up_announces_the_deployment_and_stops_on_stdin_eof() {
    let dir = std::env::temp_dir().join(format!("synmigrate-local-up-{}", std::process::id()));
    let env_file = dir.join("env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_synmigrate-local"))
        .args(["up", "--generate", "3", "--env-file"])
        .arg(&env_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while announced.last().map(String::as_str) != Some("READY") {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => announced.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no READY within 120 s; got {announced:?}");
            }
        }
    }
    let keys: Vec<&str> = announced
        .iter()
        .filter_map(|line| line.split_once('=').map(|(key, _)| key))
        .collect();
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
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        announced[..announced.len() - 1]
    );

    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 20 s after its standard input closed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
