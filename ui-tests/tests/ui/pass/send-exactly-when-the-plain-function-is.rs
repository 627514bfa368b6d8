// A durable call's future is `Send` whenever the plain `async fn`'s would be, so it can be
// `tokio::spawn`ed: errors and results that are not `Send` are never held across an
// `.await`, and owned arguments need not be `Sync` (the retry closure owns them).
#![deny(warnings)]
use std::cell::RefCell;
use std::error::Error;
use std::marker::PhantomData;
use std::rc::Rc;

use runtara_sdk::{durable, SdkError};

// An error type that is not `Send`, with retries and without.
#[durable]
async fn boxed_error(key: String) -> Result<u8, Box<dyn Error>> {
    Ok(key.len() as u8)
}

#[durable(max_retries = 0)]
async fn boxed_error_once(key: String) -> Result<u8, Box<dyn Error>> {
    Ok(key.len() as u8)
}

// An owned generic argument that is `Send` but not `Sync`.
#[durable]
async fn generic_argument<T: Send + Clone>(key: String, value: T) -> Result<u8, SdkError> {
    let _ = value;
    Ok(key.len() as u8)
}

// An owned argument that is `Send` but not `Sync`.
#[durable]
async fn cell_argument(key: String, cell: RefCell<u8>) -> Result<u8, SdkError> {
    let _ = key;
    Ok(*cell.borrow())
}

// A success value that is not `Send`.
#[durable]
async fn local_value(key: String) -> Result<PhantomData<Rc<u8>>, SdkError> {
    let _ = key;
    Ok(PhantomData)
}

// A generic error type, not known to be `Send`.
#[durable]
async fn generic_error<E: From<SdkError> + std::fmt::Display>(key: String) -> Result<u8, E> {
    Ok(key.len() as u8)
}

fn spawns<T: Send + Clone + 'static>(value: T) {
    tokio::spawn(async { boxed_error("k".into()).await.is_ok() });
    tokio::spawn(async { boxed_error_once("k".into()).await.is_ok() });
    tokio::spawn(generic_argument("k".into(), value));
    tokio::spawn(cell_argument("k".into(), RefCell::new(1)));
    tokio::spawn(async { local_value("k".into()).await.is_ok() });
    tokio::spawn(generic_error::<SdkError>("k".into()));
}

fn main() {
    let _ = spawns::<u8>;
}
