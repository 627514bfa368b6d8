//! The workloads W1–W5 (see the crate docs).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use runtara_management_sdk::{
    ListInstancesOptions, ManagementSdk, RegisterImageOptions, SdkConfig as ManagementConfig,
    StartInstanceOptions,
};
use runtara_sdk::RuntaraSdk;

use crate::floor::Floors;
use crate::report::{median, percentile, Report};
use crate::steps::bench_step;
use crate::target::{Target, TENANT};

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// W1 measured runs (after one warm-up).
    pub w1_runs: usize,
    /// W2 instances.
    pub w2_instances: usize,
    /// Measured W2 runs (after a warm-up run).
    pub w2_runs: usize,
    /// W2-processes instances.
    pub w2_processes: usize,
    /// W3 recorded steps.
    pub w3_steps: u32,
    /// W3-server samples.
    pub w3_server: usize,
    /// W4 samples.
    pub w4_samples: usize,
    /// W4-runtime samples.
    pub w4_runtime_samples: usize,
    /// W5 idle instances.
    pub w5_instances: usize,
    /// Prior checkpoints for W1-history.
    pub history: u32,
    /// L: instances checkpointing, their prior checkpoints each, listing clients, and
    /// listings per client.
    pub list_load: (usize, u32, usize, usize),
}

impl Sizes {
    /// The sizes.
    pub const FULL: Sizes = Sizes {
        w1_runs: 5,
        w2_instances: 200,
        w2_runs: 3,
        w2_processes: 200,
        w3_steps: 10_000,
        w3_server: 5,
        w4_samples: 20,
        w4_runtime_samples: 200,
        w5_instances: 1_000,
        history: 100_000,
        list_load: (100, 400, 20, 50),
    };
    /// Small enough for a minute.
    pub const QUICK: Sizes = Sizes {
        w1_runs: 3,
        w2_instances: 200,
        w2_runs: 1,
        w2_processes: 30,
        w3_steps: 2_000,
        w3_server: 3,
        w4_samples: 5,
        w4_runtime_samples: 50,
        w5_instances: 200,
        history: 10_000,
        list_load: (30, 50, 5, 10),
    };
}

