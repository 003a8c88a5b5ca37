//! What every subcommand shares: the global flags, the configuration and application (opened on
//! first use), output helpers (tables, JSON, times) and confirmation of destructive actions.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};
use mooc_lti::app::App;
use mooc_lti::config::{Config, DatabaseUrl};
use serde::Serialize;
use tokio::sync::OnceCell;

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file [default: $MOOC_CONFIG, else ./pool.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables (read commands); stdout then carries JSON only
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not ask before destructive actions (required when stdin is not a terminal)
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Print only errors and requested data
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Act as this identity (e.g. a Shibboleth eppn in automation) [default: $SUDO_USER, else $USER]
    #[arg(long = "as", global = true, value_name = "IDENTITY")]
    pub as_identity: Option<String>,
}

pub struct Ctx {
    pub global: Global,
    app: OnceCell<Arc<App>>,
}

pub const OK: ExitCode = ExitCode::SUCCESS;

/// Exit code 1: nothing matched, or a check failed.
pub fn not_found() -> ExitCode {
    ExitCode::from(1)
}

impl Ctx {
    pub fn new(global: Global) -> Ctx {
        Ctx {
            global,
            app: OnceCell::new(),
        }
    }

    /// The configuration, database and Docker clients, opened once.
    pub async fn app(&self) -> anyhow::Result<&Arc<App>> {
        self.app
            .get_or_try_init(|| async {
                let config = Config::load(self.global.config.as_deref())?;
                let app = App::open(config, &self.actor()).await?;
                Ok::<_, anyhow::Error>(Arc::new(app))
            })
            .await
    }

    /// Prints a line of human output (suppressed by `--quiet` and in JSON mode).
    pub fn say(&self, line: impl AsRef<str>) -> anyhow::Result<()> {
        if self.global.quiet || self.global.json {
            return Ok(());
        }
        writeln!(std::io::stdout().lock(), "{}", line.as_ref())?;
        Ok(())
    }

    /// Prints data: the value as JSON with `--json`, else the table.
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        table: impl FnOnce() -> Table,
    ) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.global.json {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", table())?;
        }
        Ok(())
    }

    /// Asks before a destructive action: a prompt on a terminal, else `--yes` is required.
    pub fn confirm(&self, question: &str) -> anyhow::Result<()> {
        if self.global.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            bail!(
                "refusing without --yes: {question} (stdin is not a terminal, so there is no one to ask)"
            );
        }
        let yes = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .context("cannot read the answer")?;
        if !yes {
            bail!("cancelled");
        }
        Ok(())
    }
}

impl Ctx {
    /// Who is acting: `--as`, else `SUDO_USER` (the admin behind sudo), else `USER`/`LOGNAME`
    /// (cron sets `LOGNAME`).
    pub fn actor(&self) -> String {
        if let Some(who) = self
            .global
            .as_identity
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            return who.to_owned();
        }
        ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .or_else(login_name)
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The login name of this process's user, from /proc and /etc/passwd (for environments that set
/// no USER, such as some cron daemons and containers).
fn login_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut fields = l.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// The command line as the audit trail records it: secrets given as arguments are replaced by `***`
/// (the value of `--secret`, and the password of any URL, such as `db copy --to postgres://u:pw@…`).
pub fn redacted_command_line() -> String {
    redact_args(std::env::args().skip(1))
}

fn redact_args(args: impl Iterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".into());
            hide_next = false;
        } else if arg == "--secret" {
            out.push(arg);
            hide_next = true;
        } else if arg.starts_with("--secret=") {
            out.push("--secret=***".into());
        } else if let Some((flag, value)) = arg.split_once('=').filter(|(f, _)| f.starts_with("--"))
        {
            out.push(format!(
                "{flag}={}",
                DatabaseUrl(value.to_owned()).redacted()
            ));
        } else {
            out.push(DatabaseUrl(arg).redacted());
        }
    }
    out.join(" ")
}

/// A table sized to the terminal, plain when output is not a terminal.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        t.load_style(presets::NOTHING);
        t.set_content_arrangement(ContentArrangement::Disabled);
    } else {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    }
    t.set_header(header.to_vec());
    t
}

/// A stored time (UTC seconds) as RFC 3339.
pub fn time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// True when the error is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

#[cfg(test)]
mod tests {
    use super::redact_args;

    fn redact(args: &[&str]) -> String {
        redact_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn secrets_and_url_passwords_never_reach_the_audit_trail() {
        assert_eq!(
            redact(&["consumer", "add", "k", "--secret", "s3cr3t"]),
            "consumer add k --secret ***"
        );
        assert_eq!(
            redact(&["consumer", "add", "k", "--secret=s3cr3t"]),
            "consumer add k --secret=***"
        );
        let copied = redact(&[
            "db",
            "copy",
            "--to",
            "postgres://mooc:pw123@db.example/mooc",
        ]);
        assert!(!copied.contains("pw123"), "{copied}");
        assert!(
            copied.contains("postgres://mooc:***@db.example/mooc"),
            "{copied}"
        );
        let inline = redact(&["db", "copy", "--to=postgres://mooc:pw123@db.example/mooc"]);
        assert!(!inline.contains("pw123"), "{inline}");
        assert!(
            inline.starts_with("db copy --to=postgres://mooc:***@"),
            "{inline}"
        );
        assert_eq!(
            redact(&["users", "purge", "learner-1", "--yes"]),
            "users purge learner-1 --yes"
        );
    }
}
