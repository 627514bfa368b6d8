//! Worker processes' workloads (QUIC modes): `W2-workers`, 200 workflows × 10 steps
//! started through the management API into the workers of this binary's image;
//! `W4-worker`, `start_instance` to the first step's body on a warm worker; `W5-worker`,
//! a worker's memory per idle instance (one step done, then in a short durable sleep,
//! which it sleeps in the worker); `W6-event`, event delivery from `send_event` to the
//! waiting instance's `wait_for_event` returning.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_management_sdk::{
    ListInstancesOptions, ManagementSdk, StartInstanceOptions, WorkerPool,
};

use crate::report::{median, percentile, Report};
use crate::target::{Target, TENANT};
use crate::workloads::{management, register_self, rss_kib, start_all, wait_for_mark};

/// This binary as an image run by workers: at most two, 1,024 instances each.
async fn worker_image(sdk: &ManagementSdk) -> anyhow::Result<(String, String)> {
    let image_id = register_self(sdk).await?;
    let image = sdk.get_image(&image_id).await?;
    sdk.set_image_workers(&image_id, Some(WorkerPool::new(0, 2, 1024)))
        .await?;
    Ok((image_id, image.sha256))
}

async fn completed(sdk: &ManagementSdk) -> anyhow::Result<usize> {
    let page = sdk
        .list_instances_page(
            ListInstancesOptions::new(TENANT)
                .with_status("completed")
                .with_limit(1),
        )
        .await?;
    Ok(page.total as usize)
}

