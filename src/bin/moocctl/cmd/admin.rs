//! `moocctl admin list|add|remove`: the admins table, who may run mutating commands. While it is
//! empty every identity may act (a fresh install must be able to add consumers); the first
//! `admin add` ends that. It guards against mistakes and gives accountability: the real gate is
//! who can read the configuration and the database.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::ctx::{self, Ctx, OK};

/// Roles: `admin` may run mutating commands; `viewer` is listed but may only read.
pub const ROLES: [&str; 2] = ["admin", "viewer"];

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// List admins
    List,
    /// Add an identity (a login name, or a Shibboleth eppn used with --as)
    Add(Add),
    /// Remove an identity
    Remove(Remove),
}

#[derive(Debug, Args)]
pub struct Add {
    /// Who: a login name (SUDO_USER/USER) or a Shibboleth eppn
    identity: String,
    /// The person's name, for the admins table
    #[arg(long)]
    name: Option<String>,
    /// admin (may change things) or viewer (may only read)
    #[arg(long, default_value = "admin", value_parser = ROLES)]
    role: String,
}

#[derive(Debug, Args)]
pub struct Remove {
    /// The identity to remove, as `admin list` shows it
    identity: String,
}

impl AdminCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        match self {
            AdminCmd::List => {
                let admins = app.store.list_admins().await?;
                ctx.emit(&admins, || {
                    let mut t = ctx::table(&["IDENTITY", "NAME", "ROLE", "ADDED", "ADDED BY"]);
                    for a in &admins {
                        t.add_row(vec![
                            a.identity.clone(),
                            a.name.clone().unwrap_or_default(),
                            a.role.clone(),
                            ctx::time(a.created_at),
                            a.created_by.clone(),
                        ]);
                    }
                    t
                })?;
                if admins.is_empty() && !ctx.global.json {
                    eprintln!(
                        "moocctl: the admins table is empty: every identity may run mutating commands"
                    );
                }
                Ok(if admins.is_empty() {
                    ctx::not_found()
                } else {
                    OK
                })
            }
            AdminCmd::Add(a) => {
                let identity = a.identity.trim();
                if identity.is_empty()
                    || identity.len() > 255
                    || identity.chars().any(char::is_control)
                {
                    bail!(
                        "identity {:?} must be 1-255 printable characters",
                        a.identity
                    );
                }
                if !app
                    .store
                    .add_admin(
                        identity,
                        a.name.as_deref(),
                        &a.role,
                        mooc_lti::now(),
                        &ctx.actor(),
                    )
                    .await?
                {
                    bail!("{identity:?} is an admin already");
                }
                ctx.say(format!("Added {identity} ({}).", a.role))?;
                let admins = app.store.list_admins().await?;
                let me = ctx.actor();
                if !admins.iter().any(|x| x.identity == me && x.role == "admin") {
                    eprintln!(
                        "moocctl: note: you ({me}) are not an admin, so you can no longer run mutating \
                         commands; add yourself with `moocctl admin add {me} --as {identity}`"
                    );
                }
                Ok(OK)
            }
            AdminCmd::Remove(r) => {
                ctx.confirm(&format!("Remove admin {}?", r.identity))?;
                if !app.store.remove_admin(&r.identity).await? {
                    eprintln!("moocctl: no admin {:?}", r.identity);
                    return Ok(ctx::not_found());
                }
                ctx.say(format!("Removed {}.", r.identity))?;
                Ok(OK)
            }
        }
    }
}
