//! The subcommands, one module each; this enum dispatches.

pub mod consumer;
pub mod containers;
pub mod pool;
pub mod users;

use std::process::ExitCode;

use clap::Subcommand;

use crate::ctx::Ctx;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// LMS consumers: the keys and secrets launches are signed with
    #[command(subcommand)]
    Consumer(consumer::ConsumerCmd),
    /// Pools of notebook containers: status, warm, resize, drain, cull, reconcile
    #[command(subcommand)]
    Pool(pool::PoolCmd),
    /// Notebook containers: list, show, restart, release, logs
    #[command(subcommand)]
    Containers(containers::ContainersCmd),
    /// Learners: their containers and volumes
    #[command(subcommand)]
    Users(users::UsersCmd),
}

impl Command {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            Command::Consumer(c) => c.run(ctx).await,
            Command::Pool(c) => c.run(ctx).await,
            Command::Users(c) => c.run(ctx).await,
            Command::Containers(c) => c.run(ctx).await,
        }
    }
}
