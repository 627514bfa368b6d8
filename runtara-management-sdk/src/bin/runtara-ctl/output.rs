//! How results are shown: aligned tables for people, JSON documents for scripts.

use runtara_management_sdk::{
    rfc3339_from_millis, Checkpoint, Event, Health, Image, InstanceInfo, InstancePage,
    RegisterImageResult, Schedule, SignalOutcome, StartInstanceResult,
};
use runtara_protocol::WireSignalType;
use serde_json::{json, Value};

use crate::table::{ellipsize, Table};

/// Widest a free-text cell of a listing gets.
const CELL: usize = 60;

/// Bytes shown as JSON when they are JSON, else as (lossy) text.
pub fn bytes_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Bytes shown as text.
fn bytes_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn opt(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_owned()
    }
}

/// A human size: bytes, KiB or MiB.
pub fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    match bytes {
        b if b < KIB => format!("{b} B"),
        b if b < KIB * KIB => format!("{:.1} KiB", b as f64 / KIB as f64),
        b => format!("{:.1} MiB", b as f64 / (KIB * KIB) as f64),
    }
}

/// One instance, in detail.
pub fn instance(info: &InstanceInfo) -> (String, Value) {
    let mut table = Table::new();
    table.row(["instance".into(), info.instance_id.clone()]);
    table.row(["tenant".into(), info.tenant_id.clone()]);
    table.row(["image".into(), or_dash(&info.image_id)]);
    table.row(["status".into(), info.status.to_string()]);
    if let Some(name) = &info.waiting_for {
        table.row(["waiting for".into(), format!("event `{name}`")]);
    }
    if let Some(place) = &info.queue {
        table.row(["queue".into(), place.to_string()]);
    }
    table.row(["created".into(), info.created_at.clone()]);
    table.row(["started".into(), or_dash(&info.started_at)]);
    table.row(["finished".into(), opt(info.finished_at.as_deref())]);
    if let Some(wake_at) = &info.wake_at {
        table.row(["wakes".into(), wake_at.clone()]);
    }
    table.row(["checkpoints".into(), info.checkpoint_count.to_string()]);
    table.row(["last checkpoint".into(), opt(info.checkpoint_id.as_deref())]);
    table.row(["launches".into(), info.launches.to_string()]);
    if let Some(error) = &info.error {
        table.row(["error".into(), error.clone()]);
    }
    if let Some(output) = &info.output {
        table.row(["output".into(), bytes_text(output)]);
    }
    let mut text = table.render();
    if let Some(tail) = info.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
        text.push_str("log tail:\n");
        for line in tail.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    let value = json!({
        "instance_id": info.instance_id,
        "tenant_id": info.tenant_id,
        "image_id": info.image_id,
        "status": info.status,
        "waiting_for": info.waiting_for,
        "created_at": info.created_at,
        "started_at": (!info.started_at.is_empty()).then_some(&info.started_at),
        "finished_at": info.finished_at,
        "heartbeat_at": info.heartbeat_at,
        "wake_at": info.wake_at,
        "output": info.output.as_deref().map(bytes_json),
        "error": info.error,
        "checkpoint_id": info.checkpoint_id,
        "checkpoint_count": info.checkpoint_count,
        "launches": info.launches,
        "log_tail": info.log_tail,
        "queue": info.queue.map(|place| json!({
            "position": place.position,
            "waiting": place.waiting,
            "running": place.running,
            "max_running": place.max_running,
        })),
    });
    (text, value)
}

/// A page of instances.
pub fn instances(page: &InstancePage, offset: u32) -> (String, Value) {
    let mut table = Table::with_headers(&[
        "INSTANCE", "IMAGE", "STATUS", "CREATED", "STARTED", "FINISHED",
    ]);
    for i in &page.instances {
        table.row([
            i.instance_id.clone(),
            or_dash(&i.image_id),
            i.status.to_string(),
            i.created_at.clone(),
            or_dash(&i.started_at),
            opt(i.finished_at.as_deref()),
        ]);
    }
    let mut text = if page.instances.is_empty() {
        String::new()
    } else {
        table.render()
    };
    let shown = page.instances.len() as u64;
    text.push_str(&match (shown, u64::from(offset)) {
        (0, 0) => "no instances\n".to_owned(),
        (0, skip) => format!("no instances after the first {skip} of {}\n", page.total),
        (n, 0) if n == page.total => format!("{n} instance(s)\n"),
        (n, skip) => format!("instances {}-{} of {}\n", skip + 1, skip + n, page.total),
    });
    let instances: Vec<Value> = page
        .instances
        .iter()
        .map(|i| {
            json!({
                "instance_id": i.instance_id,
                "tenant_id": i.tenant_id,
                "image_id": i.image_id,
                "status": i.status,
                "created_at": i.created_at,
                "started_at": (!i.started_at.is_empty()).then_some(&i.started_at),
                "finished_at": i.finished_at,
            })
        })
        .collect();
    (text, json!({ "instances": instances, "total": page.total }))
}

