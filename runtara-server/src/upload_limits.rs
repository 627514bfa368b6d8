//! Bounds on image uploads: a deadline for each, and per tenant a number of uploads and
//! of declared bytes in progress at once.
//!
//! An upload that declared 1 GiB once kept its partial file for as long as its stream
//! stayed open, and nothing bounded concurrent uploads. Now an upload must arrive whole
//! within its deadline (its partial file is removed and the client told why), and an
//! upload that would take a tenant past [`UploadLimits::max_uploads_per_tenant`] or
//! its bytes bound is refused up front with `unavailable` (try again when one ends),
//! before a byte is stored. An upload too large for any bound (`--max-image-bytes`) is
//! refused as `invalid_input` before it is counted.
//!
//! The deadline is for the whole upload, not for each read, so trickling bytes does not
//! keep an upload alive. By default it is one minute plus one second per MiB of
//! `--max-image-bytes` (18 min for the default 1 GiB: the largest image at 1 MiB/s),
//! and a tenant may have two uploads and twice `--max-image-bytes` in progress, so
//! one tenant holds at most that much partial data on disk, and for that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtara_protocol::{ErrorCode, WireError};

/// The settings (see the module docs).
#[derive(Debug, Clone, clap::Args)]
pub struct UploadLimits {
    /// Time (ms) an image upload has to arrive whole [default: 60 s plus 1 s per MiB of
    /// --max-image-bytes].
    #[arg(long = "upload-timeout-ms", env = "RUNTARA_UPLOAD_TIMEOUT_MS", value_parser = parse_ms)]
    pub timeout: Option<Duration>,
    /// Image uploads one tenant may have in progress at once.
    #[arg(long, env = "RUNTARA_MAX_UPLOADS_PER_TENANT", default_value_t = DEFAULT_UPLOADS_PER_TENANT)]
    pub max_uploads_per_tenant: usize,
    /// Declared bytes of the uploads one tenant may have in progress at once [default:
    /// twice --max-image-bytes].
    #[arg(long, env = "RUNTARA_MAX_UPLOAD_BYTES_PER_TENANT")]
    pub max_upload_bytes_per_tenant: Option<u64>,
}

/// Uploads a tenant may have in progress at once, by default.
pub const DEFAULT_UPLOADS_PER_TENANT: usize = 2;

fn parse_ms(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("`{text}` is not a number of milliseconds: {e}"))
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            timeout: None,
            max_uploads_per_tenant: DEFAULT_UPLOADS_PER_TENANT,
            max_upload_bytes_per_tenant: None,
        }
    }
}

impl UploadLimits {
    /// The deadline of an upload on a server accepting images of up to `max_image_bytes`.
    pub fn timeout_for(&self, max_image_bytes: u64) -> Duration {
        self.timeout.unwrap_or_else(|| {
            Duration::from_secs(60).saturating_add(Duration::from_secs(max_image_bytes >> 20))
        })
    }

    /// The bound on a tenant's declared bytes in progress, on a server accepting images
    /// of up to `max_image_bytes`.
    pub fn bytes_per_tenant_for(&self, max_image_bytes: u64) -> u64 {
        self.max_upload_bytes_per_tenant
            .unwrap_or_else(|| max_image_bytes.saturating_mul(2))
    }
}

/// Uploads in progress, per tenant.
#[derive(Debug)]
pub struct Uploads {
    timeout: Duration,
    max_uploads: usize,
    max_bytes: u64,
    /// Tenant → (uploads, declared bytes) in progress.
    tenants: Mutex<HashMap<String, (usize, u64)>>,
}

impl Uploads {
    /// Uploads under `limits`, on a server accepting images of up to `max_image_bytes`.
    pub fn new(limits: &UploadLimits, max_image_bytes: u64) -> Arc<Uploads> {
        Arc::new(Uploads {
            timeout: limits.timeout_for(max_image_bytes),
            max_uploads: limits.max_uploads_per_tenant,
            max_bytes: limits.bytes_per_tenant_for(max_image_bytes),
            tenants: Mutex::new(HashMap::new()),
        })
    }

    /// The time an upload has to arrive whole.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, (usize, u64)>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an upload of `size` declared bytes for `tenant`, or refuses it while the
    /// tenant is at a bound.
    pub fn begin(self: &Arc<Self>, tenant: &str, size: u64) -> Result<UploadSlot, WireError> {
        let mut tenants = self.tenants();
        let (count, bytes) = tenants.get(tenant).copied().unwrap_or((0, 0));
        let busy = |message: String| Err(WireError::new(ErrorCode::Unavailable, message));
        if count >= self.max_uploads {
            return busy(format!(
                "tenant `{tenant}` has {count} image uploads in progress, the most it may have at once (--max-uploads-per-tenant); try again when one ends"
            ));
        }
        if bytes.saturating_add(size) > self.max_bytes {
            return busy(format!(
                "tenant `{tenant}` has {bytes} bytes of image uploads in progress; {size} more would pass its bound of {} (--max-upload-bytes-per-tenant); try again when one ends",
                self.max_bytes
            ));
        }
        tenants.insert(tenant.to_owned(), (count + 1, bytes + size));
        Ok(UploadSlot {
            uploads: self.clone(),
            tenant: tenant.to_owned(),
            size,
        })
    }
}

/// One upload's place in its tenant's bounds; given back when dropped.
#[derive(Debug)]
pub struct UploadSlot {
    uploads: Arc<Uploads>,
    tenant: String,
    size: u64,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut tenants = self.uploads.tenants();
        if let Some((count, bytes)) = tenants.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            *bytes = bytes.saturating_sub(self.size);
            if *count == 0 {
                tenants.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_bounded_in_uploads_and_bytes_and_others_are_not() {
        let limits = UploadLimits {
            max_uploads_per_tenant: 2,
            max_upload_bytes_per_tenant: Some(100),
            ..UploadLimits::default()
        };
        let uploads = Uploads::new(&limits, 1000);
        let first = uploads.begin("a", 40).unwrap();
        let _second = uploads.begin("a", 40).unwrap();
        let third = uploads.begin("a", 1).unwrap_err();
        assert_eq!(third.code, ErrorCode::Unavailable);
        assert!(
            third.message.contains("--max-uploads-per-tenant"),
            "{third:?}"
        );
        let _other = uploads.begin("b", 100).unwrap();
        drop(first);
        let too_big = uploads.begin("a", 61).unwrap_err();
        assert!(
            too_big.message.contains("--max-upload-bytes-per-tenant"),
            "{too_big:?}"
        );
        let _fits = uploads.begin("a", 60).unwrap();
    }

    #[test]
    fn the_defaults_scale_with_the_largest_image() {
        use clap::Parser;
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            limits: UploadLimits,
        }
        let defaults = Flags::parse_from(["x"]).limits;
        assert_eq!(defaults.max_uploads_per_tenant, DEFAULT_UPLOADS_PER_TENANT);
        assert_eq!(
            UploadLimits::default().max_uploads_per_tenant,
            DEFAULT_UPLOADS_PER_TENANT
        );
        let gib = 1 << 30;
        assert_eq!(defaults.timeout_for(gib), Duration::from_secs(60 + 1024));
        assert_eq!(defaults.bytes_per_tenant_for(gib), 2 * gib);
        let set = Flags::parse_from([
            "x",
            "--upload-timeout-ms",
            "2000",
            "--max-upload-bytes-per-tenant",
            "10",
        ])
        .limits;
        assert_eq!(set.timeout_for(gib), Duration::from_secs(2));
        assert_eq!(set.bytes_per_tenant_for(gib), 10);
    }
}
