//! Judging what the file leaves to `tunneld check` ([`Finding`]): a name close to a `[hosts]`
//! entry is an error when it does not resolve and a warning when it does; remote forwards on one
//! port are an error when their tunnels reach one server, found by resolving the first hop.
//!
//! The caller resolves names (`tunneld check` asks this machine's resolver), so that judging
//! stays pure: the same findings and answers give the same verdicts, which the tests and the
//! fuzz target rely on.

use std::net::IpAddr;
use std::path::Path;

use crate::findings::{
    Finding, GatewayPorts, NearHostName, RemotePortClash, ResolvedBy, describe_route as describe,
};

/// Resolves a host name as tunneld would when it dials it: its addresses, empty when it does not
/// resolve.
pub type Resolve<'a> = dyn FnMut(&str) -> Vec<IpAddr> + 'a;

/// What `tunneld check` says about the findings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Lines for stderr; each fails the check.
    pub problems: Vec<String>,
    /// Warning lines, each with the tunnel it is printed under (`None`: after the tunnels).
    pub warnings: Vec<(Option<String>, String)>,
}

/// Judges `findings` of the file at `path`, resolving names with `lookup`.
pub fn judge(path: &Path, findings: &[Finding], lookup: &mut Resolve<'_>) -> Verdicts {
    let mut verdicts = Verdicts::default();
    for finding in findings {
        let place = format!("{}:{}", path.display(), finding.at());
        let tunnel = finding.tunnel().map(str::to_owned);
        match finding {
            Finding::ListenerClash { message, .. } => {
                verdicts.problems.push(format!("{place}: {message}"));
            }
            Finding::NearHostName(near) => match near_host_name(near, lookup) {
                Ok(warning) => verdicts
                    .warnings
                    .push((tunnel, format!("{place}: {warning}"))),
                Err(problem) => verdicts.problems.push(format!("{place}: {problem}")),
            },
            Finding::RemotePort(clash) => match remote_port(clash, lookup) {
                None => {}
                Some(Ok(warning)) => {
                    verdicts
                        .warnings
                        .push((tunnel, format!("{place}: {warning}")));
                }
                Some(Err(problem)) => verdicts.problems.push(format!("{place}: {problem}")),
            },
        }
    }
    verdicts
}

/// A warning, or (`Err`) a problem: the name does not resolve where tunneld resolves it.
fn near_host_name(near: &NearHostName, lookup: &mut Resolve<'_>) -> Result<String, String> {
    let (written, suggestion) = (&near.written, &near.suggestion);
    let not_entry = format!("{written:?} is not a [hosts] name");
    match near.resolved_by {
        ResolvedBy::ThisMachine if lookup(written).is_empty() => Err(format!(
            "{not_entry}, and it does not resolve as a host name: did you mean {suggestion}? \
             (expected a [hosts] name, or a host name that resolves)"
        )),
        ResolvedBy::ThisMachine => Ok(format!(
            "{not_entry}, so it is dialled as a host name (it resolves): did you mean \
             {suggestion}?"
        )),
        ResolvedBy::JumpHost => Ok(format!(
            "{not_entry}, so it is dialled as a host name, which the jump host before it \
             resolves: did you mean {suggestion}?"
        )),
        ResolvedBy::Nobody => Ok(format!(
            "{not_entry}, so it is a host name (no tunnel dials it): did you mean {suggestion}?"
        )),
    }
}

/// `None` when the two forwards are on different servers; else a warning, or (`Err`) a problem
/// when they clash whatever the server's `GatewayPorts`.
fn remote_port(
    clash: &RemotePortClash,
    lookup: &mut Resolve<'_>,
) -> Option<Result<String, String>> {
    let server = same_server(clash, lookup)?;
    let other = if clash.tunnel == clash.other_tunnel {
        format!(
            "{} of the same tunnel at {}",
            clash.other_address, clash.other_key
        )
    } else {
        format!(
            "{} of tunnel {} at {}",
            clash.other_address, clash.other_tunnel, clash.other_key
        )
    };
    let this = format!("remote port {} of tunnel {}", clash.address, clash.tunnel);
    if clash.clashes_when.len() == GatewayPorts::ALL.len() {
        return Some(Err(format!(
            "{this} clashes with {other} on one server ({server}); it listens there for one of \
             them only, and refuses the other at every attempt, which looks like \"still held \
             by a previous session\" (expected a different port, or 0 for one the server \
             picks)"
        )));
    }
    let fine_when: Vec<String> = GatewayPorts::ALL
        .into_iter()
        .filter(|mode| !clash.clashes_when.contains(mode))
        .map(|mode| mode.to_string())
        .collect();
    Some(Ok(format!(
        "{this} and {other} ask one server ({server}) for the same port: it can listen for both \
         only if its GatewayPorts is {}",
        fine_when.join(" or ")
    )))
}

/// How the two routes are known to reach one server, in words; `None` if they are not.
fn same_server(clash: &RemotePortClash, lookup: &mut Resolve<'_>) -> Option<String> {
    if clash.same_route {
        return Some(describe(&clash.route));
    }
    let (first, rest) = clash.route.split_first()?;
    let (other_first, other_rest) = clash.other_route.split_first()?;
    if first.1 != other_first.1 || rest != other_rest {
        return None;
    }
    let addresses = lookup(&first.0);
    let common = lookup(&other_first.0)
        .into_iter()
        .find(|address| addresses.contains(address))?;
    Some(format!(
        "{} and {} resolve to {common}",
        describe(&clash.route),
        describe(&clash.other_route)
    ))
}

