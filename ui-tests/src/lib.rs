//! Compile tests for `#[durable]` live in `tests/`.
