use std::path::Path;

use tunneld_config::{Environment, parse};

use super::*;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK";

/// Every line of the file's one tunnel, each preceded by its notes.
fn lines(tunnel: &str) -> Vec<String> {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let text = format!(
        "[defaults]\nidentity_files = [\"k\"]\n[hosts.bastion]\nhostname = \"bastion.example\"\nport = 2201\n\
         [hosts.inner]\nhostname = \"fd00::2\"\n\
         [tunnels.t]\n{tunnel}"
    );
    let config = parse(Path::new("/etc/tunneld/t.toml"), &text, &env).expect("valid");
    grants(&config.tunnels[0])
        .into_iter()
        .flat_map(|(hop, grant)| {
            let mut out: Vec<String> = grant.notes.iter().map(|n| format!("# {n}")).collect();
            out.push(format!("{}: {}", hop.label, grant.line(KEY, "t", "pi")));
            out
        })
        .collect()
}

const STREAMLOCAL: &str = "# port-forwarding also lets the key make the server listen on a Unix \
    socket (ssh -R /path:...), which permitlisten does not narrow: set AllowStreamLocalForwarding \
    no for this account (Match User) in sshd_config";

#[test]
fn local_and_remote_forwards_are_permitted_exactly_as_sshd_matches_them() {
    let got = lines(
        "host = \"db.example\"\n\
         local = [\"5432:localhost:5432\", \"127.0.0.1:6379:10.0.0.5:6379\", \"6000:[::1]:6000\", \
         \"5433:localhost:5432\"]\n\
         remote = [\"2222:localhost:22\", \"*:8080:localhost:80\", \"[::1]:9000:localhost:9\", \
         \"10.1.1.1:9001:localhost:9\"]\n",
    );
    assert_eq!(
        got,
        [
            STREAMLOCAL.to_owned(),
            format!(
                "db.example: restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
                 permitopen=\"localhost:5432\",permitopen=\"10.0.0.5:6379\",\
                 permitopen=\"[::1]:6000\",permitlisten=\"localhost:2222\",\
                 permitlisten=\"*:8080\",permitlisten=\"[::1]:9000\",\
                 permitlisten=\"10.1.1.1:9001\" {KEY} tunneld:t@pi"
            ),
        ]
    );
}

#[test]
fn a_remote_port_0_is_permitted_as_any_port_and_says_so() {
    let got = lines("host = \"db.example\"\nremote = [\"0:localhost:22\"]\nlocal = [\"1:h:2\"]\n");
    assert_eq!(
        got[0],
        "# remote 0:localhost:22: port 0 lets the server pick, so any port on localhost is \
         permitted"
    );
    assert!(
        got[2].contains(",permitlisten=\"localhost:*\" "),
        "{}",
        got[2]
    );
}

#[test]
fn a_remote_dynamic_forward_is_permitted_to_listen_and_says_what_it_exposes() {
    let got = lines("host = \"db.example\"\nremote = [\"1080\"]\n");
    assert_eq!(
        got,
        [
            "# permitopen=\"none.invalid:1\": a tunnel without local forwards needs none, and \
             authorized_keys has no permitopen=\"none\"; this target matches nothing tunneld \
             asks for and opens nothing"
                .to_owned(),
            "# remote 1080: a SOCKS proxy on the server whose connections leave from this device \
             (remote dynamic forwarding): the server permits nothing more for it, but whoever \
             reaches localhost:1080 on the server reaches this device's network"
                .to_owned(),
            STREAMLOCAL.to_owned(),
            format!(
                "db.example: restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
                 permitopen=\"none.invalid:1\",permitlisten=\"localhost:1080\" {KEY} tunneld:t@pi"
            ),
        ]
    );
}

#[test]
fn a_dynamic_forward_leaves_permitopen_out_and_says_why() {
    let got = lines(
        "host = \"db.example\"\ndynamic = [\"1080\"]\nlocal = [\"5432:localhost:5432\"]\nremote = [\"2222:localhost:22\"]\n",
    );
    assert_eq!(
        got,
        [
            "# no permitopen: dynamic 1080 connects wherever its SOCKS clients ask, and any \
             permitopen would confine it"
                .to_owned(),
            "# port-forwarding also lets the key reach any Unix socket of the server and listen \
             on new ones: set AllowStreamLocalForwarding no for this account (Match User) in \
             sshd_config"
                .to_owned(),
            format!(
                "db.example: restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
                 permitlisten=\"localhost:2222\" {KEY} tunneld:t@pi"
            ),
        ]
    );
}

