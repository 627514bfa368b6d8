//! `runtara-ctl`: manage Runtara images and instances from the command line.
//!
//! See `runtara-ctl --help` and the crate documentation of `runtara-management-sdk` for
//! the commands and exit codes.

mod cli;
mod commands;
mod output;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("runtara-ctl: cannot start the async runtime: {error}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(commands::run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runtara-ctl: {}", error_chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

/// The error and its sources, `: `-separated (each error's message says only its own
/// part, so each cause shows once).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_skip_repeated_sources() {
        let io = std::io::Error::other("disk on fire");
        let error = runtara_management_sdk::SdkError::Io {
            path: "ca.pem".into(),
            source: io,
        };
        assert_eq!(error_chain(&error), "cannot read ca.pem: disk on fire");
    }

    #[test]
    fn a_protocol_error_shows_each_cause_once() {
        let io = std::io::Error::other("stream reset");
        let error = runtara_management_sdk::SdkError::from(runtara_protocol::ProtocolError::Io(io));
        assert_eq!(error_chain(&error), "i/o error: stream reset");
    }
}