/// Waits until `count` more instances than `before` have completed.
async fn wait_completed(sdk: &ManagementSdk, before: usize, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while completed(sdk).await? < before + count {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "instances in workers did not complete"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// W2-workers: `instances` × 10 steps through the management API into warm workers,
/// from the first start to the last completion.
pub async fn w2_workers(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    instances: usize,
) -> anyhow::Result<()> {
    let sdk = Arc::new(management(target).await?);
    let (image_id, _) = worker_image(&sdk).await?;
    let input = serde_json::json!({"steps": 10});
    // Warm-up: the workers start.
    let before = completed(&sdk).await?;
    start_all(&sdk, &image_id, &format!("{prefix}-w2w-warm"), 20, &input).await?;
    wait_completed(&sdk, before, 20).await?;
    let before = completed(&sdk).await?;
    let begun = Instant::now();
    start_all(&sdk, &image_id, &format!("{prefix}-w2w"), instances, &input).await?;
    wait_completed(&sdk, before, instances).await?;
    let elapsed = begun.elapsed().as_secs_f64();
    report.add(
        target.mode.name(),
        "W2-workers",
        (instances * 10) as f64 / elapsed,
        "steps_per_s",
    );
    Ok(())
}

/// W4-worker: `start_instance` until the first step body runs, on a warm worker, one
/// instance at a time (median and p95 of `samples`).
pub async fn w4_worker(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    dir: &Path,
    samples: usize,
) -> anyhow::Result<()> {
    let sdk = management(target).await?;
    let (image_id, _) = worker_image(&sdk).await?;
    let mut times = Vec::with_capacity(samples);
    for n in 0..=samples {
        let mark = dir.join(format!("w4w-mark-{n}"));
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        sdk.start_instance(
            StartInstanceOptions::new(&image_id, TENANT)
                .with_instance_id(format!("{prefix}-w4w-{n}"))
                .with_input(serde_json::json!({"steps": 1, "mark_file": mark})),
        )
        .await?;
        let body_at = wait_for_mark(&mark, "W4-worker").await?;
        // The first sample starts the worker.
        if n > 0 {
            times.push(body_at.saturating_sub(before.as_nanos()) as f64 / 1e6);
        }
        // One instance at a time, as W4-runtime: the next start waits for this one's
        // end (its writes would otherwise share the store with the next start).
        let id = format!("{prefix}-w4w-{n}");
        while sdk.get_instance_status(&id).await?.status != "completed" {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mode = target.mode.name();
    report.add(mode, "W4-worker", median(&mut times.clone()), "ms");
    report.add(mode, "W4-worker", percentile(&mut times, 0.95), "p95_ms");
    Ok(())
}

/// W6-event: event delivery latency, from `send_event` until the instance's
/// `wait_for_event` returns, with the instance waiting in a warm worker (in process: its
/// wait held by the server). Median and p95 of `samples` events sent one at a time.
pub async fn w6_event(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    dir: &Path,
    samples: usize,
) -> anyhow::Result<()> {
    let sdk = management(target).await?;
    let (image_id, _) = worker_image(&sdk).await?;
    let id = format!("{prefix}-w6");
    let mark = dir.join("w6-mark");
    let events = u32::try_from(samples + 1)?;
    sdk.start_instance(
        StartInstanceOptions::new(&image_id, TENANT)
            .with_instance_id(&id)
            .with_input(serde_json::json!({"steps": 1, "events": events, "mark_file": mark})),
    )
    .await?;
    let mut times = Vec::with_capacity(samples);
    for n in 0..=samples {
        // Sent once the instance waits (its wait is held on the server), as a waiting
        // approval is.
        let started = Instant::now();
        while sdk.get_instance_status(&id).await?.status != "waiting" {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "W6-event: no wait"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let before = crate::steps::now_ns();
        sdk.send_event(&id, "tick", &n).await?;
        let taken_at = wait_for_mark(&dir.join(format!("w6-mark-{n}")), "W6-event").await?;
        // The first event warms the path.
        if n > 0 {
            times.push(taken_at.saturating_sub(before) as f64 / 1e6);
        }
    }
    let mode = target.mode.name();
    report.add(mode, "W6-event", median(&mut times.clone()), "ms");
    report.add(mode, "W6-event", percentile(&mut times, 0.95), "p95_ms");
    Ok(())
}

/// The pids of live processes whose binary is `binary`.
fn processes_of(binary: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .collect()
}

/// W5-worker: growth of the worker's RSS per idle instance (one step done, then a
/// durable sleep of an hour), after a warm-up instance.
pub async fn w5_worker(
    target: &Target,
    report: &mut Report,
    prefix: &str,
    dir: &Path,
    instances: usize,
) -> anyhow::Result<()> {
    let sdk = Arc::new(management(target).await?);
    let image_id = register_self(&sdk).await?;
    let sha256 = sdk.get_image(&image_id).await?.sha256;
    // One worker, room for all of them.
    let pool = WorkerPool::new(0, 1, u32::try_from(instances + 1)?);
    sdk.set_image_workers(&image_id, Some(pool)).await?;
    let binary = std::fs::canonicalize(dir.join("images").join(&sha256))?;
    // Asleep for less than the server's sleep-exit threshold (60 s): they stay in the worker.
    let idle = serde_json::json!({"steps": 1, "sleep_ms": 50_000});
    let asleep = |id: String| {
        let sdk = &sdk;
        async move {
            let started = Instant::now();
            while sdk.get_instance_status(&id).await?.checkpoint_count < 2 {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(120),
                    "W5-worker: instances did not fall asleep"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The last ones' sleeps land.
            tokio::time::sleep(Duration::from_millis(300)).await;
            anyhow::Ok(())
        }
    };
    start_all(&sdk, &image_id, &format!("{prefix}-w5w-warm"), 1, &idle).await?;
    asleep(format!("{prefix}-w5w-warm-0")).await?;
    let pid = *processes_of(&binary)
        .first()
        .ok_or_else(|| anyhow::anyhow!("W5-worker: no worker process"))?;
    let before = rss_kib(pid)?;
    start_all(&sdk, &image_id, &format!("{prefix}-w5w"), instances, &idle).await?;
    asleep(format!("{prefix}-w5w-{}", instances - 1)).await?;
    let after = rss_kib(pid)?;
    report.add(
        target.mode.name(),
        "W5-worker",
        (after - before) / instances as f64,
        "kib_per_instance",
    );
    Ok(())
}
