//! An `ssh` (or `autossh`) command line as the option lines it stands for, in ssh's order of
//! precedence: options as given, then the user and port of the destination. `-L 5432:db:5432`
//! is `LocalForward 5432:db:5432`, `-o "ServerAliveInterval 30"` is that line, and so on, so
//! that the config's mapping does the rest. Flags without an ssh_config keyword, autossh's own
//! options, environment settings and a remote command become notes.

use crate::files::Line;
use crate::lexer;

/// OpenSSH's flags that take an argument (`ssh`'s getopt string).
const WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOoPpQRSWw";
/// OpenSSH's flags that take none.
const WITHOUT_ARGUMENT: &str = "1246AaCfGgKkMNnqsTtVvXxYy";

/// A parsed command line.
#[derive(Debug, Default)]
pub(crate) struct Command {
    /// The option lines, first wins.
    pub(crate) lines: Vec<Line>,
    /// The destination's host name (or alias).
    pub(crate) host: String,
    /// What was on the command line but has no option line: comments for the output.
    pub(crate) notes: Vec<String>,
    /// `-W host:port`: ssh as a ProxyCommand, forwarding its standard input and output.
    pub(crate) stdio: Option<String>,
    /// Whether a remote command follows the destination.
    pub(crate) remote_command: bool,
}

/// Parses `args`, `args[0]` being `ssh` or `autossh` (any path), possibly after `env` and
/// `NAME=value` words. A single argument is a whole line, split as a shell or systemd would
/// (`ExecStart=` and its prefixes, and `\` line continuations, allowed).
pub(crate) fn parse(args: &[String]) -> Result<Command, String> {
    let mut args = match args {
        [line] if line.contains(char::is_whitespace) => {
            lexer::split_args(&line.replace("\\\n", " "))
                .map_err(|err| format!("{line:?}: {err}"))?
        }
        _ => args.to_vec(),
    };
    if let Some(first) = args.first_mut()
        && let Some(program) = first.strip_prefix("ExecStart=")
    {
        *first = program
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .to_owned();
        if first.is_empty() {
            args.remove(0);
        }
    }
    let mut command = Command::default();
    let mut rest = args.iter().peekable();
    while let Some(word) = rest.next_if(|w| *w == "env" || w.ends_with("/env") || is_env(w)) {
        if is_env(word) {
            let why = if word.starts_with("AUTOSSH_") {
                "autossh's own setting; tunneld reconnects by itself (backoff_min, backoff_max, \
                 keepalive_interval)"
            } else {
                "an environment setting, not imported"
            };
            command.notes.push(format!("{word}: {why}"));
        }
    }
    let program = rest
        .next()
        .ok_or("expected an ssh or autossh command line")?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let autossh = match base {
        "ssh" => false,
        "autossh" => true,
        _ => return Err(format!("{program:?} is not ssh or autossh")),
    };
    let args: Vec<&String> = rest.collect();
    let mut i = 0;
    let mut destination: Option<&str> = None;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if arg == "--" {
            if destination.is_none() {
                destination = args.get(i).map(|s| s.as_str());
                i += 1;
            }
            break;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            if destination.is_some() {
                i -= 1;
                break;
            }
            destination = Some(arg);
            continue;
        };
        for (at, flag) in flags.char_indices() {
            let own = autossh && matches!(flag, 'M' | 'f' | 'V');
            if WITH_ARGUMENT.contains(flag) || (autossh && flag == 'M') {
                let attached = &flags[at + flag.len_utf8()..];
                let value = if attached.is_empty() {
                    i += 1;
                    args.get(i - 1)
                        .map(|s| s.as_str())
                        .ok_or_else(|| format!("-{flag} needs an argument"))?
                } else {
                    attached
                };
                if own {
                    command.notes.push(format!(
                        "autossh -M {value}: autossh's monitoring; tunneld probes the \
                         connection itself (keepalive_interval, keepalive_max)"
                    ));
                } else {
                    command.option(flag, Some(value))?;
                }
                break;
            } else if own {
                command
                    .notes
                    .push(format!("autossh -{flag}: autossh's own option, not needed"));
            } else if WITHOUT_ARGUMENT.contains(flag) {
                command.option(flag, None)?;
            } else {
                return Err(format!("unknown option -{flag}"));
            }
        }
    }
    let destination = destination.ok_or("no destination ([user@]host) on the command line")?;
    let remote: Vec<&str> = args[i.min(args.len())..]
        .iter()
        .map(|s| s.as_str())
        .collect();
    if !remote.is_empty() {
        command.remote_command = true;
        command.notes.push(format!(
            "remote command {:?}: not imported: tunneld never runs a command on the server",
            remote.join(" ")
        ));
    }
    command.destination(destination, false)?;
    Ok(command)
}

