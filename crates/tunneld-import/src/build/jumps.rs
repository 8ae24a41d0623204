//! Jump hosts: `ProxyJump`, and a `ProxyCommand` that is `ssh -W %h:%p HOST`.

use super::{Builder, MAX_HOPS};
use crate::command::{self, Command};
use crate::evaluate::Options;
use crate::files::Line;
use crate::render::Item;
use crate::{ImportError, lexer, map};

impl Builder<'_> {
    /// The jump hosts of a host (entry names) and notes about them.
    pub(super) fn jumps(
        &mut self,
        options: &Options,
        depth: usize,
    ) -> Result<(Vec<String>, Vec<String>), ImportError> {
        let Some(line) = options
            .applied
            .iter()
            .find(|line| line.lower == "proxyjump" || line.lower == "proxycommand")
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        if line
            .args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case("none"))
        {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut hops: Vec<Command> = Vec::new();
        let mut notes = Vec::new();
        if line.lower == "proxyjump" {
            for element in line.args.join(",").split(',').filter(|e| !e.is_empty()) {
                let mut hop = Command::default();
                hop.destination(element, true)
                    .map_err(|message| ImportError::Line {
                        at: line.at.clone(),
                        message: format!("ProxyJump: {message}"),
                    })?;
                hops.push(hop);
            }
        } else {
            match proxy_command_hop(line) {
                Some(hop) => {
                    notes.extend(hop.notes.iter().map(|n| format!("ProxyCommand {n}")));
                    hops.push(hop);
                }
                None => {
                    notes.push(format!(
                        "{} ({}): not imported: tunneld never runs a command to reach a server; \
                         only ssh -W %h:%p HOST is understood (as jump)",
                        line.text(),
                        line.at
                    ));
                    return Ok((Vec::new(), notes));
                }
            }
        }
        if depth + hops.len() > MAX_HOPS {
            return Err(ImportError::Line {
                at: line.at.clone(),
                message: format!("a jump chain longer than {MAX_HOPS} hops"),
            });
        }
        let mut names = Vec::new();
        for (i, hop) in hops.into_iter().enumerate() {
            let options = self.options(&hop.host, hop.lines.clone())?;
            let mut mapped = map::host(&hop.host, &options, self.local);
            if mapped.forward_lines {
                mapped.host.push(Item::Comment(
                    "its forwards apply when it is the destination, not when it is a jump \
                     host (as in ssh); [tunnels] of its own carry them"
                        .to_owned(),
                ));
            }
            let name = self.entry(&hop.host, hop.lines, &options, mapped, (depth + 1, i == 0))?;
            names.push(name);
        }
        Ok((names, notes))
    }
}

/// The `ProxyJump` or `ProxyCommand` that applies (they share one setting in ssh, the first
/// wins); `None` also for `none`.
pub(super) fn proxy_line(options: &Options) -> Option<&Line> {
    options
        .applied
        .iter()
        .find(|line| line.lower == "proxyjump" || line.lower == "proxycommand")
        .filter(|line| {
            !line
                .args
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case("none"))
        })
}

/// `ProxyCommand ssh [options] -W %h:%p HOST` (or `[%h]:%p`, after `exec`) as a jump host.
fn proxy_command_hop(line: &Line) -> Option<Command> {
    let words = lexer::split_args(&line.args.join(" ")).ok()?;
    let words: Vec<String> = match words.first().map(String::as_str) {
        Some("exec") => words[1..].to_vec(),
        _ => words,
    };
    let mut hop = command::parse(&words).ok()?;
    let stdio = hop.stdio.as_deref()?;
    if !matches!(stdio, "%h:%p" | "[%h]:%p") || hop.remote_command {
        return None;
    }
    // Its options are said to come from the ProxyCommand, where the user wrote them.
    for option in &mut hop.lines {
        let flag = option.at.trim_start_matches("command line ");
        option.at = format!("{flag} in the ProxyCommand at {}", line.at);
    }
    Some(hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(command: &str) -> Option<(String, Vec<String>)> {
        let line = Line {
            at: "config:7".to_owned(),
            keyword: "ProxyCommand".to_owned(),
            lower: "proxycommand".to_owned(),
            args: lexer::split_args(command).unwrap_or_default(),
        };
        let hop = proxy_command_hop(&line)?;
        let lines = hop
            .lines
            .iter()
            .map(|l| format!("{} ({})", l.text(), l.at))
            .collect();
        Some((hop.host, lines))
    }

    #[test]
    fn ssh_w_is_a_jump_and_nothing_else_is() {
        assert_eq!(hop("ssh -W %h:%p gw"), Some(("gw".to_owned(), vec![])));
        assert_eq!(
            hop("exec /usr/bin/ssh -q -p 2222 -W [%h]:%p admin@gw"),
            Some((
                "gw".to_owned(),
                vec![
                    "LogLevel QUIET (-q in the ProxyCommand at config:7)".to_owned(),
                    "Port 2222 (-p 2222 in the ProxyCommand at config:7)".to_owned(),
                    "User admin (destination admin@gw in the ProxyCommand at config:7)".to_owned(),
                ]
            ))
        );
        assert_eq!(
            hop("ssh gw -W %h:%p").map(|(host, _)| host).as_deref(),
            Some("gw")
        );
        for other in [
            "nc -X connect -x proxy:3128 %h %p",
            "ssh -W %h:22 gw",
            "ssh gw nc %h %p",
            "ssh -W %h:%p gw uptime",
            "sh -c 'ssh -W %h:%p gw'",
            "ssh -W %h:%p",
        ] {
            assert_eq!(hop(other), None, "{other}");
        }
    }
}
