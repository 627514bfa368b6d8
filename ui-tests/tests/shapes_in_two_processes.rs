//! Shapes of ordinary Rust under `#[durable]`, as users write them, run in two processes on
//! one SQLite file: the first process runs every body once and records the results, the
//! second replays every result without running a body. Each `shape_*` function below is one
//! shape; `run_all` calls each and collects what it returned.
//!
//! The test re-runs its own binary as the two processes (`child` does the work when
//! `RUNTARA_SHAPES_DB` is set, and nothing otherwise).
#![deny(warnings)]
#![allow(
    clippy::unwrap_used,
    clippy::too_many_arguments,
    clippy::needless_arbitrary_self_type
)]

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fmt::{Debug, Display};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use runtara_sdk::{durable, Retryable, RuntaraSdk, SdkError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Bodies run in this process.
static BODIES: AtomicUsize = AtomicUsize::new(0);

fn ran() {
    BODIES.fetch_add(1, Ordering::SeqCst);
}

// ---- errors ----

#[derive(Debug)]
enum AppError {
    Declined,
    Sdk(SdkError),
}

impl Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Declined => f.write_str("declined"),
            AppError::Sdk(e) => write!(f, "{e}"),
        }
    }
}

impl Error for AppError {}

impl From<SdkError> for AppError {
    fn from(e: SdkError) -> Self {
        AppError::Sdk(e)
    }
}

impl Retryable for AppError {
    fn is_retryable(&self) -> bool {
        !matches!(self, AppError::Declined)
    }
}

type Res<T> = Result<T, AppError>;

mod billing {
    pub type Result<T> = std::result::Result<T, super::AppError>;
}

// ---- keys and values ----

#[derive(Clone, Debug)]
struct OrderId(u64);

impl Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "order-{}", self.0)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Receipt {
    order: String,
    cents: u64,
}

#[derive(Clone)]
struct Order {
    cents: u64,
}

#[derive(Clone)]
struct Size {
    width: u32,
    height: u32,
}

// ---- free functions ----

#[durable]
async fn shape_string_key(key: String) -> Result<String, SdkError> {
    ran();
    Ok(format!("{key}!"))
}

#[durable]
async fn shape_integer_key(key: u64) -> Result<u64, SdkError> {
    ran();
    Ok(key * 2)
}

#[durable]
async fn shape_str_key(key: &str) -> Result<usize, SdkError> {
    ran();
    Ok(key.len())
}

#[durable]
async fn shape_impl_display_key(key: impl Display + Clone) -> Result<String, SdkError> {
    ran();
    Ok(key.to_string())
}

#[durable]
async fn shape_generic_key<K: Display + Clone>(key: K) -> Result<String, SdkError> {
    ran();
    Ok(format!("<{key}>"))
}

#[durable]
async fn shape_custom_key(key: OrderId) -> Result<u64, SdkError> {
    ran();
    Ok(key.0)
}

#[durable]
async fn shape_destructured_key(OrderId(id): OrderId) -> Result<u64, SdkError> {
    ran();
    Ok(id + 1)
}

#[durable]
async fn shape_mut_key(mut key: String) -> Result<String, SdkError> {
    ran();
    key.push('?');
    Ok(key)
}

#[durable]
async fn shape_unused_key(_key: String, _note: &str) -> Result<u8, SdkError> {
    ran();
    Ok(7)
}

#[durable]
async fn shape_borrowed_argument(key: String, order: &Order) -> Result<u64, SdkError> {
    ran();
    Ok(order.cents + key.len() as u64)
}

#[durable]
async fn shape_lifetimes<'a>(key: &'a str, text: &'a str) -> Result<String, SdkError> {
    ran();
    Ok(text.split(' ').next().unwrap_or(key).to_owned())
}

#[durable]
async fn shape_patterns(
    key: String,
    (x, y): (u32, u32),
    Size { width, height }: Size,
    _: u8,
) -> Result<u32, SdkError> {
    ran();
    Ok((x + y) * width * height + key.len() as u32)
}

