//! Instance folders are named by a digest of the instance id, and the folders an older
//! server kept under the raw id are moved there at start-up: the log of an instance
//! started before the upgrade is still found, and a `running` instance's process (which
//! may still read its input through the old path) keeps a link at the old place.
#![allow(clippy::unwrap_used)]

use runtara_core::{InstanceStatus, NewImage, NewInstance};
use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, Hello, HelloReply, ManagementRequest, ManagementResponse, Role,
    DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::valid_ids::instance_folder;
use runtara_server::{RunningServer, ServerConfig};

async fn status(server: &RunningServer, instance_id: &str) -> runtara_protocol::WireInstance {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let addr = server.management_addr;
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Hello::new("folders", Role::Management { token: None });
    write_frame(&mut send, &hello).await.unwrap();
    send.finish().unwrap();
    let reply = read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let request = ManagementRequest::GetInstanceStatus {
        instance_id: instance_id.into(),
    };
    write_frame(&mut send, &request).await.unwrap();
    send.finish().unwrap();
    match read_frame::<_, ManagementResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
    {
        ManagementResponse::Instance(instance) => instance,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_of_an_older_server_are_moved_and_their_logs_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // What an older server left: two instances with folders under their raw ids.
    {
        let url = format!("sqlite://{}", data.join("runtara.db").display());
        let store = runtara_core::connect(&url).await.unwrap();
        store
            .insert_image(NewImage {
                image_id: "img-old".into(),
                tenant_id: "t".into(),
                name: "old".into(),
                description: None,
                sha256: "00".repeat(32),
                size_bytes: 1,
            })
            .await
            .unwrap();
        for (id, to) in [
            ("old-done", InstanceStatus::Completed),
            ("old-running", InstanceStatus::Running),
        ] {
            store
                .create_instance(NewInstance {
                    instance_id: id.into(),
                    tenant_id: "t".into(),
                    image_id: Some("img-old".into()),
                    input: None,
                    run_now: false,
                    parent_id: None,
                    detached: false,
                })
                .await
                .unwrap();
            if to == InstanceStatus::Completed {
                store
                    .set_status(
                        id,
                        &[InstanceStatus::Pending],
                        InstanceStatus::Running,
                        None,
                    )
                    .await
                    .unwrap();
            }
            assert!(store
                .set_status(
                    id,
                    &[InstanceStatus::Pending, InstanceStatus::Running],
                    to,
                    None
                )
                .await
                .unwrap());
            let folder = data.join("instances").join(id);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("output.log"), format!("printed by {id}\n")).unwrap();
            std::fs::write(folder.join("input.json"), "null").unwrap();
        }
        // A folder no instance owns is left alone.
        std::fs::create_dir_all(data.join("instances").join("stray")).unwrap();
    }

    let mut config = ServerConfig::new(data);
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    let server = runtara_server::start(config).await.unwrap();

    for id in ["old-done", "old-running"] {
        let moved = data.join("instance-files").join(instance_folder(id));
        assert_eq!(
            std::fs::read_to_string(moved.join("output.log")).unwrap(),
            format!("printed by {id}\n")
        );
        let instance = status(&server, id).await;
        assert_eq!(
            instance.log_tail.as_deref(),
            Some(format!("printed by {id}").as_str())
        );
    }
    let old = data.join("instances");
    assert!(!old.join("old-done").exists(), "moved");
    let link = std::fs::symlink_metadata(old.join("old-running")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "a running process's old path still resolves"
    );
    assert_eq!(
        std::fs::read_to_string(old.join("old-running").join("input.json")).unwrap(),
        "null"
    );
    assert!(old.join("stray").is_dir(), "left alone");
    server.shutdown().await;
}
