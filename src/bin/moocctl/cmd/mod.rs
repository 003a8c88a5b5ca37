//! The subcommands, one module each. This enum dispatches, and wraps every mutating command in the
//! admins check and the audit trail.

pub mod admin;
pub mod audit;
pub mod consumer;
pub mod containers;
pub mod db;
pub mod doctor;
pub mod generate;
pub mod launch;
pub mod logs;
pub mod nonces;
pub mod pool;
pub mod sessions;
pub mod users;

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use crate::ctx::{self, Ctx};

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
    /// Launches as recorded
    #[command(subcommand)]
    Sessions(sessions::SessionsCmd),
    /// The replay guard: stored OAuth nonces
    #[command(subcommand)]
    Nonces(nonces::NoncesCmd),
    /// The event log (claims, spawns, restarts, culls, failed launches, errors); -f follows
    Logs(logs::LogsCmd),
    /// Who may run mutating commands
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// The trail of every mutating command
    Audit(audit::AuditCmd),
    /// Check configuration, database, Docker hosts, images, clocks and URLs
    Doctor,
    /// The database: copy it to a fresh one (SQLite to PostgreSQL and back)
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Send a signed test launch to the server and report the redirect
    Launch(launch::LaunchCmd),
    /// Man pages and shell completions
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCmd),
}

impl Command {
    /// True for commands that change something: they need an admin and go to the audit trail.
    fn is_mutation(&self) -> bool {
        match self {
            Command::Consumer(c) => !matches!(c, consumer::ConsumerCmd::List),
            Command::Pool(c) => !matches!(c, pool::PoolCmd::Status(_)),
            Command::Containers(c) => matches!(
                c,
                containers::ContainersCmd::Restart(_) | containers::ContainersCmd::Release(_)
            ),
            Command::Users(c) => matches!(c, users::UsersCmd::Purge(_)),
            Command::Nonces(c) => matches!(c, nonces::NoncesCmd::Prune),
            Command::Admin(c) => !matches!(c, admin::AdminCmd::List),
            Command::Launch(l) => !l.is_print_only(),
            Command::Db(_) => true,
            Command::Sessions(_)
            | Command::Logs(_)
            | Command::Audit(_)
            | Command::Doctor
            | Command::Generate(_) => false,
        }
    }

    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        if let Command::Generate(g) = self {
            return g.run();
        }
        if !self.is_mutation() {
            return self.dispatch(ctx).await;
        }
        let app = ctx.app().await?;
        let actor = ctx.actor();
        let command = ctx::redacted_command_line();
        let admins = app.store.list_admins().await?;
        if !admins.is_empty()
            && !admins
                .iter()
                .any(|a| a.identity == actor && a.role == "admin")
        {
            app.store
                .audit(mooc_lti::now(), &actor, &command, "refused: not an admin")
                .await?;
            bail!(
                "{actor} is not an admin (moocctl admin list); run as an admin, or with --as IDENTITY"
            );
        }
        let result = self.dispatch(ctx).await;
        let outcome = match &result {
            Ok(code) if *code == ExitCode::SUCCESS => "ok".to_owned(),
            Ok(_) => "nothing matched".to_owned(),
            Err(e) => format!("error: {e:#}"),
        };
        if let Err(e) = app
            .store
            .audit(mooc_lti::now(), &actor, &command, &outcome)
            .await
        {
            eprintln!("moocctl: warning: cannot write the audit trail: {e}");
        }
        result
    }

    async fn dispatch(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            Command::Consumer(c) => c.run(ctx).await,
            Command::Pool(c) => c.run(ctx).await,
            Command::Containers(c) => c.run(ctx).await,
            Command::Users(c) => c.run(ctx).await,
            Command::Sessions(c) => c.run(ctx).await,
            Command::Nonces(c) => c.run(ctx).await,
            Command::Logs(c) => c.run(ctx).await,
            Command::Admin(c) => c.run(ctx).await,
            Command::Audit(c) => c.run(ctx).await,
            Command::Doctor => doctor::run(ctx).await,
            Command::Launch(c) => c.run(ctx).await,
            Command::Db(c) => c.run(ctx).await,
            Command::Generate(g) => g.run(),
        }
    }
}