fn image_json(image: &Image) -> Value {
    json!({
        "image_id": image.image_id,
        "tenant_id": image.tenant_id,
        "name": image.name,
        "version": image.version,
        "description": image.description,
        "sha256": image.sha256,
        "size_bytes": image.size_bytes,
        "created_at": image.created_at,
    })
}

/// A tenant's images.
pub fn images(images: &[Image]) -> (String, Value) {
    if images.is_empty() {
        return ("no images\n".into(), json!([]));
    }
    let mut table = Table::with_headers(&[
        "IMAGE",
        "NAME",
        "VERSION",
        "SIZE",
        "SHA256",
        "CREATED",
        "DESCRIPTION",
    ]);
    for image in images {
        table.row([
            image.image_id.clone(),
            image.name.clone(),
            image.version.to_string(),
            size(image.size_bytes),
            image.sha256.chars().take(12).collect(),
            image.created_at.clone(),
            ellipsize(image.description.as_deref().unwrap_or("-"), CELL),
        ]);
    }
    (table.render(), images.iter().map(image_json).collect())
}

/// A registered image: the id alone for people (so `$(runtara-ctl register ...)` works).
pub fn registered(image: &RegisterImageResult) -> (String, Value) {
    let value = json!({
        "image_id": image.image_id,
        "tenant_id": image.tenant_id,
        "name": image.name,
        "version": image.version,
        "sha256": image.sha256,
        "size_bytes": image.size_bytes,
        "created_at": image.created_at,
    });
    (format!("{}\n", image.image_id), value)
}

/// A started instance: the id alone for people.
pub fn started(result: &StartInstanceResult) -> (String, Value) {
    (
        format!("{}\n", result.instance_id),
        json!({ "instance_id": result.instance_id, "created": result.created }),
    )
}

/// A cleared step failure.
pub fn step_cleared(instance_id: &str, checkpoint_id: &str) -> (String, Value) {
    let text = format!(
        "retry-step: the failure of `{checkpoint_id}` is cleared; {instance_id}'s next run \
         calls it again\n"
    );
    let value =
        json!({ "instance_id": instance_id, "checkpoint_id": checkpoint_id, "cleared": true });
    (text, value)
}

/// A created schedule: the id alone for people (so `$(runtara-ctl schedule add ...)`
/// works).
pub fn schedule_created(schedule: &Schedule) -> (String, Value) {
    (
        format!("{}\n", schedule.schedule_id),
        schedule_json(schedule),
    )
}

/// A table of schedules.
pub fn schedules(schedules: &[Schedule]) -> (String, Value) {
    if schedules.is_empty() {
        return ("no schedules\n".into(), json!([]));
    }
    let mut table = Table::with_headers(&[
        "SCHEDULE",
        "IMAGE",
        "CRON",
        "TZ",
        "MISSED",
        "STATE",
        "NEXT FIRE",
        "LAST FIRE",
    ]);
    let when = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), rfc3339_from_millis);
    for schedule in schedules {
        table.row([
            schedule.schedule_id.clone(),
            schedule.image_id.clone(),
            schedule.cron.clone(),
            schedule.timezone.clone(),
            schedule.missed.as_str().to_owned(),
            if schedule.paused { "paused" } else { "active" }.to_owned(),
            when(schedule.next_fire_ms),
            when(schedule.last_fire_ms),
        ]);
    }
    (
        table.render(),
        schedules.iter().map(schedule_json).collect(),
    )
}

fn schedule_json(schedule: &Schedule) -> Value {
    json!({
        "schedule_id": schedule.schedule_id,
        "tenant_id": schedule.tenant_id,
        "image_id": schedule.image_id,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "input": schedule.input,
        "missed": schedule.missed.as_str(),
        "paused": schedule.paused,
        "next_fire_ms": schedule.next_fire_ms,
        "last_fire_ms": schedule.last_fire_ms,
        "created_at": schedule.created_at,
    })
}

