//! Every message round-trips; truncated, oversized, malformed and random input is an
//! error, never a panic.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fmt::Debug;

use runtara_protocol::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn bytes(b: &[u8]) -> ByteBuf {
    ByteBuf::from(b.to_vec())
}

fn signal() -> WireSignal {
    WireSignal {
        signal_id: 7,
        signal_type: WireSignalType::Cancel,
        created_at_ms: 1_700_000_000_000,
    }
}

fn status() -> WireStatus {
    WireStatus {
        instance_id: "i".into(),
        status: InstanceStatus::Running,
        checkpoint_id: Some("a".into()),
        checkpoint_count: 1,
        output: Some(bytes(b"{}")),
        error: None,
        started_at_ms: Some(1),
        finished_at_ms: None,
        heartbeat_at_ms: Some(2),
        wake_at_ms: Some(3),
    }
}

fn requests() -> Vec<InstanceRequest> {
    use InstanceRequest::*;
    vec![
        Register {
            checkpoint_id: None,
        },
        Register {
            checkpoint_id: Some("step-3".into()),
        },
        Checkpoint {
            epoch: 2,
            checkpoint_id: "charge::o-1".into(),
            state: bytes(&[1; 100]),
        },
        GetCheckpoint {
            checkpoint_id: "x".into(),
        },
        Sleep {
            epoch: 1,
            checkpoint_id: "nap".into(),
            state: bytes(b""),
            duration_ms: 60_000,
        },
        Heartbeat { epoch: 1 },
        Completed {
            epoch: 1,
            output: bytes(b"{\"ok\":true}"),
        },
        Failed {
            epoch: 1,
            error: "boom".into(),
        },
        Suspended { epoch: 3 },
        Sleeping { epoch: 3 },
        CustomEvent {
            subtype: "progress".into(),
            payload: bytes(b"50"),
        },
        PollSignal,
        AckSignal {
            epoch: 1,
            signal_type: WireSignalType::Pause,
            acknowledged: true,
        },
        RetryAttempt {
            epoch: 1,
            checkpoint_id: "f::k".into(),
            attempt: 2,
            error: Some("e".into()),
        },
        GetStatus { instance_id: None },
        GetStatus {
            instance_id: Some("other".into()),
        },
        RegisterPaged {
            checkpoint_id: Some("a".into()),
        },
        ReplayPage { after_seq: 41 },
        CheckpointStep {
            epoch: 2,
            checkpoint_id: "shape::k".into(),
            state: bytes(b"42"),
            producer: "app::v1::shape".into(),
        },
        StepFailed {
            epoch: 3,
            checkpoint_id: "charge::o-1".into(),
            error: "card declined".into(),
        },
        TakeEvent {
            epoch: 3,
            checkpoint_id: "approved#1".into(),
            name: "approved".into(),
            deadline_ms: Some(1_700_000_000_000),
            hold_ms: 10_000,
        },
        SetValue {
            epoch: 3,
            key: "progress".into(),
            value: bytes(b"{\"done\":3}"),
        },
        StartChild {
            epoch: 3,
            key: "part-7".into(),
            image_id: "img-1".into(),
            input: Some(bytes(b"7")),
        },
        StartChildWith {
            epoch: 3,
            key: "audit".into(),
            image_id: "img-1".into(),
            input: None,
            detached: true,
        },
    ]
}

