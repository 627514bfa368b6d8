//! The start input of an instance launched by the server.
//!
//! The server writes the JSON given to `start_instance(...with_input(json))` to a file
//! and names it in `RUNTARA_INPUT_FILE`; [`input`] reads and decodes it.

use serde::de::DeserializeOwned;

use crate::{Result, SdkError};

/// The environment variable naming the input file.
pub const INPUT_FILE_ENV: &str = "RUNTARA_INPUT_FILE";

/// Decodes the start input into `T`; `Ok(None)` when the instance was started without
/// a server (no `RUNTARA_INPUT_FILE`) or without input (the file holds `null`).
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Order { order_id: String }
///
/// # fn main() -> Result<(), runtara_sdk::SdkError> {
/// let order: Option<Order> = runtara_sdk::input()?;
/// // Started without a server here: no input.
/// assert!(order.is_none());
/// # Ok(()) }
/// ```
pub fn input<T: DeserializeOwned>() -> Result<Option<T>> {
    let Some(path) = std::env::var_os(INPUT_FILE_ENV) else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(path);
    let bytes = std::fs::read(&path).map_err(|e| SdkError::Input {
        path: path.clone(),
        what: "the file cannot be read".into(),
        source: e.into(),
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| SdkError::Input {
        path: path.clone(),
        what: "not valid JSON".into(),
        source: e.into(),
    })?;
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| SdkError::Input {
            path,
            what: format!("does not match `{}`", std::any::type_name::<T>()),
            source: e.into(),
        })
}
