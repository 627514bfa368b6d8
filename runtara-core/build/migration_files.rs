//! The rules for a folder of migrations, shared by `build.rs` (which embeds the files)
//! and by the library's tests (which check the rules on folders made for them).
//!
//! A folder holds files named `NNNN_name.sql`: four digits, an underscore, a name of
//! lowercase letters, digits and underscores. The numbers run 1, 2, 3, … without a gap
//! or a repeat. Hidden files (an editor's swap file, `.DS_Store`) are skipped; anything
//! else is an error naming the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One migration file that follows the rules.
#[derive(Debug)]
pub(crate) struct MigrationFile {
    /// The `NNNN` prefix.
    pub(crate) version: u32,
    /// The name between the prefix and `.sql`.
    pub(crate) name: String,
    /// Where it is, absolute (for `include_str!`).
    pub(crate) path: PathBuf,
    /// [`checksum`] of its contents.
    pub(crate) checksum: u64,
}

/// The migrations in `folder`, oldest first; or every way the folder breaks the rules,
/// one per line.
pub(crate) fn scan(folder: &Path) -> Result<Vec<MigrationFile>, String> {
    let entries = std::fs::read_dir(folder).map_err(|e| format!("cannot read the folder: {e}"))?;
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read the folder: {e}"))?
            .path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            problems.push(format!("`{}` is not a UTF-8 name", path.display()));
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        match read_one(&path, file_name) {
            Ok(file) => found.push(file),
            Err(problem) => problems.push(problem),
        }
    }
    found.sort_by(|a, b| (a.version, &a.name).cmp(&(b.version, &b.name)));
    problems.extend(numbering_problems(&found));
    if found.is_empty() && problems.is_empty() {
        problems.push("no migrations (expected `0001_name.sql` and on)".to_owned());
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems.join("\n"))
    }
}

/// Reads one file named `file_name`, checking its name and contents.
fn read_one(path: &Path, file_name: &str) -> Result<MigrationFile, String> {
    let expected = "named `NNNN_name.sql` (four digits, then lowercase letters, digits \
                    and underscores)";
    let stem = file_name
        .strip_suffix(".sql")
        .ok_or_else(|| format!("`{file_name}` is not {expected}"))?;
    let (number, name) = stem
        .split_once('_')
        .ok_or_else(|| format!("`{file_name}` is not {expected}"))?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if number.len() != 4 || !number.bytes().all(|b| b.is_ascii_digit()) || !name_ok {
        return Err(format!("`{file_name}` is not {expected}"));
    }
    let version: u32 = number
        .parse()
        .map_err(|_| format!("`{file_name}` is not {expected}"))?;
    if version == 0 {
        return Err(format!("`{file_name}`: the numbers start at 0001"));
    }
    if !path.is_file() {
        return Err(format!("`{file_name}` is not a file"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{file_name}`: {e}"))?;
    if std::str::from_utf8(&bytes).is_err() {
        return Err(format!("`{file_name}` is not UTF-8 text"));
    }
    let path = std::fs::canonicalize(path).map_err(|e| format!("`{file_name}`: {e}"))?;
    Ok(MigrationFile {
        version,
        name: name.to_owned(),
        path,
        checksum: checksum(&bytes),
    })
}

/// Repeats, gaps and a start other than 1 in `sorted` (sorted by version).
fn numbering_problems(sorted: &[MigrationFile]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expected = 1;
    for (index, file) in sorted.iter().enumerate() {
        if index > 0 && sorted[index - 1].version == file.version {
            let earlier = &sorted[index - 1];
            problems.push(format!(
                "two migrations are numbered {:04}: `{:04}_{}.sql` and `{:04}_{}.sql` \
                 (each number is used once)",
                file.version, earlier.version, earlier.name, file.version, file.name
            ));
            continue;
        }
        if file.version != expected {
            let missing = if file.version > expected + 1 {
                format!("{expected:04} to {:04} are", file.version - 1)
            } else {
                format!("{expected:04} is")
            };
            problems.push(format!(
                "migration {missing} missing before `{:04}_{}.sql` (the numbers run \
                 1, 2, 3, … without gaps)",
                file.version, file.name
            ));
        }
        expected = file.version + 1;
    }
    problems
}

/// The Rust expression of `files` as a `&[Migration]`, each file's SQL embedded with
/// `include_str!`.
pub(crate) fn render(files: &[MigrationFile]) -> String {
    let mut list = String::from("&[\n");
    for file in files {
        let _ = writeln!(
            list,
            "    Migration {{ version: {}, name: {:?}, sql: include_str!({:?}), \
             checksum: {:#018x} }},",
            file.version,
            file.name,
            file.path.display().to_string(),
            file.checksum,
        );
    }
    list.push(']');
    list
}

/// FNV-1a (64 bits) of `bytes`, with each `\r\n` read as `\n`, so that a checkout that
/// turned the files' line endings into CRLF embeds the same checksums. It is the same
/// function as `runtara_core::migrations::checksum`; a test compares the two.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'\r' && bytes.get(index + 1) == Some(&b'\n') {
            continue;
        }
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
