//! `moocctl sessions list|show`: launches as recorded, newest first.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use mooc_lti::config::parse_duration;
use mooc_lti::store::{SessionFilter, SessionRow};

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// List launches, newest first
    List(List),
    /// Show one launch
    Show(Show),
}

#[derive(Debug, Args)]
pub struct List {
    /// A learner's LMS user_id, or #ID
    #[arg(long)]
    user: Option<String>,
    /// A course (LMS context_id, e.g. ondemand~abc)
    #[arg(long)]
    course: Option<String>,
    /// Only launches this recent (e.g. 15m, 2h, 7d)
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// At most this many sessions (the latest)
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

#[derive(Debug, Args)]
pub struct Show {
    /// The session id, as `sessions list` shows it
    id: i64,
}

fn table(rows: &[SessionRow]) -> comfy_table::Table {
    let mut t = ctx::table(&[
        "ID",
        "AT",
        "USER",
        "CONSUMER",
        "COURSE",
        "OUTCOME",
        "CONTAINER",
        "FROM",
    ]);
    for s in rows {
        t.add_row(vec![
            s.id.to_string(),
            ctx::time(s.at),
            s.lms_user_id.clone().unwrap_or_default(),
            s.consumer_key.clone(),
            s.context_id.clone().unwrap_or_default(),
            s.outcome.clone(),
            s.container_id.map(|c| c.to_string()).unwrap_or_default(),
            s.remote_addr.clone().unwrap_or_default(),
        ]);
    }
    t
}

impl SessionsCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        match self {
            SessionsCmd::List(l) => {
                let rows = app
                    .store
                    .list_sessions(&SessionFilter {
                        user: l.user.as_deref(),
                        course: l.course.as_deref(),
                        since: l.since.map(|d| mooc_lti::now() - d.as_secs() as i64),
                        limit: l.limit.max(0),
                    })
                    .await?;
                ctx.emit(&rows, || table(&rows))?;
                Ok(if rows.is_empty() {
                    ctx::not_found()
                } else {
                    OK
                })
            }
            SessionsCmd::Show(s) => match app.store.session(s.id).await? {
                Some(row) => {
                    ctx.emit(&row, || {
                        let mut t = ctx::table(&["FIELD", "VALUE"]);
                        let fields = [
                            ("id", row.id.to_string()),
                            ("at", ctx::time(row.at)),
                            (
                                "learner",
                                row.user_id.map(|u| format!("#{u}")).unwrap_or_default(),
                            ),
                            ("user_id", row.lms_user_id.clone().unwrap_or_default()),
                            ("consumer", row.consumer_key.clone()),
                            ("course", row.context_id.clone().unwrap_or_default()),
                            (
                                "resource link",
                                row.resource_link_id.clone().unwrap_or_default(),
                            ),
                            ("roles", row.roles.clone().unwrap_or_default()),
                            ("pool", row.pool.clone().unwrap_or_default()),
                            ("outcome", row.outcome.clone()),
                            (
                                "container",
                                row.container_id.map(|c| c.to_string()).unwrap_or_default(),
                            ),
                            ("from", row.remote_addr.clone().unwrap_or_default()),
                        ];
                        for (k, v) in fields {
                            t.add_row(vec![k.to_owned(), v]);
                        }
                        t
                    })?;
                    Ok(OK)
                }
                None => {
                    eprintln!("moocctl: no session {}", s.id);
                    Ok(ctx::not_found())
                }
            },
        }
    }
}
