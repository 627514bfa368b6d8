//! Regression run of the committed `cargo fuzz` corpus (`fuzz/corpus/decode_frame`):
//! every input the fuzzer kept goes through every decoder again, as the fuzz target
//! does; each must give a value or an error, never a panic.

use runtara_protocol::*;

const MAX: usize = 64 * 1024;

async fn every_decoder<T: serde::de::DeserializeOwned>(data: &[u8]) {
    let _ = decode_frame::<T>(data, MAX);
    let _ = decode_payload::<T>(data);
    let mut reader = data;
    while let Ok(Some(_)) = read_frame::<_, T>(&mut reader, MAX).await {}
}

#[tokio::test]
async fn the_fuzz_corpus_decodes_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_frame");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is missing: {e}", dir.display()));
    let mut inputs = 0;
    for entry in entries {
        let data = std::fs::read(entry.expect("a corpus entry").path()).expect("a corpus file");
        every_decoder::<Hello>(&data).await;
        every_decoder::<HelloReply>(&data).await;
        every_decoder::<InstanceRequest>(&data).await;
        every_decoder::<InstanceResponse>(&data).await;
        every_decoder::<InstanceRequestEnvelope>(&data).await;
        every_decoder::<InstanceResponseEnvelope>(&data).await;
        every_decoder::<ManagementRequest>(&data).await;
        every_decoder::<ManagementResponse>(&data).await;
        every_decoder::<ManagementRequestEnvelope>(&data).await;
        every_decoder::<ManagementResponseEnvelope>(&data).await;
        inputs += 1;
    }
    assert!(
        inputs > 100,
        "only {inputs} corpus inputs in {}",
        dir.display()
    );
}
