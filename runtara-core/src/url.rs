//! Parsing of database URLs.

use std::path::PathBuf;

use crate::{Error, Result};

/// Where a SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteTarget {
    /// A file (created if missing, with its parent directories).
    File(PathBuf),
    /// A private in-memory database.
    Memory,
}

/// A database URL, split by backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:///abs.db`, `sqlite://rel.db`, `sqlite:rel.db` or `sqlite::memory:`.
    Sqlite(SqliteTarget),
    /// `postgres://…` or `postgresql://…`, passed to the driver as given.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `url`, or fails with [`Error::UnsupportedUrl`].
    pub fn parse(url: &str) -> Result<Self> {
        let unsupported = || Error::UnsupportedUrl {
            url: url.to_owned(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let rest = url.strip_prefix("sqlite:").ok_or_else(unsupported)?;
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(DatabaseUrl::Sqlite(SqliteTarget::Memory));
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        // Options after `?` are not supported yet; refuse them rather than ignore them.
        if path.is_empty() || path.contains('?') {
            return Err(unsupported());
        }
        Ok(DatabaseUrl::Sqlite(SqliteTarget::File(PathBuf::from(path))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").ok(),
            Some(DatabaseUrl::Sqlite(SqliteTarget::File("/tmp/x.db".into())))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").ok(),
            Some(DatabaseUrl::Sqlite(SqliteTarget::File("data/x.db".into())))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:x.db").ok(),
            Some(DatabaseUrl::Sqlite(SqliteTarget::File("x.db".into())))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").ok(),
            Some(DatabaseUrl::Sqlite(SqliteTarget::Memory))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://postgres@127.0.0.1/test"),
            Ok(DatabaseUrl::Postgres(_))
        ));
    }

    #[test]
    fn rejects_unknown_schemes_with_the_url_in_the_message() {
        for bad in ["mysql://x", "sqlite://", "", "sqlite://x.db?mode=ro"] {
            let err = DatabaseUrl::parse(bad).expect_err(bad);
            assert!(
                err.to_string().contains("unsupported database url"),
                "{err}"
            );
        }
    }
}