#[durable]
async fn shape_generic_value<T>(key: String, value: T) -> Result<T, SdkError>
where
    T: Serialize + DeserializeOwned + Clone,
{
    ran();
    let _ = key;
    Ok(value)
}

#[durable]
async fn shape_generic_error<E: From<SdkError> + Display>(key: String) -> Result<u8, E> {
    ran();
    Ok(key.len() as u8)
}

#[durable]
async fn shape_generic_error_send<E>(key: String) -> Result<u8, E>
where
    E: From<SdkError> + Display + Send,
{
    ran();
    Ok(key.len() as u8 + 1)
}

#[durable]
async fn shape_impl_trait_argument(
    key: u64,
    tags: impl IntoIterator<Item = String> + Clone,
) -> Result<Vec<String>, SdkError> {
    ran();
    Ok(tags.into_iter().map(|t| format!("{key}:{t}")).collect())
}

#[durable]
async fn shape_const_generic<const N: usize>(
    key: String,
    bytes: [u8; N],
) -> Result<Vec<u8>, SdkError> {
    ran();
    let _ = key;
    Ok(bytes.to_vec())
}

#[durable]
async fn shape_custom_error(key: String) -> Result<u64, AppError> {
    ran();
    if key.is_empty() {
        return Err(AppError::Declined);
    }
    Ok(key.len() as u64)
}

#[durable]
async fn shape_alias(key: String) -> Res<u64> {
    ran();
    Ok(key.len() as u64 + 10)
}

#[durable]
async fn shape_module_alias(key: String) -> billing::Result<u64> {
    ran();
    Ok(key.len() as u64 + 20)
}

#[durable]
async fn shape_std_result_path(key: String) -> std::result::Result<u64, SdkError> {
    ran();
    Ok(key.len() as u64 + 30)
}

#[durable]
async fn shape_boxed_error(key: String) -> Result<u64, Box<dyn Error + Send + Sync>> {
    ran();
    Ok(key.len() as u64 + 40)
}

#[durable]
async fn shape_boxed_local_error(key: String) -> Result<u64, Box<dyn Error>> {
    ran();
    Ok(key.len() as u64 + 50)
}

#[durable]
async fn shape_unit(key: String) -> Result<(), SdkError> {
    ran();
    let _ = key;
    Ok(())
}

#[durable]
async fn shape_option(key: String) -> Result<Option<u8>, SdkError> {
    ran();
    Ok(key.parse().ok())
}

#[durable]
async fn shape_struct_values(key: String) -> Result<Vec<Receipt>, SdkError> {
    ran();
    Ok(vec![Receipt {
        order: key,
        cents: 5,
    }])
}

#[durable]
async fn shape_map(key: String) -> Result<HashMap<String, u64>, SdkError> {
    ran();
    Ok(HashMap::from([(key, 1)]))
}

#[durable]
async fn shape_question_mark(key: String) -> Result<u32, AppError> {
    ran();
    let n: u32 = key.parse().map_err(|_| AppError::Declined)?;
    if n > 100 {
        return Ok(100);
    }
    Ok(n)
}

#[durable(max_retries = 0)]
async fn shape_no_retries(key: String, connection: Rc<u8>) -> Result<u8, SdkError> {
    ran();
    let _ = key;
    Ok(*connection)
}

#[durable(max_retries = 2, strategy = FixedDelay, delay = 1)]
async fn shape_fixed_delay(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8)
}

#[durable(name = "shapes::renamed::charge", max_retries = 1)]
async fn shape_named(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8 + 2)
}

#[durable]
pub(crate) async fn shape_pub_crate(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8 + 3)
}

#[tracing::instrument]
#[durable]
async fn shape_instrument_above(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8 + 4)
}

#[durable]
#[tracing::instrument(err, ret)]
async fn shape_instrument_below(key: String) -> Result<u8, AppError> {
    ran();
    Ok(key.len() as u8 + 5)
}

