//! The physical floor, measured on the same data dir in the same run: an fdatasync, a
//! SQLite WAL `synchronous=FULL` commit, a PostgreSQL autocommit insert, and a QUIC
//! request/response on a new stream (what every instance request costs) between two
//! processes — this one and an echo server (this binary as `runtara-bench echo`), as an
//! instance and its server are. (Within one process the same round trip is 0.09 ms
//! against 0.13–0.17 ms between two: waking another process's threads costs.)
//!
//! Each figure is measured the way W1 is: a block of sequential operations timed as a
//! whole (mean per operation), and the median over blocks. The disk is measured in its
//! steady state, as the system under test runs in it: the fsync overwrites blocks
//! already written, and the SQLite WAL has wrapped once. Appending to a file costs a
//! journal commit of the file's new size on top of the flush — on this kind of VM
//! 0.23–0.37 ms against 0.11–0.17 ms — and Runtara's WAL is appended to only until it
//! first wraps.
//!
//! A [`Floors`] stays open for the whole run, so the floor can also be measured right
//! before each W1 run of a mode: the machine's speed drifts by tens of percent within a
//! minute, and a ratio is only meaningful between figures taken at the same time.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use runtara_protocol::endpoint::{client_endpoint, server_endpoint};
use runtara_protocol::tls::{ClientTls, DevCertificate};
use tokio_postgres::Statement;

use crate::target::Mode;

/// Bytes written and flushed per fsync sample: one SQLite page.
const BLOCK: usize = 4096;
/// Blocks the fsync sample cycles over (4 MiB, about one wrapped WAL).
const FSYNC_BLOCKS: u64 = 1024;
/// Commits before the SQLite floor is measured: past 1,000 WAL pages the WAL is
/// checkpointed and then overwritten from its start.
const SQLITE_WARM_UP: usize = 1_100;
/// Round trips before the QUIC floor is measured.
const QUIC_WARM_UP: usize = 20;

/// Everything the floor is measured with, open for the whole run.
pub struct Floors {
    fsync_file: File,
    fsync_next: u64,
    sqlite: rusqlite::Connection,
    postgres: Option<Postgres>,
    quic: Quic,
}

struct Postgres {
    client: tokio_postgres::Client,
    insert: Statement,
}

struct Quic {
    connection: quinn::Connection,
    /// The echo server process; killed on drop.
    echo: EchoProcess,
}

struct EchoProcess(Child);

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Floors {
    /// Opens the floor's files in `dir`, connects to `postgres_url` when given, starts a
    /// QUIC echo server, and warms each up.
    pub async fn open(dir: &Path, postgres_url: Option<&str>) -> anyhow::Result<Floors> {
        let mut floors = Floors {
            fsync_file: fsync_file(dir)?,
            fsync_next: 0,
            sqlite: sqlite(dir)?,
            postgres: match postgres_url {
                Some(url) => Some(postgres(url).await?),
                None => None,
            },
            quic: quic(dir).await?,
        };
        floors.quic_rtt_ms(QUIC_WARM_UP).await?;
        Ok(floors)
    }

    /// Mean milliseconds of `fdatasync` after overwriting one 4 KiB block.
    pub fn fsync_ms(&mut self, samples: usize) -> anyhow::Result<f64> {
        let block = [7u8; BLOCK];
        let start = Instant::now();
        for _ in 0..samples {
            let offset = (self.fsync_next % FSYNC_BLOCKS) * BLOCK as u64;
            self.fsync_next += 1;
            self.fsync_file.seek(SeekFrom::Start(offset))?;
            self.fsync_file.write_all(&block)?;
            self.fsync_file.sync_data()?;
        }
        Ok(per_operation(start, samples))
    }

    /// Mean milliseconds of one autocommit insert of 100 bytes (WAL, `synchronous=FULL`).
    pub fn sqlite_commit_ms(&mut self, samples: usize) -> anyhow::Result<f64> {
        let payload = [1u8; 100];
        let mut insert = self
            .sqlite
            .prepare_cached("INSERT INTO t (v) VALUES (?1)")?;
        let start = Instant::now();
        for _ in 0..samples {
            insert.execute([&payload[..]])?;
        }
        Ok(per_operation(start, samples))
    }

    /// Mean milliseconds of one autocommit insert of 100 bytes (`synchronous_commit=on`);
    /// `None` without PostgreSQL.
    pub async fn postgres_commit_ms(&mut self, samples: usize) -> anyhow::Result<Option<f64>> {
        let Some(postgres) = &self.postgres else {
            return Ok(None);
        };
        let payload = vec![1u8; 100];
        let start = Instant::now();
        for _ in 0..samples {
            postgres
                .client
                .execute(&postgres.insert, &[&payload])
                .await?;
        }
        Ok(Some(per_operation(start, samples)))
    }

    /// Mean milliseconds of a 124-byte request and its echo on a new QUIC stream over
    /// loopback (TLS, the project's endpoint settings).
    pub async fn quic_rtt_ms(&mut self, samples: usize) -> anyhow::Result<f64> {
        let request = [3u8; 124];
        let start = Instant::now();
        for _ in 0..samples {
            let (mut send, mut recv) = self.quic.connection.open_bi().await?;
            send.write_all(&request).await?;
            send.finish()?;
            let reply = recv.read_to_end(64 * 1024).await?;
            anyhow::ensure!(reply.len() == request.len(), "short echo");
        }
        Ok(per_operation(start, samples))
    }

    /// The floor of `mode`: its database's commit, plus a round trip over QUIC.
    pub async fn of_mode(&mut self, mode: Mode, samples: usize) -> anyhow::Result<f64> {
        let commit = if mode.postgres() {
            self.postgres_commit_ms(samples)
                .await?
                .context("the PostgreSQL floor needs RUNTARA_BENCH_POSTGRES_URL")?
        } else {
            self.sqlite_commit_ms(samples)?
        };
        let rtt = if mode.quic() {
            self.quic_rtt_ms(samples).await?
        } else {
            0.0
        };
        Ok(commit + rtt)
    }

    /// The floor of one sequential step of `mode` with its parts used in sequence, as a
    /// step over QUIC must use them: a round trip, then a commit, then the next round
    /// trip. For the embedded modes it is [`of_mode`](Self::of_mode) (commits back to
    /// back, as W1's steps are).
    ///
    /// It differs from the sum of the separately measured parts because a commit that
    /// follows a pause costs more than one that follows another commit: on the bench VM
    /// a SQLite commit after 0.3 ms of idle disk took 0.11–0.13 ms against 0.055–0.07 ms
    /// back to back, and a PostgreSQL insert 0.27–0.36 ms against 0.15–0.19 ms (the host
    /// stops polling an idle virtual disk; spinning the guest CPU meanwhile did not help).
    /// Reported beside `x_floor` as a diagnostic; the targets are set against the sum.
    pub async fn sequential_of_mode(&mut self, mode: Mode, samples: usize) -> anyhow::Result<f64> {
        if !mode.quic() {
            return self.of_mode(mode, samples).await;
        }
        let start = Instant::now();
        for _ in 0..samples {
            self.quic_rtt_ms(1).await?;
            if mode.postgres() {
                self.postgres_commit_ms(1)
                    .await?
                    .context("the PostgreSQL floor needs RUNTARA_BENCH_POSTGRES_URL")?;
            } else {
                self.sqlite_commit_ms(1)?;
            }
        }
        Ok(per_operation(start, samples))
    }

    /// Drops the PostgreSQL floor's table and stops the echo server.
    pub async fn close(self) -> anyhow::Result<()> {
        self.quic.connection.close(0u32.into(), b"done");
        drop(self.quic.echo);
        if let Some(postgres) = self.postgres {
            postgres
                .client
                .batch_execute("DROP TABLE IF EXISTS runtara_bench_floor")
                .await?;
        }
        Ok(())
    }
}

