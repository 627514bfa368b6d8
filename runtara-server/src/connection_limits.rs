//! What one peer may make the server hold: connections, bytes of requests, time.
//!
//! Anyone who can reach a port could once make the server hold ~145 MB per connection
//! without a token (quinn buffered every stream up to its window, with no bound per
//! connection and no cap on connections), and an authenticated client could hold 16 MiB
//! per stream on 128 streams for as long as it liked. The bounds, each a setting
//! ([`ConnectionLimits`]):
//!
//! - **Before the hello** a connection may open one stream and send 64 KiB in all
//!   (`runtara_protocol::endpoint`; [`admit`](runtara_protocol::endpoint::admit) raises
//!   that once the hello is accepted), must say hello within 10 s, and counts against
//!   [`ConnectionLimits::max_unauthenticated_per_address`]. Every connection counts
//!   against [`ConnectionLimits::max_connections`] of its port; past either, new
//!   connections are refused at once.
//! - **After the hello** a connection may send 16 MiB that the server has not read, and
//!   the requests being read at once may announce at most
//!   [`ConnectionLimits::request_bytes_per_connection`] bytes per connection and
//!   [`ConnectionLimits::request_bytes_per_tenant`] per tenant (a request waits for room).
//!   Every request must arrive whole within [`ConnectionLimits::request_read_timeout`],
//!   and a connection with no request for [`ConnectionLimits::idle_timeout`] is closed
//!   (clients reconnect on their next request).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtara_protocol::{read_frame_len, read_frame_payload, ErrorCode, WireError};
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::log_text::Refusals;

/// The bounds of one endpoint's connections (see the module docs).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionLimits {
    /// Connections one port holds at most; more are refused.
    #[arg(long, env = "RUNTARA_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Connections from one address that have not completed their hello, at most.
    #[arg(
        long,
        env = "RUNTARA_MAX_UNAUTHENTICATED_PER_ADDRESS",
        default_value_t = 64
    )]
    pub max_unauthenticated_per_address: usize,
    /// Time (ms) a request's bytes have to arrive once its stream is open.
    #[arg(long = "request-read-timeout-ms", env = "RUNTARA_REQUEST_READ_TIMEOUT_MS", default_value = "30000", value_parser = parse_ms)]
    pub request_read_timeout: Duration,
    /// A connection with no request for this long (ms) is closed.
    #[arg(long = "idle-connection-timeout-ms", env = "RUNTARA_IDLE_CONNECTION_TIMEOUT_MS", default_value = "600000", value_parser = parse_ms)]
    pub idle_timeout: Duration,
    /// Bytes of requests one connection may have in reading at once.
    #[arg(
        long,
        env = "RUNTARA_REQUEST_BYTES_PER_CONNECTION",
        default_value_t = 64 << 20
    )]
    pub request_bytes_per_connection: usize,
    /// Bytes of requests one tenant's connections may have in reading at once.
    #[arg(
        long,
        env = "RUNTARA_REQUEST_BYTES_PER_TENANT",
        default_value_t = 256 << 20
    )]
    pub request_bytes_per_tenant: usize,
}

fn parse_ms(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("`{text}` is not a number of milliseconds: {e}"))
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            max_unauthenticated_per_address: 64,
            request_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            request_bytes_per_connection: 64 << 20,
            request_bytes_per_tenant: 256 << 20,
        }
    }
}

/// Counts one port's connections and shares out request bytes.
#[derive(Debug)]
pub struct Gate {
    limits: ConnectionLimits,
    connections: AtomicUsize,
    unauthenticated: Mutex<HashMap<IpAddr, usize>>,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    refused: Refusals,
}

