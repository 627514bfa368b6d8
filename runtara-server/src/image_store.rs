//! Image binaries, content-addressed: `<data-dir>/images/<sha256>`.
//!
//! An upload is streamed to a temporary file while it is hashed; only when the size
//! and the SHA-256 match what the client declared is it fsync'd and renamed into
//! place, so a cut or corrupt upload leaves nothing behind. Two registrations of the
//! same bytes share one file.
//!
//! Only what this machine can run is accepted ([`check_executable`]): a native binary
//! (on Linux and other ELF systems: an ELF executable of this machine's class, byte order
//! and architecture; on macOS a Mach-O file; on Windows a PE file) or a script starting
//! with `#!`. A README or a binary for another platform is refused at registration,
//! rather than failing at its first start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runtara_protocol::{ErrorCode, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The binaries directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    /// Largest image accepted, in bytes.
    pub max_size: u64,
    catalog: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A received binary, checked, waiting in a temporary file to be placed.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    binary: StoredBinary,
}

/// A stored binary.
#[derive(Debug)]
pub struct StoredBinary {
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// Name prefix of an upload's temporary file, in the store's directory.
const UPLOAD_PREFIX: &str = ".upload-";

impl ImageStore {
    /// A store in `dir` (created if missing). Uploads a previous server left unfinished
    /// (it was killed mid-upload) are removed: one upload holds at most `max_size` bytes
    /// on disk, and only while it lasts.
    pub fn open(dir: PathBuf, max_size: u64) -> std::io::Result<ImageStore> {
        std::fs::create_dir_all(&dir)?;
        remove_unfinished_uploads(&dir)?;
        Ok(ImageStore {
            dir,
            max_size,
            catalog: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks an upload's declared size and digest before anything is received; the
    /// digest in lowercase.
    pub fn check_declaration(&self, size: u64, sha256: &str) -> Result<String, WireError> {
        let invalid = |message: String| WireError::new(ErrorCode::InvalidInput, message);
        if size == 0 {
            return Err(invalid("the image is empty".into()));
        }
        if size > self.max_size {
            return Err(invalid(format!(
                "the image is {size} bytes; this server accepts at most {} bytes (--max-image-bytes)",
                self.max_size
            )));
        }
        let declared = sha256.to_ascii_lowercase();
        if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "`{sha256}` is not a SHA-256 digest (64 hex digits)"
            )));
        }
        Ok(declared)
    }