#[cfg(test)]
mod tests {
    use crate::{Environment, parse_with_findings};

    use super::*;

    /// A resolver as this machine's usually answers: addresses are themselves, `localhost` is
    /// both loopback addresses, and nothing else resolves (the tests' other names end in
    /// `.invalid`).
    fn resolve(host: &str) -> Vec<IpAddr> {
        match host.parse::<IpAddr>() {
            Ok(address) => vec![address],
            Err(_) if host.eq_ignore_ascii_case("localhost") => {
                vec![
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                ]
            }
            Err(_) => Vec::new(),
        }
    }

    /// The verdicts on `text`, with names resolved by [`resolve`].
    fn verdicts(text: &str) -> Verdicts {
        let env = Environment {
            user: "runner".to_owned(),
        };
        let path = Path::new("t.toml");
        let (_, findings) = parse_with_findings(path, text, &env).expect("loads");
        judge(path, &findings, &mut resolve)
    }

    fn warning(tunnel: Option<&str>, text: &str) -> (Option<String>, String) {
        (tunnel.map(str::to_owned), text.to_owned())
    }

    #[test]
    fn a_near_name_is_an_error_only_where_it_is_resolved_and_does_not() {
        let text = "[defaults]\nuse_agent = true\n\
                    [hosts.\"bastion.invalid\"]\nhostname = \"127.0.0.1\"\n\
                    [hosts.localhost6]\nhostname = \"::1\"\n\
                    [hosts.spare]\njump = [\"bastoin.invalid\"]\n\
                    [tunnels.a]\nhost = \"127.0.0.1\"\njump = [\"bastoin.invalid\"]\nlocal = [\"1:x:1\"]\n\
                    [tunnels.b]\nhost = \"localhost\"\nlocal = [\"2:x:1\"]\n\
                    [tunnels.c]\nhost = \"bastoin.invalid\"\njump = [\"127.0.0.1\"]\nlocal = [\"3:x:1\"]\n";
        let not_entry = |name: &str| format!("{name:?} is not a [hosts] name");
        assert_eq!(
            verdicts(text),
            Verdicts {
                problems: vec![format!(
                    "t.toml:11:9: tunnels.a.jump[0]: {}, and it does not resolve as a host name: \
                     did you mean bastion.invalid? (expected a [hosts] name, or a host name that \
                     resolves)",
                    not_entry("bastoin.invalid")
                )],
                warnings: vec![
                    warning(
                        None,
                        &format!(
                            "t.toml:8:9: hosts.spare.jump[0]: {}, so it is a host name (no tunnel \
                             dials it): did you mean bastion.invalid?",
                            not_entry("bastoin.invalid")
                        )
                    ),
                    warning(
                        Some("b"),
                        &format!(
                            "t.toml:14:8: tunnels.b.host: {}, so it is dialled as a host name (it \
                             resolves): did you mean localhost6?",
                            not_entry("localhost")
                        )
                    ),
                    warning(
                        Some("c"),
                        &format!(
                            "t.toml:17:8: tunnels.c.host: {}, so it is dialled as a host name, \
                             which the jump host before it resolves: did you mean bastion.invalid?",
                            not_entry("bastoin.invalid")
                        )
                    ),
                ],
            }
        );
    }

    #[test]
    fn remote_ports_clash_when_the_names_are_one_server() {
        let text = "[defaults]\nuse_agent = true\n\
                    [tunnels.a]\nhost = \"localhost\"\nremote = [\"9000:localhost:3000\"]\n\
                    [tunnels.b]\nhost = \"127.0.0.1\"\nremote = [\"9000:localhost:3000\"]\n\
                    [tunnels.c]\nhost = \"localhost:2222\"\nremote = [\"9000:localhost:3000\"]\n\
                    [tunnels.d]\nhost = \"other.invalid\"\nremote = [\"9000:localhost:3000\"]\n\
                    [tunnels.e]\nhost = \"127.0.0.1\"\n\
                    remote = [\"127.0.0.1:9001:localhost:1\", \"[::1]:9001:localhost:1\"]\n";
        assert_eq!(
            verdicts(text),
            Verdicts {
                problems: vec![
                    "t.toml:8:11: tunnels.b.remote[0]: remote port localhost:9000 of tunnel b \
                     clashes with localhost:9000 of tunnel a at tunnels.a.remote[0] on one server \
                     (127.0.0.1:22 and localhost:22 resolve to 127.0.0.1); it listens there for \
                     one of them only, and refuses the other at every attempt, which looks like \
                     \"still held by a previous session\" (expected a different port, or 0 for \
                     one the server picks)"
                        .to_owned()
                ],
                warnings: vec![warning(
                    Some("e"),
                    "t.toml:17:41: tunnels.e.remote[1]: remote port [::1]:9001 of tunnel e and \
                     127.0.0.1:9001 of the same tunnel at tunnels.e.remote[0] ask one server \
                     (127.0.0.1:22) for the same port: it can listen for both only if its \
                     GatewayPorts is no or clientspecified"
                )],
            }
        );
    }
}
