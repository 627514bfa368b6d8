//! Checkpoints that add up to more than one protocol frame (16 MiB) are replayed whole:
//! over QUIC the replay log comes in pages. States over the per-checkpoint limit are
//! refused with a clear error before anything is stored.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use runtara_sdk::{durable, SdkError};
use support::{unique, Fixture};

on_every_backend!(
    thirty_mib_of_checkpoints_replay_after_a_restart,
    a_state_over_the_limit_is_refused_and_nothing_is_stored,
);

const TEN_MIB: usize = 10 * 1024 * 1024;

/// A 10 MiB result whose bytes say which step made it.
#[durable]
async fn big(key: String, calls: &AtomicUsize) -> Result<String, SdkError> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(key.repeat(TEN_MIB / key.len()))
}

async fn thirty_mib_of_checkpoints_replay_after_a_restart(fx: Fixture) {
    let instance = unique("big");
    let calls = AtomicUsize::new(0);
    let keys = ["a1", "b2", "c3"];
    let first = fx.run(&instance).await;
    for key in keys {
        let value = first
            .clone()
            .scope(big(key.to_owned(), &calls))
            .await
            .unwrap();
        assert_eq!(value.len(), TEN_MIB);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    drop(first);

    // A new run (as after a crash): register must bring back all 30 MiB, in pages over
    // QUIC, and no body runs again.
    let again = fx.run(&instance).await;
    for key in keys {
        let value = again
            .clone()
            .scope(big(key.to_owned(), &calls))
            .await
            .unwrap();
        assert_eq!(value, key.repeat(TEN_MIB / key.len()), "step {key}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "a recorded step ran again");

    let listed = fx.store.list_checkpoints(&instance).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|c| c.checkpoint_id.as_str()).collect();
    assert_eq!(ids, ["big::a1", "big::b2", "big::c3"]);
}

async fn a_state_over_the_limit_is_refused_and_nothing_is_stored(fx: Fixture) {
    let instance = unique("huge");
    let sdk = fx.run(&instance).await;
    let huge = vec![b'x'; runtara_sdk::MAX_STATE_LEN + 1];
    let result = sdk.checkpoint("huge", &huge).await;
    if fx.is_quic() {
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("the limit over QUIC is"),
            "unclear error: {message}"
        );
        assert_eq!(
            fx.store.get_checkpoint(&instance, "huge").await.unwrap(),
            None
        );
    } else {
        // Embedded mode sends no frame: the state is stored.
        assert!(result.unwrap().existing_state().is_none());
    }
}
