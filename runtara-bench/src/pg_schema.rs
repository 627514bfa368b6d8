//! A PostgreSQL schema of the run's own, so that every run starts from empty tables.

use anyhow::Context;

/// A schema created for this run; [`Schema::drop`] removes it and everything in it.
pub struct Schema {
    /// The given URL, with `search_path` set to the schema.
    pub url: String,
    admin: tokio_postgres::Client,
    name: String,
}

impl Schema {
    /// Creates `runtara_bench_<pid><suffix>` in the database at `url`.
    pub async fn create(url: &str, suffix: &str) -> anyhow::Result<Schema> {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to RUNTARA_BENCH_POSTGRES_URL")?;
        tokio::spawn(connection);
        let name = format!("runtara_bench_{}{suffix}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await?;
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{name}");
        Ok(Schema { url, admin, name })
    }

    /// Drops the schema.
    pub async fn drop(self) -> anyhow::Result<()> {
        self.admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await?;
        Ok(())
    }
}