#[test]
fn a_direction_the_tunnel_does_not_use_permits_nothing() {
    let got = lines("host = \"db.example\"\nremote = [\"2222:localhost:22\"]\n");
    assert_eq!(
        got[0],
        "# permitopen=\"none.invalid:1\": a tunnel without local forwards needs none, and \
         authorized_keys has no permitopen=\"none\"; this target matches nothing tunneld asks \
         for and opens nothing"
    );
    assert!(
        got[2].contains(",permitopen=\"none.invalid:1\",permitlisten=\"localhost:2222\" "),
        "{}",
        got[2]
    );
    let got = lines("host = \"db.example\"\nlocal = [\"5432:localhost:5432\"]\n");
    assert!(
        got[2].contains(",permitopen=\"localhost:5432\",permitlisten=\"none.invalid:1\" "),
        "{}",
        got[2]
    );
}

#[test]
fn each_jump_host_may_only_reach_the_next_hop() {
    let got = lines(
        "host = \"db.internal\"\njump = [\"bastion\", \"inner\"]\nlocal = [\"5432:localhost:5432\"]\n",
    );
    let jump = |next: &str| {
        format!(
            "restrict,port-forwarding,command=\"/usr/sbin/nologin\",permitopen=\"{next}\",\
             permitlisten=\"none.invalid:1\" {KEY} tunneld:t@pi"
        )
    };
    let listen_note = "# permitlisten=\"none.invalid:1\": a jump host needs none, and \
                       authorized_keys has no permitlisten=\"none\"; this target matches nothing \
                       tunneld asks for and opens nothing";
    assert_eq!(
        got[..8],
        [
            "# jump host: may only connect on to inner".to_owned(),
            listen_note.to_owned(),
            STREAMLOCAL.to_owned(),
            format!("bastion: {}", jump("[fd00::2]:22")),
            "# jump host: may only connect on to db.internal".to_owned(),
            listen_note.to_owned(),
            STREAMLOCAL.to_owned(),
            format!("inner: {}", jump("db.internal:22")),
        ]
    );
    assert!(got[got.len() - 1].starts_with("db.internal: "), "{got:?}");
}

/// Each example recommends, in its comments, the very lines keygen prints for it.
#[test]
fn every_example_recommends_the_lines_keygen_prints() {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let config = parse(&path, &text, &env).expect("valid");
        for tunnel in &config.tunnels {
            for (hop, grant) in grants(tunnel) {
                let options = grant.options.join(",");
                assert!(
                    text.contains(&format!("{options} ssh-ed25519 ")),
                    "{}: tunnel {}, {}: the comments do not recommend {options}",
                    path.display(),
                    tunnel.name,
                    hop.label
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "{checked}");
}

#[test]
fn a_forward_to_a_server_socket_gets_no_permitopen_and_a_socket_on_the_server_no_permitlisten() {
    let got = lines(
        "host = \"db.example\"\n\
         local = [\"5432:/var/run/postgresql/.s.PGSQL.5432\", \"6379:localhost:6379\"]\n\
         remote = [\"/home/tunnel/app.sock:localhost:3000\"]\n",
    );
    assert_eq!(
        got,
        [
            "# no permitopen: local 5432:/var/run/postgresql/.s.PGSQL.5432 connects to a Unix \
             socket on the server, and sshd refuses every socket connection to a key with \
             permitopen"
                .to_owned(),
            "# permitlisten=\"none.invalid:1\": a tunnel whose remote forwards all listen on Unix \
             sockets needs none, and authorized_keys has no permitlisten=\"none\"; this target \
             matches nothing tunneld asks for and opens nothing"
                .to_owned(),
            "# remote /home/tunnel/app.sock:localhost:3000: the server listens on a Unix socket, \
             which permitlisten does not narrow"
                .to_owned(),
            "# port-forwarding lets the key reach any Unix socket of the server: socket forwards \
             cannot be narrowed in authorized_keys"
                .to_owned(),
            format!(
                "db.example: restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
                 permitlisten=\"none.invalid:1\" {KEY} tunneld:t@pi"
            ),
        ]
    );
}
