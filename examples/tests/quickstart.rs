//! The quickstart does what the README says: crash after a step, rerun, resume.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const QUICKSTART: &str = env!("CARGO_BIN_EXE_quickstart");

fn quickstart(db: &str, extra: &[&str]) -> (bool, String) {
    let output = Command::new(QUICKSTART)
        .args(["--db", db, "--step-delay-ms", "0"])
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn crash_after_step_two_then_rerun_skips_the_recorded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("quickstart.db").display());

    let (ok, first) = quickstart(&db, &["--crash-after", "2"]);
    assert!(!ok, "the simulated crash must kill the process:\n{first}");
    assert!(first.contains("[2/5] reserve inventory  ran"), "{first}");
    assert!(!first.contains("[3/5]"), "{first}");

    let (ok, second) = quickstart(&db, &[]);
    assert!(ok, "{second}");
    assert!(
        second.contains("[1/5] validate order     skipped (replayed from checkpoint)"),
        "{second}"
    );
    assert!(
        second.contains("[2/5] reserve inventory  skipped (replayed from checkpoint)"),
        "{second}"
    );
    assert!(second.contains("[3/5] charge payment     ran"), "{second}");
    assert!(
        second.contains("completed: 3 step(s) ran, 2 replayed"),
        "{second}"
    );
    assert!(
        second.contains("\"payment_id\":\"PAY-ORD-1001\""),
        "{second}"
    );

    let (ok, third) = quickstart(&db, &[]);
    assert!(ok, "{third}");
    assert!(third.contains("already completed"), "{third}");
}