fn responses() -> Vec<InstanceResponse> {
    use InstanceResponse::*;
    vec![
        Registered {
            epoch: 4,
            checkpoints: vec![RecordedStep {
                checkpoint_id: "a".into(),
                state: bytes(b"1"),
            }],
            retry_attempts: vec![("a".into(), 2)],
        },
        RegisteredPage {
            epoch: 4,
            checkpoints: vec![RecordedStep {
                checkpoint_id: "a".into(),
                state: bytes(b"1"),
            }],
            retry_attempts: vec![("a".into(), 2)],
            retry_at_ms: vec![1_700_000_000_000],
            failures: vec![("b".into(), "declined".into())],
            producer_names: vec!["app::f".into()],
            produced_by: vec![Some(0)],
            more_after: Some(12),
        },
        ReplayPage {
            checkpoints: vec![RecordedStep {
                checkpoint_id: "b".into(),
                state: bytes(b"2"),
            }],
            producer_names: vec![],
            produced_by: vec![None],
            more_after: None,
        },
        CheckpointedStep {
            existing_state: Some(bytes(b"7")),
            existing_producer: Some("app::v1::shape".into()),
            signal: Some(signal()),
        },
        EventTaken {
            payload: Some(bytes(b"{\"by\":\"ana\"}")),
        },
        EventTaken { payload: None },
        ChildStarted {
            instance_id: "i~part-7".into(),
            created: true,
        },
        EventPending {
            signal: Some(signal()),
        },
        Checkpointed {
            existing_state: None,
            signal: Some(signal()),
        },
        Checkpointed {
            existing_state: Some(bytes(b"old")),
            signal: None,
        },
        Checkpoint {
            state: Some(bytes(b"s")),
        },
        Checkpoint { state: None },
        Slept {
            wake_at_ms: 10,
            remaining_ms: 5,
            existing_state: None,
            signal: None,
        },
        Done,
        Signal(Some(signal())),
        Signal(None),
        Status(status()),
        Status(WireStatus {
            instance_id: "i".into(),
            status: InstanceStatus::Running,
            checkpoint_id: Some("a".into()),
            checkpoint_count: 1,
            output: None,
            error: None,
            started_at_ms: Some(1),
            finished_at_ms: None,
            heartbeat_at_ms: Some(2),
            wake_at_ms: None,
        }),
        Error(WireError {
            code: ErrorCode::Fenced,
            message: "fenced".into(),
            status: None,
            epoch: Some(1),
            current: Some(2),
        }),
    ]
}

fn hellos() -> Vec<Hello> {
    vec![
        Hello::new(
            "test/1",
            Role::Instance {
                instance_id: "i".into(),
                tenant_id: "t".into(),
                credential: Some("c".into()),
            },
        ),
        Hello::new(
            "test/1",
            Role::Instance {
                instance_id: "i".into(),
                tenant_id: "t".into(),
                credential: None,
            },
        ),
        Hello::new("test/1", Role::Management { token: None }),
        Hello::new(
            "test/1",
            Role::Management {
                token: Some("secret".into()),
            },
        ),
    ]
}

fn hello_replies() -> Vec<HelloReply> {
    vec![
        HelloReply::welcome("runtara-server/0.1.0"),
        HelloReply::Refused(WireError::new(ErrorCode::VersionMismatch, "old")),
    ]
}

