//! `moocctl generate man DIR|completions SHELL` (hidden): man pages (one per command, for both
//! binaries) and shell completions, generated from the same definitions as `--help`. The man pages
//! are committed in `man/man1/`, and a test fails when they are out of date.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Command, CommandFactory, Subcommand};

use crate::ctx::OK;

#[derive(Debug, Subcommand)]
pub enum GenerateCmd {
    /// Write man pages for moocctl, its subcommands and mooc-lti into DIR
    Man { dir: PathBuf },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
}

impl GenerateCmd {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            GenerateCmd::Man { dir } => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                write_pages(&crate::Cli::command(), &dir)?;
                write_pages(&mooc_lti::cli::ServerArgs::command(), &dir)?;
                Ok(OK)
            }
            GenerateCmd::Completions { shell } => {
                let mut cmd = crate::Cli::command();
                clap_complete::generate(shell, &mut cmd, "moocctl", &mut std::io::stdout());
                Ok(OK)
            }
        }
    }
}

/// Writes the page of `cmd` and, recursively, of each visible subcommand (`moocctl-pool-warm.1`).
fn write_pages(cmd: &Command, dir: &Path) -> anyhow::Result<()> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    write_tree(&cmd, cmd.get_name(), dir)
}

fn write_tree(cmd: &Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let page = cmd.clone().name(name.to_owned());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
