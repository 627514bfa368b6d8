//! Bounds on image uploads: a deadline for each, and per tenant a number of uploads and
//! of declared bytes in progress at once.
//!
//! An upload that declared 1 GiB once kept its partial file for as long as its stream
//! stayed open, and nothing bounded concurrent uploads. Now an upload must arrive whole
//! within [`UploadLimits::timeout`] (its partial file is removed and the client told
//! why), and an upload that would take a tenant past
//! [`UploadLimits::max_uploads_per_tenant`] or
//! [`UploadLimits::max_upload_bytes_per_tenant`] is refused up front with `unavailable`
//! (try again when one ends), before a byte is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtara_protocol::{ErrorCode, WireError};

/// The settings (see the module docs).
#[derive(Debug, Clone, clap::Args)]
pub struct UploadLimits {
    /// Time (ms) an image upload has to arrive whole.
    #[arg(long = "upload-timeout-ms", env = "RUNTARA_UPLOAD_TIMEOUT_MS", default_value = "600000", value_parser = parse_ms)]
    pub timeout: Duration,
    /// Image uploads one tenant may have in progress at once.
    #[arg(long, env = "RUNTARA_MAX_UPLOADS_PER_TENANT", default_value_t = 2)]
    pub max_uploads_per_tenant: usize,
    /// Declared bytes of the uploads one tenant may have in progress at once.
    #[arg(
        long,
        env = "RUNTARA_MAX_UPLOAD_BYTES_PER_TENANT",
        default_value_t = 2 << 30
    )]
    pub max_upload_bytes_per_tenant: u64,
}

fn parse_ms(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("`{text}` is not a number of milliseconds: {e}"))
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            timeout: Duration::from_secs(600),
            max_uploads_per_tenant: 2,
            max_upload_bytes_per_tenant: 2 << 30,
        }
    }
}

/// Uploads in progress, per tenant.
#[derive(Debug, Default)]
pub struct Uploads {
    limits: UploadLimits,
    /// Tenant → (uploads, declared bytes) in progress.
    tenants: Mutex<HashMap<String, (usize, u64)>>,
}

impl Uploads {
    /// Uploads under `limits`.
    pub fn new(limits: UploadLimits) -> Arc<Uploads> {
        Arc::new(Uploads {
            limits,
            tenants: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn limits(&self) -> &UploadLimits {
        &self.limits
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
        if count >= self.limits.max_uploads_per_tenant {
            return busy(format!(
                "tenant `{tenant}` has {count} image uploads in progress, the most it may have at once (--max-uploads-per-tenant); try again when one ends"
            ));
        }
        if bytes.saturating_add(size) > self.limits.max_upload_bytes_per_tenant {
            return busy(format!(
                "tenant `{tenant}` has {bytes} bytes of image uploads in progress; {size} more would pass its bound of {} (--max-upload-bytes-per-tenant); try again when one ends",
                self.limits.max_upload_bytes_per_tenant
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
        let uploads = Uploads::new(UploadLimits {
            max_uploads_per_tenant: 2,
            max_upload_bytes_per_tenant: 100,
            ..UploadLimits::default()
        });
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
}
