//! The in-process runtime's workloads (embedded modes): `W2-runtime`, 200 workflows ×
//! 10 steps started at once through `Runtime::start` in one process; `W4-runtime`,
//! from `Runtime::start` to the first step's body; `W5-runtime`, this process's memory
//! per idle instance (one step done, then in a durable sleep of an hour).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use runtara_sdk::runtime::Runtime;
use runtara_sdk::SdkError;

use crate::report::{median, percentile, Report};
use crate::steps::bench_step;
use crate::target::{Target, TENANT};
use crate::workloads::rss_kib;

/// W5-runtime's instances that have reached their sleep.
static ASLEEP: AtomicUsize = AtomicUsize::new(0);

/// When the body of W4-runtime's first step ran (one sample at a time).
static FIRST_BODY: Mutex<Option<Instant>> = Mutex::new(None);

/// W2-runtime's workflow: 10 durable steps.
async fn ten_steps(_: ()) -> Result<(), SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    for n in 1..=10 {
        bench_step(format!("{id}-{n}"), n, None).await?;
    }
    Ok(())
}

/// W4-runtime's workflow: notes when its first step's body runs.
async fn first_step(_: ()) -> Result<(), SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    noted_step(id).await?;
    Ok(())
}

#[runtara_sdk::durable(max_retries = 0)]
async fn noted_step(key: String) -> Result<(), SdkError> {
    *FIRST_BODY.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    Ok(())
}

/// W5-runtime's workflow: one step, then a durable sleep of an hour.
async fn one_step_then_sleep(_: ()) -> Result<(), SdkError> {
    let sdk = runtara_sdk::sdk()?;
    bench_step(format!("{}-1", sdk.instance_id()), 1, None).await?;
    ASLEEP.fetch_add(1, Ordering::SeqCst);
    sdk.sleep(Duration::from_secs(3600), "nap", b"").await
}

/// A runtime of its own (by name) over the target's store.
async fn runtime(target: &Target, name: &str) -> anyhow::Result<Runtime> {
    Ok(Runtime::builder(Arc::clone(&target.store))
        .tenant(TENANT)
        .name(name)
        .workflow("ten-steps", ten_steps)
        .workflow("first-step", first_step)
        .workflow("idle", one_step_then_sleep)
        .build()
        .await?)
}

/// W2-runtime: `instances` × 10 steps, all started at once (each start its own task,
/// as requests to a service arrive), until every result is in; a warm-up run, then the
/// median of `runs`.
pub async fn w2_runtime(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    instances: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let runtime = runtime(target, &format!("{prefix}-w2r")).await?;
    let mut rates = Vec::with_capacity(runs);
    for run in 0..=runs {
        let start = Instant::now();
        let tasks: Vec<_> = (0..instances)
            .map(|n| {
                let runtime = runtime.clone();
                let id = format!("{prefix}-w2r-{run}-{n}");
                tokio::spawn(async move {
                    let handle = runtime.start("ten-steps", id, &()).await?;
                    handle.output().await?;
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
        anyhow::ensure!(failures == 0, "W2-runtime: {failures} instances failed");
        if run > 0 {
            rates.push((instances * 10) as f64 / elapsed);
        }
    }
    report.add(
        target.mode.name(),
        "W2-runtime",
        median(&mut rates),
        "steps_per_s",
    );
    Ok(())
}

/// W4-runtime: from `Runtime::start` to the body of the instance's first step, one
/// instance at a time (median and p95 of `samples`, after a warm-up).
pub async fn w4_runtime(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    samples: usize,
) -> anyhow::Result<()> {
    let runtime = runtime(target, &format!("{prefix}-w4r")).await?;
    let mut times = Vec::with_capacity(samples);
    for n in 0..=samples {
        FIRST_BODY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let before = Instant::now();
        let handle = runtime
            .start("first-step", format!("{prefix}-w4r-{n}"), &())
            .await?;
        handle.output().await?;
        let body = FIRST_BODY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let body = body.ok_or_else(|| anyhow::anyhow!("W4-runtime: the step did not run"))?;
        if n > 0 {
            times.push(body.duration_since(before).as_secs_f64() * 1000.0);
        }
    }
    let mode = target.mode.name();
    report.add(mode, "W4-runtime", median(&mut times.clone()), "ms");
    report.add(mode, "W4-runtime", percentile(&mut times, 0.95), "p95_ms");
    Ok(())
}

/// W5-runtime: growth of this process's RSS per idle instance: `instances` started (in
/// batches of 100, each start its own task), each done with a step and asleep (its slot
/// given back), after a warm-up batch.
pub async fn w5_runtime(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    instances: usize,
) -> anyhow::Result<()> {
    let runtime = runtime(target, &format!("{prefix}-w5r")).await?;
    let warm = 100;
    start_idle(&runtime, prefix, 0..warm).await?;
    all_asleep(&runtime, warm).await?;
    let before = rss_kib(std::process::id())?;
    start_idle(&runtime, prefix, warm..warm + instances).await?;
    all_asleep(&runtime, warm + instances).await?;
    let after = rss_kib(std::process::id())?;
    report.add(
        target.mode.name(),
        "W5-runtime",
        (after - before) / instances as f64,
        "kib_per_instance",
    );
    for n in 0..warm + instances {
        runtime.cancel(&format!("{prefix}-w5r-{n}")).await?;
    }
    Ok(())
}

/// Starts W5-runtime's instances `numbers`, 100 at once, each start its own task.
async fn start_idle(
    runtime: &Runtime,
    prefix: &str,
    numbers: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    for batch in numbers.collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|n| {
                let (runtime, id) = (runtime.clone(), format!("{prefix}-w5r-{n}"));
                tokio::spawn(async move { runtime.start("idle", id, &()).await })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
    }
    Ok(())
}

/// Waits until `count` W5-runtime instances are asleep, their slots given back.
async fn all_asleep(runtime: &Runtime, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while ASLEEP.load(Ordering::SeqCst) < count || runtime.running() > 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "W5-runtime: instances did not fall asleep"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sleeps' records land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
