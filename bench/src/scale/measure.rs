//! One size: a fresh local deployment seeded with a generated project of tiny files, a counting
//! proxy between the functions and moto, and the stages invoked one at a time through the local
//! Lambda host (the real function binaries), each measured.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use synapse_sim::{Fixture, ThrottleConfig};
use synmigrate_bench::projects::{count_files, shrink_files};
use synmigrate_bench::runs::{DESTINATION, MAX_CONCURRENCY, STRATEGY};
use synmigrate_local::{LocalDeployment, LocalOptions};
use synmigrate_testkit::{object_bytes, AwsCountingProxy, AwsCounts};

use crate::memory;
use crate::Args;

pub const INDEX_FUNCTION: &str = "synmigrate-index";
pub const START_COPY_FUNCTION: &str = "synmigrate-start-copy";
pub const COPY_PARTS_FUNCTION: &str = "synmigrate-copy-parts";
pub const COMPLETE_FUNCTION: &str = "synmigrate-complete";
pub const REPORT_FUNCTION: &str = "synmigrate-report";
/// Index invocations at most (each walks for its time budget, 10 minutes by default).
/// The build measured unless `SCALE_LAMBDA_BUILD` says otherwise (and in measurements saved
/// before the choice existed).
pub const DEBUG_BUILD: &str = "debug build";

const MAX_INDEX_INVOCATIONS: u32 = 1000;

/// What one stage cost, over all its invocations at one size.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: &'static str,
    /// The Lambda function (binary) that runs it.
    pub function: &'static str,
    pub invocations: u32,
    pub wall: Duration,
    /// Highest `VmHWM` of the function's process over the stage's invocations, KiB.
    pub peak_kib: u64,
    /// The process's RSS when the stage began, KiB: `None` when the stage started a fresh process.
    pub start_kib: Option<u64>,
    /// Every Synapse request the stage made (429s included).
    pub synapse: usize,
    pub synapse_429: usize,
    pub synapse_by_endpoint: BTreeMap<String, usize>,
    pub aws: AwsCounts,
    /// What the stage went through: files indexed, items planned, files copied, items reported.
    pub items: u64,
}

impl Stage {
    fn new(name: &'static str, function: &'static str) -> Self {
        Self {
            name,
            function,
            invocations: 0,
            wall: Duration::ZERO,
            peak_kib: 0,
            start_kib: None,
            synapse: 0,
            synapse_429: 0,
            synapse_by_endpoint: BTreeMap::new(),
            aws: AwsCounts::default(),
            items: 0,
        }
    }
}

/// Everything measured at one size.
#[derive(Debug)]
pub struct SizeRun {
    pub files: usize,
    /// Plan and Report alone on a seeded state table ([`run_seeded_size`]).
    pub seeded: bool,
    /// The function binaries measured ([`Args::build`]).
    pub build: String,
    /// Starting the deployment and seeding the project (entities and S3 objects).
    pub setup: Duration,
    pub stages: Vec<Stage>,
    pub unit_count: u64,
    pub follower_unit_count: u64,
    pub planned_items: u64,
    pub planned_bytes: u64,
    pub sample_units: usize,
    /// Items of the sampled units, and their bytes.
    pub sample_files: u64,
    pub sample_bytes: u64,
    pub part_batches: u64,
    pub migrated: u64,
    pub errored: u64,
    pub report_items: u64,
    /// Whether every `/proc/<pid>/clear_refs` write worked (else a warm process's peak may be an
    /// earlier stage's).
    pub peaks_reset: bool,
}

impl SizeRun {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// The generated project: `Fixture::generate` (folders of 40) with every file shrunk.
fn fixture(args: &Args, files: usize) -> Fixture {
    let mut fixture = Fixture::generate(files, args.seed);
    for project in &mut fixture.projects {
        shrink_files(&mut project.children, args.min_bytes, args.max_bytes);
    }
    fixture
}

/// Invokes the functions one at a time and measures each invocation.
struct Probe<'a> {
    deployment: &'a LocalDeployment,
    proxy: &'a AwsCountingProxy,
    peaks_reset: bool,
}

