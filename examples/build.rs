//! Tells the tests whether they may mount a filesystem: run as root (as CI is), the cfg
//! `runtara_test_mount` is on and the full-disk test mounts a small tmpfs; otherwise it
//! is ignored, with the reason, instead of passing without running.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(runtara_test_mount)");
    println!("cargo::rerun-if-changed=build.rs");
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
