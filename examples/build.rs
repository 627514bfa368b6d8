//! Tells the tests what this machine lets them do:
//!
//! - Run as root (as CI is), the cfg `runtara_test_mount` is on and the full-disk test
//!   mounts a small tmpfs; otherwise it is ignored, with the reason.
//! - With `RUNTARA_TEST_POSTGRES_URL` set, the cfg `runtara_test_postgres` is on and the
//!   PostgreSQL tests run; without it they are ignored, with the reason, instead of
//!   passing without running.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(runtara_test_mount)");
    println!("cargo::rustc-check-cfg=cfg(runtara_test_postgres)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUNTARA_TEST_POSTGRES_URL");
    if std::env::var_os("RUNTARA_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=runtara_test_postgres");
    }
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if root {
        println!("cargo::rustc-cfg=runtara_test_mount");
    }
}