impl Probe<'_> {
    async fn invoke(&mut self, stage: &mut Stage, payload: &Value) -> anyhow::Result<Value> {
        let before = self.deployment.function_pids(stage.function);
        for &pid in &before {
            self.peaks_reset &= memory::reset_peak(pid);
        }
        if stage.invocations == 0 {
            stage.start_kib = before
                .iter()
                .filter_map(|&pid| memory::read(pid))
                .map(|rss| rss.current_kib)
                .max();
        }
        let sim = self.deployment.sim();
        sim.reset_requests();
        let _ = self.proxy.take();
        let clock = Instant::now();
        let answer = self.deployment.invoke(stage.function, payload).await;
        stage.wall += clock.elapsed();
        stage.invocations += 1;
        let peak = self
            .deployment
            .function_pids(stage.function)
            .into_iter()
            .filter_map(memory::read)
            .map(|rss| rss.peak_kib)
            .max()
            .unwrap_or_default();
        stage.peak_kib = stage.peak_kib.max(peak);
        for request in sim.requests() {
            stage.synapse += 1;
            if request.status == 429 {
                stage.synapse_429 += 1;
            }
            *stage
                .synapse_by_endpoint
                .entry(request.endpoint())
                .or_default() += 1;
        }
        stage.aws.add(&self.proxy.take());
        answer.with_context(|| format!("{} ({})", stage.name, stage.function))
    }
}

fn number(value: &Value, field: &str) -> u64 {
    value[field].as_u64().unwrap_or_default()
}

/// Measures every stage on a fresh deployment with a generated project of `files` files.
pub async fn run_size(args: &Args, files: usize) -> anyhow::Result<SizeRun> {
    let fixture = fixture(args, files);
    let project_files = fixture.projects.first().map_or(0, count_files);
    eprintln!("== {files} files: seeding the simulator and moto ...");
    let (deployment, proxy, setup) = deploy(args, fixture).await?;
    let result = stages(args, &deployment, &proxy, project_files, setup).await;
    deployment.shutdown().await;
    result
}

/// Files of the small project whose items, as Index wrote them, [`run_seeded_size`] clones.
const SEED_TEMPLATE_FILES: usize = 400;

/// Plan and Report alone on a state table of `files` INDEXED items: Init and Index run for real
/// on a small generated project, then its items (as Index wrote them) are cloned under new
/// entity and handle ids with BatchWriteItem, straight to moto (not counted), up to `files`.
/// Index itself is measured by [`run_size`]; at this size moto would take an hour to take its
/// writes one at a time.
pub async fn run_seeded_size(args: &Args, files: usize) -> anyhow::Result<SizeRun> {
    eprintln!("== {files} items seeded in the state table (Plan and Report only) ...");
    let (deployment, proxy, setup) = deploy(args, fixture(args, SEED_TEMPLATE_FILES)).await?;
    let result = seeded_stages(args, &deployment, &proxy, files, setup).await;
    deployment.shutdown().await;
    result
}