    /// Reads exactly `size` bytes from `stream` into a temporary file and checks them
    /// against `sha256`; [`place`](Self::place) then puts them in the store. Any mismatch
    /// is an `invalid_input` error and leaves nothing behind, and so
    /// does an upload that has not arrived whole within `deadline`.
    pub async fn receive(
        &self,
        stream: &mut (impl AsyncRead + Unpin),
        size: u64,
        sha256: &str,
        deadline: Duration,
    ) -> Result<Staged, WireError> {
        let invalid = |message: String| WireError::new(ErrorCode::InvalidInput, message);
        let declared = self.check_declaration(size, sha256)?;
        let temp = self.dir.join(format!("{UPLOAD_PREFIX}{}", random_hex(8)));
        let result = match tokio::time::timeout(deadline, self.stream_to(&temp, stream, size)).await
        {
            Ok(result) => result,
            Err(_) => Err(invalid(format!(
                "the upload did not arrive whole within {deadline:?} (--upload-timeout-ms); nothing was stored"
            ))),
        };
        let digest = match result {
            Ok(digest) => digest,
            Err(error) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(error);
            }
        };
        if digest != declared {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(invalid(format!(
                "the image's SHA-256 is {digest}, not the declared {declared}: the upload was corrupted"
            )));
        }
        if let Err(reason) = check_executable_file(&temp).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(invalid(reason));
        }
        Ok(Staged {
            temp,
            binary: StoredBinary {
                sha256: digest,
                size,
            },
        })
    }

    /// Puts a received binary in the store, under its digest. Call it holding
    /// [`catalog`](Self::catalog) together with the image row's insert, so that a delete of
    /// another image with the same bytes cannot remove the file in between.
    pub async fn place(&self, staged: Staged) -> Result<StoredBinary, WireError> {
        let target = self.dir.join(&staged.binary.sha256);
        let placed = async {
            set_executable(&staged.temp).await?;
            tokio::fs::rename(&staged.temp, &target).await?;
            sync_dir(&self.dir).await
        }
        .await;
        if let Err(error) = placed {
            let _ = tokio::fs::remove_file(&staged.temp).await;
            return Err(internal(&error));
        }
        Ok(staged.binary)
    }

    /// Held while image rows and their files change together (a registration's file and
    /// row, a deletion's row and file): on this server, the two never interleave.
    pub async fn catalog(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.catalog.lock().await
    }

    async fn stream_to(
        &self,
        path: &Path,
        stream: &mut (impl AsyncRead + Unpin),
        size: u64,
    ) -> Result<String, WireError> {
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| internal(&e))?;
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut received = 0u64;
        loop {
            let n = stream.read(&mut buffer).await.map_err(|e| {
                WireError::new(
                    ErrorCode::InvalidInput,
                    format!("the upload broke off after {received} of {size} bytes: {e}"),
                )
            })?;
            if n == 0 {
                break;
            }
            received += n as u64;
            if received > size {
                return Err(WireError::new(
                    ErrorCode::InvalidInput,
                    format!("the upload is longer than the declared {size} bytes"),
                ));
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .await
                .map_err(|e| internal(&e))?;
        }
        if received != size {
            return Err(WireError::new(
                ErrorCode::InvalidInput,
                format!("the upload was cut short: {received} of {size} bytes arrived"),
            ));
        }
        file.sync_all().await.map_err(|e| internal(&e))?;
        Ok(hex(hasher.finish().as_ref()))
    }

    /// Removes a binary no image uses any more.
    pub async fn remove(&self, sha256: &str) {
        if let Err(error) = tokio::fs::remove_file(self.dir.join(sha256)).await {
            tracing::warn!(%sha256, %error, "could not remove an unused image binary");
        }
    }
}

/// Removes the `.upload-*` files of uploads that never finished.
fn remove_unfinished_uploads(dir: &Path) -> std::io::Result<()> {
    let (mut files, mut bytes) = (0_u64, 0_u64);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let is_upload = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(UPLOAD_PREFIX));
        if !is_upload {
            continue;
        }
        let size = entry.metadata().map_or(0, |m| m.len());
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                files += 1;
                bytes += size;
            }
            Err(error) => {
                tracing::warn!(path = %entry.path().display(), %error, "cannot remove an unfinished upload");
            }
        }
    }
    if files > 0 {
        tracing::info!(
            files,
            bytes,
            "removed uploads a previous server left unfinished"
        );
    }
    Ok(())
}

/// Reads the start of the uploaded file and checks it with [`check_executable`].
async fn check_executable_file(path: &Path) -> Result<(), String> {
    let mut head = [0u8; 64];
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read the uploaded image back: {e}"))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) => return Err(format!("cannot read the uploaded image back: {e}")),
        }
    }
    check_executable(&head[..filled])
}

/// ELF `e_machine` of the machine this server runs on, when known.
fn host_elf_machine() -> Option<u16> {
    Some(match std::env::consts::ARCH {
        "x86" => 3,
        "arm" => 40,
        "powerpc" => 20,
        "powerpc64" => 21,
        "s390x" => 22,
        "x86_64" => 62,
        "aarch64" => 183,
        "riscv64" | "riscv32" => 243,
        "loongarch64" => 258,
        _ => return None,
    })
}

