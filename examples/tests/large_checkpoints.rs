//! An instance whose checkpoints add up to more than one protocol frame (16 MiB) can be
//! listed by operators whole: the management SDK (and `runtara-ctl checkpoints`, which
//! calls it) reads the listing in pages, over real QUIC from a real server.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtara_sdk::{RuntaraSdk, SdkConfig};
use support::Server;

const TEN_MIB: usize = 10 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_mib_of_checkpoints_are_listed_whole_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);
    let run = || async {
        let config = SdkConfig::new("large-1", "acme")
            .with_server_addr(server.instance_addr)
            .with_ca_cert(&server.ca_path)
            .with_heartbeat_interval(Duration::ZERO);
        let sdk = RuntaraSdk::new(config).unwrap();
        sdk.connect().await.unwrap();
        sdk.register(None).await.unwrap();
        sdk
    };
    let sdk = run().await;
    for n in 0..3u8 {
        let result = sdk
            .checkpoint(&format!("step-{n}"), &vec![b'a' + n; TEN_MIB])
            .await
            .unwrap();
        assert!(result.existing_state().is_none());
    }
    drop(sdk);

    let management = server.client().await;
    let listed = management.list_checkpoints("large-1").await.unwrap();
    assert_eq!(listed.len(), 3);
    for (n, checkpoint) in listed.iter().enumerate() {
        assert_eq!(checkpoint.checkpoint_id, format!("step-{n}"));
        assert_eq!(checkpoint.state, vec![b'a' + n as u8; TEN_MIB]);
    }

    // The instance registers again (as after a crash) and finds every state.
    let sdk = run().await;
    let again = sdk.checkpoint("step-2", b"other").await.unwrap();
    assert_eq!(again.existing_state(), Some(&vec![b'c'; TEN_MIB][..]));
    let status = management.get_instance_status("large-1").await.unwrap();
    assert_eq!(status.status, "running");
}