/// Runs `steps` sequential durable steps on `sdk`; returns each step's latency (ms).
async fn steps(sdk: &RuntaraSdk, prefix: &str, steps: u32) -> anyhow::Result<Vec<f64>> {
    let sdk = sdk.clone();
    let prefix = prefix.to_owned();
    sdk.scope(async move {
        let mut times = Vec::with_capacity(steps as usize);
        for n in 1..=steps {
            let start = Instant::now();
            bench_step(format!("{prefix}{n}"), n, None).await?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(times)
    })
    .await
}

/// W1: one instance, 100 sequential steps; median ms per step over the runs, and the p99
/// of single steps. Reported under `workload`, with the mode's floor measured right
/// before each run (`floor_ms`, the median over the runs) and the median of the runs'
/// ratios to it (`x_floor`). QUIC modes also report the floor with its parts used in
/// sequence (`step_floor_ms`, see [`Floors::sequential_of_mode`]) and the ratio to it
/// (`x_step_floor`), diagnostics.
///
/// With a `baseline` (another target of the same mode on an empty database), each run is
/// paired with a run there right before it, and the median of the pairs' ratios is
/// reported as `x_W1_paired`: the two sides of each ratio are seconds apart, so the
/// machine's drift cancels out.
pub async fn w1(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    runs: usize,
    workload: &str,
    floors: &mut Floors,
    baseline: Option<&Target>,
) -> anyhow::Result<()> {
    let mut paired = Vec::new();
    let mut per_run = Vec::new();
    let mut floor_per_run = Vec::new();
    let mut ratios = Vec::new();
    let mut step_floor_per_run = Vec::new();
    let mut step_ratios = Vec::new();
    let mut all = Vec::new();
    for run in 0..=runs {
        let base = match baseline {
            Some(baseline) => Some(
                one_run(baseline, &format!("{prefix}-{workload}-base-{run}"))
                    .await?
                    .0,
            ),
            None => None,
        };
        let floor = floors.of_mode(target.mode, 100).await?;
        let step_floor = if target.mode.quic() {
            Some(floors.sequential_of_mode(target.mode, 100).await?)
        } else {
            None
        };
        let (per_step, times) = one_run(target, &format!("{prefix}-{workload}-{run}")).await?;
        let elapsed = per_step * 100.0;
        if run > 0 {
            if let Some(base) = base {
                paired.push(per_step / base);
            }
            per_run.push(elapsed / 100.0);
            floor_per_run.push(floor);
            ratios.push(elapsed / 100.0 / floor);
            if let Some(step_floor) = step_floor {
                step_floor_per_run.push(step_floor);
                step_ratios.push(elapsed / 100.0 / step_floor);
            }
            all.extend(times);
        }
    }
    let mode = target.mode.name();
    report.add(mode, workload, median(&mut per_run), "ms_per_step");
    report.add(mode, workload, percentile(&mut all, 0.99), "p99_ms");
    report.add(mode, workload, median(&mut floor_per_run), "floor_ms");
    report.add(mode, workload, median(&mut ratios), "x_floor");
    if !step_ratios.is_empty() {
        report.add(
            mode,
            workload,
            median(&mut step_floor_per_run),
            "step_floor_ms",
        );
        report.add(mode, workload, median(&mut step_ratios), "x_step_floor");
    }
    if !paired.is_empty() {
        report.add(mode, workload, median(&mut paired), "x_W1_paired");
    }
    Ok(())
}

/// One W1 run on a new instance: ms per step over the 100 steps, and each step's latency.
async fn one_run(target: &Target, instance_id: &str) -> anyhow::Result<(f64, Vec<f64>)> {
    let sdk = target.run(instance_id).await?;
    let start = Instant::now();
    let times = steps(&sdk, "s", 100).await?;
    let per_step = start.elapsed().as_secs_f64() * 1000.0 / 100.0;
    sdk.completed(b"{}").await?;
    Ok((per_step, times))
}

/// W2: `instances` × 10 steps, all at once in this process; like W1, one warm-up run,
/// then the median of `runs` (a single run lasts a fraction of a second).
pub async fn w2(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    instances: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let mut rates = Vec::with_capacity(runs);
    for run in 0..=runs {
        let rate = w2_once(target, &format!("{prefix}-w2-{run}"), instances).await?;
        if run > 0 {
            rates.push(rate);
        }
    }
    report.add(target.mode.name(), "W2", median(&mut rates), "steps_per_s");
    Ok(())
}

/// One W2 run: steps per second, or an error when any instance failed.
async fn w2_once(target: &Target, prefix: &str, instances: usize) -> anyhow::Result<f64> {
    let mut sdks = Vec::with_capacity(instances);
    for n in 0..instances {
        sdks.push(target.run(&format!("{prefix}-{n}")).await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = sdks
        .into_iter()
        .map(|sdk| {
            tokio::spawn(async move {
                steps(&sdk, "s", 10).await?;
                sdk.completed(b"{}").await?;
                anyhow::Ok(())
            })
        })
        .collect();
    let mut failures = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            failures += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    anyhow::ensure!(failures == 0, "W2: {failures} instances failed");
    Ok((instances * 10) as f64 / elapsed)
}

/// W3: an instance with `recorded` steps restarted: register plus replaying them all.
pub async fn w3(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    recorded: u32,
) -> anyhow::Result<()> {
    let id = format!("{prefix}-w3");
    // Record (concurrently, to keep set-up short).
    let sdk = target.run(&id).await?;
    let chunks = 50;
    let per_chunk = recorded / chunks;
    let tasks: Vec<_> = (0..chunks)
        .map(|c| {
            let sdk = sdk.clone();
            tokio::spawn(async move { steps(&sdk, &format!("c{c}-"), per_chunk).await })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    drop(sdk);
    // Restart: a new SDK registers (getting the replay log) and replays every step.
    let start = Instant::now();
    let sdk = target.run(&id).await?;
    for c in 0..chunks {
        steps(&sdk, &format!("c{c}-"), per_chunk).await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let count = target
        .store
        .get_instance(&id)
        .await?
        .map_or(0, |i| i.checkpoint_count);
    anyhow::ensure!(
        count == i64::from(per_chunk * chunks),
        "W3 re-ran steps: {count} checkpoints"
    );
    report.add(
        target.mode.name(),
        "W3",
        f64::from(per_chunk * chunks) / elapsed,
        "replay_steps_per_s",
    );
    Ok(())
}

/// A management client for the target's server.
pub async fn management(target: &Target) -> anyhow::Result<ManagementSdk> {
    let ready = &target.server.as_ref().context("needs a server")?.ready;
    let ca = ready.ca_path.as_ref().context("no CA in the ready line")?;
    let sdk = ManagementSdk::new(
        ManagementConfig::new(ready.management_addr.to_string()).with_ca_cert(ca),
    )?;
    sdk.connect().await?;
    Ok(sdk)
}

/// Registers this binary as the worker image.
pub async fn register_self(sdk: &ManagementSdk) -> anyhow::Result<String> {
    let binary = std::fs::read(std::env::current_exe()?)?;
    Ok(sdk
        .register_image(RegisterImageOptions::new(
            TENANT,
            "runtara-bench-worker",
            binary,
        ))
        .await?
        .image_id)
}

/// W2-processes: `instances` processes × 10 steps launched through the management API.
pub async fn w2_processes(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    instances: usize,
    workload: &str,
) -> anyhow::Result<()> {
    let sdk = Arc::new(management(target).await?);
    let image_id = register_self(&sdk).await?;
    // Instances of earlier workloads completed in the same tenant.
    let before = sdk
        .list_instances_page(
            ListInstancesOptions::new(TENANT)
                .with_status("completed")
                .with_limit(1),
        )
        .await?
        .total as usize;
    let start = Instant::now();
    let input = serde_json::json!({"steps": 10});
    start_all(&sdk, &image_id, &format!("{prefix}-w2p"), instances, &input).await?;
    loop {
        let page = sdk
            .list_instances_page(
                ListInstancesOptions::new(TENANT)
                    .with_status("completed")
                    .with_limit(1),
            )
            .await?;
        let failed = sdk
            .list_instances_page(
                ListInstancesOptions::new(TENANT)
                    .with_status("failed")
                    .with_limit(1),
            )
            .await?;
        anyhow::ensure!(
            failed.total == 0,
            "W2-processes: {} instances failed",
            failed.total
        );
        if page.total as usize >= before + instances {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "W2-processes timed out"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    report.add(
        target.mode.name(),
        workload,
        (instances * 10) as f64 / elapsed,
        "steps_per_s",
    );
    Ok(())
}

/// Starts requests in flight at once in [`start_all`].
const START_LANES: usize = 32;

/// Starts `count` instances named `{prefix}-{n}` with `input`, all at once as a burst of
/// a user's starts arrives: [`START_LANES`] requests in flight on the one connection.
pub async fn start_all(
    sdk: &Arc<ManagementSdk>,
    image_id: &str,
    prefix: &str,
    count: usize,
    input: &serde_json::Value,
) -> anyhow::Result<()> {
    let mut lanes = tokio::task::JoinSet::new();
    for lane in 0..START_LANES.min(count) {
        let (sdk, image_id) = (sdk.clone(), image_id.to_owned());
        let (prefix, input) = (prefix.to_owned(), input.clone());
        lanes.spawn(async move {
            for n in (lane..count).step_by(START_LANES) {
                sdk.start_instance(
                    StartInstanceOptions::new(&image_id, TENANT)
                        .with_instance_id(format!("{prefix}-{n}"))
                        .with_input(input.clone()),
                )
                .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(lane) = lanes.join_next().await {
        lane??;
    }
    Ok(())
}

/// W4: `start_instance` until the first step body runs (median and p95).
pub async fn w4(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    dir: &Path,
    samples: usize,
) -> anyhow::Result<()> {
    let sdk = management(target).await?;
    let image_id = register_self(&sdk).await?;
    let mut times = Vec::with_capacity(samples);
    for n in 0..=samples {
        let mark = dir.join(format!("w4-mark-{n}"));
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        sdk.start_instance(
            StartInstanceOptions::new(&image_id, TENANT)
                .with_instance_id(format!("{prefix}-w4-{n}"))
                .with_input(serde_json::json!({"steps": 1, "mark_file": mark})),
        )
        .await?;
        let body_at = wait_for_mark(&mark, "W4").await?;
        if n > 0 {
            times.push(body_at.saturating_sub(before.as_nanos()) as f64 / 1e6);
        }
    }
    let mode = target.mode.name();
    report.add(mode, "W4", median(&mut times.clone()), "ms");
    report.add(mode, "W4", percentile(&mut times, 0.95), "p95_ms");
    Ok(())
}

/// The wall-clock time (ns) a step body wrote to `mark`, once it has (`workload` names
/// the wait that gave up after 30 s).
pub async fn wait_for_mark(mark: &Path, workload: &str) -> anyhow::Result<u128> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(mark) {
            if let Ok(nanos) = text.trim().parse() {
                return Ok(nanos);
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{workload}: no first step"
        );
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

/// W3-server: an instance of 100 steps launched by the server SIGKILLs itself before
/// step 51; from the kill to the instance `completed` (median of `samples`).
pub async fn w3_server(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    dir: &Path,
    samples: usize,
) -> anyhow::Result<()> {
    let sdk = management(target).await?;
    let image_id = register_self(&sdk).await?;
    let mut times = Vec::with_capacity(samples);
    for n in 0..samples {
        let mark = dir.join(format!("w3-server-kill-{n}"));
        let instance_id = format!("{prefix}-w3s-{n}");
        sdk.start_instance(
            StartInstanceOptions::new(&image_id, TENANT)
                .with_instance_id(&instance_id)
                .with_input(serde_json::json!({"steps": 100, "kill_at": 51, "kill_mark": mark})),
        )
        .await?;
        let started = Instant::now();
        loop {
            let status = sdk.get_instance_status(&instance_id).await?;
            if status.status == "completed" {
                break;
            }
            anyhow::ensure!(
                !status.is_terminal(),
                "W3-server: the instance ended {}",
                status.status
            );
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "W3-server: not done within a minute"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let done = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let killed: u128 = std::fs::read_to_string(&mark)
            .context("W3-server: the instance never killed itself")?
            .trim()
            .parse()?;
        times.push(done.as_nanos().saturating_sub(killed) as f64 / 1e6);
    }
    report.add(target.mode.name(), "W3-server", median(&mut times), "ms");
    Ok(())
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

/// W5: server memory per connected idle instance.
pub async fn w5(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    instances: usize,
) -> anyhow::Result<()> {
    let pid = target.server.as_ref().context("needs a server")?.pid();
    // Warm the server up first, so one-time allocations do not count.
    let warm = target.run(&format!("{prefix}-w5-warm")).await?;
    steps(&warm, "s", 10).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(pid)?;
    let mut idle = Vec::with_capacity(instances);
    for n in 0..instances {
        idle.push(Arc::new(target.run(&format!("{prefix}-w5-{n}")).await?));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    report.add(
        target.mode.name(),
        "W5",
        (after - before) / instances as f64,
        "kib_per_instance",
    );
    drop(idle);
    Ok(())
}

/// Fills the database with `count` checkpoints (200 instances in parallel), then W1, each
/// run paired with one on `baseline`, a target of the same mode on an empty database.
pub async fn w1_history(
    target: &Target,
    baseline: &Target,
    report: &mut Report,
    prefix: &str,
    count: u32,
    runs: usize,
    floors: &mut Floors,
) -> anyhow::Result<()> {
    let per_instance = 100;
    let instances = count / per_instance;
    let mut done = 0;
    while done < instances {
        let batch = (instances - done).min(200);
        let mut tasks = Vec::new();
        for n in done..done + batch {
            let sdk = target.run(&format!("{prefix}-hist-{n}")).await?;
            tasks.push(tokio::spawn(
                async move { steps(&sdk, "h", per_instance).await },
            ));
        }
        for task in tasks {
            task.await??;
        }
        done += batch;
    }
    let workload = "W1-history";
    w1(
        target,
        report,
        prefix,
        runs,
        workload,
        floors,
        Some(baseline),
    )
    .await
}

/// `R`: a read through the whole stack without a disk write (`get_checkpoint`), to
/// separate the stack's own cost from the fsync.
pub async fn read_path(target: &Target, report: &mut Report, prefix: &str) -> anyhow::Result<()> {
    let sdk = target.run(&format!("{prefix}-read")).await?;
    sdk.checkpoint("probe", b"{}").await?;
    let mut times = Vec::with_capacity(500);
    for n in 0..550 {
        let start = Instant::now();
        sdk.get_checkpoint("probe").await?;
        if n >= 50 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    report.add(target.mode.name(), "R", median(&mut times), "read_ms");
    Ok(())
}

/// `W1-store` (diagnostic): W1's 100 sequential checkpoints straight on the storage,
/// without the SDK, to separate the SDK's cost from the storage's.
pub async fn w1_store(target: &Target, report: &mut Report, prefix: &str) -> anyhow::Result<()> {
    let id = format!("{prefix}-w1-store");
    let epoch = target
        .store
        .register_instance(&id, TENANT, None)
        .await?
        .epoch;
    let state = serde_json::to_vec(&crate::steps::StepOutput {
        n: 1,
        text: "x".repeat(72),
    })?;
    let mut times = Vec::with_capacity(500);
    for n in 0..550 {
        let start = Instant::now();
        target
            .store
            .save_checkpoint(&id, epoch, &format!("bench_step::s{n}"), &state)
            .await?;
        if n >= 50 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    report.add(
        target.mode.name(),
        "W1-store",
        median(&mut times),
        "ms_per_step",
    );
    Ok(())
}

/// L: management reads under load. `instances` instances (each with `history`
/// checkpoints) keep checkpointing while `listers` clients list the tenant's first 100
/// instances over and over and one client reads single instances' status; p50 and p99 of
/// both. A listing reads no history, so its cost must not grow with the checkpoints.
pub async fn list_under_load(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    sizes: (usize, u32, usize, usize),
) -> anyhow::Result<()> {
    let (instances, history, listers, lists_each) = sizes;
    let mut sdks = Vec::with_capacity(instances);
    for n in 0..instances {
        sdks.push(target.run(&format!("{prefix}-l-{n}")).await?);
    }
    // History first (not timed).
    let fills: Vec<_> = sdks
        .iter()
        .cloned()
        .map(|sdk| tokio::spawn(async move { steps(&sdk, "h", history).await }))
        .collect();
    for fill in fills {
        fill.await??;
    }
    // The load: every instance checkpoints until the readers are done.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = sdks
        .into_iter()
        .map(|sdk| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut round = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    steps(&sdk, &format!("load{round}-"), 5).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    let mut list_tasks = Vec::with_capacity(listers);
    for _ in 0..listers {
        let client = management(target).await?;
        list_tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(lists_each);
            for _ in 0..lists_each {
                let start = Instant::now();
                let page = client
                    .list_instances(ListInstancesOptions::new(TENANT).with_limit(100))
                    .await?;
                anyhow::ensure!(!page.is_empty(), "L: an empty listing");
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(times)
        }));
    }
    let status_client = management(target).await?;
    let status_target = format!("{prefix}-l-0");
    let mut status_times = Vec::new();
    while list_tasks.iter().any(|task| !task.is_finished()) {
        let start = Instant::now();
        status_client.get_instance_status(&status_target).await?;
        status_times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut list_times = Vec::new();
    for task in list_tasks {
        list_times.extend(task.await??);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await??;
    }
    let mode = target.mode.name();
    report.add(mode, "L-list", median(&mut list_times), "p50_ms");
    report.add(mode, "L-list", percentile(&mut list_times, 0.99), "p99_ms");
    report.add(mode, "L-status", median(&mut status_times), "p50_ms");
    report.add(
        mode,
        "L-status",
        percentile(&mut status_times, 0.99),
        "p99_ms",
    );
    Ok(())
}
