//! Documents made from the clap definitions themselves, so they cannot drift
//! from `--help`: shell completion scripts and manual pages. Needs no settings,
//! catalog or broker: it runs before the configuration is read.

use std::{io::Write, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::{Cli, Command};

/// `landlord man`: where the pages go.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write landlord.1 and one landlord-<command>.1 per subcommand into DIR
    /// (created if needed) instead of printing landlord.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Runs `completions` and `man`; `None` for every other command.
pub fn run(command: &Command) -> Option<ExitCode> {
    let res = match command {
        Command::Completions { shell } => completions(*shell),
        Command::Man(a) => match &a.dir {
            None => man_page(&mut std::io::stdout().lock()),
            Some(dir) => man_pages(dir),
        },
        _ => return None,
    };
    Some(match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(super::EXIT_FAILED)
        }
    })
}

fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "landlord", &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the completion script")
}

fn man_page(out: &mut dyn Write) -> Result<()> {
    clap_mangen::Man::new(Cli::command())
        .render(out)
        .context("writing the manual page")
}

/// landlord.1 and one page per subcommand at every depth
/// (landlord-tenants-create.1 …), each naming its full command line.
fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = 0;
    write_pages(&cmd, "landlord", dir, &mut written)?;
    eprintln!("{written} manual pages written to {}", dir.display());
    Ok(())
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, written: &mut usize) -> Result<()> {
    let path = dir.join(format!("{name}.1"));
    let page = cmd.clone().name(name.to_string());
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    clap_mangen::Man::new(page)
        .render(&mut file)
        .with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
