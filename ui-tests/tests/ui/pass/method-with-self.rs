// Methods with `&self`: the first argument after `self` is the key. Also in a trait
// impl, and with `Self` in the return type.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Inventory {
    warehouse: String,
}

impl Inventory {
    #[durable(max_retries = 1)]
    async fn reserve(&self, order_id: String, quantity: u32) -> Result<String, SdkError> {
        Ok(format!("{}:{order_id}:{quantity}", self.warehouse))
    }

    #[durable]
    async fn load(key: String) -> Result<Self, SdkError> {
        Ok(Inventory { warehouse: key })
    }
}

trait Shipping {
    async fn ship(&self, order_id: String) -> Result<u64, SdkError>;
}

impl Shipping for Inventory {
    #[durable]
    async fn ship(&self, order_id: String) -> Result<u64, SdkError> {
        Ok(order_id.len() as u64 + self.warehouse.len() as u64)
    }
}

fn main() {
    let inventory = Inventory { warehouse: "w1".into() };
    let _ = inventory.reserve("o1".into(), 2);
    let _ = inventory.ship("o1".into());
    let _ = Inventory::load("w2".into());
}