/// A documented durable function, with attributes.
#[durable]
#[inline]
#[cfg_attr(debug_assertions, allow(clippy::needless_return))]
#[must_use = "a durable call does nothing unless awaited"]
async fn shape_attributes(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8 + 6)
}

#[durable]
async fn shape_many_arguments(
    key: String,
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: String,
    f: Vec<u8>,
    g: Option<String>,
) -> Result<u64, SdkError> {
    ran();
    Ok(key.len() as u64
        + a as u64
        + b as u64
        + c as u64
        + d
        + e.len() as u64
        + f.len() as u64
        + g.map_or(0, |g| g.len() as u64))
}

#[durable]
async fn shape_nested_inner(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8)
}

#[durable]
async fn shape_nested_outer(key: String) -> Result<u8, SdkError> {
    ran();
    let inner = shape_nested_inner(format!("{key}-inner")).await?;
    Ok(inner + 1)
}

#[durable]
async fn shape_recursive(key: u64) -> Result<u64, SdkError> {
    ran();
    if key < 2 {
        return Ok(key);
    }
    let a = Box::pin(shape_recursive(key - 1)).await?;
    let b = Box::pin(shape_recursive(key - 2)).await?;
    Ok(a + b)
}

#[durable]
async fn shape_spawned(key: String) -> Result<u64, SdkError> {
    ran();
    Ok(key.len() as u64 + 7)
}

#[durable]
async fn shape_closure_in_body(key: String, factor: u64) -> Result<Vec<u64>, SdkError> {
    ran();
    let scale = |x: u64| x * factor + key.len() as u64;
    Ok((1..=3).map(scale).collect())
}

#[durable]
async fn shape_awaits_in_body(key: String) -> Result<u8, SdkError> {
    ran();
    tokio::task::yield_now().await;
    let n = async { key.len() as u8 }.await;
    Ok(n)
}

#[durable(max_retries = 0)]
async fn shape_mut_reference(key: String, log: &mut Vec<String>) -> Result<usize, SdkError> {
    ran();
    log.push(key);
    Ok(log.len())
}

#[durable]
async fn r#shape_raw_identifier(key: String) -> Result<u8, SdkError> {
    ran();
    Ok(key.len() as u8 + 8)
}

macro_rules! durable_getter {
    ($name:ident, $value:expr) => {
        #[durable]
        async fn $name(key: String) -> Result<u64, SdkError> {
            ran();
            let _ = key;
            Ok($value)
        }
    };
}

durable_getter!(shape_from_macro_rules, 99);

// ---- methods ----

struct Inventory {
    warehouse: String,
}

impl Inventory {
    #[durable]
    async fn shape_ref_self(&self, order_id: String) -> Result<String, SdkError> {
        ran();
        Ok(format!("{}:{order_id}", self.warehouse))
    }

    #[durable]
    async fn shape_typed_ref_self(self: &Self, order_id: String) -> Result<usize, SdkError> {
        ran();
        Ok(self.warehouse.len() + order_id.len())
    }

    #[durable]
    async fn shape_returns_self_type(key: String) -> Result<Receipt, SdkError> {
        ran();
        Ok(Receipt {
            order: key,
            cents: 1,
        })
    }

    #[durable]
    async fn shape_associated(key: String) -> Result<u8, SdkError> {
        ran();
        Ok(key.len() as u8 + 9)
    }

