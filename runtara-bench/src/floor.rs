//! The physical floor, measured on the same data dir in the same run: an fdatasync, a
//! SQLite WAL `synchronous=FULL` commit, a PostgreSQL autocommit insert, and a QUIC
//! request/response on a new stream (what every instance request costs).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use runtara_protocol::endpoint::{client_endpoint, server_endpoint};
use runtara_protocol::tls::{ClientTls, DevCertificate};

use crate::report::median;

/// Median milliseconds of `fdatasync` after a 4 KiB write.
pub fn fsync_ms(dir: &Path, samples: usize) -> anyhow::Result<f64> {
    let mut file = std::fs::File::create(dir.join("floor-fsync"))?;
    let block = vec![7u8; 4096];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&mut times))
}

/// Median milliseconds of one autocommit insert in WAL mode with `synchronous=FULL`.
pub fn sqlite_commit_ms(dir: &Path, samples: usize) -> anyhow::Result<f64> {
    let c = rusqlite::Connection::open(dir.join("floor.db"))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute(
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
        [],
    )?;
    let payload = vec![1u8; 100];
    let mut insert = c.prepare("INSERT INTO t (v) VALUES (?1)")?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        insert.execute([&payload])?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&mut times))
}

/// Median milliseconds of one autocommit insert (`synchronous_commit=on`).
pub async fn postgres_commit_ms(url: &str, samples: usize) -> anyhow::Result<f64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "SET synchronous_commit = on; \
             CREATE TABLE IF NOT EXISTS runtara_bench_floor (id BIGSERIAL PRIMARY KEY, v BYTEA NOT NULL)",
        )
        .await?;
    let insert = client
        .prepare("INSERT INTO runtara_bench_floor (v) VALUES ($1)")
        .await?;
    let payload = vec![1u8; 100];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        client.execute(&insert, &[&payload]).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    client
        .batch_execute("DROP TABLE IF EXISTS runtara_bench_floor")
        .await?;
    Ok(median(&mut times))
}

/// Median milliseconds of a 124-byte request and reply on a new QUIC stream over
/// loopback (TLS, the project's endpoint settings).
pub async fn quic_rtt_ms(dir: &Path, samples: usize) -> anyhow::Result<f64> {
    let cert = DevCertificate::load_or_create(&dir.join("floor-quic"))?;
    let server = server_endpoint("127.0.0.1:0".parse()?, &cert.cert_pem, &cert.key_pem, None)?;
    let addr = server.local_addr()?;
    let echo = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let Ok(connection) = incoming.await else {
                continue;
            };
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(request) = recv.read_to_end(64 * 1024).await {
                            let _ = send.write_all(&request).await;
                            let _ = send.finish();
                        }
                    });
                }
            });
        }
    });
    let ca_pem = std::fs::read(&cert.ca_path)?;
    let client = client_endpoint(&ClientTls::Verify { ca_pem }, addr)?;
    let connection = client.connect(addr, "localhost")?.await?;
    let request = vec![3u8; 124];
    let mut times = Vec::with_capacity(samples);
    for n in 0..samples + 20 {
        let start = Instant::now();
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&request).await?;
        send.finish()?;
        let reply = recv.read_to_end(64 * 1024).await?;
        anyhow::ensure!(reply.len() == request.len(), "short echo");
        if n >= 20 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    connection.close(0u32.into(), b"done");
    echo.abort();
    Ok(median(&mut times))
}
