// Generic functions, `impl Trait` arguments, lifetimes, and a generic error type
// (retried unless it implements `Retryable`).
#![deny(warnings)]
use std::fmt::Display;

use runtara_sdk::{durable, SdkError};
use serde::{de::DeserializeOwned, Serialize};

#[durable(max_retries = 2)]
async fn fetch<T, E>(key: impl Display + Clone, fallback: T) -> Result<T, E>
where
    T: Serialize + DeserializeOwned + Clone,
    E: From<SdkError> + Display,
{
    let _ = key.to_string();
    Ok(fallback)
}

#[durable]
async fn first_word<'a>(key: &'a str, text: &'a str) -> Result<String, SdkError> {
    Ok(text.split(' ').next().unwrap_or(key).to_owned())
}

#[durable]
async fn label(key: u64, tags: impl IntoIterator<Item = String> + Clone) -> Result<Vec<String>, SdkError> {
    Ok(tags.into_iter().map(|t| format!("{key}:{t}")).collect())
}

fn main() {
    let _ = fetch::<u32, SdkError>(7, 1);
    let _ = first_word;
    let _ = label(1, vec!["a".to_owned()]);
}
