//! Image binaries, content-addressed: `<data-dir>/images/<sha256>`.
//!
//! An upload is streamed to a temporary file while it is hashed; only when the size
//! and the SHA-256 match what the client declared is it fsync'd and renamed into
//! place, so a cut or corrupt upload leaves nothing behind. Two registrations of the
//! same bytes share one file.

use std::path::{Path, PathBuf};

use runtara_protocol::{ErrorCode, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The binaries directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    /// Largest image accepted, in bytes.
    pub max_size: u64,
}

/// A stored binary.
#[derive(Debug)]
pub struct StoredBinary {
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

impl ImageStore {
    /// A store in `dir` (created if missing).
    pub fn open(dir: PathBuf, max_size: u64) -> std::io::Result<ImageStore> {
        std::fs::create_dir_all(&dir)?;
        Ok(ImageStore { dir, max_size })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads exactly `size` bytes from `stream`, checks them against `sha256` and stores
    /// them. Any mismatch is an `invalid_input` error and stores nothing.
    pub async fn receive(
        &self,
        stream: &mut (impl AsyncRead + Unpin),
        size: u64,
        sha256: &str,
    ) -> Result<StoredBinary, WireError> {
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
        let temp = self.dir.join(format!(".upload-{}", random_hex(8)));
        let result = self.stream_to(&temp, stream, size).await;
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
        let target = self.dir.join(&digest);
        let placed = async {
            set_executable(&temp).await?;
            tokio::fs::rename(&temp, &target).await?;
            sync_dir(&self.dir).await
        }
        .await;
        if let Err(error) = placed {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(internal(&error));
        }
        Ok(StoredBinary {
            sha256: digest,
            size,
        })
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
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).await?;
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
