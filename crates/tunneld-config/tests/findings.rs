//! What a file that loads still leaves to `tunneld check`, and where each finding is written.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests; a panic is a failed test"
)]

use std::path::Path;

use tunneld_config::{
    Environment, Finding, GatewayPorts, Location, NearHostName, RemotePortClash, ResolvedBy,
    parse_with_findings,
};

fn findings(text: &str) -> Vec<Finding> {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let (_, findings) =
        parse_with_findings(Path::new("db.toml"), text, &env).unwrap_or_else(|e| panic!("{e}"));
    findings
}

fn at(line: usize, column: usize, key: &str) -> Location {
    Location {
        line,
        column,
        key: key.to_owned(),
    }
}

#[test]
fn names_close_to_a_hosts_entry() {
    let text = "[defaults]\nuse_agent = true\n\
                [hosts.bastion]\nhostname = \"bastion.example.com\"\n\
                [hosts.db-server]\nhostname = \"192.168.1.50\"\njump = [\"bastoin\"]\n\
                [hosts.spare]\njump = [\"bastoin\"]\n\
                [tunnels.db]\nhost = \"db-server\"\nlocal = [\"5432:localhost:5432\"]\n\
                [tunnels.db2]\nhost = \"db-sever\"\njump = [\"bastion\"]\nlocal = [\"5433:localhost:5432\"]\n\
                [tunnels.db3]\nhost = \"db-sever\"\nlocal = [\"5434:localhost:5432\"]\n\
                [tunnels.web]\nhost = \"admin@bastoin\"\njump = [\"10.0.0.1\"]\nlocal = [\"80:x:80\"]\n";
    let near = |line,
                column,
                key: &str,
                tunnel: Option<&str>,
                written: &str,
                suggestion: &str,
                resolved_by| {
        Finding::NearHostName(NearHostName {
            at: at(line, column, key),
            tunnel: tunnel.map(str::to_owned),
            written: written.to_owned(),
            suggestion: suggestion.to_owned(),
            resolved_by,
        })
    };
    assert_eq!(
        findings(text),
        [
            // Dialled first by tunnel db: this machine resolves it.
            near(
                7,
                9,
                "hosts.db-server.jump[0]",
                None,
                "bastoin",
                "bastion",
                ResolvedBy::ThisMachine
            ),
            // No tunnel uses [hosts.spare].
            near(
                9,
                9,
                "hosts.spare.jump[0]",
                None,
                "bastoin",
                "bastion",
                ResolvedBy::Nobody
            ),
            // Reached through the bastion, which resolves the name.
            near(
                14,
                8,
                "tunnels.db2.host",
                Some("db2"),
                "db-sever",
                "db-server",
                ResolvedBy::JumpHost
            ),
            near(
                18,
                8,
                "tunnels.db3.host",
                Some("db3"),
                "db-sever",
                "db-server",
                ResolvedBy::ThisMachine
            ),
        ]
    );
}

#[test]
fn remote_ports_that_may_be_on_one_server() {
    let text = "[defaults]\nuse_agent = true\n\
                [tunnels.a]\nhost = \"localhost\"\nremote = [\"9000:localhost:3000\", \
                \"192.0.2.1:9001:localhost:3001\", \"192.0.2.2:9001:localhost:3002\"]\n\
                [tunnels.b]\nhost = \"127.0.0.1\"\nremote = [\"9000:localhost:3000\"]\n";
    let localhost = vec![("localhost".to_owned(), 22)];
    assert_eq!(
        findings(text),
        [
            // Within one tunnel, these clash unless the server's GatewayPorts is clientspecified.
            Finding::RemotePort(RemotePortClash {
                at: at(5, 67, "tunnels.a.remote[2]"),
                tunnel: "a".to_owned(),
                address: "192.0.2.2:9001".to_owned(),
                route: localhost.clone(),
                other_tunnel: "a".to_owned(),
                other_key: "tunnels.a.remote[1]".to_owned(),
                other_address: "192.0.2.1:9001".to_owned(),
                other_route: localhost.clone(),
                same_route: true,
                clashes_when: vec![GatewayPorts::No, GatewayPorts::Yes],
            }),
            // Two names that may be one server: check resolves them.
            Finding::RemotePort(RemotePortClash {
                at: at(8, 11, "tunnels.b.remote[0]"),
                tunnel: "b".to_owned(),
                address: "localhost:9000".to_owned(),
                route: vec![("127.0.0.1".to_owned(), 22)],
                other_tunnel: "a".to_owned(),
                other_key: "tunnels.a.remote[0]".to_owned(),
                other_address: "localhost:9000".to_owned(),
                other_route: localhost,
                same_route: false,
                clashes_when: GatewayPorts::ALL.to_vec(),
            }),
        ]
    );
}

#[test]
fn a_clean_file_has_none() {
    let text = "[defaults]\nuse_agent = true\n[hosts.bastion]\n\
                [tunnels.a]\nhost = \"db.example.com\"\njump = [\"bastion\"]\n\
                local = [\"5432:localhost:5432\"]\nremote = [\"0:localhost:22\"]\n\
                [tunnels.b]\nhost = \"db.example.com\"\nremote = [\"0:localhost:22\"]\n\
                local = [\"127.0.0.1:5433:localhost:5432\"]\n";
    assert_eq!(findings(text), []);
}