async fn seeded_stages(
    args: &Args,
    deployment: &LocalDeployment,
    proxy: &AwsCountingProxy,
    files: usize,
    setup: Duration,
) -> anyhow::Result<SizeRun> {
    let mut probe = Probe {
        deployment,
        proxy,
        peaks_reset: true,
    };
    let run = init_and_index(args, &mut probe, files).await?.0;
    let clock = Instant::now();
    let project_id = run["projectId"].as_str().context("a run without project")?;
    clone_items(deployment, project_id, files).await?;
    eprintln!(
        "   {files} items written in {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    let setup = setup + clock.elapsed();

    let (plan, planned) = plan_stage(&mut probe, &run).await?;
    let (report, summary) = report_stage(&mut probe, &run).await?;
    Ok(SizeRun {
        files,
        seeded: true,
        build: args.build(),
        setup,
        stages: vec![plan, report],
        unit_count: number(&planned, "unitCount"),
        follower_unit_count: number(&planned, "followerUnitCount"),
        planned_items: number(&planned, "itemCount"),
        planned_bytes: number(&planned, "totalBytes"),
        sample_units: 0,
        sample_files: 0,
        sample_bytes: 0,
        part_batches: 0,
        migrated: 0,
        errored: 0,
        report_items: number(&summary["totals"], "items"),
        peaks_reset: probe.peaks_reset,
    })
}

/// Brings the migration to `count` INDEXED items with copies of the ones Index wrote for the
/// template project, each under a new entity and source handle (so Plan sees distinct files).
async fn clone_items(
    deployment: &LocalDeployment,
    project_id: &str,
    count: usize,
) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    use synmigrate::state::{plan_order_key, ItemKey, MigrationKey};

    let dynamo = aws_sdk_dynamodb::Client::new(deployment.sdk_config());
    let pk = MigrationKey::new(project_id, DESTINATION)?.pk();
    let templates = dynamo
        .query()
        .table_name(deployment.table())
        .key_condition_expression("PK = :pk AND begins_with(SK, :item)")
        .expression_attribute_values(":pk", AttributeValue::S(pk))
        .expression_attribute_values(":item", AttributeValue::S("ITEM#".into()))
        .send()
        .await?
        .items
        .unwrap_or_default();
    anyhow::ensure!(!templates.is_empty(), "Index wrote no item to clone");
    let items = (0..count.saturating_sub(templates.len())).map(|i| {
        let mut item = templates[i % templates.len()].clone();
        let key = ItemKey::new(format!("syn{}", 90_000_000 + i), 1).expect("a valid key");
        let source = (80_000_000 + i).to_string();
        let size: u64 = match item.get("size") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or_default(),
            _ => 0,
        };
        let s = |text: String| AttributeValue::S(text);
        item.insert("SK".into(), s(key.sk()));
        item.insert("SSK".into(), s(plan_order_key(size, &source, None, &key)));
        item.insert("entityId".into(), s(key.entity_id.clone()));
        item.insert("version".into(), AttributeValue::N("1".into()));
        item.insert("sourceFileHandleId".into(), s(source));
        WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .expect("an item"),
            )
            .build()
    });
    // 25 a request (BatchWriteItem's most); moto answers all of them.
    let requests: Vec<WriteRequest> = items.collect();
    for chunk in requests.chunks(25) {
        let answer = dynamo
            .batch_write_item()
            .request_items(deployment.table(), chunk.to_vec())
            .send()
            .await?;
        anyhow::ensure!(
            answer.unprocessed_items.is_none_or(|u| u.is_empty()),
            "moto left items unwritten"
        );
    }
    Ok(())
}

