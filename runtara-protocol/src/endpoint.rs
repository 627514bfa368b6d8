//! quinn endpoints for Runtara's server and clients.
//!
//! Both sides use the same transport settings: TLS 1.3 with ALPN [`ALPN`](crate::ALPN),
//! up to [`MAX_CONCURRENT_STREAMS`] bidirectional streams, keep-alives every
//! [`KEEP_ALIVE`], and connections closed after [`IDLE_TIMEOUT`] of silence.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::tls::{client_config, server_config, write_private, ClientTls};
use crate::{ProtocolError, Result};

/// Most bidirectional streams a peer may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// A connection with no traffic (keep-alives included) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive interval, well under the idle timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Receive window of one stream on the client side (bytes).
const CLIENT_STREAM_WINDOW: u32 = 8 << 20;

fn quic_error(context: &str, error: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Quic(format!("{context}: {error}"))
}

/// What an unauthenticated peer may make a server hold: until its hello is accepted a
/// connection may open one stream and send [`HELLO_RECEIVE_WINDOW`] bytes in all;
/// [`admit`] raises both once it is.
const HELLO_STREAMS: u32 = 1;
/// Bytes an unauthenticated connection may send before the server reads them.
pub const HELLO_RECEIVE_WINDOW: u32 = 64 * 1024;
/// Bytes an admitted connection may send, across its streams, before the server reads
/// them.
pub const RECEIVE_WINDOW: u32 = 16 * 1024 * 1024;
/// Bytes one stream may send before the server reads them.
pub const STREAM_RECEIVE_WINDOW: u32 = 2 * 1024 * 1024;
/// Handshakes a server endpoint holds before it has accepted them.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Raises an accepted connection's limits from those of an unauthenticated one (one
/// stream, [`HELLO_RECEIVE_WINDOW`]) to [`MAX_CONCURRENT_STREAMS`] streams and
/// [`RECEIVE_WINDOW`] bytes: call it once its hello is accepted.
pub fn admit(connection: &quinn::Connection) {
    connection.set_receive_window(RECEIVE_WINDOW.into());
    connection.set_max_concurrent_bi_streams(MAX_CONCURRENT_STREAMS.into());
}

/// [`transport`] with side-specific settings applied by `adjust`; a server starts every
/// connection with one stream ([`admit`] raises it).
fn transport_with(
    adjust: impl FnOnce(&mut quinn::TransportConfig),
) -> Result<Arc<quinn::TransportConfig>> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_CONCURRENT_STREAMS.into());
    adjust(&mut transport);
    transport
        .max_concurrent_uni_streams(0u32.into())
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(
            IDLE_TIMEOUT
                .try_into()
                .map_err(|e| quic_error("idle timeout", e))?,
        ));
    Ok(Arc::new(transport))
}

/// A server endpoint bound to `bind` (port 0 picks a free one; read it back with
/// `local_addr`) with the given certificate chain and private key (PEM).
///
/// With a `reset_secret` kept across restarts (see [`load_or_create_reset_secret`]), a
/// restarted server answers packets of connections it no longer knows with a stateless
/// reset the client recognizes, so clients notice a restart at once instead of after the
/// idle timeout.
pub fn server_endpoint(
    bind: SocketAddr,
    cert_pem: &[u8],
    key_pem: &[u8],
    reset_secret: Option<&[u8]>,
) -> Result<quinn::Endpoint> {
    let socket =
        std::net::UdpSocket::bind(bind).map_err(|e| quic_error(&format!("binding {bind}"), e))?;
    server_endpoint_on(socket, cert_pem, key_pem, reset_secret)
}

/// [`server_endpoint`] on a socket already bound, such as one of
/// [`reuse_port_sockets`]. Must be called inside the tokio runtime that is to drive the
/// endpoint.
pub fn server_endpoint_on(
    socket: std::net::UdpSocket,
    cert_pem: &[u8],
    key_pem: &[u8],
    reset_secret: Option<&[u8]>,
) -> Result<quinn::Endpoint> {
    let crypto = QuicServerConfig::try_from(server_config(cert_pem, key_pem)?)
        .map_err(|e| quic_error("server crypto", e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_with(|transport| {
        transport
            .max_concurrent_bidi_streams(HELLO_STREAMS.into())
            .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
            .receive_window(HELLO_RECEIVE_WINDOW.into());
    })?);
    // Handshakes waiting to be accepted, and the bytes they may hold.
    config
        .max_incoming(MAX_PENDING_HANDSHAKES)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(16 * 1024 * 1024);
    let endpoint_config = match reset_secret {
        Some(secret) => {
            let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                secret,
            )));
            // Connection ids carry a keyed check; with a per-process key a restarted
            // server would drop the old connections' packets as invalid instead of
            // resetting them. Derive the key from the persisted secret instead.
            let mut cid_key = [0u8; 8];
            for (i, byte) in secret.iter().enumerate() {
                cid_key[i % 8] ^= *byte;
            }
            let cid_key = u64::from_le_bytes(cid_key);
            endpoint_config.cid_generator(move || {
                Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            });
            endpoint_config
        }
        None => quinn::EndpointConfig::default(),
    };
    let addr = socket
        .local_addr()
        .map_err(|e| quic_error("reading the bound address", e))?;
    quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| quic_error(&format!("starting the endpoint on {addr}"), e))
}

