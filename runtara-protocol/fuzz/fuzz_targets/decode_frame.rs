#![no_main]
//! Feeds arbitrary bytes to every decoder, as a whole frame, as a payload and as a
//! stream: each must return a value or an error, never panic or allocate past the limit.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runtara_protocol::*;

/// Small enough that the fuzzer reaches the limit; large enough for every message.
const MAX: usize = 64 * 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

fn every_decoder<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let _ = decode_frame::<T>(data, MAX);
    let _ = decode_payload::<T>(data);
    runtime().block_on(async {
        let mut reader = data;
        // Frames back to back until the input runs out or stops decoding.
        while let Ok(Some(_)) = read_frame::<_, T>(&mut reader, MAX).await {}
    });
}

fuzz_target!(|data: &[u8]| {
    every_decoder::<Hello>(data);
    every_decoder::<HelloReply>(data);
    every_decoder::<InstanceRequest>(data);
    every_decoder::<InstanceResponse>(data);
    every_decoder::<InstanceRequestEnvelope>(data);
    every_decoder::<InstanceResponseEnvelope>(data);
    every_decoder::<ManagementRequest>(data);
    every_decoder::<ManagementResponse>(data);
    every_decoder::<ManagementRequestEnvelope>(data);
    every_decoder::<ManagementResponseEnvelope>(data);
});
