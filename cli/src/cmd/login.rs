//! `login` and `logout`: the token goes into the config file, never onto a command line.
//!
//! `login` reads the token at a prompt without echo (or one line of stdin with
//! `--token-stdin`), asks the server who it belongs to (`GET /api/v1/whoami`, and the device
//! when one is saved), and only then rewrites the config file, keeping the keys it does not
//! change. A refused token or an unreachable URL writes nothing.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::checked_id;
use crate::cli::{Format, Global, Login};
use crate::client::Api;
use crate::config_file;
use crate::exit::{Exit, Failure};
use crate::output;
use crate::settings::{self, FileKeys, Settings};

/// `GET /api/v1/whoami`: the token's name and role.
#[derive(Debug, Deserialize)]
struct WhoAmI {
    name: String,
    role: String,
}

/// `--output json` shape of `login`.
#[derive(Serialize)]
struct LoginJson<'a> {
    url: &'a str,
    name: &'a str,
    role: &'a str,
    device: Option<&'a str>,
    config_file: &'a Path,
}

pub async fn login(global: &Global, args: &Login) -> anyhow::Result<Exit> {
    if global.token.is_some() {
        return Err(Failure::usage("login does not take --token")
            .hint("a token on the command line ends up in the shell history and the process list; type it at the prompt or pass --token-stdin")
            .into());
    }
    let path = settings::config_path(global).ok_or_else(|| {
        Failure::usage("no place for the config file: neither HOME nor XDG_CONFIG_HOME is set")
            .hint("name one with --config FILE or EMSCTL_CONFIG")
    })?;
    let target = config_file::real_target(&path);
    let mut keys = existing(&target)?;

    let url = global
        .url
        .clone()
        .or_else(|| std::env::var("EMS_URL").ok().filter(|u| !u.is_empty()))
        .or_else(|| keys.url.clone())
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            Failure::usage("no server URL given").hint("emsctl login --url https://…")
        })?;
    if let Some(device) = &global.device {
        keys.device = Some(checked_id("device", device)?);
    }
    if let Some(ca) = &global.ca_file {
        // The file resolves a relative path against its own directory: save it absolute.
        let absolute = std::path::absolute(ca)
            .map_err(|e| Failure::usage(format!("--ca-file {}: {e}", ca.display())))?;
        keys.ca_file = Some(absolute);
    }
    let token = read_token(args.token_stdin, &url).await?;

    // Check before saving anything.
    let ca_file = keys.ca_file.as_ref().map(|p| match target.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.clone(),
    });
    let check = Settings {
        url: Some(url.clone()),
        token: Some(token.clone()),
        device: keys.device.clone(),
        ca_file,
        config_file: None,
    };
    let api = Api::new(&check)?;
    let nothing = "nothing was written";
    let who: WhoAmI = api.get("/whoami", &[]).await.map_err(|f| {
        let hint = if f.message.starts_with("authentication failed") {
            "is it an API token (emsa_…) of this server, and not expired or revoked?".to_string()
        } else {
            f.hint.clone().unwrap_or_default()
        };
        Failure {
            hint: Some(format!("{nothing}; {hint}")),
            ..f
        }
    })?;
    if let Some(device) = &keys.device {
        let _: serde_json::Value =
            api.get(&format!("/devices/{device}"), &[])
                .await
                .map_err(|f| Failure {
                    hint: Some(format!(
                        "{nothing}; the token does not see device {device}: pass another --device"
                    )),
                    ..f
                })?;
    }

    keys.url = Some(url.clone());
    keys.token = Some(token);
    config_file::write_private(&target, &config_file::render(&keys))?;
    match global.output {
        Format::Json => output::print_json(&LoginJson {
            url: &url,
            name: &who.name,
            role: &who.role,
            device: keys.device.as_deref(),
            config_file: &path,
        }),
        _ => output::emit(&format!(
            "logged in to {url} as {} ({}); saved to {}\n",
            who.name,
            who.role,
            path.display()
        )),
    }
    if std::env::var_os("EMS_TOKEN").is_some_and(|t| !t.is_empty()) {
        eprintln!("note: EMS_TOKEN is set in this shell and is used instead of the saved token");
    }
    Ok(Exit::Success)
}

pub fn logout(global: &Global) -> anyhow::Result<Exit> {
    let Some(path) = settings::config_path(global) else {
        output::emit("not logged in: no config file\n");
        return Ok(Exit::Success);
    };
    let target = config_file::real_target(&path);
    let mut keys = existing(&target)?;
    if keys.token.take().is_none() {
        output::emit(&format!("not logged in: no token in {}\n", path.display()));
        return Ok(Exit::Success);
    }
    config_file::write_private(&target, &config_file::render(&keys))?;
    output::emit(&format!("removed the token from {}\n", path.display()));
    Ok(Exit::Success)
}

/// The file's keys, or none when there is no file yet.
fn existing(path: &Path) -> Result<FileKeys, Failure> {
    if path.exists() {
        settings::read_file(path)
    } else {
        Ok(FileKeys::default())
    }
}

/// One line of stdin (`--token-stdin`), or the answer to a prompt typed without echo.
async fn read_token(from_stdin: bool, url: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let line = if from_stdin {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("reading the token from stdin: {e}")))?;
        line
    } else if stdin.is_terminal() {
        prompt_hidden(&format!("API token for {url}: ")).await?
    } else {
        return Err(Failure::usage("stdin is not a terminal, so there is no prompt for the token")
            .hint("pass it on stdin with --token-stdin, e.g. `emsctl login --token-stdin < token-file`"));
    };
    let token = line.trim();
    if token.is_empty() {
        return Err(Failure::usage("no token given; nothing was written"));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(
            Failure::usage("the token has spaces in it; nothing was written")
                .hint("an API token is one word, emsa_ followed by 43 characters"),
        );
    }
    Ok(token.to_string())
}

/// Asks on stderr and reads a line from the terminal with echo off (`stty -echo`); Ctrl-C
/// restores the echo before emsctl stops.
async fn prompt_hidden(prompt: &str) -> Result<String, Failure> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(Stdio::inherit())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // Echo off before the prompt shows: what is typed after it is never echoed.
    let hidden = stty("-echo");
    if !hidden {
        eprintln!("warning: cannot turn the terminal's echo off (stty); the token will be visible");
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // A thread of its own: a blocked read must not keep the runtime from ending on Ctrl-C.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    let answer = tokio::select! {
        read = rx => read.map_err(|_| Failure::usage("the prompt ended")).and_then(|r| {
            r.map_err(|e| Failure::usage(format!("reading the token: {e}")))
        }),
        _ = tokio::signal::ctrl_c() => Err(Failure::new(Exit::Failed, "interrupted; nothing was written")),
    };
    if hidden {
        stty("echo");
    }
    eprintln!();
    answer
}
