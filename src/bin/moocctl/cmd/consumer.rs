//! `moocctl consumer add|list|remove|rotate`: the LMSs allowed to launch, with their OAuth secrets.
//! A secret is printed once, when it is made, and never again.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use mooc_lti::secret::{self, Secret};
use serde::Serialize;

use crate::ctx::{self, Ctx, OK};

#[derive(Debug, Subcommand)]
pub enum ConsumerCmd {
    /// Register an LMS; without --secret a random secret is made and printed once
    Add(Add),
    /// List consumers (secrets are never shown)
    List,
    /// Remove a consumer: its launches are refused from then on
    Remove(Remove),
    /// Replace a consumer's secret with a new random one, printed once
    Rotate(Rotate),
}

#[derive(Debug, Args)]
pub struct Add {
    /// The consumer key the LMS sends as oauth_consumer_key
    key: String,
    /// Use this secret instead of a random one
    #[arg(long)]
    secret: Option<String>,
    /// A description, e.g. "Coursera: Intro to Data Science"
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub struct Remove {
    /// The consumer key to remove (its LMS can no longer launch)
    key: String,
}

#[derive(Debug, Args)]
pub struct Rotate {
    /// The consumer key whose secret is replaced (the old secret stops working)
    key: String,
}

#[derive(Serialize)]
struct Created<'a> {
    key: &'a str,
    secret: Option<&'a str>,
}

fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.len() > 255 || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("consumer key {key:?} must be 1-255 characters without spaces");
    }
    Ok(())
}

impl ConsumerCmd {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            ConsumerCmd::Add(a) => a.run(ctx).await,
            ConsumerCmd::List => list(ctx).await,
            ConsumerCmd::Remove(r) => r.run(ctx).await,
            ConsumerCmd::Rotate(r) => r.run(ctx).await,
        }
    }
}

impl Add {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        check_key(&self.key)?;
        let generated = self.secret.is_none();
        let secret = match self.secret {
            Some(s) if s.trim().is_empty() => bail!("--secret must not be empty"),
            Some(s) => {
                if s.len() < 16 {
                    eprintln!(
                        "moocctl: warning: a secret shorter than 16 characters is easy to guess"
                    );
                }
                Secret::new(s)
            }
            None => secret::new_consumer_secret(),
        };
        let app = ctx.app().await?;
        if !app
            .store
            .add_consumer(&self.key, &secret, self.name.as_deref(), mooc_lti::now())
            .await?
        {
            bail!(
                "consumer {:?} exists already (use `moocctl consumer rotate` to give it a new secret)",
                self.key
            );
        }
        app.event(
            "info",
            "consumer-add",
            &format!("consumer {} added", self.key),
        )
        .await;
        print_secret(ctx, &self.key, generated.then_some(&secret), "Added")?;
        Ok(OK)
    }
}

fn print_secret(ctx: &Ctx, key: &str, secret: Option<&Secret>, verb: &str) -> anyhow::Result<()> {
    if ctx.global.json {
        ctx.emit(
            &Created {
                key,
                secret: secret.map(Secret::expose),
            },
            || ctx::table(&[]),
        )?;
        return Ok(());
    }
    ctx.say(format!("{verb} consumer {key}."))?;
    if let Some(secret) = secret {
        // The one place a secret is shown: printed even with --quiet, since it cannot be read again.
        use std::io::Write;
        writeln!(std::io::stdout().lock(), "secret: {}", secret.expose())?;
        ctx.say("Give the LMS this key and secret now: the secret is not shown again.")?;
    }
    Ok(())
}

async fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let app = ctx.app().await?;
    let consumers = app.store.list_consumers().await?;
    ctx.emit(&consumers, || {
        let mut t = ctx::table(&["KEY", "NAME", "ENABLED", "CREATED"]);
        for c in &consumers {
            t.add_row(vec![
                c.key.clone(),
                c.name.clone().unwrap_or_default(),
                if c.enabled { "yes".into() } else { "no".into() },
                ctx::time(c.created_at),
            ]);
        }
        t
    })?;
    Ok(if consumers.is_empty() {
        ctx::not_found()
    } else {
        OK
    })
}

impl Remove {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        ctx.confirm(&format!(
            "Remove consumer {}? Its launches will be refused.",
            self.key
        ))?;
        if !app.store.remove_consumer(&self.key).await? {
            eprintln!("moocctl: no consumer {:?}", self.key);
            return Ok(ctx::not_found());
        }
        app.event(
            "info",
            "consumer-remove",
            &format!("consumer {} removed", self.key),
        )
        .await;
        ctx.say(format!("Removed consumer {}.", self.key))?;
        Ok(OK)
    }
}

impl Rotate {
    async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        ctx.confirm(&format!(
            "Give consumer {} a new secret? Launches signed with the old one will be refused.",
            self.key
        ))?;
        let secret = secret::new_consumer_secret();
        if !app.store.set_consumer_secret(&self.key, &secret).await? {
            eprintln!("moocctl: no consumer {:?}", self.key);
            return Ok(ctx::not_found());
        }
        app.event(
            "info",
            "consumer-rotate",
            &format!("consumer {} secret rotated", self.key),
        )
        .await;
        print_secret(ctx, &self.key, Some(&secret), "Rotated")?;
        Ok(OK)
    }
}