/// A fresh deployment seeded with `fixture`, its functions' AWS traffic through a counting
/// proxy; and how long the set-up took.
async fn deploy(
    args: &Args,
    fixture: Fixture,
) -> anyhow::Result<(LocalDeployment, AwsCountingProxy, Duration)> {
    let proxy = AwsCountingProxy::start().await?;
    let options = LocalOptions {
        // The stages after Init run at the harness's rate (see `stages`), which Synapse's
        // throttle would refuse.
        throttle: ThrottleConfig::disabled(),
        // The stages run one at a time: one process per function, whose peak is the stage's.
        max_instances: 1,
        max_synapse_rpm: args.harness_rpm,
        function_env: vec![("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint().to_owned())],
        lambda_build_dir: args.lambda_build.clone(),
        ..LocalOptions::default()
    };
    let clock = Instant::now();
    let deployment = LocalDeployment::start(&fixture, options).await?;
    let setup = clock.elapsed();
    drop(fixture);
    let stack = deployment
        .env_vars()
        .into_iter()
        .find_map(|(k, v)| (k == "AWS_ENDPOINT_URL").then_some(v))
        .context("the stack announced no endpoint")?;
    proxy.set_upstream(&stack);
    eprintln!(
        "   deployment up and seeded in {:.1} s",
        setup.as_secs_f64()
    );
    Ok((deployment, proxy, setup))
}

async fn stages(
    args: &Args,
    deployment: &LocalDeployment,
    proxy: &AwsCountingProxy,
    files: usize,
    setup: Duration,
) -> anyhow::Result<SizeRun> {
    let mut probe = Probe {
        deployment,
        proxy,
        peaks_reset: true,
    };
    let (run, init, index) = init_and_index(args, &mut probe, files).await?;
    // Said now: a later stage that fails (say Plan past the host's 900 s, moto reading its whole
    // table for every query page on a loaded machine) must not take Index's numbers with it.
    eprintln!(
        "   index: {} invocations, {:.1} s, peak RSS {:.1} MiB, {} Synapse calls, {} DynamoDB \
         requests ({:.1} s of them moto's)",
        index.invocations,
        index.wall.as_secs_f64(),
        index.peak_kib as f64 / 1024.0,
        index.synapse,
        index.aws.dynamodb_requests(),
        index.aws.dynamodb_time.as_secs_f64()
    );

    let (plan, planned) = plan_stage(&mut probe, &run).await?;

    let units = read_manifest(deployment, &planned, "key").await?;
    let followers = match planned["followersKey"].as_str() {
        Some(_) => read_manifest(deployment, &planned, "followersKey").await?,
        None => Vec::new(),
    };
    let sample = sample(&units, &followers, args.sample_units);
    let mut start_copy = Stage::new("StartCopy", START_COPY_FUNCTION);
    let mut copy_parts = Stage::new("CopyParts", COPY_PARTS_FUNCTION);
    let mut complete = Stage::new("Complete", COMPLETE_FUNCTION);
    let (mut sample_files, mut sample_bytes, mut part_batches) = (0, 0, 0);
    let (mut migrated, mut errored) = (0, 0);
    for unit in &sample {
        let items = unit["items"].as_array().map_or(0, Vec::len) as u64;
        sample_files += items;
        sample_bytes += number(unit, "totalBytes");
        let started = probe
            .invoke(&mut start_copy, &json!({"run": run, "unit": unit}))
            .await?;
        start_copy.items += items;
        for batch in started["batches"].as_array().into_iter().flatten() {
            part_batches += 1;
            probe
                .invoke(
                    &mut copy_parts,
                    &json!({
                        "run": run,
                        "unitId": started["unitId"],
                        "job": batch["job"],
                        "batch": batch["batch"],
                    }),
                )
                .await?;
            copy_parts.items += 1;
        }
        let completed = probe
            .invoke(
                &mut complete,
                &json!({"stage": "complete", "run": run, "unit": unit, "jobs": started["jobs"]}),
            )
            .await?;
        complete.items += items;
        migrated += number(&completed, "migrated");
        errored += number(&completed, "errored");
    }
    eprintln!(
        "   copy of {} units ({sample_files} files): {migrated} migrated, {errored} errored, {:.1} s",
        sample.len(),
        (start_copy.wall + copy_parts.wall + complete.wall).as_secs_f64()
    );

    let (report, summary) = report_stage(&mut probe, &run).await?;

    let mut stages = vec![init, index, plan, start_copy];
    if copy_parts.invocations > 0 {
        stages.push(copy_parts);
    }
    stages.extend([complete, report]);
    Ok(SizeRun {
        files,
        seeded: false,
        build: args.build(),
        setup,
        stages,
        unit_count: number(&planned, "unitCount"),
        follower_unit_count: number(&planned, "followerUnitCount"),
        planned_items: number(&planned, "itemCount"),
        planned_bytes: number(&planned, "totalBytes"),
        sample_units: sample.len(),
        sample_files,
        sample_bytes,
        part_batches,
        migrated,
        errored,
        report_items: number(&summary["totals"], "items"),
        peaks_reset: probe.peaks_reset,
    })
}

/// Init (with the real budget) and Index until done; returns the run (its budget raised to the
/// harness's rate) and the two stages measured.
async fn init_and_index(
    args: &Args,
    probe: &mut Probe<'_>,
    files: usize,
) -> anyhow::Result<(Value, Stage, Stage)> {
    let deployment = probe.deployment;
    let project_id = deployment
        .project_id()
        .context("no project seeded")?
        .to_owned();
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();

    let mut init = Stage::new("Init", INDEX_FUNCTION);
    let run = probe
        .invoke(
            &mut init,
            &json!({
                "stage": "init",
                "projectId": project_id,
                "destinationStorageLocationId": DESTINATION,
                "executionName": format!("scale-{files}-{epoch}"),
                "options": {
                    "fileVersionStrategy": STRATEGY,
                    "copyMode": "direct",
                    "maxConcurrency": MAX_CONCURRENCY,
                    "maxSynapseRequestsPerMinute": args.budget,
                    "continueOnError": true
                },
            }),
        )
        .await?;
    init.items = 1;
    // Init checked the run's options with the real budget; the later stages get the run with the
    // budget raised, or 10^5 files would take hours to index here (the calls are counted either
    // way, and the hours at the budget computed from them).
    let mut run = run;
    run["options"]["maxSynapseRequestsPerMinute"] = json!(args.harness_rpm);

    let mut index = Stage::new("Index", INDEX_FUNCTION);
    loop {
        let out = probe
            .invoke(&mut index, &json!({"stage": "index", "run": run}))
            .await?;
        index.items += number(&out["counts"], "indexed")
            + number(&out["counts"], "alreadyMigrated")
            + number(&out["counts"], "skipped")
            + number(&out["counts"], "errored")
            + number(&out["counts"], "unchanged");
        eprintln!(
            "   index invocation {}: {} items so far, {:.1} s",
            index.invocations,
            index.items,
            index.wall.as_secs_f64()
        );
        if out["done"].as_bool() == Some(true) {
            break;
        }
        if index.invocations >= MAX_INDEX_INVOCATIONS {
            bail!("Index not done after {MAX_INDEX_INVOCATIONS} invocations");
        }
    }

    Ok((run, init, index))
}

/// Plan, measured; returns its output too.
async fn plan_stage(probe: &mut Probe<'_>, run: &Value) -> anyhow::Result<(Stage, Value)> {
    let mut plan = Stage::new("Plan", INDEX_FUNCTION);
    let planned = probe
        .invoke(&mut plan, &json!({"stage": "plan", "run": run}))
        .await?;
    plan.items = number(&planned, "itemCount");
    eprintln!(
        "   plan: {} units ({} followers), {} items, {:.1} s",
        number(&planned, "unitCount"),
        number(&planned, "followerUnitCount"),
        plan.items,
        plan.wall.as_secs_f64()
    );
    Ok((plan, planned))
}

/// Report, measured; returns the run's summary too.
async fn report_stage(probe: &mut Probe<'_>, run: &Value) -> anyhow::Result<(Stage, Value)> {
    let mut report = Stage::new("Report", REPORT_FUNCTION);
    let summary = probe
        .invoke(
            &mut report,
            &json!({"stage": "report", "run": run, "aborted": false}),
        )
        .await?;
    report.items = number(&summary["totals"], "items");
    eprintln!(
        "   report: {} items, {:.1} s",
        report.items,
        report.wall.as_secs_f64()
    );
    Ok((report, summary))
}

/// The units of a manifest Plan wrote (`field` names its key in Plan's output).
async fn read_manifest(
    deployment: &LocalDeployment,
    planned: &Value,
    field: &str,
) -> anyhow::Result<Vec<Value>> {
    let bucket = planned["bucket"].as_str().context("Plan named no bucket")?;
    let key = planned[field]
        .as_str()
        .with_context(|| format!("Plan's output has no {field}"))?;
    let bytes = object_bytes(&deployment.s3_client().await, bucket, key).await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// `count` lead units spread evenly over the manifest, then the follower units (if Plan wrote
/// any) whose items share a source with a sampled unit: the state machine's second pass runs
/// those after the first.
fn sample(units: &[Value], followers: &[Value], count: usize) -> Vec<Value> {
    let count = count.min(units.len());
    let mut sample: Vec<Value> = (0..count)
        .map(|i| units[i * units.len() / count].clone())
        .collect();
    let sources: std::collections::BTreeSet<String> = sample
        .iter()
        .flat_map(|u| u["items"].as_array().into_iter().flatten())
        .filter_map(|item| item["source"].as_str().map(str::to_owned))
        .collect();
    let extra: Vec<Value> = followers
        .iter()
        .filter(|f| {
            f["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|item| item["source"].as_str().is_some_and(|s| sources.contains(s)))
        })
        .cloned()
        .collect();
    sample.extend(extra);
    sample
}

/// The measurements as JSON, to print the tables again later (`--from`).
pub fn to_json(sizes: &[SizeRun]) -> Value {
    let counts = |map: &BTreeMap<String, u64>| json!(map);
    Value::Array(
        sizes
            .iter()
            .map(|size| {
                let stages: Vec<Value> = size
                    .stages
                    .iter()
                    .map(|s| {
                        json!({
                            "name": s.name, "function": s.function, "invocations": s.invocations,
                            "wallMs": s.wall.as_millis() as u64, "peakKib": s.peak_kib,
                            "startKib": s.start_kib, "synapse": s.synapse,
                            "synapse429": s.synapse_429, "synapseByEndpoint": s.synapse_by_endpoint,
                            "dynamodb": counts(&s.aws.dynamodb), "s3": counts(&s.aws.s3),
                            "other": counts(&s.aws.other),
                            "writeUnits": s.aws.dynamodb_write_units,
                            "indexWriteUnits": s.aws.dynamodb_index_write_units,
                            "readUnits": s.aws.dynamodb_read_units,
                            "dynamodbMs": s.aws.dynamodb_time.as_millis() as u64,
                            "s3Ms": s.aws.s3_time.as_millis() as u64,
                            "items": s.items,
                        })
                    })
                    .collect();
                json!({
                    "files": size.files, "seeded": size.seeded, "build": size.build,
                    "setupMs": size.setup.as_millis() as u64,
                    "stages": stages, "unitCount": size.unit_count,
                    "followerUnitCount": size.follower_unit_count,
                    "plannedItems": size.planned_items, "plannedBytes": size.planned_bytes,
                    "sampleUnits": size.sample_units, "sampleFiles": size.sample_files,
                    "sampleBytes": size.sample_bytes, "partBatches": size.part_batches,
                    "migrated": size.migrated, "errored": size.errored,
                    "reportItems": size.report_items, "peaksReset": size.peaks_reset,
                })
            })
            .collect(),
    )
}

/// Reads back what [`to_json`] wrote.
pub fn from_json(value: &Value) -> anyhow::Result<Vec<SizeRun>> {
    let map = |v: &Value| -> BTreeMap<String, u64> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let name = |v: &Value| -> &'static str {
        let text = v.as_str().unwrap_or_default();
        [
            "Init",
            "Index",
            "Plan",
            "StartCopy",
            "CopyParts",
            "Complete",
            "Report",
            INDEX_FUNCTION,
            START_COPY_FUNCTION,
            COPY_PARTS_FUNCTION,
            COMPLETE_FUNCTION,
            REPORT_FUNCTION,
        ]
        .into_iter()
        .find(|known| *known == text)
        .unwrap_or("?")
    };
    let ms = |v: &Value| Duration::from_millis(v.as_u64().unwrap_or_default());
    let sizes = value.as_array().context("not a list of sizes")?;
    Ok(sizes
        .iter()
        .map(|size| SizeRun {
            files: number(size, "files") as usize,
            seeded: size["seeded"].as_bool().unwrap_or(false),
            build: size["build"].as_str().unwrap_or(DEBUG_BUILD).to_owned(),
            setup: ms(&size["setupMs"]),
            stages: size["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Stage {
                    name: name(&s["name"]),
                    function: name(&s["function"]),
                    invocations: number(s, "invocations") as u32,
                    wall: ms(&s["wallMs"]),
                    peak_kib: number(s, "peakKib"),
                    start_kib: s["startKib"].as_u64(),
                    synapse: number(s, "synapse") as usize,
                    synapse_429: number(s, "synapse429") as usize,
                    synapse_by_endpoint: map(&s["synapseByEndpoint"])
                        .into_iter()
                        .map(|(k, n)| (k, n as usize))
                        .collect(),
                    aws: AwsCounts {
                        dynamodb: map(&s["dynamodb"]),
                        s3: map(&s["s3"]),
                        other: map(&s["other"]),
                        dynamodb_write_units: s["writeUnits"].as_f64().unwrap_or_default(),
                        dynamodb_index_write_units: s["indexWriteUnits"]
                            .as_f64()
                            .unwrap_or_default(),
                        dynamodb_read_units: s["readUnits"].as_f64().unwrap_or_default(),
                        dynamodb_time: ms(&s["dynamodbMs"]),
                        s3_time: ms(&s["s3Ms"]),
                    },
                    items: number(s, "items"),
                })
                .collect(),
            unit_count: number(size, "unitCount"),
            follower_unit_count: number(size, "followerUnitCount"),
            planned_items: number(size, "plannedItems"),
            planned_bytes: number(size, "plannedBytes"),
            sample_units: number(size, "sampleUnits") as usize,
            sample_files: number(size, "sampleFiles"),
            sample_bytes: number(size, "sampleBytes"),
            part_batches: number(size, "partBatches"),
            migrated: number(size, "migrated"),
            errored: number(size, "errored"),
            report_items: number(size, "reportItems"),
            peaks_reset: size["peaksReset"].as_bool().unwrap_or(true),
        })
        .collect())
}
