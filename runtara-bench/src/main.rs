//! `runtara-bench`: Runtara's benchmark harness.
//!
//! ```text
//! cargo run --release -p runtara-bench                 # every mode, full sizes, a table
//! cargo run --release -p runtara-bench -- --quick      # within a minute
//! cargo run --release -p runtara-bench -- --json --modes embedded-sqlite,quic-sqlite
//! cargo run --release -p runtara-bench -- --modes quic-postgres --workloads W1,W2
//! ```
//!
//! PostgreSQL modes run when `RUNTARA_BENCH_POSTGRES_URL` is set. Workloads:
//! `W1` one instance, 100 sequential `#[durable]` steps (~100 B of JSON each): median
//! ms per step over 5 runs after a warm-up, and the p99 of single steps; `W2` 200
//! instances × 10 steps at once in one process (median of 3 runs after a warm-up);
//! `W2-runtime` the same started at once through the in-process runtime
//! (`Runtime::start`, each start its own task) until every result is in (embedded
//! modes), `W4-runtime` from `Runtime::start` to the first step's body, and
//! `W5-runtime` this process's memory per idle runtime instance (asleep after a step);
//! `W2-processes` the same launched as
//! processes through the management API (`W2-processes-max50`: the same against a
//! server of its own with `--max-running 50`, quic-sqlite); `W2-workers` the same into
//! worker processes of the image (warm), `W4-worker` `start_instance` to the first step
//! body on a warm worker, `W5-worker` a worker's memory per idle instance; `W3` an instance with 10,000 recorded steps
//! restarted and replayed; `W3-server` a server-launched instance of 100 steps SIGKILLed
//! before step 51, from the kill to `completed`; `W4` `start_instance` to the first step
//! body; `W5` server
//! memory per connected idle instance; `W1-history` W1 again after 100,000 checkpoints,
//! each run paired with one on an empty database of the same mode (`x_W1_paired`);
//! `L` management listings and status reads (p50, p99) while 100 instances with 400
//! checkpoints each keep checkpointing (QUIC modes); and mode `floor`: fdatasync, a SQLite WAL FULL commit, a PostgreSQL commit and a QUIC
//! round trip, measured on the same data dir in the same run. `R` (a diagnostic) is the
//! median of a read through the whole stack (`get_checkpoint`: no disk write), which
//! separates the stack's own cost from the fsync.
//!
//! `RUNTARA_BENCH_INSTANCE_THREADS=<n>` starts the QUIC modes' servers with
//! `--instance-threads <n>` (`0`: the instance endpoint on the main runtime), for paired
//! comparisons of the server's threading.
//!
//! The binary has three more roles: `runtara-bench serve …` is a `runtara-server` (so the
//! server runs as its own process), `runtara-bench echo <dir>` is the QUIC echo server
//! the floor's round trip is measured against, and launched by a server with no
//! arguments it is the worker instance of `W2-processes` and `W4`.

mod floor;
mod pg_schema;
mod report;
mod runtime_workloads;
mod steps;
mod target;
mod worker;
mod worker_workloads;
mod workloads;

use std::process::ExitCode;

use clap::Parser;

use crate::report::Report;
use crate::target::{run_prefix, Mode, Target};
use crate::workloads::Sizes;

