//! `moocctl users list|show|purge`: learners, their containers and volumes. A learner is named by
//! the LMS `user_id` (with `--consumer` when several LMSs use the same id) or by `#ID`.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use mooc_lti::app::App;
use mooc_lti::store::{ContainerFilter, ContainerRow, UserRow, VolumeRow};
use serde::Serialize;

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List learners, most recent launch first
    List(List),
    /// Show a learner: identity, containers, volumes, last launch
    Show(Who),
    /// Delete a learner's containers and volumes (their files): the only way a volume is removed
    Purge(Who),
}

#[derive(Debug, Args)]
pub struct List {
    /// Only learners of this consumer key
    #[arg(long)]
    consumer: Option<String>,
    /// At most this many learners (the most recently seen)
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

#[derive(Debug, Args)]
pub struct Who {
    /// LMS user_id, or #ID for the internal id
    pub user: String,
    /// The consumer key, when several LMSs use the same user_id
    #[arg(long)]
    pub consumer: Option<String>,
}

/// The one learner `who` names, or an error saying why not.
pub async fn resolve(app: &App, who: &Who) -> anyhow::Result<Option<UserRow>> {
    let found = app
        .store
        .find_users(&who.user, who.consumer.as_deref())
        .await?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        n => bail!(
            "{n} learners have user_id {:?} (consumers: {}); add --consumer KEY",
            who.user,
            found
                .iter()
                .map(|u| u.consumer_key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[derive(Debug, Serialize)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserRow,
    pub containers: Vec<ContainerRow>,
    pub volumes: Vec<VolumeRow>,
}

impl UsersCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            UsersCmd::List(l) => list(ctx, l).await,
            UsersCmd::Show(who) => show(ctx, who).await,
            UsersCmd::Purge(who) => purge(ctx, who).await,
        }
    }
}

async fn list(ctx: &Ctx, l: List) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let users = app
        .store
        .list_users(l.consumer.as_deref(), l.limit.max(0))
        .await?;
    ctx.emit(&users, || {
        let mut t = ctx::table(&[
            "ID",
            "CONSUMER",
            "USER_ID",
            "NAME",
            "FIRST SEEN",
            "LAST LAUNCH",
        ]);
        for u in &users {
            t.add_row(vec![
                format!("#{}", u.id),
                u.consumer_key.clone(),
                u.user_id.clone(),
                u.name.clone().unwrap_or_default(),
                ctx::time(u.first_seen),
                ctx::time(u.last_seen),
            ]);
        }
        t
    })?;
    Ok(if users.is_empty() {
        ctx::not_found()
    } else {
        OK
    })
}

async fn show(ctx: &Ctx, who: Who) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let Some(user) = resolve(app, &who).await? else {
        eprintln!("moocctl: no learner {:?}", who.user);
        return Ok(ctx::not_found());
    };
    let containers = app
        .store
        .list_containers(&ContainerFilter {
            user_id: Some(user.id),
            live_only: true,
            ..Default::default()
        })
        .await?;
    let volumes = app.store.list_volumes(None, Some(user.id)).await?;
    let detail = UserDetail {
        user,
        containers,
        volumes,
    };
    ctx.emit(&detail, || {
        let u = &detail.user;
        let mut t = ctx::table(&["FIELD", "VALUE"]);
        t.add_row(vec!["id".into(), format!("#{}", u.id)]);
        t.add_row(vec!["consumer".into(), u.consumer_key.clone()]);
        t.add_row(vec!["user_id".into(), u.user_id.clone()]);
        t.add_row(vec!["name".into(), u.name.clone().unwrap_or_default()]);
        t.add_row(vec!["email".into(), u.email.clone().unwrap_or_default()]);
        t.add_row(vec!["first seen".into(), ctx::time(u.first_seen)]);
        t.add_row(vec!["last launch".into(), ctx::time(u.last_seen)]);
        for c in &detail.containers {
            t.add_row(vec![
                format!("container ({})", c.pool),
                format!("{} #{} {} on {}", c.name, c.id, c.state(), c.host),
            ]);
        }
        for v in &detail.volumes {
            t.add_row(vec![
                format!("volume ({})", v.pool),
                format!("{} on {}", v.name, v.host),
            ]);
        }
        t
    })?;
    Ok(OK)
}

async fn purge(ctx: &Ctx, who: Who) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let Some(user) = resolve(app, &who).await? else {
        eprintln!("moocctl: no learner {:?}", who.user);
        return Ok(ctx::not_found());
    };
    ctx.confirm(&format!(
        "Delete every container and volume of learner #{} ({} / {})? Their files are lost for good.",
        user.id, user.consumer_key, user.user_id
    ))?;
    let containers = app
        .store
        .list_containers(&ContainerFilter {
            user_id: Some(user.id),
            live_only: true,
            ..Default::default()
        })
        .await?;
    for c in &containers {
        mooc_lti::pool::remove(app, c, &mooc_lti::store::ContainerState::LIVE, "purged").await?;
    }
    let volumes = app.store.list_volumes(None, Some(user.id)).await?;
    for v in &volumes {
        let host = app.host(&v.host).ok_or_else(|| {
            anyhow::anyhow!(
                "volume {} is on docker host {}, which is not configured",
                v.name,
                v.host
            )
        })?;
        host.remove_volume(&v.name).await?;
        app.store.delete_volume(&v.name).await?;
    }
    app.event(
        "warn",
        "purge",
        &format!(
            "learner #{}: {} container(s), {} volume(s) deleted",
            user.id,
            containers.len(),
            volumes.len()
        ),
    )
    .await;
    ctx.say(format!(
        "learner #{}: {} container(s) and {} volume(s) deleted",
        user.id,
        containers.len(),
        volumes.len()
    ))?;
    Ok(OK)
}
