//! Launching a worker process of an image and watching it until it exits.

use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use runtara_core::ImageRecord;
use tokio::sync::oneshot;

use super::{credential_name, Workers};

impl Workers {
    /// Starts a worker process of `image` and watches it until it exits.
    pub(super) fn spawn_worker(
        self: &Arc<Self>,
        worker_id: &str,
        image: &ImageRecord,
    ) -> anyhow::Result<()> {
        let launch = self.launch.get().context("workers are not configured")?;
        let binary = launch.images_dir.join(&image.sha256);
        let dir = launch.workers_dir.join(worker_id);
        std::fs::create_dir_all(&dir)?;
        let output = std::fs::File::create(dir.join("output.log"))?;
        let mut command = crate::instance_process::image_command(&binary);
        command
            .env("RUNTARA_WORKER_ID", worker_id)
            .env("RUNTARA_TENANT_ID", &image.tenant_id)
            .env("RUNTARA_IMAGE_ID", &image.image_id)
            .env(
                "RUNTARA_WORKER_CREDENTIAL",
                self.key.issue(&credential_name(worker_id), 0),
            )
            .env("RUNTARA_SERVER_ADDR", launch.instance_addr.to_string())
            .env("RUNTARA_SERVER_NAME", "localhost")
            .env(
                "RUNTARA_HEARTBEAT_INTERVAL_MS",
                launch.heartbeat_interval.as_millis().to_string(),
            )
            .env(
                "RUNTARA_SLEEP_EXIT_THRESHOLD_MS",
                launch.sleep_exit_threshold.as_millis().to_string(),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        if let Some(ca) = &launch.ca_path {
            command.env("RUNTARA_CA_CERT", ca);
        }
        let mut child = command.spawn()?;
        tracing::info!(%worker_id, image_id = %image.image_id, pid = ?child.id(), "worker launched");
        let (kill, killed) = oneshot::channel();
        if let Some(worker) = self.workers().get_mut(worker_id) {
            worker.kill = Some(kill);
        }
        let (me, worker_id) = (Arc::clone(self), worker_id.to_owned());
        tokio::spawn(async move {
            let exit = tokio::select! {
                exit = child.wait() => exit,
                Ok(()) = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let how = match exit {
                Ok(status) => status.to_string(),
                Err(error) => format!("unknown exit ({error})"),
            };
            me.gone(&worker_id, &how);
        });
        Ok(())
    }
}