/// Runtara's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "runtara-bench", version, about)]
struct Cli {
    /// One JSON object per line: {"mode", "workload", "value", "unit"}.
    #[arg(long)]
    json: bool,
    /// Smaller sizes; finishes within a minute.
    #[arg(long)]
    quick: bool,
    /// Modes to run, comma-separated (`floor`, `embedded-sqlite`, `embedded-postgres`,
    /// `quic-sqlite`, `quic-postgres`); default: all available.
    #[arg(long, value_delimiter = ',')]
    modes: Vec<String>,
    /// Workloads to run, comma-separated (`R`, `W1-store`, `W1`, `W2`, `W2-runtime`,
    /// `W4-runtime`, `W5-runtime`, `W3`, `W4`, `W2-processes`, `W2-processes-max50`,
    /// `W2-workers`, `W4-worker`, `W6-event`, `W5-worker`, `W3-server`, `W5`,
    /// `W1-history`, `L`);
    /// default: all.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Where to put the data dirs (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runtara-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.get(1).map(String::as_str) == Some("serve") {
        runtime.block_on(serve(&args[1..]))
    } else if args.get(1).map(String::as_str) == Some("echo") && args.len() == 3 {
        runtime.block_on(floor::serve_echo(std::path::Path::new(&args[2])))
    } else if args.len() == 1 && std::env::var_os("RUNTARA_WORKER_ID").is_some() {
        runtime.block_on(worker::serve_as_worker())
    } else if args.len() == 1 && std::env::var_os("RUNTARA_INSTANCE_ID").is_some() {
        runtime.block_on(worker::run())
    } else {
        runtime.block_on(bench(Cli::parse()))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runtara-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve`: run a server until killed.
async fn serve(args: &[String]) -> anyhow::Result<()> {
    let cli = runtara_server::cli::Cli::try_parse_from(args)?;
    let server = runtara_server::start(cli.into()).await?;
    println!("{}", runtara_server::process::ReadyLine::of(&server));
    std::future::pending::<()>().await;
    Ok(())
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    // Each run gets a schema of its own, as each SQLite mode gets a new file: figures
    // must not depend on what earlier runs left behind (this machine's PostgreSQL runs
    // without autovacuum).
    let (postgres, baseline_postgres) = match std::env::var("RUNTARA_BENCH_POSTGRES_URL") {
        Ok(url) => (
            Some(pg_schema::Schema::create(&url, "").await?),
            Some(pg_schema::Schema::create(&url, "_baseline").await?),
        ),
        Err(_) => (None, None),
    };
    let postgres_url = postgres.as_ref().map(|schema| schema.url.clone());
    let wanted = |name: &str| cli.modes.is_empty() || cli.modes.iter().any(|m| m == name);
    for mode in &cli.modes {
        let known = mode == "floor" || Mode::ALL.iter().any(|m| m.name() == mode);
        anyhow::ensure!(known, "unknown mode `{mode}`");
    }
    for workload in &cli.workloads {
        anyhow::ensure!(
            WORKLOADS.contains(&workload.as_str()),
            "unknown workload `{workload}` (known: {})",
            WORKLOADS.join(", ")
        );
    }
    let run = |name: &str| cli.workloads.is_empty() || cli.workloads.iter().any(|w| w == name);
    let sizes = if cli.quick { Sizes::QUICK } else { Sizes::FULL };
    let temp = tempfile::tempdir()?;
    let root = cli.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let mut report = Report::new(cli.json);
    let prefix = run_prefix();
    let started = std::time::Instant::now();

    let mut floors = floor::Floors::open(&root, postgres_url.as_deref()).await?;
    if wanted("floor") {
        let (blocks, samples) = if cli.quick { (3, 100) } else { (5, 200) };
        // One block of each figure in turn, so that all four see the same drift.
        let mut figures: [Vec<f64>; 6] = Default::default();
        for _ in 0..blocks {
            figures[0].push(floors.fsync_ms(samples)?);
            figures[1].push(floors.sqlite_commit_ms(samples)?);
            figures[2].extend(floors.postgres_commit_ms(samples).await?);
            figures[3].push(floors.quic_rtt_ms(samples).await?);
            figures[4].push(floors.sequential_of_mode(Mode::QuicSqlite, samples).await?);
            if postgres_url.is_some() {
                figures[5].push(
                    floors
                        .sequential_of_mode(Mode::QuicPostgres, samples)
                        .await?,
                );
            }
        }
        let names = [
            "fsync",
            "sqlite_commit",
            "postgres_commit",
            "quic_rtt",
            "quic_rtt_then_sqlite_commit",
            "quic_rtt_then_postgres_commit",
        ];
        for (name, mut values) in names.into_iter().zip(figures) {
            if !values.is_empty() {
                report.add("floor", name, report::median(&mut values), "ms");
            }
        }
    }
    for mode in Mode::ALL {
        if !wanted(mode.name()) || (mode.postgres() && postgres_url.is_none()) {
            continue;
        }
        let dir = root.join(mode.name());
        std::fs::create_dir_all(&dir)?;
        let target = Target::open(mode, &dir, postgres_url.as_deref()).await?;
        let prefix = format!("{prefix}-{}", mode.name());
        if run("R") {
            workloads::read_path(&target, &mut report, &prefix).await?;
        }
        if !mode.quic() && run("W1-store") {
            workloads::w1_store(&target, &mut report, &prefix).await?;
        }
        if run("W1") {
            let runs = sizes.w1_runs;
            workloads::w1(&target, &mut report, &prefix, runs, "W1", &mut floors, None).await?;
        }
        if run("W2") {
            let (instances, runs) = (sizes.w2_instances, sizes.w2_runs);
            workloads::w2(&target, &mut report, &prefix, instances, runs).await?;
        }
        if !mode.quic() && run("W2-runtime") {
            let (instances, runs) = (sizes.w2_instances, sizes.w2_runs);
            runtime_workloads::w2_runtime(&target, &mut report, &prefix, instances, runs).await?;
        }
        if !mode.quic() && run("W4-runtime") {
            let samples = sizes.w4_runtime_samples;
            runtime_workloads::w4_runtime(&target, &mut report, &prefix, samples).await?;
        }
        if !mode.quic() && run("W5-runtime") {
            let instances = sizes.w5_instances * 10;
            runtime_workloads::w5_runtime(&target, &mut report, &prefix, instances).await?;
        }
        if run("W3") {
            workloads::w3(&target, &mut report, &prefix, sizes.w3_steps).await?;
        }
        if mode.quic() && run("W4") {
            workloads::w4(&target, &mut report, &prefix, &dir, sizes.w4_samples).await?;
        }
        if mode.quic() && run("W3-server") {
            workloads::w3_server(&target, &mut report, &prefix, &dir, sizes.w3_server).await?;
        }
        if mode.quic() && run("W2-processes") {
            let instances = sizes.w2_processes;
            workloads::w2_processes(&target, &mut report, &prefix, instances, "W2-processes")
                .await?;
        }
        // The same behind admission control, on a server of its own (SQLite: a second
        // server on one PostgreSQL database would take up the first one's instances).
        if mode == Mode::QuicSqlite && run("W2-processes-max50") {
            let dir = dir.join("max50");
            std::fs::create_dir_all(&dir)?;
            let flags = ["--max-running", "50"];
            let capped = Target::open_with(mode, &dir, None, &flags).await?;
            let (instances, name) = (sizes.w2_processes, "W2-processes-max50");
            workloads::w2_processes(&capped, &mut report, &prefix, instances, name).await?;
        }
        if mode.quic() && run("W2-workers") {
            let instances = sizes.w2_instances;
            worker_workloads::w2_workers(&target, &mut report, &prefix, instances).await?;
        }
        if mode.quic() && run("W4-worker") {
            let samples = sizes.w4_runtime_samples;
            worker_workloads::w4_worker(&target, &mut report, &prefix, &dir, samples).await?;
        }
        if mode.quic() && run("W6-event") {
            let samples = sizes.w4_runtime_samples;
            worker_workloads::w6_event(&target, &mut report, &prefix, &dir, samples).await?;
        }
        if mode.quic() && run("W5-worker") {
            let instances = sizes.w5_instances;
            worker_workloads::w5_worker(&target, &mut report, &prefix, &dir, instances).await?;
        }
        if mode.quic() && run("W5") {
            workloads::w5(&target, &mut report, &prefix, sizes.w5_instances).await?;
        }
        if mode.quic() && run("L") {
            workloads::list_under_load(&target, &mut report, &prefix, sizes.list_load).await?;
        }
        if run("W1-history") {
            // W1 on an empty database of the same mode, run alternately with W1-history.
            let dir = dir.join("baseline");
            std::fs::create_dir_all(&dir)?;
            let url = baseline_postgres.as_ref().map(|schema| schema.url.as_str());
            let baseline = Target::open(mode, &dir, url).await?;
            let (count, runs) = (sizes.history, sizes.w1_runs);
            workloads::w1_history(
                &target,
                &baseline,
                &mut report,
                &prefix,
                count,
                runs,
                &mut floors,
            )
            .await?;
        }
    }
    floors.close().await?;
    for schema in [postgres, baseline_postgres].into_iter().flatten() {
        schema.drop().await?;
    }
    add_ratios(&mut report);
    report.finish();
    if !cli.json {
        eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The workloads `--workloads` may name.
const WORKLOADS: [&str; 19] = [
    "R",
    "W1-store",
    "W1",
    "W2",
    "W2-runtime",
    "W4-runtime",
    "W5-runtime",
    "W3",
    "W4",
    "W2-processes",
    "W2-processes-max50",
    "W2-workers",
    "W4-worker",
    "W6-event",
    "W5-worker",
    "W3-server",
    "W5",
    "W1-history",
    "L",
];

/// W2 as a multiple of W1's rate (target ≥ 5), and, as diagnostics, W1-history over W1
/// (`x_W1`) and the ratio of the two workloads' `x_floor` (`x_W1_drift_corrected`): W1 and
/// W1-history run half a minute apart, and the machine drifts meanwhile. The W1-history
/// target (≤ 1.2) is judged on `x_W1_paired`, which W1-history reports itself from runs
/// paired with runs on an empty database; W1's ratio to its floor (≤ 1.5) is reported by
/// W1 itself: see [`workloads::w1`].
fn add_ratios(report: &mut Report) {
    let mut ratios = Vec::new();
    for mode in Mode::ALL {
        let name = mode.name();
        let Some(w1) = report.get(name, "W1", "ms_per_step") else {
            continue;
        };
        if let Some(w2) = report.get(name, "W2", "steps_per_s") {
            ratios.push((name, "W2", w2 / (1000.0 / w1), "x_W1_rate"));
        }
        if let Some(history) = report.get(name, "W1-history", "ms_per_step") {
            ratios.push((name, "W1-history", history / w1, "x_W1"));
        }
        // The same comparison with each side divided by the floor measured alongside it:
        // W1 and W1-history run half a minute apart, and the machine drifts meanwhile.
        let floor_ratio = |workload| report.get(name, workload, "x_floor");
        if let (Some(history), Some(w1)) = (floor_ratio("W1-history"), floor_ratio("W1")) {
            ratios.push((name, "W1-history", history / w1, "x_W1_drift_corrected"));
        }
    }
    // The in-process runtime against one process per instance, on the same storage.
    for (embedded, server) in [
        (Mode::EmbeddedSqlite, Mode::QuicSqlite),
        (Mode::EmbeddedPostgres, Mode::QuicPostgres),
    ] {
        let runtime = report.get(embedded.name(), "W2-runtime", "steps_per_s");
        let processes = report.get(server.name(), "W2-processes", "steps_per_s");
        if let (Some(runtime), Some(processes)) = (runtime, processes) {
            ratios.push((
                embedded.name(),
                "W2-runtime",
                runtime / processes,
                "x_W2_processes",
            ));
        }
    }
    // Workers against one process per instance, on the same server.
    for server in [Mode::QuicSqlite, Mode::QuicPostgres] {
        let workers = report.get(server.name(), "W2-workers", "steps_per_s");
        let processes = report.get(server.name(), "W2-processes", "steps_per_s");
        if let (Some(workers), Some(processes)) = (workers, processes) {
            ratios.push((
                server.name(),
                "W2-workers",
                workers / processes,
                "x_W2_processes",
            ));
        }
    }
    let sqlite = Mode::QuicSqlite.name();
    let capped = report.get(sqlite, "W2-processes-max50", "steps_per_s");
    if let (Some(capped), Some(processes)) =
        (capped, report.get(sqlite, "W2-processes", "steps_per_s"))
    {
        ratios.push((
            sqlite,
            "W2-processes-max50",
            capped / processes,
            "x_W2_processes",
        ));
    }
    for (mode, workload, value, unit) in ratios {
        report.add(mode, workload, value, unit);
    }
}