    #[durable]
    async fn shape_generic_method<U: Display + Clone>(
        &self,
        key: String,
        extra: U,
    ) -> Result<String, SdkError> {
        ran();
        Ok(format!("{key}/{extra}/{}", self.warehouse))
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Warehouse {
    name: String,
}

impl Warehouse {
    #[durable]
    async fn shape_load_self(key: String) -> Result<Self, SdkError> {
        ran();
        Ok(Warehouse { name: key })
    }
}

struct Ledger {
    entries: Vec<String>,
}

impl Ledger {
    #[durable(max_retries = 0)]
    async fn shape_mut_self(&mut self, entry: String) -> Result<usize, SdkError> {
        ran();
        self.entries.push(entry);
        Ok(self.entries.len())
    }
}

#[derive(Clone)]
struct Client {
    base: String,
}

impl Client {
    #[durable]
    async fn shape_arc_self(self: Arc<Self>, path: String) -> Result<String, SdkError> {
        ran();
        let base = || self.base.clone();
        Ok(format!("{}{path}", base()))
    }

    #[durable]
    async fn shape_owned_self(self, path: String) -> Result<String, SdkError> {
        ran();
        Ok(format!("{}{path}", self.base))
    }

    #[durable]
    async fn shape_rc_self(self: Rc<Self>, path: String) -> Result<String, SdkError> {
        ran();
        Ok(format!("{}{path}", self.base))
    }
}

struct Repo<T> {
    items: Vec<T>,
}

impl<T: Clone + Serialize + DeserializeOwned + Send + Sync> Repo<T> {
    #[durable]
    async fn shape_generic_impl(&self, key: String) -> Result<Vec<T>, SdkError> {
        ran();
        let _ = key;
        Ok(self.items.clone())
    }
}

// ---- traits, native ----

trait Shipping {
    async fn shape_native_trait(&self, order_id: String) -> Result<u64, SdkError>;

    #[durable]
    async fn shape_native_default(&self, order_id: String) -> Result<u64, SdkError> {
        ran();
        Ok(order_id.len() as u64 + 100)
    }
}

impl Shipping for Inventory {
    #[durable]
    async fn shape_native_trait(&self, order_id: String) -> Result<u64, SdkError> {
        ran();
        Ok(order_id.len() as u64 + self.warehouse.len() as u64)
    }
}

trait Quoting {
    fn shape_rpitit(
        &self,
        order_id: String,
    ) -> impl std::future::Future<Output = Result<u64, SdkError>> + Send;
}

impl Quoting for Inventory {
    #[durable]
    fn shape_rpitit(
        &self,
        order_id: String,
    ) -> impl std::future::Future<Output = Result<u64, SdkError>> + Send {
        async move {
            ran();
            Ok(order_id.len() as u64 + 200)
        }
    }
}

impl Inventory {
    #[durable]
    fn shape_boxed_future(
        &self,
        order_id: String,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<u64, SdkError>> + Send + '_>> {
        Box::pin(async move {
            ran();
            Ok(order_id.len() as u64 + self.warehouse.len() as u64 + 300)
        })
    }
}

// ---- traits, async-trait ----

#[async_trait]
trait Gateway: Send + Sync {
    async fn shape_async_trait(&self, order_id: String, cents: u64) -> Result<Receipt, AppError>;

    async fn shape_async_trait_arc(self: Arc<Self>, order_id: String) -> Result<u64, SdkError>;

    async fn shape_async_trait_patterns(&self, key: &str, (a, b): (u8, u8))
        -> Result<u8, SdkError>;

    async fn shape_async_trait_generic<T: Display + Clone + Send + Sync + 'static>(
        &self,
        key: String,
        extra: T,
    ) -> Result<String, SdkError>;

    async fn shape_async_trait_instrument_above(&self, key: String) -> Result<u8, SdkError>;

    async fn shape_async_trait_instrument_below(&self, key: String) -> Result<u8, SdkError>;

    #[durable]
    async fn shape_async_trait_default(&self, key: String) -> Result<u8, SdkError> {
        ran();
        Ok(key.len() as u8 + 10)
    }
}

struct Stripe;

#[async_trait]
impl Gateway for Stripe {
    #[durable]
    async fn shape_async_trait(&self, order_id: String, cents: u64) -> Result<Receipt, AppError> {
        ran();
        Ok(Receipt {
            order: order_id,
            cents,
        })
    }

