// Arguments may be patterns: `mut` names, tuples, structs, `_`; the key too.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};

#[derive(Clone)]
struct OrderId(String);

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone)]
struct Size {
    width: u32,
    height: u32,
}

#[durable]
async fn area(
    OrderId(id): OrderId,
    (x, y): (u32, u32),
    Size { width, height }: Size,
    mut scale: u32,
    _: String,
) -> Result<String, SdkError> {
    scale += 1;
    Ok(format!("{id}: {}", (x + y) * width * height * scale))
}

#[durable(max_retries = 0)]
async fn once(mut key: String, (a, b): (u32, u32)) -> Result<String, SdkError> {
    key.push('!');
    Ok(format!("{key}{}", a + b))
}

fn main() {
    let _ = (area, once);
}