/// `count` UDP sockets bound to the same address with `SO_REUSEPORT`, so that several
/// endpoints (one per thread) share one port. Port 0 picks a free port for the first;
/// the others join it. The kernel hands each datagram to a socket by a hash of its
/// source and destination, so all of a connection's datagrams reach the same endpoint.
///
/// A port already in use fails as a plain bind would, even when its holder is another
/// process's group of `SO_REUSEPORT` sockets (which these could otherwise join, silently
/// sharing its traffic): the port is first bound once without the option. Port 0 is
/// chosen the same way, by a plain bind: Linux's choice of a free port for a socket with
/// `SO_REUSEPORT` set counts a port held by another group of the same user as free.
pub fn reuse_port_sockets(bind: SocketAddr, count: usize) -> Result<Vec<std::net::UdpSocket>> {
    let probe =
        std::net::UdpSocket::bind(bind).map_err(|e| quic_error(&format!("binding {bind}"), e))?;
    let chosen = probe
        .local_addr()
        .map_err(|e| quic_error("reading the bound address", e))?;
    drop(probe);
    let mut addr = chosen;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(|e| quic_error("creating a UDP socket", e))?;
        socket
            .set_reuse_port(true)
            .map_err(|e| quic_error("setting SO_REUSEPORT", e))?;
        socket
            .bind(&addr.into())
            .map_err(|e| quic_error(&format!("binding {addr}"), e))?;
        let socket = std::net::UdpSocket::from(socket);
        addr = socket
            .local_addr()
            .map_err(|e| quic_error("reading the bound address", e))?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Bytes of the stateless-reset secret.
pub const RESET_SECRET_LEN: usize = 32;

/// Loads `<data_dir>/tls/reset.key` (32 random bytes, mode 0600), creating it on first use.
///
/// Whoever knows the secret can reset the server's connections, so it is kept like a
/// private key. A file of the wrong length is replaced.
pub fn load_or_create_reset_secret(data_dir: &Path) -> Result<Vec<u8>> {
    let dir = data_dir.join("tls");
    let path = dir.join("reset.key");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() == RESET_SECRET_LEN => return Ok(secret),
        Ok(_) => std::fs::remove_file(&path)
            .map_err(|e| quic_error(&format!("replacing {}", path.display()), e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(quic_error(&format!("reading {}", path.display()), e)),
    }
    let mut secret = vec![0u8; RESET_SECRET_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| ProtocolError::Tls("no system randomness for the reset key".into()))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| quic_error(&format!("creating {}", dir.display()), e))?;
    write_private(&path, &secret)?;
    Ok(secret)
}

/// A client endpoint able to reach `server` (bound to an ephemeral port of the same
/// family), checking the server's certificate as `tls` says. Connect with
/// `endpoint.connect(server, "localhost")`: the name must be one the certificate holds.
pub fn client_endpoint(tls: &ClientTls, server: SocketAddr) -> Result<quinn::Endpoint> {
    let crypto = QuicClientConfig::try_from(client_config(tls)?)
        .map_err(|e| quic_error("client crypto", e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // A restarted instance receives its whole history in one reply (10,000 checkpoints
    // are ~1.3 MB); quinn's default stream window (1.25 MB) made the server wait for a
    // window update in the middle. Only the client's window grows: the server reads
    // whole frames and keeps its default.
    config.transport_config(transport_with(|t| {
        t.stream_receive_window(CLIENT_STREAM_WINDOW.into());
    })?);
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| quic_error("client socket", e))?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_group_shares_one_port_and_a_held_port_is_refused() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let group = reuse_port_sockets(any, 3).unwrap();
        let addr = group[0].local_addr().unwrap();
        assert!(group.iter().all(|s| s.local_addr().unwrap() == addr));
        assert!(reuse_port_sockets(addr, 1).is_err());
    }
}