/// What a send of an event did.
pub fn event_sent(
    instance_id: &str,
    name: &str,
    sent: &runtara_management_sdk::EventSent,
) -> (String, Value) {
    let text = match sent.duplicate {
        false => format!(
            "sent event `{name}` to {instance_id} (event {})\n",
            sent.seq
        ),
        true => format!(
            "event `{name}` was sent to {instance_id} before with this key (event {}); \
             nothing changed\n",
            sent.seq
        ),
    };
    let value = json!({
        "instance_id": instance_id,
        "name": name,
        "seq": sent.seq,
        "duplicate": sent.duplicate,
    });
    (text, value)
}

/// What a signal did.
pub fn signalled(
    instance_id: &str,
    signal: WireSignalType,
    outcome: &SignalOutcome,
) -> (String, Value) {
    let text = if outcome.applied {
        format!("{signal}: {instance_id} is now {}\n", outcome.status)
    } else if signal == WireSignalType::Resume {
        format!(
            "resume: queued for {instance_id}; the server relaunches it from its last \
             checkpoint (status: {})\n",
            outcome.status
        )
    } else {
        format!(
            "{signal}: queued for {instance_id}; the running process acts on it at its next \
             checkpoint, so it may come too late: an instance with no checkpoint left can \
             still end completed (status: {})\n",
            outcome.status
        )
    };
    let value = json!({
        "instance_id": instance_id,
        "signal": signal.as_str(),
        "status": outcome.status,
        "applied": outcome.applied,
    });
    (text, value)
}

/// An instance's events.
pub fn events(events: &[Event]) -> (String, Value) {
    if events.is_empty() {
        return ("no events\n".into(), json!([]));
    }
    let mut table = event_table();
    for event in events {
        table.row(event_row(event));
    }
    (table.render(), events.iter().map(event_json).collect())
}

/// The table of events, with its headers and no rows.
pub fn event_table() -> Table {
    Table::with_headers(&["ID", "KIND", "SUBTYPE", "CREATED", "PAYLOAD"])
}

/// One event's row of the table (its payload shortened).
pub fn event_row(event: &Event) -> [String; 5] {
    [
        event.event_id.to_string(),
        event.kind.to_string(),
        opt(event.subtype.as_deref()),
        event.created_at.clone(),
        ellipsize(
            &event
                .payload
                .as_deref()
                .map(bytes_text)
                .unwrap_or_else(|| "-".into()),
            CELL,
        ),
    ]
}

/// The `index`th event of a JSON array written as it goes: what comes before it (the
/// array's opening, or the comma) and the event, indented as in a pretty-printed array.
/// After the last one comes `"\n]\n"` (and `"[]\n"` when there is none).
pub fn event_json_item(index: usize, event: &Event) -> serde_json::Result<String> {
    let item = serde_json::to_string_pretty(&event_json(event))?.replace('\n', "\n  ");
    Ok(format!(
        "{}  {item}",
        if index == 0 { "[\n" } else { ",\n" }
    ))
}

/// One event as JSON.
pub fn event_json(event: &Event) -> Value {
    json!({
        "event_id": event.event_id,
        "kind": event.kind,
        "subtype": event.subtype,
        "payload": event.payload.as_deref().map(bytes_json),
        "created_at": event.created_at,
    })
}

/// An instance's checkpoints.
pub fn checkpoints(checkpoints: &[Checkpoint]) -> (String, Value) {
    if checkpoints.is_empty() {
        return ("no checkpoints\n".into(), json!([]));
    }
    let mut table = Table::with_headers(&["CHECKPOINT", "CREATED", "WAKES", "SIZE", "STATE"]);
    for checkpoint in checkpoints {
        table.row([
            checkpoint.checkpoint_id.clone(),
            checkpoint.created_at.clone(),
            opt(checkpoint.wake_at.as_deref()),
            size(checkpoint.state.len() as u64),
            ellipsize(&bytes_text(&checkpoint.state), CELL),
        ]);
    }
    let value = checkpoints
        .iter()
        .map(|c| {
            json!({
                "checkpoint_id": c.checkpoint_id,
                "created_at": c.created_at,
                "wake_at": c.wake_at,
                "size_bytes": c.state.len(),
                "state": bytes_json(&c.state),
            })
        })
        .collect();
    (table.render(), value)
}