fn management_requests() -> Vec<ManagementRequest> {
    vec![
        ManagementRequest::Ping,
        ManagementRequest::GetInstanceStatus {
            instance_id: "i".into(),
        },
        ManagementRequest::RegisterImage {
            tenant_id: "t".into(),
            name: "orders".into(),
            description: Some("v1".into()),
            size_bytes: 1 << 40,
            sha256: "ab".repeat(32),
        },
        ManagementRequest::ListImages {
            tenant_id: "t".into(),
        },
        ManagementRequest::GetImage {
            image_id: "img-1".into(),
        },
        ManagementRequest::DeleteImage {
            image_id: "img-1".into(),
        },
        ManagementRequest::StartInstance {
            image_id: "img-1".into(),
            tenant_id: "t".into(),
            instance_id: Some("i".into()),
            input: Some(ByteBuf::from(br#"{"a":1}"#.to_vec())),
            timeout_ms: Some(u64::MAX),
        },
        ManagementRequest::ListInstances {
            tenant_id: "t".into(),
            status: Some(InstanceStatus::Running),
            limit: Some(50),
            offset: 7,
        },
        ManagementRequest::SendSignal {
            instance_id: "i".into(),
            signal: WireSignalType::Pause,
        },
        ManagementRequest::ListEvents {
            instance_id: "i".into(),
        },
        ManagementRequest::ListCheckpoints {
            instance_id: "i".into(),
        },
        ManagementRequest::ListCheckpointsPage {
            instance_id: "i".into(),
            after_seq: 3,
        },
        ManagementRequest::RetryStep {
            instance_id: "i".into(),
            checkpoint_id: "charge::o-1".into(),
        },
        ManagementRequest::ListEventsPage {
            instance_id: "i".into(),
            after_event_id: 41,
            limit: Some(100),
        },
        ManagementRequest::ListEventsPage {
            instance_id: "i".into(),
            after_event_id: 0,
            limit: None,
        },
        ManagementRequest::Health,
        ManagementRequest::GetQueuePlace {
            instance_id: "i".into(),
        },
        ManagementRequest::SetImageWorkers {
            image_id: "img-1".into(),
            workers: Some(runtara_protocol::WireWorkerPool {
                min: 1,
                max: 4,
                instances: 256,
            }),
        },
        ManagementRequest::SetImageWorkers {
            image_id: "img-1".into(),
            workers: None,
        },
        ManagementRequest::WaitForCompletion {
            instance_id: "i".into(),
            timeout_ms: 30_000,
            or_suspended: true,
        },
        ManagementRequest::SendEvent {
            instance_id: "i".into(),
            name: "approved".into(),
            payload: ByteBuf::from(b"{\"by\":\"ana\"}".to_vec()),
            idempotency_key: Some("mail-17".into()),
        },
        ManagementRequest::GetValue {
            instance_id: "i".into(),
            key: "progress".into(),
            wait_ms: 0,
        },
        ManagementRequest::CreateSchedule {
            schedule_id: Some("nightly".into()),
            tenant_id: "t".into(),
            image_id: "img-1".into(),
            cron: "0 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            input: Some(ByteBuf::from(b"{}".to_vec())),
            missed: "run_once".into(),
        },
        ManagementRequest::ListSchedules {
            tenant_id: "t".into(),
        },
        ManagementRequest::DeleteSchedule {
            schedule_id: "nightly".into(),
        },
        ManagementRequest::SetSchedulePaused {
            schedule_id: "nightly".into(),
            paused: true,
        },
        ManagementRequest::GetWaitingFor {
            instance_id: "i".into(),
        },
    ]
}

fn wire_schedule() -> WireSchedule {
    WireSchedule {
        schedule_id: "nightly".into(),
        tenant_id: "t".into(),
        image_id: "img-1".into(),
        cron: "0 2 * * *".into(),
        timezone: "UTC".into(),
        input: None,
        missed: "skip".into(),
        paused: false,
        next_fire_ms: Some(1_700_000_000_000),
        last_fire_ms: None,
        created_at_ms: 1,
    }
}

fn wire_instance() -> WireInstance {
    WireInstance {
        instance_id: "i".into(),
        tenant_id: "t".into(),
        image_id: Some("img-1".into()),
        status: InstanceStatus::Completed,
        created_at_ms: 1,
        started_at_ms: Some(2),
        finished_at_ms: Some(3),
        output: Some(ByteBuf::from(b"{}".to_vec())),
        error: None,
        checkpoint_id: Some("step::1".into()),
        checkpoint_count: 4,
        heartbeat_at_ms: Some(5),
        wake_at_ms: None,
        launches: 2,
        log_tail: Some("hello\n".into()),
    }
}

fn wire_image() -> WireImage {
    WireImage {
        image_id: "img-1".into(),
        tenant_id: "t".into(),
        name: "orders".into(),
        version: 3,
        description: None,
        sha256: "00".repeat(32),
        size_bytes: 1024,
        created_at_ms: 9,
    }
}

fn management_responses() -> Vec<ManagementResponse> {
    vec![
        ManagementResponse::Pong {
            server: "runtara-server/0.1.0".into(),
            server_time_ms: 1_700_000_000_000,
        },
        ManagementResponse::Instance(wire_instance()),
        ManagementResponse::Error(WireError::new(ErrorCode::Unauthorized, "no token")),
        ManagementResponse::Image(wire_image()),
        ManagementResponse::Images(vec![wire_image(), wire_image()]),
        ManagementResponse::Done,
        ManagementResponse::Started {
            instance_id: "i".into(),
            created: true,
        },
        ManagementResponse::Instances {
            instances: vec![wire_instance()],
            total: 12,
        },
        ManagementResponse::Signalled {
            status: InstanceStatus::Suspended,
            applied: true,
        },
        ManagementResponse::Events(vec![WireEvent {
            event_id: 1,
            kind: "custom".into(),
            subtype: Some("progress".into()),
            payload: Some(ByteBuf::from(vec![0, 255])),
            created_at_ms: 4,
        }]),
        ManagementResponse::Checkpoints(vec![WireCheckpoint {
            checkpoint_id: "c".into(),
            state: ByteBuf::from(vec![1, 2, 3]),
            created_at_ms: 5,
            wake_at_ms: Some(6),
        }]),
        ManagementResponse::Health {
            server: "runtara-server/0.1.0".into(),
            database: "sqlite".into(),
            uptime_s: 3,
            running_processes: 0,
        },
        ManagementResponse::CheckpointPage {
            checkpoints: vec![WireCheckpoint {
                checkpoint_id: "d".into(),
                state: ByteBuf::from(vec![4]),
                created_at_ms: 7,
                wake_at_ms: None,
            }],
            more_after: Some(9),
        },
        ManagementResponse::EventPage {
            events: vec![WireEvent {
                event_id: 42,
                kind: "custom".into(),
                subtype: None,
                payload: Some(ByteBuf::from(vec![9; 3])),
                created_at_ms: 8,
            }],
            more_after: Some(42),
        },
        ManagementResponse::EventPage {
            events: Vec::new(),
            more_after: None,
        },
        ManagementResponse::QueuePlace {
            position: Some(3),
            waiting: 120,
            running: 64,
            max_running: 64,
        },
        ManagementResponse::QueuePlace {
            position: None,
            waiting: 0,
            running: 1,
            max_running: 64,
        },
        ManagementResponse::EventSent {
            seq: 3,
            duplicate: true,
        },
        ManagementResponse::Value {
            value: Some(ByteBuf::from(b"42".to_vec())),
        },
        ManagementResponse::Value { value: None },
        ManagementResponse::Schedule(wire_schedule()),
        ManagementResponse::Schedules(vec![wire_schedule()]),
        ManagementResponse::WaitingFor {
            name: Some("approved".into()),
        },
    ]
}

fn wire_errors() -> Vec<WireError> {
    ErrorCode::ALL
        .iter()
        .map(|&code| WireError {
            code,
            message: code.to_string(),
            status: Some(InstanceStatus::Completed),
            epoch: Some(-1),
            current: Some(i64::MAX),
        })
        .collect()
}

// The matches below have no wildcard: adding a variant stops this file from compiling
// until the variant has a sample above.

fn request_variant(r: &InstanceRequest) -> usize {
    use InstanceRequest::*;
    match r {
        Register { .. } => 0,
        Checkpoint { .. } => 1,
        GetCheckpoint { .. } => 2,
        Sleep { .. } => 3,
        Heartbeat { .. } => 4,
        Completed { .. } => 5,
        Failed { .. } => 6,
        Suspended { .. } => 7,
        Sleeping { .. } => 8,
        CustomEvent { .. } => 9,
        PollSignal => 10,
        AckSignal { .. } => 11,
        RetryAttempt { .. } => 12,
        GetStatus { .. } => 13,
        RegisterPaged { .. } => 14,
        ReplayPage { .. } => 15,
        CheckpointStep { .. } => 16,
        StepFailed { .. } => 17,
        TakeEvent { .. } => 18,
        SetValue { .. } => 19,
        StartChild { .. } => 20,
        StartChildWith { .. } => 21,
    }
}

fn response_variant(r: &InstanceResponse) -> usize {
    use InstanceResponse::*;
    match r {
        Registered { .. } => 0,
        Checkpointed { .. } => 1,
        Checkpoint { .. } => 2,
        Slept { .. } => 3,
        Done => 4,
        Signal(_) => 5,
        Status(_) => 6,
        Error(_) => 7,
        RegisteredPage { .. } => 8,
        ReplayPage { .. } => 9,
        CheckpointedStep { .. } => 10,
        EventTaken { .. } => 11,
        EventPending { .. } => 12,
        ChildStarted { .. } => 13,
    }
}

fn management_request_variant(r: &ManagementRequest) -> usize {
    use ManagementRequest::*;
    match r {
        Ping => 0,
        GetInstanceStatus { .. } => 1,
        RegisterImage { .. } => 2,
        ListImages { .. } => 3,
        GetImage { .. } => 4,
        DeleteImage { .. } => 5,
        StartInstance { .. } => 6,
        ListInstances { .. } => 7,
        SendSignal { .. } => 8,
        ListEvents { .. } => 9,
        ListCheckpoints { .. } => 10,
        Health => 11,
        ListCheckpointsPage { .. } => 12,
        RetryStep { .. } => 13,
        ListEventsPage { .. } => 14,
        GetQueuePlace { .. } => 15,
        SetImageWorkers { .. } => 16,
        WaitForCompletion { .. } => 17,
        SendEvent { .. } => 18,
        GetValue { .. } => 19,
        CreateSchedule { .. } => 20,
        ListSchedules { .. } => 21,
        DeleteSchedule { .. } => 22,
        SetSchedulePaused { .. } => 23,
        GetWaitingFor { .. } => 24,
    }
}

fn management_response_variant(r: &ManagementResponse) -> usize {
    use ManagementResponse::*;
    match r {
        Pong { .. } => 0,
        Instance(_) => 1,
        Error(_) => 2,
        Image(_) => 3,
        Images(_) => 4,
        Done => 5,
        Started { .. } => 6,
        Instances { .. } => 7,
        Signalled { .. } => 8,
        Events(_) => 9,
        Checkpoints(_) => 10,
        Health { .. } => 11,
        CheckpointPage { .. } => 12,
        EventPage { .. } => 13,
        QueuePlace { .. } => 14,
        EventSent { .. } => 15,
        Value { .. } => 16,
        Schedule(_) => 17,
        Schedules(_) => 18,
        WaitingFor { .. } => 19,
    }
}

fn covered<T>(samples: &[T], variant: fn(&T) -> usize, count: usize) {
    let seen: BTreeSet<usize> = samples.iter().map(variant).collect();
    assert_eq!(
        seen,
        (0..count).collect(),
        "a variant of {} has no sample",
        std::any::type_name::<T>()
    );
}

#[test]
fn every_variant_has_a_sample() {
    covered(&requests(), request_variant, 22);
    covered(&responses(), response_variant, 14);
    covered(&management_requests(), management_request_variant, 25);
    covered(&management_responses(), management_response_variant, 20);
    // Every code in the sample set, in its wire order.
    let codes: Vec<ErrorCode> = wire_errors().iter().map(|e| e.code).collect();
    assert_eq!(codes, ErrorCode::ALL);
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let frame = encode_frame(value).unwrap();
    let back: T = decode_frame(&frame, DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(&back, value);
    let payload = encode_payload(value).unwrap();
    assert_eq!(payload, frame[LENGTH_PREFIX_LEN..]);
    assert_eq!(&decode_payload::<T>(&payload).unwrap(), value);
    let envelope = Envelope::new(u64::MAX - 3, value);
    let frame = encode_frame(&envelope).unwrap();
    let back: Envelope<T> = decode_frame(&frame, DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(back.request_id, u64::MAX - 3);
    assert_eq!(&back.body, value);
}

#[test]
fn every_message_round_trips() {
    requests().iter().for_each(round_trip);
    responses().iter().for_each(round_trip);
    hellos().iter().for_each(round_trip);
    hello_replies().iter().for_each(round_trip);
    management_requests().iter().for_each(round_trip);
    management_responses().iter().for_each(round_trip);
    wire_errors().iter().for_each(round_trip);
    wire_errors()
        .into_iter()
        .map(InstanceResponse::Error)
        .for_each(|r| round_trip(&r));
}

#[tokio::test]
async fn every_message_round_trips_through_a_stream() {
    let mut stream = Vec::new();
    for request in requests() {
        write_frame(&mut stream, &request).await.unwrap();
    }
    let mut reader: &[u8] = &stream;
    for request in requests() {
        let back: InstanceRequest = read_frame(&mut reader, DEFAULT_MAX_FRAME_LEN)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, request);
    }
    let end: Option<InstanceRequest> = read_frame(&mut reader, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap();
    assert!(end.is_none());
}

#[test]
fn a_reply_keeps_the_request_id() {
    let request = Envelope::new(42, InstanceRequest::PollSignal);
    let reply = request.reply(InstanceResponse::Signal(None));
    assert_eq!(reply.request_id, 42);
}

/// An encoded frame and whether bytes decode as the frame's message type.
type SampleFrame = (Vec<u8>, fn(&[u8]) -> bool);

/// Every sample of every message type, encoded as a frame, with its decoder.
fn sample_frames() -> Vec<SampleFrame> {
    fn frames<T: Serialize>(samples: Vec<T>, decodes: fn(&[u8]) -> bool) -> Vec<SampleFrame> {
        samples
            .iter()
            .map(|s| (encode_frame(s).unwrap(), decodes))
            .collect()
    }
    fn decodes<T: DeserializeOwned>(bytes: &[u8]) -> bool {
        decode_frame::<T>(bytes, DEFAULT_MAX_FRAME_LEN).is_ok()
    }
    let mut all = frames(requests(), decodes::<InstanceRequest>);
    all.extend(frames(responses(), decodes::<InstanceResponse>));
    all.extend(frames(hellos(), decodes::<Hello>));
    all.extend(frames(hello_replies(), decodes::<HelloReply>));
    all.extend(frames(management_requests(), decodes::<ManagementRequest>));
    all.extend(frames(
        management_responses(),
        decodes::<ManagementResponse>,
    ));
    all.extend(frames(
        requests()
            .into_iter()
            .map(|r| Envelope::new(9, r))
            .collect(),
        decodes::<InstanceRequestEnvelope>,
    ));
    all
}

#[test]
fn truncated_frames_are_errors_at_every_offset() {
    for (frame, decodes) in sample_frames() {
        assert!(decodes(&frame));
        for cut in 0..frame.len() {
            assert!(!decodes(&frame[..cut]), "{frame:?} cut at {cut} decoded");
        }
    }
}

#[tokio::test]
async fn truncated_streams_are_errors_at_every_offset() {
    for request in requests() {
        let frame = encode_frame(&request).unwrap();
        for cut in 1..frame.len() {
            let mut reader = &frame[..cut];
            let result = read_frame::<_, InstanceRequest>(&mut reader, DEFAULT_MAX_FRAME_LEN).await;
            assert!(
                matches!(result, Err(ProtocolError::Truncated { .. })),
                "{request:?} cut at {cut}: {result:?}"
            );
        }
    }
}

#[test]
fn oversized_length_prefix_is_refused() {
    let mut frame = u32::MAX.to_be_bytes().to_vec();
    frame.extend_from_slice(b"tiny");
    let error = decode_frame::<InstanceRequest>(&frame, DEFAULT_MAX_FRAME_LEN).unwrap_err();
    assert!(
        matches!(error, ProtocolError::FrameTooLarge { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "frame of {} bytes is larger than the limit of {DEFAULT_MAX_FRAME_LEN} bytes",
            u32::MAX
        )
    );
    assert_eq!(WireError::from(&error).code, ErrorCode::FrameTooLarge);
}

/// A reader holding a prefix that fails the test if anything past it is read.
struct PrefixOnly([u8; 4], usize);

impl tokio::io::AsyncRead for PrefixOnly {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let at = self.1;
        assert!(at < 4, "the payload of an oversized frame was read");
        let prefix = self.0;
        let n = buf.remaining().min(4 - at);
        buf.put_slice(&prefix[at..at + n]);
        self.1 += n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn streamed_oversized_frames_are_refused_from_the_prefix_alone() {
    // A 4 GiB announcement: allocating for it would abort the test.
    let mut reader = PrefixOnly(u32::MAX.to_be_bytes(), 0);
    let result = read_frame::<_, InstanceRequest>(&mut reader, DEFAULT_MAX_FRAME_LEN).await;
    assert!(
        matches!(result, Err(ProtocolError::FrameTooLarge { len, max })
            if len == u32::MAX as usize && max == DEFAULT_MAX_FRAME_LEN),
        "{result:?}"
    );
    // One byte over a small per-reader limit.
    let mut reader = PrefixOnly(1025u32.to_be_bytes(), 0);
    let result = read_frame::<_, InstanceRequest>(&mut reader, 1024).await;
    assert!(matches!(
        result,
        Err(ProtocolError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    ));
}

#[tokio::test]
async fn a_large_announcement_with_little_behind_it_is_truncated() {
    let mut input = (DEFAULT_MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
    input.extend_from_slice(&[0; 10]);
    let mut reader: &[u8] = &input;
    let result = read_frame::<_, InstanceRequest>(&mut reader, DEFAULT_MAX_FRAME_LEN).await;
    assert!(
        matches!(result, Err(ProtocolError::Truncated { expected, got: 10 }) if expected == DEFAULT_MAX_FRAME_LEN),
        "{result:?}"
    );
}

/// A small deterministic PRNG (xorshift64) so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn decode_with_every_decoder(buf: &[u8]) {
    let max = DEFAULT_MAX_FRAME_LEN;
    let _ = decode_frame::<InstanceRequest>(buf, max);
    let _ = decode_frame::<InstanceResponse>(buf, max);
    let _ = decode_frame::<InstanceRequestEnvelope>(buf, max);
    let _ = decode_frame::<InstanceResponseEnvelope>(buf, max);
    let _ = decode_frame::<Hello>(buf, max);
    let _ = decode_frame::<HelloReply>(buf, max);
    let _ = decode_frame::<ManagementRequest>(buf, max);
    let _ = decode_frame::<ManagementResponse>(buf, max);
    let payload = buf.get(LENGTH_PREFIX_LEN..).unwrap_or_default();
    let _ = decode_payload::<InstanceRequest>(payload);
    let _ = decode_payload::<InstanceResponse>(payload);
    let _ = decode_payload::<Hello>(payload);
    let _ = decode_payload::<HelloReply>(payload);
    let _ = decode_payload::<ManagementResponse>(payload);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for round in 0..20_000 {
        let len = (rng.next() % 256) as usize;
        let mut buf: Vec<u8> = (0..len + 4).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 {
            // A consistent prefix, so the garbage reaches the payload decoder.
            buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
        }
        decode_with_every_decoder(&buf);
    }
}

#[test]
fn damaged_frames_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let frames = sample_frames();
    for _ in 0..20_000 {
        let (frame, _) = &frames[(rng.next() % frames.len() as u64) as usize];
        let mut buf = frame.clone();
        for _ in 0..=rng.next() % 4 {
            // Damage the payload, keep the prefix consistent.
            let at = LENGTH_PREFIX_LEN + (rng.next() as usize % (buf.len() - LENGTH_PREFIX_LEN));
            buf[at] = rng.next() as u8;
        }
        decode_with_every_decoder(&buf);
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    let mut frame = encode_frame(&InstanceRequest::PollSignal).unwrap();
    frame.push(0);
    assert!(matches!(
        decode_frame::<InstanceRequest>(&frame, DEFAULT_MAX_FRAME_LEN),
        Err(ProtocolError::Malformed(_))
    ));
    let prefix = (frame.len() as u32 - 4).to_be_bytes();
    frame[..4].copy_from_slice(&prefix);
    let error = decode_frame::<InstanceRequest>(&frame, DEFAULT_MAX_FRAME_LEN).unwrap_err();
    assert_eq!(
        error.to_string(),
        "malformed message: 1 bytes after the end of the message"
    );
}

#[test]
fn an_unknown_variant_is_malformed() {
    let frame = [0, 0, 0, 1, 200];
    let error = decode_frame::<InstanceRequest>(&frame, DEFAULT_MAX_FRAME_LEN).unwrap_err();
    assert!(matches!(error, ProtocolError::Malformed(_)), "{error:?}");
    assert!(error.to_string().starts_with("malformed message: "));
    assert_eq!(WireError::from(&error).code, ErrorCode::Malformed);
}

#[test]
fn a_checkpoint_request_is_small_and_fast() {
    let request = Envelope::new(
        17,
        InstanceRequest::Checkpoint {
            epoch: 3,
            checkpoint_id: "charge::order-42".into(),
            state: bytes(&[7; 100]),
        },
    );
    let frame = encode_frame(&request).unwrap();
    assert!(frame.len() < 130, "{} bytes", frame.len());
    let reply = request.reply(InstanceResponse::Checkpointed {
        existing_state: None,
        signal: None,
    });
    let reply_frame = encode_frame(&reply).unwrap();

    let rounds = 20_000u32;
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            let frame = encode_frame(std::hint::black_box(&request)).unwrap();
            let back: InstanceRequestEnvelope =
                decode_frame(std::hint::black_box(&frame), DEFAULT_MAX_FRAME_LEN).unwrap();
            std::hint::black_box(back);
        }
        best = best.min(start.elapsed() / rounds);
    }
    println!(
        "checkpoint request (100-byte state, in its envelope): {} bytes framed; reply {} bytes; \
         encode+decode {:?}",
        frame.len(),
        reply_frame.len(),
        best
    );
}

/// Paged event listings were appended: the variants before them keep their wire index
/// (postcard writes it first), so older peers still read every message they knew.
#[test]
fn paged_event_listings_are_appended() {
    let index = |payload: Vec<u8>| payload[0];
    let list = ManagementRequest::ListEvents {
        instance_id: "i".into(),
    };
    let page = ManagementRequest::ListEventsPage {
        instance_id: "i".into(),
        after_event_id: 0,
        limit: None,
    };
    assert_eq!(index(encode_payload(&list).unwrap()), 9);
    assert_eq!(index(encode_payload(&page).unwrap()), 14);
    let reply = ManagementResponse::EventPage {
        events: Vec::new(),
        more_after: None,
    };
    assert_eq!(index(encode_payload(&reply).unwrap()), 13);
    // The queue place was appended after them.
    let place = ManagementRequest::GetQueuePlace {
        instance_id: "i".into(),
    };
    assert_eq!(index(encode_payload(&place).unwrap()), 15);
    let reply = ManagementResponse::QueuePlace {
        position: None,
        waiting: 0,
        running: 0,
        max_running: 1,
    };
    assert_eq!(index(encode_payload(&reply).unwrap()), 14);
}

/// The worker messages round-trip, and keep their wire order: a new kind is appended.
#[test]
fn worker_messages_round_trip_in_their_wire_order() {
    let run = WorkerCommand::Run {
        instance_id: "i".into(),
        input: Some(bytes(b"{}")),
        checkpoint_id: Some("a".into()),
        registered: Some(Box::new(responses().remove(0))),
    };
    let commands = [
        run,
        WorkerCommand::Stop {
            instance_id: "i".into(),
        },
    ];
    let messages = [
        WorkerMessage::Instance {
            instance_id: "i".into(),
            request: requests().remove(0),
        },
        WorkerMessage::Ended {
            instance_id: "i".into(),
            how: "completed".into(),
            clean: true,
        },
        WorkerMessage::Heartbeat,
    ];
    let replies = [
        WorkerReply::Accepted,
        WorkerReply::Refused(wire_errors().remove(0)),
    ];
    commands.iter().for_each(round_trip);
    messages.iter().for_each(round_trip);
    replies.iter().for_each(round_trip);
    // The variant index is the first byte of a frame's payload.
    let index = |payload: Vec<u8>| payload[0];
    let indexes: Vec<u8> = messages
        .iter()
        .map(|m| index(encode_payload(m).unwrap()))
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    let indexes: Vec<u8> = commands
        .iter()
        .map(|c| index(encode_payload(c).unwrap()))
        .collect();
    assert_eq!(indexes, [0, 1]);
}
