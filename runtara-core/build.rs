//! Two jobs:
//!
//! - Finds the schema migrations in `migrations/sqlite` and `migrations/postgres` and
//!   writes their lists (version, name, SQL, checksum) for `src/migrations.rs`. A file
//!   must be named `NNNN_name.sql`, and the numbers of a folder must run 1, 2, 3, …
//!   without a gap or a repeat; anything else fails the build, naming the file.
//! - Tells the tests whether PostgreSQL is there: with `RUNTARA_TEST_POSTGRES_URL` set,
//!   the cfg `runtara_test_postgres` is on and the PostgreSQL tests run; without it they
//!   are ignored, with the reason, instead of passing without running.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(runtara_test_postgres)");
    println!("cargo::rerun-if-env-changed=RUNTARA_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("RUNTARA_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=runtara_test_postgres");
    }
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    for dialect in ["sqlite", "postgres"] {
        let folder = Path::new("migrations").join(dialect);
        println!("cargo::rerun-if-changed={}", folder.display());
        let list = match migration_list(&folder) {
            Ok(list) => list,
            Err(problem) => panic!("migrations in {}: {problem}", folder.display()),
        };
        let file = Path::new(&out).join(format!("migrations_{dialect}.rs"));
        std::fs::write(&file, list).expect("writes the migration list");
    }
}

/// The Rust expression of a folder's migrations, oldest first.
fn migration_list(folder: &Path) -> Result<String, String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| format!("cannot read the folder: {e}"))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("`{}` is not a UTF-8 name", path.display()))?
            .to_owned();
        println!("cargo::rerun-if-changed={}", path.display());
        let Some(stem) = file_name.strip_suffix(".sql") else {
            return Err(format!("`{file_name}` is not a `.sql` file"));
        };
        let (number, name) = stem
            .split_once('_')
            .filter(|(n, name)| n.len() == 4 && !name.is_empty())
            .ok_or_else(|| format!("`{file_name}` is not named `NNNN_name.sql`"))?;
        let version: u32 = number
            .parse()
            .map_err(|_| format!("`{file_name}` does not start with a four-digit number"))?;
        let sql = std::fs::read(&path).map_err(|e| format!("cannot read `{file_name}`: {e}"))?;
        let absolute = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
        found.push((version, name.to_owned(), absolute, fnv1a64(&sql)));
    }
    found.sort_by_key(|(version, ..)| *version);
    for (index, (version, name, ..)) in found.iter().enumerate() {
        let expected = index as u32 + 1;
        if *version != expected {
            return Err(format!(
                "expected migration {expected:04} but found {version:04}_{name}.sql \
                 (numbers run 1, 2, 3, … without gaps or repeats)"
            ));
        }
    }
    let mut list = String::from("&[\n");
    for (version, name, path, checksum) in &found {
        let _ = writeln!(
            list,
            "    Migration {{ version: {version}, name: {name:?}, \
             sql: include_str!({path:?}), checksum: {checksum:#018x} }},",
            path = path.display().to_string(),
        );
    }
    list.push(']');
    Ok(list)
}

/// FNV-1a, 64 bits: what `Migration::checksum` records (the same function as
/// `migrations::checksum`, which a test compares with this one's output).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
