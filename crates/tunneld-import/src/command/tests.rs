use super::*;

fn words(line: &str) -> Vec<String> {
    lexer::split_args(line).unwrap_or_default()
}

fn lines(command: &Command) -> Vec<String> {
    command.lines.iter().map(Line::text).collect()
}

#[test]
fn options_become_config_lines_in_order() {
    let command = parse(&words(
        "ssh -NT -p2222 -L 5432:db:5432 -o ServerAliveInterval=30 -i /k/id -C -c aes128-ctr \
         -J a,b -l admin -R [::1]:9000:localhost:3000 db.example.com -D 1080",
    ))
    .unwrap_or_default();
    assert_eq!(command.host, "db.example.com");
    assert_eq!(
        lines(&command),
        [
            "SessionType none",
            "RequestTTY no",
            "Port 2222",
            "LocalForward 5432:db:5432",
            "ServerAliveInterval 30",
            "IdentityFile /k/id",
            "Compression yes",
            "Ciphers aes128-ctr",
            "ProxyJump a,b",
            "User admin",
            "RemoteForward [::1]:9000:localhost:3000",
            "DynamicForward 1080",
        ]
    );
    assert!(command.notes.is_empty(), "{:?}", command.notes);
}

#[test]
fn autossh_unit_line() {
    let command = parse(&words(
        "AUTOSSH_GATETIME=0 /usr/bin/autossh -M 0 -f -N -o \"ServerAliveInterval 30\" \
         -o \"ServerAliveCountMax 3\" -R 2222:localhost:22 tunnel@example.com",
    ))
    .unwrap_or_default();
    assert_eq!(command.host, "example.com");
    assert_eq!(
        lines(&command),
        [
            "SessionType none",
            "ServerAliveInterval 30",
            "ServerAliveCountMax 3",
            "RemoteForward 2222:localhost:22",
            "User tunnel",
        ]
    );
    assert_eq!(command.notes.len(), 3, "{:?}", command.notes);
    assert!(command.notes[0].starts_with("AUTOSSH_GATETIME=0: autossh's own setting"));
    assert!(command.notes[1].starts_with("autossh -M 0: autossh's monitoring"));
    assert!(command.notes[2].starts_with("autossh -f: "));
}

#[test]
fn destinations_and_remote_commands() {
    let command =
        parse(&words("ssh -o Port=1 ssh://u%40x@[::1]:2222/ -v sleep 1")).unwrap_or_default();
    assert_eq!(command.host, "::1");
    assert_eq!(
        lines(&command),
        ["Port 1", "LogLevel DEBUG", "User u%40x", "Port 2222"]
    );
    assert!(command.remote_command);
    let hop = parse(&words("ssh -q -W [%h]:%p -l admin gw")).unwrap_or_default();
    assert_eq!(
        (hop.host.as_str(), hop.stdio.as_deref()),
        ("gw", Some("[%h]:%p"))
    );

    for (line, error) in [
        ("scp a b", "\"scp\" is not ssh or autossh"),
        ("ssh -N", "no destination ([user@]host) on the command line"),
        ("ssh -L", "-L needs an argument"),
        ("ssh -Z host", "unknown option -Z"),
        ("", "expected an ssh or autossh command line"),
    ] {
        assert_eq!(parse(&words(line)).err().as_deref(), Some(error), "{line}");
    }
}

#[test]
fn a_whole_line_and_a_systemd_exec_start() {
    let line = "ExecStart=-/usr/bin/autossh -M 0 -N \\\n    -o \"ServerAliveInterval 30\" \
                -R 2222:localhost:22 tunnel@example.com";
    let command = parse(&[line.to_owned()]).unwrap_or_default();
    assert_eq!(command.host, "example.com");
    assert_eq!(
        lines(&command),
        [
            "SessionType none",
            "ServerAliveInterval 30",
            "RemoteForward 2222:localhost:22",
            "User tunnel",
        ]
    );
    let words = words("ExecStart= /usr/bin/ssh -N host");
    assert_eq!(parse(&words).map(|c| c.host).as_deref(), Ok("host"));
}