fn per_operation(start: Instant, samples: usize) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0 / samples.max(1) as f64
}

/// A 4 MiB file, written and flushed once, so that samples overwrite allocated blocks.
fn fsync_file(dir: &Path) -> anyhow::Result<File> {
    let mut file = File::create(dir.join("floor-fsync"))?;
    file.write_all(&vec![0u8; BLOCK * FSYNC_BLOCKS as usize])?;
    file.sync_all()?;
    Ok(file)
}

fn sqlite(dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let c = rusqlite::Connection::open(dir.join("floor.db"))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute(
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
        [],
    )?;
    {
        let payload = [1u8; 100];
        let mut insert = c.prepare_cached("INSERT INTO t (v) VALUES (?1)")?;
        for _ in 0..SQLITE_WARM_UP {
            insert.execute([&payload[..]])?;
        }
    }
    Ok(c)
}

async fn postgres(url: &str) -> anyhow::Result<Postgres> {
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
    Ok(Postgres { client, insert })
}

async fn quic(dir: &Path) -> anyhow::Result<Quic> {
    let cert_dir = dir.join("floor-quic");
    let cert = DevCertificate::load_or_create(&cert_dir)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("echo")
        .arg(&cert_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the QUIC echo process")?;
    let stdout = child
        .stdout
        .take()
        .context("the echo process has no stdout")?;
    let echo = EchoProcess(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .parse()
        .with_context(|| format!("the echo process said `{}`, not its address", line.trim()))?;
    let ca_pem = std::fs::read(&cert.ca_path)?;
    let client = client_endpoint(&ClientTls::Verify { ca_pem }, addr)?;
    let connection = client.connect(addr, "localhost")?.await?;
    Ok(Quic { connection, echo })
}

/// `runtara-bench echo <cert-dir>`: a QUIC server answering each stream with what it
/// read; prints its address, then serves until killed.
pub async fn serve_echo(cert_dir: &Path) -> anyhow::Result<()> {
    let cert = DevCertificate::load_or_create(cert_dir)?;
    let server = server_endpoint("127.0.0.1:0".parse()?, &cert.cert_pem, &cert.key_pem, None)?;
    println!("{}", server.local_addr()?);
    while let Some(incoming) = server.accept().await {
        let Ok(connection) = incoming.await else {
            continue;
        };
        // No hello here: the floor is an admitted connection's round trip.
        runtara_protocol::endpoint::admit(&connection);
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
    Ok(())
}
