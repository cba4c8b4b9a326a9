//! Fidelity: the official Python client (`synapse migrate`, synapseclient in the project's venv)
//! migrates the shipped sample project through the simulator, and the result is what Synapse would
//! hold. (The workspace-level `tests/tests/system/official_client.rs` covers the `all` strategy
//! on its own fixture.)

use std::collections::BTreeMap;
use std::time::Duration;

use synapse_sim::RunningSim;
use synmigrate_testkit::python;

use crate::common::{sample, start};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the project's Python with `args` (HOME in `dir`) under the client's time limit; returns
/// its standard output, failing the test with its standard error unless it exits 0.
pub(crate) async fn python_in(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> String {
    let output = tokio::time::timeout(
        CLIENT_TIMEOUT,
        tokio::process::Command::new(python().unwrap())
            .args(args)
            .env("HOME", dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finishes in time")
    .expect("the client runs");
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A fresh working directory for the client named after `test`, with its config file pointing
/// at `sim`; returns both.
pub(crate) fn client_dir(sim: &RunningSim, test: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("synapse-sim-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("synapseConfig");
    std::fs::write(&config, sim.python_client_config()).unwrap();
    (dir, config)
}

/// Runs a Python `script` of the client's calls with `sys.argv[1:]` = config, token, `rest`;
/// returns what it printed.
pub(crate) async fn client_script(
    dir: &std::path::Path,
    config: &std::path::Path,
    script: &str,
    token: &str,
    rest: &[String],
) -> String {
    let mut args = vec![
        std::ffi::OsStr::new("-c"),
        std::ffi::OsStr::new(script),
        config.as_os_str(),
        std::ffi::OsStr::new(token),
    ];
    args.extend(rest.iter().map(std::ffi::OsStr::new));
    python_in(dir, &args).await
}

/// Runs `synapse -s -c CONFIG -p migrator-token migrate ...` in `dir` (made by [`client_dir`])
/// with its own index file named after `run`; returns the CSV log as rows.
async fn migrate(
    sim: &RunningSim,
    dir: &std::path::Path,
    strategy: &str,
    run: &str,
) -> Vec<BTreeMap<String, String>> {
    let config = dir.join("synapseConfig");
    let csv = dir.join(format!("log-{run}.csv"));
    let index = dir.join(format!("index-{run}.db"));
    let project = sim.project_id("Sample Project").unwrap();
    let words = [
        "-m",
        "synapseclient",
        "-s",
        "-c",
        config.to_str().unwrap(),
        "-p",
        "migrator-token",
        "migrate",
        &project,
        "7001",
        index.to_str().unwrap(),
        "--force",
        "--continue_on_error",
        "--file_version_strategy",
        strategy,
        "--csv_log_path",
        csv.to_str().unwrap(),
    ];
    let args: Vec<&std::ffi::OsStr> = words.iter().map(std::ffi::OsStr::new).collect();
    python_in(dir, &args).await;
    parse_csv(&std::fs::read_to_string(&csv).unwrap())
}

/// A minimal CSV reader: enough for the client's log (quoted fields may hold newlines).
fn parse_csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let (mut field, mut record, mut quoted) = (String::new(), Vec::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    let header = records.remove(0);
    records
        .into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

fn status_of<'a>(rows: &'a [BTreeMap<String, String>], id: &str) -> Vec<&'a str> {
    rows.iter()
        .filter(|r| r["id"] == id)
        .map(|r| r["status"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_migrates_the_sample_project() {
    let sim = start(&sample()).await;
    let (dir, _) = client_dir(&sim, "python");
    let id = |path: &str| sim.entity_id(&format!("Sample Project/{path}")).unwrap();
    let before_big = sim.entity(&id("big-101MiB.bin")).unwrap();

    let rows = migrate(&sim, &dir, "new", "first").await;
    assert_eq!(status_of(&rows, &id("empty.txt")), ["ERRORED"]);
    // Its file name fails the copy's name rule: the official client leaves it behind.
    assert_eq!(status_of(&rows, &id("resume 1.txt")), ["ERRORED"]);
    assert_eq!(
        status_of(&rows, &id("already-migrated.bin")),
        ["ALREADY_MIGRATED"]
    );
    assert!(status_of(&rows, &id("external-link.txt")).is_empty());
    assert!(status_of(&rows, &id("gcs-object.bin")).is_empty());
    let migrated = rows.iter().filter(|r| r["status"] == "MIGRATED").count();
    assert_eq!(migrated, 60 + 6, "batch-01 plus six other S3 files");

    // Strategy `new`: one new version whose handle is a copy in 7001 with the same bytes.
    let big = sim.entity(&id("big-101MiB.bin")).unwrap();
    assert_eq!(big.versions.len(), before_big.versions.len() + 1);
    let new_handle = big
        .file_handles
        .iter()
        .find(|h| Some(&h.id) == big.entity.data_file_handle_id.as_ref())
        .unwrap();
    assert_eq!(new_handle.storage_location_id, Some(7001));
    assert_eq!(
        new_handle.content_md5,
        before_big.file_handles[0].content_md5
    );
    let copied = sim
        .object_md5("migration-destination", new_handle.key.as_deref().unwrap())
        .await;
    assert_eq!(Some(copied), new_handle.content_md5);
    // The shared handle was copied once and both entities point at the copy.
    let a = sim
        .entity(&id("analysis/shared-a.txt"))
        .unwrap()
        .entity
        .data_file_handle_id;
    let b = sim
        .entity(&id("shared-b.txt"))
        .unwrap()
        .entity
        .data_file_handle_id;
    assert_eq!(a, b);
    // Annotations survive.
    let results = sim.entity(&id("analysis/results.tsv")).unwrap();
    assert_eq!(
        results.annotations.annotations["tissue"].value,
        ["liver", "lung"]
    );

    // The client used only the documented endpoints, and every answer was a documented status.
    let counts = sim.request_counts();
    let allowed = [
        "GET /userProfile",
        "GET /storageLocation/{id}",
        "POST /entity/children",
        "POST /entity/{id}/bundle2",
        "POST /entity/{id}/version/{version}/bundle2",
        "GET /entity/{id}/version",
        "PUT /entity/{id}",
        "POST /file/multipart",
        "POST /file/multipart/{upload}/presigned/url/batch",
        "PUT /file/multipart/{upload}/add/{part}",
        "PUT /file/multipart/{upload}/complete",
        "PUT /entity/{id}/version/{version}/filehandle",
        "PUT /entity/{id}/annotations2",
    ];
    for endpoint in counts.by_endpoint.keys() {
        assert!(
            allowed.contains(&endpoint.as_str()),
            "unexpected call {endpoint}"
        );
    }
    assert_eq!(counts.by_status.get(&404), None, "{counts:?}");

    // A second run with a fresh index finds every copied file already in the destination.
    let again = migrate(&sim, &dir, "new", "second").await;
    let done = again
        .iter()
        .filter(|r| r["status"] == "ALREADY_MIGRATED")
        .count();
    assert_eq!(done, migrated + 1, "{again:?}");
    assert!(again.iter().all(|r| r["status"] != "MIGRATED"));
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

/// The official client's `_deleteFileHandle` (the client's one call of `DELETE /fileHandle/{id}`)
/// against the simulator: a handle of one's own that nothing uses is deleted, one an entity
/// version uses is refused with the server's 409, someone else's with its 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_deletes_a_handle_as_the_server_allows() {
    let sim = start(&crate::common::small_fixture()).await;
    let alice = crate::common::Api::new(&sim, Some("alice-token"));
    let (_, unused) =
        crate::common::register(&sim, &alice, "sim-dest", "dest/py.txt", 7001, b"py\n").await;
    let unused = unused["id"].as_str().unwrap().to_owned();
    let entity = sim.entity_id("P/multi.txt").unwrap();
    let used = alice.bundle(&entity).await["fileHandles"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (dir, config) = client_dir(&sim, "delete");
    // Each deletion prints "ok" or the HTTP status the client raised.
    let script = r#"
import sys, synapseclient
from synapseclient.core.exceptions import SynapseHTTPError
config, token, handles = sys.argv[1], sys.argv[2], sys.argv[3:]
syn = synapseclient.Synapse(configPath=config, skip_checks=True, silent=True)
syn.login(authToken=token, silent=True)
for handle in handles:
    try:
        syn._deleteFileHandle({"id": handle})
        print(handle, "ok")
    except SynapseHTTPError as error:
        print(handle, error.response.status_code)
"#;
    let run = |token: &'static str, handles: Vec<String>| {
        let (dir, config) = (dir.clone(), config.clone());
        async move { client_script(&dir, &config, script, token, &handles).await }
    };
    let bob = run("bob-token", vec![unused.clone()]).await;
    assert_eq!(bob, format!("{unused} 403\n"));
    let answers = run(
        "alice-token",
        vec![used.clone(), unused.clone(), "999999".into()],
    )
    .await;
    assert_eq!(
        answers,
        format!("{used} 409\n{unused} ok\n999999 ok\n"),
        "{answers}"
    );
    assert!(sim.file_handle(&unused).is_none());
    assert!(sim.file_handle(&used).is_some());
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}

/// The official client's `_getDefaultUploadDestination` (its call of
/// `GET /entity/{id}/uploadDestination`) reads a folder's inherited destination and Synapse
/// storage where no setting applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_reads_inherited_upload_destinations() {
    let sim = start(&crate::common::small_fixture()).await;
    let inner = sim.entity_id("P/sub/inner").unwrap();
    let file = sim.entity_id("P/multi.txt").unwrap();
    let (dir, config) = client_dir(&sim, "destination");
    let script = r#"
import sys, synapseclient
config, token, nodes = sys.argv[1], sys.argv[2], sys.argv[3:]
syn = synapseclient.Synapse(configPath=config, skip_checks=True, silent=True)
syn.login(authToken=token, silent=True)
for node in nodes:
    destination = syn._getDefaultUploadDestination(node)
    print(node, destination["storageLocationId"], destination["concreteType"].rsplit(".", 1)[1])
"#;
    let answers = client_script(
        &dir,
        &config,
        script,
        "alice-token",
        &[inner.clone(), file.clone()],
    )
    .await;
    assert_eq!(
        answers,
        format!("{inner} 7001 ExternalS3UploadDestination\n{file} 1 S3UploadDestination\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
