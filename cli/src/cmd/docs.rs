//! `completions` and `man`: generated from the clap definition, so they never drift.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Exit;

pub fn completions(shell: Shell) -> anyhow::Result<Exit> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "emsctl", &mut out);
    crate::output::emit(&String::from_utf8_lossy(&out));
    Ok(Exit::Success)
}

/// The top page to stdout, or `emsctl.1` and `emsctl-<sub>.1` pages into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<Exit> {
    let command = Cli::command();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(command).render(&mut out)?;
        crate::output::emit(&String::from_utf8_lossy(&out));
        return Ok(Exit::Success);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    Ok(Exit::Success)
}