    #[durable]
    async fn shape_async_trait_arc(self: Arc<Self>, order_id: String) -> Result<u64, SdkError> {
        ran();
        Ok(order_id.len() as u64 + 400)
    }

    #[durable]
    async fn shape_async_trait_patterns(
        &self,
        key: &str,
        (a, b): (u8, u8),
    ) -> Result<u8, SdkError> {
        ran();
        Ok(key.len() as u8 + a + b)
    }

    #[durable]
    async fn shape_async_trait_generic<T: Display + Clone + Send + Sync + 'static>(
        &self,
        key: String,
        extra: T,
    ) -> Result<String, SdkError> {
        ran();
        Ok(format!("{key}+{extra}"))
    }

    #[tracing::instrument(skip(self))]
    #[durable]
    async fn shape_async_trait_instrument_above(&self, key: String) -> Result<u8, SdkError> {
        ran();
        Ok(key.len() as u8 + 11)
    }

    #[durable]
    #[tracing::instrument(skip(self))]
    async fn shape_async_trait_instrument_below(&self, key: String) -> Result<u8, SdkError> {
        ran();
        Ok(key.len() as u8 + 12)
    }
}

#[async_trait(?Send)]
trait LocalStore {
    async fn shape_async_trait_local(&self, key: u64) -> Result<u64, SdkError>;
}

#[async_trait(?Send)]
impl LocalStore for Rc<u64> {
    #[durable]
    async fn shape_async_trait_local(&self, key: u64) -> Result<u64, SdkError> {
        ran();
        Ok(key + **self)
    }
}

#[async_trait]
trait Store<T: Send + Sync> {
    async fn shape_async_trait_generic_trait(&self, key: String) -> Result<Vec<T>, SdkError>;
}

#[async_trait]
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync> Store<T> for Repo<T> {
    #[durable]
    async fn shape_async_trait_generic_trait(&self, key: String) -> Result<Vec<T>, SdkError> {
        ran();
        let _ = key;
        Ok(self.items.clone())
    }
}

