//! `tunneld status`, `tunneld reconnect` and `tunneld reload`: find the daemon's socket, send one
//! request, print the answer, and exit with a status scripts can use.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tunneld_control::{ErrorKind, ReconnectReply, ReloadReply, Request, StatusReply, decode_reply};

use super::{Env, candidates, human};
use crate::EXIT_CONFIG;

/// No daemon answered.
pub(crate) const EXIT_UNREACHABLE: u8 = 3;
/// The daemon refused the request (an unknown tunnel, most often).
const EXIT_REFUSED: u8 = 2;
/// A reload stops changed tunnels (waiting up to 5 s for each batch) before it answers.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Far more than any status of a real daemon; a reply is never buffered without end.
const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// Which daemon to ask.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The daemon of this configuration file, found by its socket's usual places.
    Config(PathBuf),
    /// This socket.
    Socket(PathBuf),
}

/// `tunneld status`: exit 0 when every tunnel (of those named) is up, 1 when some is not.
pub(crate) fn status(target: &Target, json: bool, tunnels: Vec<String>) -> ExitCode {
    let request = Request::Status { tunnels };
    let reply: StatusReply = match exchange(target, &request) {
        Ok(reply) => reply,
        Err(code) => return code,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        print!("{}", human::status(&reply, std::time::SystemTime::now()));
    }
    if reply.tunnels.iter().all(|t| t.state == "up") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `tunneld reconnect`.
pub(crate) fn reconnect(target: &Target, tunnels: Vec<String>) -> ExitCode {
    match exchange::<ReconnectReply>(target, &Request::Reconnect { tunnels }) {
        Ok(reply) => {
            println!("reconnecting: {}", reply.reconnected.join(", "));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `tunneld reload`: exit 78 (and nothing changed) when the file is invalid.
pub(crate) fn reload(target: &Target) -> ExitCode {
    match exchange::<ReloadReply>(target, &Request::Reload) {
        Ok(reply) => {
            print!("{}", human::reload(&reply));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The status of the daemon of `config_path`, when one answers; `None`, quietly, otherwise
/// (`tunneld check --connect` asks which remote ports it holds).
pub(crate) fn daemon_status(config_path: &Path) -> Option<StatusReply> {
    let config = tunneld_config::load(config_path).map_err(|e| e.to_string());
    let (paths, _) = candidates(
        config_path,
        config.as_ref().map_err(Clone::clone),
        &Env::current(),
    );
    paths.iter().find_map(|path| status_of(path))
}

/// The status of the daemon listening on `socket`, if it answers.
pub(crate) fn status_of(socket: &Path) -> Option<StatusReply> {
    let line = talk(socket, &Request::Status { tunnels: vec![] }).ok()?;
    decode_reply::<StatusReply>(&line).ok()?.ok()
}

/// Sends `request` to the first socket that answers and decodes the reply; prints what went
/// wrong and returns the exit status otherwise.
fn exchange<T: DeserializeOwned>(target: &Target, request: &Request) -> Result<T, ExitCode> {
    let (paths, note) = match target {
        Target::Socket(path) => (vec![path.clone()], None),
        Target::Config(config_path) => {
            let config = tunneld_config::load(config_path).map_err(|e| e.to_string());
            candidates(
                config_path,
                config.as_ref().map_err(Clone::clone),
                &Env::current(),
            )
        }
    };
    let mut tried = Vec::new();
    for path in &paths {
        match talk(path, request) {
            Ok(line) => return decode(path, &line),
            Err(err) => tried.push(format!("  {}: {err}", path.display())),
        }
    }
    let whose = match target {
        Target::Config(config) => format!(" for {}", config.display()),
        Target::Socket(_) => String::new(),
    };
    eprintln!(
        "tunneld: no daemon answers{whose}; tried:\n{}",
        tried.join("\n")
    );
    if let Some(note) = note {
        eprintln!("(its [daemon] control_socket is unknown: {note})");
    }
    Err(ExitCode::from(EXIT_UNREACHABLE))
}

/// One request and its reply line.
fn talk(path: &Path, request: &Request) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(request.to_line().as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REPLY)).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::other(
            "the daemon closed the connection without answering",
        ));
    }
    Ok(line)
}

fn decode<T: DeserializeOwned>(path: &Path, line: &str) -> Result<T, ExitCode> {
    match decode_reply::<T>(line) {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(refused)) => {
            eprintln!("tunneld: {}", refused.message);
            Err(ExitCode::from(match refused.kind {
                ErrorKind::Config => EXIT_CONFIG,
                _ => EXIT_REFUSED,
            }))
        }
        Err(err) => {
            eprintln!("tunneld: {}: {err}", path.display());
            Err(ExitCode::FAILURE)
        }
    }
}
