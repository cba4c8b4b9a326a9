//! The markdown the run prints: the measurements per size and stage, Plan's and Report's memory
//! side by side, the projection, and every assumption behind it.

use std::time::Duration;

use synmigrate::estimate::PRICES;
use synmigrate_bench::runs::{MAX_CONCURRENCY, STRATEGY};

use crate::measure::SizeRun;
use crate::model::Model;
use crate::Args;

/// The bound the issue sets on Plan's and Report's peak RSS.
const RSS_BOUND_MIB: f64 = 256.0;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `1234567` as `1,234,567`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Lambda stops an invocation after 900 s (the template's longest timeout).
const LAMBDA_TIMEOUT_S: f64 = 900.0;

/// Seconds, marked when one invocation could not finish them.
fn over_timeout(seconds: f64) -> String {
    if seconds > LAMBDA_TIMEOUT_S {
        format!("**{seconds:.0}** (over {LAMBDA_TIMEOUT_S:.0})")
    } else {
        format!("{seconds:.0}")
    }
}

/// Bytes as B, KB, MB (decimal, as the TB of the rows).
fn size_text(bytes: f64) -> String {
    match bytes {
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} KB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

fn money(value: f64) -> String {
    if value >= 100.0 {
        format!("${}", thousands(value))
    } else {
        format!("${value:.2}")
    }
}

/// The builds the sizes measured, in words.
fn builds(sizes: &[SizeRun]) -> String {
    let mut builds: Vec<&str> = sizes.iter().map(|s| s.build.as_str()).collect();
    builds.sort_unstable();
    builds.dedup();
    builds.join(" and ")
}

pub fn print(args: &Args, sizes: &[SizeRun], model: &Model, took: Duration) {
    println!(
        "## synmigrate at scale\n\n\
         Mix: every stage ran as the real function binary ({}) behind the local Lambda \
         host, invoked directly (`LocalDeployment::invoke`) in the state machine's order: Init, \
         Index until done, Plan, then StartCopy / CopyParts / Complete for {} units spread over \
         the Plan's manifest, one at a time, then Report. The state machine itself was not run \
         (its transitions are counted on the definition). One process per function, so a \
         stage's peak RSS is its process's `VmHWM`, reset (`clear_refs`) before each invocation: \
         a warm process starts the stage at the RSS in brackets. Strategy `{STRATEGY}`, engine \
         `direct`. Init checked the run with a budget of {}/min; the later stages got the run \
         with {}/min and the simulator's throttle off, so that the walk runs at the local \
         stack's speed: the Synapse calls are counted, the hours at the budget computed from \
         them. DynamoDB and S3 requests are counted by a proxy between the functions and moto. \
         Files of {}..{} bytes.\n",
        builds(sizes),
        args.sample_units,
        args.budget,
        args.harness_rpm,
        args.min_bytes,
        args.max_bytes
    );
    if sizes.iter().any(|s| !s.peaks_reset) {
        println!(
            "**Warning:** the kernel refused a `clear_refs` reset: a peak may be an earlier \
             invocation's.\n"
        );
    }

    println!("### Measured, per size and stage\n");
    println!(
        "| files | stage | invocations | wall s | peak RSS MiB (at start) | Synapse calls | \
         DynamoDB requests | of which moto s | S3 requests | items |"
    );
    println!("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for size in sizes {
        for stage in &size.stages {
            let start = stage
                .start_kib
                .map_or("fresh".to_owned(), |k| format!("{:.0}", mib(k)));
            println!(
                "| {}{} | {} | {} | {:.1} | {:.0} ({start}) | {} | {} | {:.1} | {} | {} |",
                thousands(size.files as f64),
                if size.seeded { " (seeded)" } else { "" },
                stage.name,
                stage.invocations,
                stage.wall.as_secs_f64(),
                mib(stage.peak_kib),
                thousands(stage.synapse as f64),
                thousands(stage.aws.dynamodb_requests() as f64),
                stage.aws.dynamodb_time.as_secs_f64(),
                thousands(stage.aws.s3_requests() as f64),
                thousands(stage.items as f64),
            );
        }
    }
    println!(
        "\nItems: files indexed (Index), items planned (Plan), files of the sampled units \
         (copy stages), items counted (Report). \"of which moto s\": time the DynamoDB requests \
         took to answer (moto, through the proxy). A size marked seeded ran Plan and Report \
         alone on a state table of that many INDEXED items, cloned with BatchWriteItem from \
         the items the real Init and Index wrote for a small project: Index's one write a \
         file, which moto answers in about 23 ms, would take an hour there.\n"
    );
    for size in sizes {
        println!(
            "- {} files: set-up (stack, simulator, seeding) {:.0} s; {} units ({} followers), \
             {} items, {} bytes planned; sample of {} units, {} files, {} part batches: {} \
             migrated, {} errored; Report counted {} items.",
            thousands(size.files as f64),
            size.setup.as_secs_f64(),
            thousands(size.unit_count as f64),
            size.follower_unit_count,
            thousands(size.planned_items as f64),
            thousands(size.planned_bytes as f64),
            size.sample_units,
            size.sample_files,
            size.part_batches,
            size.migrated,
            size.errored,
            thousands(size.report_items as f64),
        );
    }
    for size in sizes {
        for stage in &size.stages {
            let mut ops: Vec<String> = stage
                .aws
                .dynamodb
                .iter()
                .chain(&stage.aws.s3)
                .map(|(op, n)| format!("{op} {n}"))
                .collect();
            ops.extend(
                stage
                    .synapse_by_endpoint
                    .iter()
                    .map(|(e, n)| format!("`{e}` {n}")),
            );
            if !ops.is_empty() {
                println!(
                    "  - {} files, {}: {}",
                    thousands(size.files as f64),
                    stage.name,
                    ops.join(", ")
                );
            }
        }
    }

    println!("\n### Plan and Report memory as the project grows\n");
    print!("| stage |");
    for size in sizes {
        let seeded = if size.seeded { " (state seeded)" } else { "" };
        print!(
            " peak RSS at {} files{seeded} |",
            thousands(size.files as f64)
        );
    }
    println!(" ≤ {RSS_BOUND_MIB:.0} MiB at the largest |");
    println!("|---|{}--:|", "--:|".repeat(sizes.len()));
    for name in ["Plan", "Report"] {
        print!("| {name} |");
        let mut last = 0.0;
        for size in sizes {
            let peak = size.stage(name).map_or(0.0, |s| mib(s.peak_kib));
            last = peak;
            print!(" {peak:.1} MiB |");
        }
        println!(" {} |", if last <= RSS_BOUND_MIB { "yes" } else { "NO" });
    }

    let t = &model.transitions;
    println!("\n### Projection\n");
    println!(
        "Per-file costs from the {}-file run: Synapse calls {:.3} a file for Index, Plan and \
         Report ({:.3} of them Index's) and {:.3} a copied file (the sample's StartCopy, \
         CopyParts, Complete), {:.0} for Init; DynamoDB requests {:.3} + {:.3} a file; S3 \
         requests {:.3} + {:.3} a file; {:.1} files a unit. Plan's and Report's time a file \
         from the run with the most items that ran them: {:.2} ms and {:.2} ms.\n",
        thousands(model.basis_files as f64),
        model.synapse.per_file,
        model.index_synapse_per_file,
        model.synapse.per_copied_file,
        model.synapse.per_run,
        model.dynamodb.per_file,
        model.dynamodb.per_copied_file,
        model.s3_put.per_file + model.s3_get.per_file,
        model.s3_put.per_copied_file + model.s3_get.per_copied_file,
        model.files_per_unit,
        model.plan_s_per_file * 1e3,
        model.report_s_per_file * 1e3,
    );
    println!(
        "| project | mean file | Synapse calls | hours at {}/min (+ copying bytes) | Step Functions \
         transitions | Plan / Report s (one invocation each) | Lambda GB-s | DynamoDB requests (WRU / RRU) | S3 requests (PUT-class / \
         GET-class) | $ SFN | $ Lambda | $ DynamoDB | $ S3 | $ total |",
        args.budget
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in &model.rows {
        let dollars = row.dollars();
        println!(
            "| {} | {} | {} | {:.1} (+{:.1}) | {} | {} / {} | {} | {} ({} / {}) | {} ({} / {}) | {} | {} | {} | {} | {} |",
            row.label,
            size_text(row.bytes / row.files.max(1.0)),
            thousands(row.synapse_calls),
            row.synapse_hours,
            row.copy_hours,
            thousands(row.transitions),
            over_timeout(row.plan_s),
            over_timeout(row.report_s),
            thousands(row.gb_seconds),
            thousands(row.dynamodb_requests),
            thousands(row.write_units),
            thousands(row.read_units),
            thousands(row.s3_put + row.s3_get),
            thousands(row.s3_put),
            thousands(row.s3_get),
            money(dollars[0]),
            money(dollars[1]),
            money(dollars[2]),
            money(dollars[3]),
            money(dollars.iter().sum()),
        );
    }
    let memory: Vec<String> = model
        .memory
        .iter()
        .map(|(f, m)| format!("{f} {m} MB"))
        .collect();
    println!(
        "\nAssumptions:\n\
         - Hours: Synapse calls ÷ the budget ({}/min), the run being bound by it; copying the \
           bytes adds bytes ÷ ({} MiB/s per S3 copy request, assumed, not measured × {} units \
           in flight × {} sources a unit at a time), counted on top (no overlap).\n\
         - Transitions, counted on `statemachine/migration.asl.json` by following its happy \
           path (a Choice takes its first branch that is no Fail state and does not lead back to a state already entered, else its Default: no follower pass, no failure): {} \
           once per run ({}), {} per Index invocation ({}), {} per unit ({}), {} per part \
           batch ({}, none here: every file below the CopyObject threshold). Index \
           invocations = Index's hours ÷ its {:.0} s budget, units = files ÷ {:.1}.\n\
         - Lambda GB-s: memory from `template.yaml` ({}) × time. Index: its Synapse calls at \
           the budget; Plan and Report: their own time a file here (wall less moto's answers: \
           {}) plus their DynamoDB and S3 requests at {} ms each \
           (assumed; moto reads a query page in time growing with the table); the copy: {} invocations in flight for the whole copy phase (waiting \
           on the budget's slots), at the copy stages' time-weighted {:.2} GB. Plus $0.20 per \
           million invocations.\n\
         - DynamoDB on demand: write units (a KiB of item per write, the status index's \
           entries included) at ${:.2} per million, read units (4 KiB, eventually consistent \
           at half) at ${:.2} per million, estimated from the requests' and answers' JSON; the \
           fleet budget's record is included (at this harness's rate it leases 10 slots a \
           write, at 540/min 9).\n\
         - S3: PUT, COPY, POST and LIST requests at ${:.3} per 1,000, GET-class at ${:.4} per \
           1,000; copies within a region carry no transfer charge; storage is not counted, \
           nor the Distributed Map's reads of the manifest and writes of its results.\n\
         - Step Functions standard ${:.3} per 1,000 transitions, Lambda x86 ${:.10} per GB-s.\n\
         - Files over 1 GiB (absent here) would add an UploadPartCopy per part and a CopyParts \
           invocation and {} transitions per part batch.\n",
        args.budget,
        args.copy_mib_per_s,
        MAX_CONCURRENCY,
        model.unit_concurrency,
        t.run_once,
        t.run_path
            .iter()
            .filter(|s| !t.loop_path.contains(s))
            .cloned()
            .collect::<Vec<_>>()
            .join(" → "),
        t.index_loop,
        t.loop_path.join(" → "),
        t.per_unit,
        t.unit_path.join(" → "),
        t.per_batch,
        t.batch_path.join(" → "),
        model.index_budget_s,
        model.files_per_unit,
        memory.join(", "),
        builds(sizes),
        args.aws_request_ms,
        MAX_CONCURRENCY,
        model.copy_gb,
        PRICES.write_unit * 1e6,
        PRICES.read_unit * 1e6,
        PRICES.s3_put_class * 1e3,
        PRICES.s3_get_class * 1e3,
        PRICES.transition * 1e3,
        PRICES.gb_second,
        t.per_batch,
    );
    if args.from.is_none() {
        println!("The measurement took {:.1} min.", took.as_secs_f64() / 60.0);
    }
}