/// Calls every shape, in order, and returns what each returned (or its error).
async fn run_all() -> BTreeMap<&'static str, String> {
    let mut out: BTreeMap<&'static str, String> = BTreeMap::new();
    macro_rules! shape {
        ($name:literal, $call:expr) => {
            out.insert($name, format!("{:?}", $call.map_err(|e| e.to_string())));
        };
    }
    let order = Order { cents: 5 };
    shape!("string_key", shape_string_key("a".into()).await);
    shape!("integer_key", shape_integer_key(21).await);
    shape!("str_key", shape_str_key("abc").await);
    shape!("impl_display_key", shape_impl_display_key(3.5).await);
    shape!("generic_key", shape_generic_key('k').await);
    shape!("custom_key", shape_custom_key(OrderId(7)).await);
    shape!("destructured_key", shape_destructured_key(OrderId(8)).await);
    shape!("mut_key", shape_mut_key("m".into()).await);
    shape!("unused_key", shape_unused_key("u".into(), "note").await);
    shape!(
        "borrowed_argument",
        shape_borrowed_argument("b".into(), &order).await
    );
    shape!("lifetimes", shape_lifetimes("l", "hello world").await);
    shape!(
        "patterns",
        shape_patterns(
            "p".into(),
            (1, 2),
            Size {
                width: 2,
                height: 3
            },
            0
        )
        .await
    );
    shape!(
        "generic_value",
        shape_generic_value("g".into(), vec![1u8, 2]).await
    );
    shape!(
        "generic_error",
        shape_generic_error::<SdkError>("ge".into()).await
    );
    shape!(
        "generic_error_send",
        shape_generic_error_send::<AppError>("gs".into()).await
    );
    shape!(
        "impl_trait_argument",
        shape_impl_trait_argument(1, vec!["x".to_owned()]).await
    );
    shape!(
        "const_generic",
        shape_const_generic("c".into(), [1u8, 2, 3]).await
    );
    shape!("custom_error", shape_custom_error("ce".into()).await);
    shape!("alias", shape_alias("al".into()).await);
    shape!("module_alias", shape_module_alias("ma".into()).await);
    shape!("std_result_path", shape_std_result_path("sr".into()).await);
    shape!("boxed_error", shape_boxed_error("be".into()).await);
    shape!(
        "boxed_local_error",
        shape_boxed_local_error("bl".into()).await
    );
    shape!("unit", shape_unit("un".into()).await);
    shape!("option", shape_option("12".into()).await);
    shape!("struct_values", shape_struct_values("sv".into()).await);
    shape!("map", shape_map("mp".into()).await);
    shape!("question_mark", shape_question_mark("42".into()).await);
    shape!(
        "no_retries",
        shape_no_retries("nr".into(), Rc::new(3)).await
    );
    shape!("fixed_delay", shape_fixed_delay("fd".into()).await);
    shape!("named", shape_named("nm".into()).await);
    shape!("pub_crate", shape_pub_crate("pc".into()).await);
    shape!(
        "instrument_above",
        shape_instrument_above("ia".into()).await
    );
    shape!(
        "instrument_below",
        shape_instrument_below("ib".into()).await
    );
    shape!("attributes", shape_attributes("at".into()).await);
    shape!(
        "many_arguments",
        shape_many_arguments(
            "k".into(),
            1,
            2,
            3,
            4,
            "e".into(),
            vec![1],
            Some("g".into())
        )
        .await
    );
    shape!("nested", shape_nested_outer("n".into()).await);
    shape!("recursive", shape_recursive(6).await);
    shape!(
        "spawned",
        tokio::spawn(
            runtara_sdk::current_sdk()
                .unwrap()
                .scope(shape_spawned("sp".into()))
        )
        .await
        .unwrap()
    );
    let (joined_a, joined_b) =
        tokio::join!(shape_string_key("j1".into()), shape_string_key("j2".into()));
    shape!("joined", joined_a.and_then(|a| joined_b.map(|b| a + &b)));
    let mut looped = Vec::new();
    for i in 0..3u64 {
        looped.push(shape_integer_key(100 + i).await.unwrap());
    }
    shape!("looped", Ok::<_, SdkError>(looped));
    shape!(
        "closure_in_body",
        shape_closure_in_body("cb".into(), 3).await
    );
    shape!("awaits_in_body", shape_awaits_in_body("aw".into()).await);
    let mut log = Vec::new();
    shape!(
        "mut_reference",
        shape_mut_reference("mr".into(), &mut log).await
    );
    shape!("raw_identifier", shape_raw_identifier("ri".into()).await);
    shape!(
        "from_macro_rules",
        shape_from_macro_rules("mc".into()).await
    );

    let inventory = Inventory {
        warehouse: "w1".into(),
    };
    shape!("ref_self", inventory.shape_ref_self("o1".into()).await);
    shape!(
        "typed_ref_self",
        inventory.shape_typed_ref_self("o1".into()).await
    );
    shape!(
        "returns_self_type",
        Inventory::shape_returns_self_type("rs".into()).await
    );
    shape!("associated", Inventory::shape_associated("as".into()).await);
    shape!(
        "generic_method",
        inventory.shape_generic_method("gm".into(), 5u8).await
    );
    shape!("load_self", Warehouse::shape_load_self("ls".into()).await);
    let mut ledger = Ledger {
        entries: Vec::new(),
    };
    shape!("mut_self", ledger.shape_mut_self("e1".into()).await);
    let client = Client {
        base: "https://".into(),
    };
    shape!(
        "arc_self",
        Arc::new(client.clone()).shape_arc_self("a".into()).await
    );
    shape!(
        "owned_self",
        client.clone().shape_owned_self("o".into()).await
    );
    shape!("rc_self", Rc::new(client).shape_rc_self("r".into()).await);
    let repo = Repo {
        items: vec![1u32, 2],
    };
    shape!("generic_impl", repo.shape_generic_impl("gi".into()).await);
    shape!(
        "native_trait",
        inventory.shape_native_trait("nt".into()).await
    );
    shape!(
        "native_default",
        inventory.shape_native_default("nd".into()).await
    );
    shape!("rpitit", inventory.shape_rpitit("rp".into()).await);
    shape!(
        "boxed_future",
        inventory.shape_boxed_future("bf".into()).await
    );

    let stripe = Arc::new(Stripe);
    shape!(
        "async_trait",
        stripe.shape_async_trait("at".into(), 9).await
    );
    shape!(
        "async_trait_arc",
        stripe.clone().shape_async_trait_arc("aa".into()).await
    );
    shape!(
        "async_trait_patterns",
        stripe.shape_async_trait_patterns("ap", (1, 2)).await
    );
    shape!(
        "async_trait_generic",
        stripe.shape_async_trait_generic("ag".into(), 3u8).await
    );
    shape!(
        "async_trait_instrument_above",
        stripe.shape_async_trait_instrument_above("ia".into()).await
    );
    shape!(
        "async_trait_instrument_below",
        stripe.shape_async_trait_instrument_below("ib".into()).await
    );
    shape!(
        "async_trait_default",
        stripe.shape_async_trait_default("ad".into()).await
    );
    shape!(
        "async_trait_spawned",
        tokio::spawn(runtara_sdk::current_sdk().unwrap().scope({
            let stripe = stripe.clone();
            async move { stripe.shape_async_trait_default("as".into()).await }
        }))
        .await
        .unwrap()
    );
    shape!(
        "async_trait_local",
        Rc::new(5u64).shape_async_trait_local(1).await
    );
    shape!(
        "async_trait_generic_trait",
        repo.shape_async_trait_generic_trait("gt".into()).await
    );
    out
}

