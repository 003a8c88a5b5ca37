//! `moocctl`: the admin CLI. Parses arguments, sets up logging, and dispatches to one module per
//! subcommand under `cmd/`; each talks to the same library and database as the server.
//!
//! Exit codes: 0 ok, 1 nothing matched or a check failed, 2 error. A closed pipe (`moocctl … | head`)
//! exits 0 quietly.

mod cmd;
mod ctx;

use std::process::ExitCode;

use clap::Parser;

use crate::ctx::{Ctx, Global};

/// Administers mooc-lti: LMS consumers, pools, containers, learners, sessions and the event log.
/// Reads the same configuration and database as the server (see pool.yaml).
#[derive(Debug, Parser)]
#[command(
    name = "moocctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.global.quiet { "error" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moocctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let ctx = Ctx::new(cli.global);
    let result = runtime.block_on(cli.command.run(&ctx));
    match result {
        Ok(code) => code,
        Err(e) if ctx::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moocctl: {e:#}");
            ExitCode::from(2)
        }
    }
}