fn is_env(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

impl Command {
    fn line(&mut self, at: String, keyword: &str, args: &[&str]) {
        self.lines.push(Line {
            at,
            keyword: keyword.to_owned(),
            lower: keyword.to_ascii_lowercase(),
            args: args.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// One flag: the option line it stands for, or a note.
    fn option(&mut self, flag: char, value: Option<&str>) -> Result<(), String> {
        let at = match value {
            Some(value) => format!("command line -{flag} {value}"),
            None => format!("command line -{flag}"),
        };
        let v = value.unwrap_or_default();
        let (keyword, arg) = match flag {
            'o' => {
                let (keyword, args) = lexer::split_line(v)
                    .map_err(|err| format!("-o {v:?}: {err}"))?
                    .ok_or_else(|| format!("-o {v:?}: no option"))?;
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.line(at, &keyword, &args);
                return Ok(());
            }
            'L' => ("LocalForward", v),
            'R' => ("RemoteForward", v),
            'D' => ("DynamicForward", v),
            'p' => ("Port", v),
            'l' => ("User", v),
            'i' => ("IdentityFile", v),
            'J' => ("ProxyJump", v),
            'c' => ("Ciphers", v),
            'C' => ("Compression", "yes"),
            'm' => ("MACs", v),
            'b' => ("BindAddress", v),
            'B' => ("BindInterface", v),
            'e' => ("EscapeChar", v),
            'I' => ("PKCS11Provider", v),
            'P' => ("Tag", v),
            'S' => ("ControlPath", v),
            'w' => ("Tunnel", v),
            '4' => ("AddressFamily", "inet"),
            '6' => ("AddressFamily", "inet6"),
            'A' => ("ForwardAgent", "yes"),
            'a' => ("ForwardAgent", "no"),
            'X' => ("ForwardX11", "yes"),
            'x' => ("ForwardX11", "no"),
            'Y' => ("ForwardX11Trusted", "yes"),
            'f' => ("ForkAfterAuthentication", "yes"),
            'g' => ("GatewayPorts", "yes"),
            'K' => ("GSSAPIAuthentication", "yes"),
            'k' => ("GSSAPIDelegateCredentials", "no"),
            'M' => ("ControlMaster", "yes"),
            'N' => ("SessionType", "none"),
            's' => ("SessionType", "subsystem"),
            'n' => ("StdinNull", "yes"),
            'q' => ("LogLevel", "QUIET"),
            'v' => ("LogLevel", "DEBUG"),
            'T' => ("RequestTTY", "no"),
            't' => ("RequestTTY", "yes"),
            'W' => {
                self.stdio = Some(v.to_owned());
                return Ok(());
            }
            'F' => {
                self.notes.push(format!(
                    "-F {v}: not read; import its hosts with tunneld import-ssh-config --file {v}"
                ));
                return Ok(());
            }
            _ => {
                self.notes
                    .push(format!("{at}: not imported: tunneld has no equivalent"));
                return Ok(());
            }
        };
        self.line(at, keyword, &[arg]);
        Ok(())
    }

    /// `[user@]host` or `ssh://[user@]host[:port]`: the host, and `User`/`Port` lines after
    /// the options (which win over them, as in ssh).
    pub(crate) fn destination(&mut self, text: &str, jump: bool) -> Result<(), String> {
        let at = format!("command line destination {text}");
        let (user, host, port) = match text.strip_prefix("ssh://") {
            Some(url) => {
                let url = url.strip_suffix('/').unwrap_or(url);
                let (user, hostport) = match url.rsplit_once('@') {
                    Some((user, hostport)) => (Some(user), hostport),
                    None => (None, url),
                };
                let (host, port) = split_port(hostport)
                    .ok_or_else(|| format!("{text:?} is not ssh://[user@]host[:port]"))?;
                (user, host, port)
            }
            None => {
                let (user, host) = match text.rsplit_once('@') {
                    Some((user, host)) => (Some(user), host),
                    None => (None, text),
                };
                // A ProxyJump hop (`[user@]host[:port]`) carries its port; ssh's destination
                // does not.
                if jump {
                    let (host, port) = split_port(host)
                        .ok_or_else(|| format!("{text:?} is not [user@]host[:port]"))?;
                    (user, host, port)
                } else {
                    (user, host, None)
                }
            }
        };
        if host.is_empty() || user == Some("") {
            return Err(format!("{text:?} is not [user@]host"));
        }
        self.host = host.to_owned();
        if let Some(user) = user {
            self.line(at.clone(), "User", &[user]);
        }
        if let Some(port) = port {
            self.line(at, "Port", &[port]);
        }
        Ok(())
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match text.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((text, None)),
    }
}

#[cfg(test)]
mod tests;