impl Gate {
    /// A gate for one port (`what`: `instance`, `management`).
    pub fn new(limits: ConnectionLimits, refused: &'static str) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            connections: AtomicUsize::new(0),
            unauthenticated: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            refused: Refusals::new(refused),
        })
    }

    /// The settings.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Lets a new connection from `addr` in, or refuses it (`None`, logged as a count)
    /// when the port or that address is at its limit.
    pub fn enter(self: &Arc<Self>, addr: IpAddr) -> Option<Ticket> {
        let total = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let mut ticket = Ticket {
            gate: self.clone(),
            addr,
            unauthenticated: false,
        };
        if total > self.limits.max_connections {
            self.refused.note(&format!(
                "the port holds its limit of {} connections (--max-connections)",
                self.limits.max_connections
            ));
            return None;
        }
        let mut pending = self.pending();
        let count = pending.entry(addr).or_insert(0);
        if *count >= self.limits.max_unauthenticated_per_address {
            drop(pending);
            self.refused.note(&format!(
                "{addr} has {} connections without a hello (--max-unauthenticated-per-address)",
                self.limits.max_unauthenticated_per_address
            ));
            return None;
        }
        *count += 1;
        ticket.unauthenticated = true;
        Some(ticket)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.unauthenticated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The request-byte budgets of an admitted connection of `tenant`.
    pub fn budgets(&self, tenant: &str) -> Budgets {
        let tenant = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants
                .entry(tenant.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.request_bytes_per_tenant)))
                .clone()
        };
        Budgets {
            connection: Arc::new(Semaphore::new(self.limits.request_bytes_per_connection)),
            tenant,
            read_timeout: self.limits.request_read_timeout,
        }
    }
}

/// One connection's place at its [`Gate`]: given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    addr: IpAddr,
    unauthenticated: bool,
}

impl Ticket {
    /// The connection's hello was accepted: it no longer counts as unauthenticated.
    pub fn authenticated(&mut self) {
        if std::mem::take(&mut self.unauthenticated) {
            self.leave_pending();
        }
    }

    fn leave_pending(&self) {
        let mut pending = self.gate.pending();
        if let Some(count) = pending.get_mut(&self.addr) {
            *count -= 1;
            if *count == 0 {
                pending.remove(&self.addr);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.connections.fetch_sub(1, Ordering::AcqRel);
        if self.unauthenticated {
            self.leave_pending();
        }
    }
}

/// Bytes of requests an admitted connection may be reading at once.
#[derive(Debug, Clone)]
pub struct Budgets {
    connection: Arc<Semaphore>,
    tenant: Arc<Semaphore>,
    read_timeout: Duration,
}

/// Room held for a request being read and handled; given back when dropped.
#[derive(Debug)]
pub struct Held {
    _permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

/// Reads one request of at most `max` bytes from `recv` within the request deadline,
/// first reserving the bytes its prefix announces from the connection's and the tenant's
/// budgets (waiting for room, within the same deadline). `Ok(None)`: the stream ended
/// before a request.
pub async fn read_request<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
    budgets: &Budgets,
) -> Result<Option<(T, Held)>, WireError> {
    let deadline = budgets.read_timeout;
    let read = async {
        let Some(len) = read_frame_len(recv, max)
            .await
            .map_err(|e| WireError::from(&e))?
        else {
            return Ok(None);
        };
        let held = if len == 0 {
            Held { _permits: None }
        } else {
            let bytes = u32::try_from(len).unwrap_or(u32::MAX);
            let connection = budgets
                .connection
                .clone()
                .acquire_many_owned(bytes)
                .await
                .map_err(|_| closed())?;
            let tenant = budgets
                .tenant
                .clone()
                .acquire_many_owned(bytes)
                .await
                .map_err(|_| closed())?;
            Held {
                _permits: Some((connection, tenant)),
            }
        };
        let request = read_frame_payload(recv, len)
            .await
            .map_err(|e| WireError::from(&e))?;
        Ok(Some((request, held)))
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(WireError::new(
            ErrorCode::InvalidInput,
            format!(
                "the request did not arrive whole within {deadline:?} (--request-read-timeout-ms)"
            ),
        )),
    }
}

fn closed() -> WireError {
    WireError::new(ErrorCode::Unavailable, "the server is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_port_and_unauthenticated_per_address() {
        let limits = ConnectionLimits {
            max_connections: 3,
            max_unauthenticated_per_address: 2,
            ..ConnectionLimits::default()
        };
        let gate = Gate::new(limits, "test connection refused");
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut first = gate.enter(a).unwrap();
        let _second = gate.enter(a).unwrap();
        assert!(gate.enter(a).is_none(), "a third without a hello from a");
        first.authenticated();
        let third = gate.enter(a).unwrap();
        assert!(gate.enter(b).is_none(), "the port is full");
        drop(third);
        let _fourth = gate.enter(b).unwrap();
        assert_eq!(gate.connections.load(Ordering::Acquire), 3);
    }
}
