//! Two jobs:
//!
//! - Finds the schema migrations in `migrations/sqlite` and `migrations/postgres` and
//!   writes their lists (version, name, SQL, checksum) for `src/migrations.rs`. The
//!   rules a folder must follow are in `build/migration_files.rs`: files named
//!   `NNNN_name.sql`, numbered 1, 2, 3, … without a gap or a repeat; anything else fails
//!   the build, naming the file.
//! - Tells the tests whether PostgreSQL is there: with `RUNTARA_TEST_POSTGRES_URL` set,
//!   the cfg `runtara_test_postgres` is on and the PostgreSQL tests run; without it they
//!   are ignored, with the reason, instead of passing without running.

use std::path::Path;

#[path = "build/migration_files.rs"]
mod migration_files;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(runtara_test_postgres)");
    println!("cargo::rerun-if-env-changed=RUNTARA_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=build/migration_files.rs");
    if std::env::var_os("RUNTARA_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=runtara_test_postgres");
    }
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    for dialect in ["sqlite", "postgres"] {
        let folder = Path::new("migrations").join(dialect);
        // The folder for files added or removed, each file for edits.
        println!("cargo::rerun-if-changed={}", folder.display());
        let files = match migration_files::scan(&folder) {
            Ok(files) => files,
            Err(problems) => {
                // Each problem is an error of the build (`cargo::error` fails it).
                for problem in problems.lines() {
                    println!("cargo::error=migrations in {}: {problem}", folder.display());
                }
                continue;
            }
        };
        for file in &files {
            println!("cargo::rerun-if-changed={}", file.path.display());
        }
        let list = Path::new(&out).join(format!("migrations_{dialect}.rs"));
        std::fs::write(&list, migration_files::render(&files)).expect("writes the migration list");
    }
}
