//! What the parity suites share: unique ids, the macro that runs a test against both
//! backends, and the instance helpers.
#![allow(dead_code, unused_macros)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use runtara_core::{InstanceStatus, NewInstance, Persistence};

macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err(error) => assert!(
                matches!(error, $pattern $(if $guard)?),
                "unexpected error: {error:?}"
            ),
            Ok(value) => panic!("expected an error, got {value:?}"),
        }
    };
}

pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

macro_rules! parity {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("parity.db").display());
                    super::$name(runtara_core::connect(&url).await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(runtara_test_postgres), ignore = "RUNTARA_TEST_POSTGRES_URL is not set")]
                async fn $name() {
                    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
                        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
                        return;
                    };
                    super::$name(runtara_core::connect(&url).await.unwrap()).await;
                }
            )*
        }
    };
}

/// Registers a new instance and returns its id and epoch.
pub async fn running(store: &Arc<dyn Persistence>, prefix: &str) -> (String, i64) {
    let id = unique(prefix);
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    (id, epoch)
}

/// Creates a new `pending` instance (no process has registered it) and returns its id.
pub async fn pending(store: &Arc<dyn Persistence>, prefix: &str) -> String {
    let id = unique(prefix);
    store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: "t".into(),
            ..NewInstance::default()
        })
        .await
        .unwrap();
    id
}

pub async fn status(store: &Arc<dyn Persistence>, id: &str) -> InstanceStatus {
    store.get_instance(id).await.unwrap().unwrap().status
}
