//! The subcommands, one module each; this enum dispatches.

pub mod consumer;

use std::process::ExitCode;

use clap::Subcommand;

use crate::ctx::Ctx;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// LMS consumers: the keys and secrets launches are signed with
    #[command(subcommand)]
    Consumer(consumer::ConsumerCmd),
}

impl Command {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            Command::Consumer(c) => c.run(ctx).await,
        }
    }
}