/// The server's health.
pub fn health(health: &Health, addr: &str) -> (String, Value) {
    let mut table = Table::new();
    table.row(["server", &health.server]);
    table.row(["address", addr]);
    table.row(["database", &health.database]);
    table.row(["uptime".to_owned(), format!("{}s", health.uptime.as_secs())]);
    table.row([
        "running processes".to_owned(),
        health.running_processes.to_string(),
    ]);
    let value = json!({
        "server": health.server,
        "address": addr,
        "database": health.database,
        "uptime_s": health.uptime.as_secs(),
        "running_processes": health.running_processes,
    });
    (table.render(), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtara_management_sdk::InstanceStatus;

    #[test]
    fn events_written_one_by_one_are_the_pretty_array() {
        let event = |id: i64, payload: Option<&[u8]>| {
            Event::from(runtara_protocol::WireEvent {
                event_id: id,
                kind: runtara_management_sdk::EventKind::Custom,
                subtype: Some("progress".into()),
                payload: payload.map(|p| runtara_protocol::ByteBuf::from(p.to_vec())),
                // 2024-05-01T12:30:05.250Z
                created_at_ms: 1_714_566_605_250,
            })
        };
        let list = [
            event(1, Some(b"{\"pct\":5}")),
            event(2, None),
            event(3, Some(&[0, 255])),
        ];
        let mut streamed = String::new();
        for (index, e) in list.iter().enumerate() {
            streamed.push_str(&event_json_item(index, e).unwrap());
        }
        streamed.push_str("\n]\n");
        let whole = serde_json::to_string_pretty(&events(&list).1).unwrap() + "\n";
        assert_eq!(streamed, whole);
    }
    use runtara_management_sdk::InstanceSummary;

    fn info() -> InstanceInfo {
        InstanceInfo::from(runtara_protocol::WireInstance {
            instance_id: "i-1".into(),
            tenant_id: "t".into(),
            image_id: Some("img".into()),
            status: InstanceStatus::Completed,
            started_at_ms: None,
            finished_at_ms: None,
            // 2024-01-01T00:00:00.000Z
            created_at_ms: 1_704_067_200_000,
            output: Some(runtara_protocol::ByteBuf::from(b"{\"total\":3}".to_vec())),
            error: None,
            checkpoint_id: None,
            checkpoint_count: 2,
            heartbeat_at_ms: None,
            wake_at_ms: None,
            launches: 1,
            log_tail: Some("line 1\nline 2".into()),
        })
    }

    #[test]
    fn a_queued_resume_says_the_server_relaunches_the_instance() {
        let queued = |status: InstanceStatus| SignalOutcome {
            status,
            applied: false,
        };
        let (resume, _) = signalled(
            "i-1",
            WireSignalType::Resume,
            &queued(InstanceStatus::Suspended),
        );
        assert!(resume.contains("relaunches it"), "{resume}");
        let (pause, _) = signalled(
            "i-1",
            WireSignalType::Pause,
            &queued(InstanceStatus::Running),
        );
        assert!(pause.contains("at its next checkpoint"), "{pause}");
        let (cancel, _) = signalled(
            "i-1",
            WireSignalType::Cancel,
            &queued(InstanceStatus::Running),
        );
        assert!(
            cancel.contains("at its next checkpoint") && cancel.contains("can still end completed"),
            "a queued cancel says it may come too late: {cancel}"
        );
    }

    #[test]
    fn instance_detail() {
        let (text, value) = instance(&info());
        assert!(text.contains("status           completed\n"), "{text}");
        assert!(text.contains("started          -\n"), "{text}");
        assert!(text.contains("output           {\"total\":3}\n"), "{text}");
        assert!(text.ends_with("log tail:\n  line 1\n  line 2\n"), "{text}");
        assert_eq!(value["output"], json!({"total": 3}));
        assert_eq!(value["started_at"], Value::Null);
    }

    #[test]
    fn instance_pages_say_how_many() {
        let summary = InstanceSummary {
            instance_id: "i-1".into(),
            tenant_id: "t".into(),
            image_id: "img".into(),
            status: InstanceStatus::Running,
            created_at: "c".into(),
            started_at: "s".into(),
            finished_at: None,
        };
        let page = InstancePage {
            instances: vec![summary],
            total: 7,
        };
        let (text, value) = instances(&page, 2);
        assert_eq!(
            text,
            "INSTANCE  IMAGE  STATUS   CREATED  STARTED  FINISHED\n\
             i-1       img    running  c        s        -\n\
             instances 3-3 of 7\n"
        );
        assert_eq!(value["total"], 7);
        let empty = InstancePage {
            instances: vec![],
            total: 0,
        };
        assert_eq!(instances(&empty, 0).0, "no instances\n");
    }

    #[test]
    fn bytes_are_json_when_they_can_be() {
        assert_eq!(bytes_json(b"[1,2]"), json!([1, 2]));
        assert_eq!(bytes_json(b"plain"), json!("plain"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }
}
