//! Tells the tests whether PostgreSQL is there: with `RUNTARA_TEST_POSTGRES_URL` set, the
//! cfg `runtara_test_postgres` is on and the PostgreSQL tests run; without it they are
//! ignored, with the reason, instead of passing without running.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(runtara_test_postgres)");
    println!("cargo::rerun-if-env-changed=RUNTARA_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("RUNTARA_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=runtara_test_postgres");
    }
}
