// With retries, a method may take any receiver that is `Clone` (`self: Arc<Self>`,
// `self` of a `Clone` type, `self: Rc<Self>`): each attempt gets its own clone, and
// `self` in the body (macros and closures included) is that clone.
#![deny(warnings)]
use std::rc::Rc;
use std::sync::Arc;

use runtara_sdk::{durable, SdkError};

#[derive(Clone)]
struct Client {
    base: String,
}

impl Client {
    #[durable]
    async fn fetch(self: Arc<Self>, path: String) -> Result<String, SdkError> {
        let base = || self.base.clone();
        Ok(format!("{}{path} ({})", base(), Arc::strong_count(&self)))
    }

    #[durable(max_retries = 2)]
    async fn fetch_owned(self, path: String) -> Result<String, SdkError> {
        Ok(format!("{}{path}", self.base))
    }

    #[durable]
    async fn fetch_local(self: Rc<Self>, path: String) -> Result<String, SdkError> {
        macro_rules! base {
            () => {
                self.base
            };
        }
        Ok(format!("{}{path}", base!()))
    }

    #[durable]
    async fn fetch_shared(self: &Self, path: String) -> Result<String, SdkError> {
        Ok(format!("{}{path}", self.base))
    }
}

fn spawns() {
    let client = Arc::new(Client { base: "https://".into() });
    tokio::spawn(client.clone().fetch("a".into()));
    tokio::spawn(Client { base: "b".into() }.fetch_owned("b".into()));
}

fn main() {
    let _ = spawns;
    let _ = Rc::new(Client { base: "c".into() }).fetch_local("c".into());
}