/// A name for an ELF `e_machine`, for error messages.
fn elf_machine_name(machine: u16) -> String {
    match machine {
        3 => "x86".into(),
        40 => "arm".into(),
        20 => "powerpc".into(),
        21 => "powerpc64".into(),
        22 => "s390x".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        258 => "loongarch64".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Whether a file starting with `head` (its first 64 bytes, or all of a shorter file) can
/// run on this machine: a script starting with `#!`, or a native binary of this platform
/// (see the module docs). The error says what the file is instead.
pub fn check_executable(head: &[u8]) -> Result<(), String> {
    let host = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    if head.starts_with(b"#!") {
        return Ok(());
    }
    let refuse = |what: &str| {
        Err(format!(
            "the image is not an executable for this server ({host}): {what}; upload a \
             binary built for {host} (or a script starting with `#!`)"
        ))
    };
    if cfg!(target_os = "macos") {
        const MACH_O: [[u8; 4]; 4] = [
            [0xcf, 0xfa, 0xed, 0xfe],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xca, 0xfe, 0xba, 0xbe],
            [0xbe, 0xba, 0xfe, 0xca],
        ];
        if MACH_O.iter().any(|magic| head.starts_with(magic)) {
            return Ok(());
        }
        return refuse("it is not a Mach-O binary");
    }
    if cfg!(windows) {
        if head.starts_with(b"MZ") {
            return Ok(());
        }
        return refuse("it is not a Windows (PE) executable");
    }
    if !head.starts_with(b"\x7fELF") {
        let what = if head.starts_with(b"MZ") {
            "it is a Windows executable"
        } else if head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
            || head.starts_with(&[0xca, 0xfe, 0xba, 0xbe])
        {
            "it is a macOS (Mach-O) binary"
        } else if std::str::from_utf8(head).is_ok() {
            "it is text, not an ELF binary (a script must start with `#!`)"
        } else {
            "it does not start with an ELF header"
        };
        return refuse(what);
    }
    if head.len() < 20 {
        return refuse("its ELF header is cut short");
    }
    let class = if cfg!(target_pointer_width = "64") {
        2
    } else {
        1
    };
    if head[4] != class {
        let bits = match head[4] {
            1 => "a 32-bit",
            2 => "a 64-bit",
            _ => "an unknown-class",
        };
        return refuse(&format!("it is {bits} ELF binary"));
    }
    let data = if cfg!(target_endian = "little") { 1 } else { 2 };
    if head[5] != data {
        return refuse("it is an ELF binary of the other byte order");
    }
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        _ => u16::from_be_bytes([head[18], head[19]]),
    };
    match host_elf_machine() {
        Some(host_machine) if host_machine != machine => refuse(&format!(
            "it is an ELF binary for {}",
            elf_machine_name(machine)
        )),
        _ => Ok(()),
    }
}

fn internal(error: &std::io::Error) -> WireError {
    WireError::new(
        ErrorCode::Internal,
        format!("storing the image failed: {error}"),
    )
}

async fn set_executable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The owner only: the data dir is private (see `private_files`).
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).await?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` random bytes as hex (for ids and file names).
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // No system randomness: fall back to the clock (ids stay unique enough per server).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        return format!("{nanos:x}");
    }
    hex(&bytes)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The first 20 bytes of an ELF header: class, byte order, machine.
    fn elf(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut head = vec![0x7f, b'E', b'L', b'F', class, data, 1, 0];
        head.extend_from_slice(&[0; 8]);
        head.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
        match data {
            1 => head.extend_from_slice(&machine.to_le_bytes()),
            _ => head.extend_from_slice(&machine.to_be_bytes()),
        }
        head.extend_from_slice(&[0; 44]);
        head
    }

    #[test]
    fn native_binaries_and_scripts_pass_others_are_refused() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(check_executable(&own[..64]), Ok(()));
        assert_eq!(check_executable(b"#!/bin/sh\nexit 0\n"), Ok(()));
        let host = host_elf_machine().unwrap();
        assert_eq!(check_executable(&elf(2, 1, host)), Ok(()));
        let other = if host == 183 { 62 } else { 183 };
        let cases: [(&[u8], &str); 7] = [
            (b"# Runtara\n\nA README.\n", "it is text"),
            (&elf(2, 1, other), "it is an ELF binary for"),
            (&elf(1, 1, host), "32-bit"),
            (&elf(2, 2, host), "other byte order"),
            (b"MZ\x90\x00\x03", "Windows"),
            (&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1], "Mach-O"),
            (b"\x7fELF\x02", "cut short"),
        ];
        for (head, needle) in cases {
            let error = check_executable(head).unwrap_err();
            assert!(error.contains(needle), "{error}");
            assert!(
                error.contains("not an executable for this server"),
                "{error}"
            );
        }
    }
}