/// One process: registers the instance on the SQLite file, runs every shape, prints the
/// results and the number of bodies that ran.
#[test]
fn child() {
    let Ok(db) = std::env::var("RUNTARA_SHAPES_DB") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = runtara_sdk::persistence::connect(&format!("sqlite://{db}"))
            .await
            .unwrap();
        let sdk = RuntaraSdk::embedded(store, "shapes", "ui-tests");
        sdk.register(None).await.unwrap();
        let results = sdk.scope(run_all()).await;
        // The test harness prints `test child ... ` without a newline.
        println!();
        for (name, result) in &results {
            println!("shape {name} = {result}");
        }
        println!("shapes {}", results.len());
        println!("bodies {}", BODIES.load(Ordering::SeqCst));
    });
}

fn run_child(db: &std::path::Path) -> (Vec<String>, usize, usize) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env("RUNTARA_SHAPES_DB", db)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value = |prefix: &str| -> usize {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap()
            .parse()
            .unwrap()
    };
    let shapes: Vec<String> = stdout
        .lines()
        .filter(|line| line.starts_with("shape "))
        .map(str::to_owned)
        .collect();
    (shapes, value("shapes "), value("bodies "))
}

#[test]
fn every_shape_records_in_one_process_and_replays_in_the_next() {
    let dir = std::env::temp_dir().join(format!("runtara-shapes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("shapes.db");
    let _ = std::fs::remove_file(&db);

    let (first, count, bodies) = run_child(&db);
    assert_eq!(first.len(), count);
    assert!(
        bodies >= count,
        "every body ran in the first process: {bodies} < {count}"
    );
    for line in &first {
        assert!(line.contains("= Ok("), "a shape failed: {line}");
    }

    let (second, _, replayed_bodies) = run_child(&db);
    assert_eq!(second, first, "the second process replays the same results");
    assert_eq!(replayed_bodies, 0, "no body runs in the second process");
    println!("{count} shapes recorded and replayed");
    let _ = std::fs::remove_dir_all(&dir);
}
