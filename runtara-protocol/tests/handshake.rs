//! The handshake welcomes a client of the same protocol version and refuses any other
//! with `version_mismatch` and a message naming the side to upgrade.
#![allow(clippy::unwrap_used)]

use runtara_protocol::*;

fn instance_hello(version: u32) -> Hello {
    let mut hello = Hello::new(
        "runtara-sdk/0.1.0",
        Role::Instance {
            instance_id: "i".into(),
            tenant_id: "t".into(),
            credential: Some("launch-secret".into()),
        },
    );
    hello.protocol_version = version;
    hello
}

#[test]
fn the_same_version_is_welcomed() {
    let hello = instance_hello(PROTOCOL_VERSION);
    assert!(check_hello(&hello).is_ok());
    let reply = answer_hello(&hello, "runtara-server/0.1.0");
    assert_eq!(
        reply,
        HelloReply::Welcome {
            protocol_version: PROTOCOL_VERSION,
            server: "runtara-server/0.1.0".into()
        }
    );
    assert_eq!(reply.into_result().unwrap(), "runtara-server/0.1.0");
}

#[test]
fn a_newer_client_is_told_to_upgrade_the_server() {
    let newer = PROTOCOL_VERSION + 1;
    let error = check_hello(&instance_hello(newer)).unwrap_err();
    assert!(matches!(
        error,
        ProtocolError::VersionMismatch { client, server } if client == newer && server == PROTOCOL_VERSION
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "protocol version mismatch: the client speaks runtara protocol v{newer}, the server \
             speaks v{PROTOCOL_VERSION}; upgrade runtara-server to a release that speaks \
             v{newer}, or use a client built for v{PROTOCOL_VERSION}"
        )
    );
}

#[test]
fn an_older_client_is_told_to_upgrade_itself() {
    let error = check_hello(&instance_hello(0)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "protocol version mismatch: the client speaks runtara protocol v0, the server speaks \
             v{PROTOCOL_VERSION}; upgrade the client (runtara-sdk / runtara-management-sdk) to a \
             release that speaks v{PROTOCOL_VERSION}"
        )
    );
}

#[test]
fn a_mismatch_is_refused_on_the_wire_with_its_code_and_message() {
    let hello = instance_hello(PROTOCOL_VERSION + 1);
    let reply = answer_hello(&hello, "runtara-server/0.1.0");
    let frame = encode_frame(&reply).unwrap();
    let reply: HelloReply = decode_frame(&frame, DEFAULT_MAX_FRAME_LEN).unwrap();
    let error = reply.into_result().unwrap_err();
    assert_eq!(error.code, ErrorCode::VersionMismatch);
    assert_eq!(error.code.as_str(), "version_mismatch");
    assert_eq!(
        error.message,
        check_hello(&hello).unwrap_err().to_string(),
        "the refusal carries the full explanation"
    );
}

#[test]
fn the_credential_comes_from_either_role() {
    assert_eq!(
        instance_hello(PROTOCOL_VERSION).credential(),
        Some("launch-secret")
    );
    let management = Hello::new(
        "runtara-ctl/0.1.0",
        Role::Management {
            token: Some("token".into()),
        },
    );
    assert_eq!(management.credential(), Some("token"));
    assert_eq!(
        Hello::new("x", Role::Management { token: None }).credential(),
        None
    );
}

#[test]
fn a_client_at_the_wrong_endpoint_is_told_where_to_go() {
    let error = wrong_endpoint(&Role::Management { token: None });
    assert_eq!(error.code, ErrorCode::Unsupported);
    assert!(error.message.contains("management endpoint"), "{error}");
    let error = wrong_endpoint(&instance_hello(PROTOCOL_VERSION).role);
    assert!(error.message.contains("instance endpoint"), "{error}");
}
