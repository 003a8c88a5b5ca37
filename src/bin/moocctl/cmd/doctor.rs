//! `moocctl doctor`: one line per check of everything a launch depends on: configuration, database
//! and migrations, admins and consumers, each Docker host (reachable, API version, images, clock),
//! and the listen and public URLs. Exit 1 when any check fails; warnings do not fail.

use std::process::ExitCode;
use std::time::Duration;

use mooc_lti::config::Config;
use serde::Serialize;

use crate::ctx::{self, Ctx, OK};

/// Clock difference beyond which OAuth timestamps start failing for some learners.
const MAX_SKEW_SECS: i64 = 30;

#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    /// ok, warn or fail
    pub status: &'static str,
    pub detail: String,
}

fn check(
    list: &mut Vec<Check>,
    name: impl Into<String>,
    status: &'static str,
    detail: impl Into<String>,
) {
    list.push(Check {
        check: name.into(),
        status,
        detail: detail.into(),
    });
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    // The configuration first: without it nothing else can be checked.
    if let Err(e) = Config::load(ctx.global.config.as_deref()) {
        check(&mut checks, "config", "fail", format!("{e:#}"));
        return finish(ctx, checks);
    }
    let app = match ctx.app().await {
        Ok(app) => app,
        Err(e) => {
            check(&mut checks, "config", "ok", "loaded");
            check(&mut checks, "database", "fail", format!("{e:#}"));
            return finish(ctx, checks);
        }
    };
    let cfg = &app.config;
    check(
        &mut checks,
        "config",
        "ok",
        format!("{}", cfg.path.display()),
    );
    match app.store.migrations().await {
        Ok(v) => check(
            &mut checks,
            "database",
            "ok",
            format!(
                "{} ({}), migrations {}",
                app.store.backend_name(),
                cfg.database_url.redacted(),
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        Err(e) => check(&mut checks, "database", "fail", format!("{e:#}")),
    }
    match app.store.db_now().await {
        Ok(t) => {
            let skew = t - mooc_lti::now();
            let status = if skew.abs() > MAX_SKEW_SECS {
                "fail"
            } else {
                "ok"
            };
            check(
                &mut checks,
                "clock: database",
                status,
                format!("{skew:+}s from this machine"),
            );
        }
        Err(e) => check(&mut checks, "clock: database", "fail", format!("{e:#}")),
    }
    match app.store.list_admins().await {
        Ok(a) if a.is_empty() => check(
            &mut checks,
            "admins",
            "warn",
            "the admins table is empty: every identity may run mutating commands (moocctl admin add)",
        ),
        Ok(a) => check(&mut checks, "admins", "ok", format!("{} listed", a.len())),
        Err(e) => check(&mut checks, "admins", "fail", format!("{e:#}")),
    }
    match app.store.list_consumers().await {
        Ok(c) if c.is_empty() => check(
            &mut checks,
            "consumers",
            "warn",
            "no LMS is registered, so every launch is refused (moocctl consumer add)",
        ),
        Ok(c) => check(
            &mut checks,
            "consumers",
            "ok",
            format!("{} registered", c.len()),
        ),
        Err(e) => check(&mut checks, "consumers", "fail", format!("{e:#}")),
    }
    for host in &app.hosts {
        let name = format!("docker host {}", host.name());
        match tokio::time::timeout(Duration::from_secs(10), host.version()).await {
            Ok(Ok((version, api))) => {
                check(
                    &mut checks,
                    &name,
                    "ok",
                    format!("{} engine {version}, API {api}", host.config.endpoint),
                );
            }
            Ok(Err(e)) => {
                check(&mut checks, &name, "fail", format!("{e:#}"));
                continue;
            }
            Err(_) => {
                check(
                    &mut checks,
                    &name,
                    "fail",
                    format!("{} did not answer in 10s", host.config.endpoint),
                );
                continue;
            }
        }
        match host.system_time().await {
            Ok(Some(t)) => {
                let skew = t - mooc_lti::now();
                let status = if skew.abs() > MAX_SKEW_SECS {
                    "fail"
                } else {
                    "ok"
                };
                check(
                    &mut checks,
                    format!("clock: {}", host.name()),
                    status,
                    format!("{skew:+}s from this machine"),
                );
            }
            Ok(None) => check(
                &mut checks,
                format!("clock: {}", host.name()),
                "warn",
                "engine did not report its time",
            ),
            Err(e) => check(
                &mut checks,
                format!("clock: {}", host.name()),
                "warn",
                format!("{e:#}"),
            ),
        }
        for pool in &cfg.pools {
            let name = format!("image {} on {}", pool.image, host.name());
            match host.image_present(&pool.image).await {
                Ok(true) => check(&mut checks, name, "ok", format!("pool {}", pool.name)),
                Ok(false) => check(
                    &mut checks,
                    name,
                    "fail",
                    format!(
                        "pool {} cannot start containers: the image is missing (nothing is pulled)",
                        pool.name
                    ),
                ),
                Err(e) => check(&mut checks, name, "fail", format!("{e:#}")),
            }
        }
    }
    let public = &cfg.server.public_url;
    let host = url::Url::parse(public.as_str())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]");
    if public.as_str().starts_with("http://") && !local {
        check(
            &mut checks,
            "public_url",
            "warn",
            format!(
                "{} is plain http: LMSs should post launches over https",
                public.as_str()
            ),
        );
    } else {
        check(
            &mut checks,
            "public_url",
            "ok",
            format!("LMSs launch {}", public.launch_url()),
        );
    }
    let health = format!("http://{}/healthz", cfg.server.listen);
    match app.http.get(&health, &[], Duration::from_secs(3)).await {
        Ok(r) if r.status.is_success() => check(
            &mut checks,
            "server",
            "ok",
            format!("answering on {}", cfg.server.listen),
        ),
        Ok(r) => check(
            &mut checks,
            "server",
            "fail",
            format!("{health} answered {}", r.status),
        ),
        Err(_) => check(
            &mut checks,
            "server",
            "warn",
            format!("not answering on {} (not started?)", cfg.server.listen),
        ),
    }
    finish(ctx, checks)
}

fn finish(ctx: &Ctx, checks: Vec<Check>) -> anyhow::Result<ExitCode> {
    let failed = checks.iter().any(|c| c.status == "fail");
    if ctx.global.json {
        ctx.emit(&checks, || ctx::table(&[]))?;
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for c in &checks {
            writeln!(out, "{:4}  {}: {}", c.status, c.check, c.detail)?;
        }
    }
    Ok(if failed { ctx::not_found() } else { OK })
}
