//! `tunneld import-ssh-config` and `import-ssh-command` as users run them, with OpenSSH as the
//! oracle: for every host, what the imported file makes of it (loaded by tunneld's own parser)
//! agrees, option by option, with what `ssh -G` prints. `ssh -G` only prints the configuration;
//! it never connects. The imported file must pass the real `tunneld check`. No traffic leaves
//! the machine: the addresses are TEST-NET ones that nothing dials.
//!
//! OpenSSH resolves a relative `Include` against `~/.ssh` of the user in the password
//! database (not `$HOME`), so the fixture lives in a temporary directory under the real
//! `~/.ssh`, removed when the test ends.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::KeyPair;
use tunneld_config::{Config, Environment, Hop, HostKeyPolicy, IdentityFile, Tunnel};

/// `tunneld ARGS`: exit status, stdout, stderr.
fn tunneld(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(harness::tunneld_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `ssh -G ARGS` prints: each keyword's values, in order.
fn ssh_g(args: &[&str]) -> HashMap<String, Vec<String>> {
    let out = Command::new("ssh").arg("-G").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ssh -G {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut options: HashMap<String, Vec<String>> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((keyword, value)) = line.split_once(' ') {
            options
                .entry(keyword.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    options
}

/// The home directory as OpenSSH takes it.
fn home() -> PathBuf {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).unwrap().unwrap().dir
}

fn user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).unwrap().unwrap().name
}

/// Loads an imported file with tunneld's own parser.
fn load(path: &Path) -> Config {
    let text = std::fs::read_to_string(path).unwrap();
    let env = Environment {
        user: "tunneld".to_owned(),
    };
    tunneld_config::parse(path, &text, &env).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

/// A forward as (bind, port, host, hostport), brackets removed, from ssh's `-G` form
/// (`[::1]:5432 [db]:5432`) or tunneld's (`[::1]:5432:db:5432`).
fn forward(text: &str) -> Vec<String> {
    // ssh prints a remote dynamic forward (`-R [bind:]port`) with `[socks]:0` as its target.
    let text = text.strip_suffix(" [socks]:0").unwrap_or(text);
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut bracket = false;
    for c in text.chars() {
        match c {
            '[' => bracket = true,
            ']' => bracket = false,
            ':' | ' ' if !bracket => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    // ssh prints a dynamic forward's bind address, and a listener without one, as given.
    if parts.len() % 2 == 1 {
        parts.insert(0, String::new());
    }
    parts
}

fn paths(files: &[IdentityFile]) -> Vec<String> {
    files
        .iter()
        .map(|file| match file {
            IdentityFile::Path(path) => path.display().to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// `~/` and the tokens the fixture uses (`%d`, and `%n` of `alias`) of ssh's output, expanded:
/// `ssh -G` prints identity files as written.
fn expand(path: &str, alias: &str) -> String {
    let home = home().display().to_string();
    let path = match path.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None => path.to_owned(),
    };
    path.replace("%d", &home).replace("%n", alias)
}

/// One hop against what `ssh -G` printed for its host.
fn same_hop(alias: &str, hop: &Hop, ssh: &HashMap<String, Vec<String>>) {
    let one = |key: &str| ssh[key][0].clone();
    assert_eq!(hop.hostname, one("hostname"), "{alias}: hostname");
    assert_eq!(hop.port.to_string(), one("port"), "{alias}: port");
    assert_eq!(hop.user, one("user"), "{alias}: user");
    let ids: Vec<String> = ssh["identityfile"]
        .iter()
        .map(|p| expand(p, alias))
        .collect();
    assert_eq!(paths(&hop.identity_files), ids, "{alias}: identityfile");
    let certs: Vec<String> = ssh
        .get("certificatefile")
        .map(|c| c.iter().map(|p| expand(p, alias)).collect())
        .unwrap_or_default();
    assert_eq!(
        paths(&hop.certificate_files),
        certs,
        "{alias}: certificatefile"
    );
    assert_eq!(
        hop.compression,
        one("compression") == "yes",
        "{alias}: compression"
    );
    let policy = match one("stricthostkeychecking").as_str() {
        "accept-new" | "false" => HostKeyPolicy::AcceptNew,
        _ => HostKeyPolicy::Strict,
    };
    assert_eq!(
        hop.host_key_policy, policy,
        "{alias}: stricthostkeychecking"
    );
    let known_hosts = one("userknownhostsfile");
    let default_known = format!(
        "{0}/.ssh/known_hosts {0}/.ssh/known_hosts2",
        home().display()
    );
    if known_hosts == default_known {
        assert_eq!(hop.known_hosts, Path::new("/var/lib/tunneld/known_hosts"));
    } else {
        let first = known_hosts.split(' ').next().unwrap();
        assert_eq!(
            hop.known_hosts,
            Path::new(first),
            "{alias}: userknownhostsfile"
        );
    }
    match one("connecttimeout").as_str() {
        "none" => assert_eq!(hop.connect_timeout.as_secs(), 10, "{alias}: connecttimeout"),
        secs => assert_eq!(
            hop.connect_timeout.as_secs().to_string(),
            secs,
            "{alias}: connecttimeout"
        ),
    }
    // The ciphers of a host that names none are OpenSSH's default list, and tunneld's own
    // default (empty here) is its choice for the CPU.
    if !hop.ciphers.is_empty() {
        assert_eq!(hop.ciphers.join(","), one("ciphers"), "{alias}: ciphers");
    }
}

/// A tunnel against `ssh -G` for its alias, and each jump host against `ssh -G` for its own.
fn same_tunnel(tunnel: &Tunnel, ssh: &HashMap<String, Vec<String>>, config: &str) {
    let alias = tunnel.name.as_str();
    same_hop(alias, &tunnel.target, ssh);
    let one = |key: &str| ssh[key][0].clone();
    assert_eq!(
        tunnel
            .keepalive
            .interval
            .map_or(0, |i| i.as_secs())
            .to_string(),
        one("serveraliveinterval"),
        "{alias}: serveraliveinterval"
    );
    assert_eq!(
        tunnel.keepalive.max.to_string(),
        one("serveralivecountmax"),
        "{alias}: serveralivecountmax"
    );
    for (keyword, specs) in [
        (
            "localforward",
            tunnel
                .local
                .iter()
                .map(|f| f.spec.clone())
                .collect::<Vec<_>>(),
        ),
        (
            "remoteforward",
            tunnel.remote.iter().map(|f| f.spec.clone()).collect(),
        ),
        (
            "dynamicforward",
            tunnel.dynamic.iter().map(|f| f.spec.clone()).collect(),
        ),
    ] {
        let expected: Vec<Vec<String>> = ssh
            .get(keyword)
            .map(|all| all.iter().map(|f| forward(f)).collect())
            .unwrap_or_default();
        let got: Vec<Vec<String>> = specs.iter().map(|f| forward(f)).collect();
        assert_eq!(got, expected, "{alias}: {keyword}");
    }
    let jumps: Vec<String> = ssh
        .get("proxyjump")
        .map(|j| {
            j[0].replace(['[', ']'], "")
                .split(',')
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !jumps.is_empty() {
        let labels: Vec<&str> = tunnel.jump.iter().map(|hop| hop.label.as_str()).collect();
        assert_eq!(labels, jumps, "{alias}: proxyjump");
        for hop in &tunnel.jump {
            same_hop(&hop.label, hop, &ssh_g(&["-F", config, &hop.label]));
        }
    }
}

/// A fixture under `~/.ssh`, with keys, a certificate and includes.
struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn fixture() -> Fixture {
    let ssh_dir = home().join(".ssh");
    if !ssh_dir.exists() {
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::set_permissions(
            &ssh_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
    }
    let dir = tempfile::Builder::new()
        .prefix("tunneld-import-")
        .tempdir_in(&ssh_dir)
        .unwrap();
    let d = dir.path();
    let name = d.file_name().unwrap().to_str().unwrap().to_owned();
    std::fs::create_dir(d.join("conf.d")).unwrap();
    for key in ["db", "bastion", "inner", "default"] {
        KeyPair::generate(d, key);
    }
    KeyPair::generate(d, "ca");
    let sign = Command::new("ssh-keygen")
        .args([
            "-q", "-s", "ca", "-I", "db", "-n", "dbadmin", "-V", "-1d:+52w", "db.pub",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let d = d.display();
    let config = format!(
        "# Before any Host line: applies to every host, first.\n\
         ServerAliveCountMax 4\n\
         Include {name}/conf.d/*.conf\n\
         Include {name}/bastion.conf\n\
         \n\
         Host db\n  \
           HostName 192.0.2.5\n  \
           Port 2222\n  \
           User dbadmin\n  \
           IdentityFile {d}/db\n  \
           CertificateFile {d}/db-cert.pub\n  \
           ProxyJump bastion,inner\n  \
           LocalForward [::1]:5432 db:5432\n  \
           LocalForward 6379 localhost:6379\n  \
           RemoteForward 9000 localhost:3000\n  \
           DynamicForward 127.0.0.1:1080\n  \
           ServerAliveInterval 30\n  \
           Compression yes\n  \
           Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com\n  \
           StrictHostKeyChecking accept-new\n  \
           UserKnownHostsFile /var/lib/tunneld/db_known_hosts\n  \
           ForwardAgent yes\n  \
           ControlMaster auto\n  \
           ControlPath ~/.ssh/cm-%r@%h:%p\n\
         \n\
         Host legacy\n  \
           HostName 192.0.2.7\n  \
           ProxyCommand ssh -q -W [%h]:%p -l admin bastion\n  \
           RemoteForward 2222 localhost:22\n\
         \n\
         Match originalhost legacy\n  \
           ServerAliveInterval 60\n  \
           ConnectTimeout 12\n\
         \n\
         Match host 192.0.2.10\n  \
           User webuser\n\
         \n\
         Host *.corp !skip.corp\n  \
           User corpuser\n  \
           ConnectTimeout 7\n\
         \n\
         Host *\n  \
           IdentityFile {d}/default\n  \
           ServerAliveInterval 15\n  \
           Compression no\n  \
           PasswordAuthentication no\n"
    );
    let web = "Host web.corp\n  HostName 192.0.2.10\n  Port 2200\n  \
               LocalForward 8080 localhost:80\n  LocalForward 8443 [2001:db8::1]:443\n";
    std::fs::write(dir.path().join("conf.d/10-web.conf"), web).unwrap();
    let bastion = format!(
        "Host bastion\n  HostName 192.0.2.1\n  User jump\n  IdentityFile ~/.ssh/{name}/bastion\n\
         Host inner\n  HostName 192.0.2.2\n  IdentityFile %d/.ssh/{name}/%n\n  ProxyJump bastion\n"
    );
    std::fs::write(dir.path().join("bastion.conf"), bastion).unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, config).unwrap();
    Fixture { dir, config: path }
}

#[test]
fn a_config_imports_as_ssh_reads_it_and_passes_check() {
    let fixture = fixture();
    let config = fixture.config.to_str().unwrap();
    let (status, toml, warnings) = tunneld(&["import-ssh-config", "--file", config]);
    assert_eq!(status, Some(0), "{toml}{warnings}");
    let out = fixture.dir.path().join("imported.toml");
    std::fs::write(&out, &toml).unwrap();

    let (status, stdout, stderr) = tunneld(&["check", "--config", out.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{toml}\n{stdout}{stderr}");

    let imported = load(&out);
    let names: Vec<&str> = imported.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["db", "legacy", "web.corp"], "{toml}");
    for tunnel in &imported.tunnels {
        same_tunnel(tunnel, &ssh_g(&["-F", config, &tunnel.name]), config);
    }
    // The ProxyCommand `ssh -W [%h]:%p -l admin bastion` is a jump through bastion as admin.
    let legacy = &imported.tunnels[1];
    let hop = &legacy.jump[0];
    assert_eq!(
        (hop.hostname.as_str(), hop.user.as_str()),
        ("192.0.2.1", "admin")
    );
    assert_eq!(
        ssh_g(&["-F", config, "legacy"])["proxycommand"],
        ["ssh -q -W [%h]:%p -l admin bastion"]
    );

    // What is not imported is said, where it was written.
    for comment in [
        format!("# ForwardAgent yes ({config}:22): not imported: agent forwarding"),
        format!("# ControlMaster auto ({config}:23): not imported: a ControlMaster"),
        format!("# ControlPath ~/.ssh/cm-%r@%h:%p ({config}:24): not imported"),
        format!("# PasswordAuthentication no ({config}:46): tunneld always works this way"),
        "): not used here: ssh ignores it for a hop after the first of a chain".to_owned(),
    ] {
        assert!(toml.contains(&comment), "{comment:?} missing from\n{toml}");
    }
    assert!(
        toml.contains("What tunneld deliberately does not do"),
        "{toml}"
    );
    // Keys under a home directory: the service cannot read them (ProtectHome=yes).
    let d = fixture.dir.path().display();
    let why = "under a home directory, which the systemd units' ProtectHome=yes makes \
               unreadable to the service";
    let comment = format!(
        "# warning: {d}/db, {d}/default are {why}: copy them to /etc/tunneld/keys/ and change \
         these paths\nidentity_files = [\"{d}/db\", \"{d}/default\"]\n"
    );
    assert!(toml.contains(&comment), "{toml}");
    let warning = format!(
        "tunneld: warning: {d}/db is {why}: copy it to /etc/tunneld/keys/ and change the path\n"
    );
    assert!(warnings.contains(&warning), "{warnings}");
    // Each path once, however many hosts name it.
    assert_eq!(
        warnings.matches(&format!("{d}/default ")).count(),
        1,
        "{warnings}"
    );
    assert!(!toml.contains("Not imported, no forwards"), "{toml}");
}

#[test]
fn named_hosts_only_and_hosts_without_forwards() {
    let fixture = fixture();
    let config = fixture.config.to_str().unwrap();
    let (status, toml, stderr) = tunneld(&["import-ssh-config", "-f", config, "web.corp"]);
    assert_eq!(status, Some(0), "{toml}{stderr}");
    assert!(toml.contains("[tunnels.\"web.corp\"]"), "{toml}");
    assert!(!toml.contains("[tunnels.db]"), "{toml}");
    // `Match host` sees the HostName, and its User comes before `Host *.corp`'s.
    assert!(toml.contains("user = \"webuser\"\n"), "{toml}");

    // A jump host alone has no forwards: its entry, and exit status 1.
    let (status, toml, stderr) = tunneld(&["import-ssh-config", "-f", config, "bastion"]);
    assert_eq!(status, Some(1), "{toml}{stderr}");
    assert!(
        toml.contains("[hosts.bastion]\nhostname = \"192.0.2.1\"\nuser = \"jump\"\n"),
        "{toml}"
    );
    assert!(stderr.contains("nothing to import"), "{stderr}");
}

#[test]
fn match_exec_and_proxy_commands_are_never_run() {
    let dir = harness::TestDir::new();
    let marker = dir.join("ran");
    let key = KeyPair::generate(dir.path(), "id");
    let config = dir.write(
        "config",
        format!(
            "Match exec \"touch {m}\"\n  User nobody\n\
             Host db\n  HostName 192.0.2.5\n  IdentityFile {k}\n  \
             ProxyCommand sh -c 'touch {m}; nc %h %p'\n  LocalForward 5432 localhost:5432\n",
            m = marker.display(),
            k = key.private.display()
        ),
    );
    let (status, toml, stderr) =
        tunneld(&["import-ssh-config", "--file", config.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{toml}{stderr}");
    assert!(!marker.exists(), "the import ran a command");
    let path = config.display();
    assert!(
        toml.contains(&format!(
            "# User nobody ({path}:2): not imported: its block was not judged: Match exec"
        )),
        "{toml}"
    );
    assert!(
        toml.contains("not imported: tunneld never runs a command to reach a server"),
        "{toml}"
    );
    assert!(!toml.contains("jump ="), "{toml}");
    assert!(toml.contains(&format!("user = \"{}\"\n", user())), "{toml}");
}

#[test]
fn a_command_line_imports_as_ssh_reads_it() {
    let dir = harness::TestDir::new();
    let key = KeyPair::generate(dir.path(), "id");
    let key = key.private.to_str().unwrap();
    let args = [
        "-N",
        "-p",
        "2222",
        "-i",
        key,
        "-l",
        "admin",
        "-C",
        "-c",
        "aes128-gcm@openssh.com",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ServerAliveInterval 20",
        "-L",
        "[::1]:5432:db:5432",
        "-L",
        "8080:web:80",
        "-D",
        "1080",
        "-R",
        "0:localhost:22",
        "-R",
        "1081",
        "-R",
        "127.0.0.1:1082",
        "-A",
        "-X",
        "-o",
        "PasswordAuthentication=yes",
        "-o",
        "KbdInteractiveAuthentication yes",
        "192.0.2.9",
    ];
    let mut command = vec!["import-ssh-command", "--", "ssh"];
    command.extend(args);
    let (status, toml, stderr) = tunneld(&command);
    assert_eq!(status, Some(0), "{toml}{stderr}");
    let out = dir.write("imported.toml", &toml);
    let (status, stdout, stderr) = tunneld(&["check", "--config", out.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{toml}\n{stdout}{stderr}");
    let imported = load(&out);
    assert_eq!(imported.tunnels.len(), 1);
    let tunnel = &imported.tunnels[0];
    assert_eq!(tunnel.name, "192.0.2.9");
    // `-R [bind:]port` alone is remote dynamic forwarding, as ssh reads it.
    assert!(
        toml.contains("remote = [\"0:localhost:22\", \"1081\", \"127.0.0.1:1082\"]"),
        "{toml}"
    );
    let mut ssh_args = vec!["-F", "none"];
    ssh_args.extend(args);
    let ssh = ssh_g(&ssh_args);
    same_tunnel(tunnel, &ssh, "none");
    let see = "see \"What tunneld deliberately does not do\" in configuration.md";
    for expected in [
        "# ForwardAgent yes (command line -A): not imported: agent forwarding",
        "# ForwardX11 yes (command line -X): not imported: X11 forwarding",
        "# PasswordAuthentication yes (command line -o PasswordAuthentication=yes): not \
         imported: password login",
        "# KbdInteractiveAuthentication yes (command line -o KbdInteractiveAuthentication yes): \
         not imported: keyboard-interactive login",
    ] {
        let line = toml.lines().find(|line| line.starts_with(expected));
        assert!(
            line.is_some_and(|line| line.contains(see)),
            "{expected:?} in\n{toml}"
        );
    }
}

#[test]
fn an_autossh_unit_line_imports_with_its_own_options_as_comments() {
    let line = [
        "AUTOSSH_GATETIME=0",
        "/usr/bin/autossh",
        "-M",
        "0",
        "-N",
        "-o",
        "ServerAliveInterval 30",
        "-o",
        "ServerAliveCountMax 3",
        "-R",
        "2222:localhost:22",
        "tunnel@example.com",
    ];
    let mut command = vec!["import-ssh-command", "--name", "reverse-ssh", "--"];
    command.extend(line);
    let (status, toml, stderr) = tunneld(&command);
    assert_eq!(status, Some(0), "{toml}{stderr}");
    for expected in [
        "[tunnels.reverse-ssh]\nhost = \"example.com\"\n",
        "# AUTOSSH_GATETIME=0: autossh's own setting",
        "# autossh -M 0: autossh's monitoring; tunneld probes the connection itself",
        "remote = [\"2222:localhost:22\"]\n",
        "user = \"tunnel\"\n",
        "keepalive_interval = \"30s\"\nkeepalive_max = 3\n",
        "# SessionType none (command line -N): tunneld always works this way\n",
    ] {
        assert!(toml.contains(expected), "{expected:?} missing from\n{toml}");
    }
    let dir = harness::TestDir::new();
    let out = dir.write("imported.toml", &toml);
    let imported = load(&out);
    let ssh = ssh_g(&[
        "-F",
        "none",
        "-N",
        "-o",
        "ServerAliveInterval 30",
        "-o",
        "ServerAliveCountMax 3",
        "-R",
        "2222:localhost:22",
        "tunnel@example.com",
    ]);
    let tunnel = &imported.tunnels[0];
    assert_eq!(tunnel.target.user, ssh["user"][0]);
    assert_eq!(tunnel.target.hostname, ssh["hostname"][0]);
    assert_eq!(
        tunnel
            .remote
            .iter()
            .map(|f| forward(&f.spec))
            .collect::<Vec<_>>(),
        ssh["remoteforward"]
            .iter()
            .map(|f| forward(f))
            .collect::<Vec<_>>()
    );
    // check passes, but for the key: this user's default keys when it has some, else the
    // place to put one, which does not exist here.
    let (status, stdout, stderr) = tunneld(&["check", "--config", out.to_str().unwrap()]);
    if status != Some(0) {
        assert_eq!(status, Some(78));
        assert!(
            stderr.contains("/etc/tunneld/keys/example.com does not exist"),
            "{toml}\n{stdout}{stderr}"
        );
        assert_eq!(stderr.lines().count(), 2, "{stderr}");
    }
}

#[test]
fn what_cannot_be_imported_is_said_not_dropped() {
    let dir = harness::TestDir::new();
    let key = KeyPair::generate(dir.path(), "id");
    let config = dir.write(
        "config",
        format!(
            "Host a/b\n  LocalForward 7000 h:7000\nHost a-b\n  LocalForward 7001 h:7001\n\
             Host a/b a-b\n  HostName 192.0.2.3\n  IdentityFile {}\n  Port 99999\n  \
             LocalForward 5432\n  DynamicForward x\n  ServerAliveCountMax 0\n  \
             Ciphers +aes128-cbc\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking ask\n  \
             X11Forwarding yes\n",
            key.private.display()
        ),
    );
    let (status, toml, stderr) = tunneld(&["import-ssh-config", "-f", config.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{toml}{stderr}");
    let path = config.display();
    for expected in [
        // Two aliases with one name: two tunnels, the second renamed.
        "[tunnels.a-b]\nhost = \"a-b\"\n".to_owned(),
        "[tunnels.a-b-2]\nhost = \"a-b-2\"\n".to_owned(),
        format!("# Port 99999 ({path}:8): not imported: not a port number\n"),
        format!(
            "# LocalForward 5432 ({path}:9): not imported: \"5432\" is not \
             [bind:]port:host:hostport\n"
        ),
        format!("# DynamicForward x ({path}:10): not imported: "),
        "local = [\"7001:h:7001\"]\n".to_owned(),
        format!(
            "# ServerAliveCountMax 0 ({path}:11): not imported: tunneld needs a whole number of \
             at least 1\n"
        ),
        format!("# Ciphers +aes128-cbc ({path}:12): not imported: changes OpenSSH's default list"),
        format!("# UserKnownHostsFile /dev/null ({path}:13): not imported: it would make every"),
        format!("# StrictHostKeyChecking ask ({path}:14): tunneld runs unattended and cannot ask"),
        format!("# X11Forwarding yes ({path}:15): not imported: tunneld has no equivalent\n"),
    ] {
        assert!(
            toml.contains(&expected),
            "{expected:?} missing from\n{toml}"
        );
    }
    let out = dir.write("imported.toml", &toml);
    let (status, stdout, stderr) = tunneld(&["check", "--config", out.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{toml}\n{stdout}{stderr}");

    // A Match without criteria is refused, as ssh refuses it, with the file and line.
    let config = dir.write("bad", "Host db\n  LocalForward 1 h:1\nMatch\n");
    let (status, toml, stderr) = tunneld(&["import-ssh-config", "-f", config.to_str().unwrap()]);
    assert_eq!((status, toml.as_str()), (Some(1), ""));
    assert_eq!(
        stderr,
        format!(
            "tunneld: {}:3: Match needs criteria (all, host, originalhost, user, ...)\n",
            config.display()
        )
    );
}

#[test]
fn jump_hosts_of_a_command_line_are_hosts_entries() {
    let args = [
        "-N",
        "-J",
        "admin@192.0.2.1:2200,192.0.2.2",
        "-L",
        "5432:db:5432",
        "dbuser@192.0.2.9",
    ];
    let mut command = vec!["import-ssh-command", "--name", "db", "--", "ssh"];
    command.extend(args);
    let (_, toml, stderr) = tunneld(&command);
    let dir = harness::TestDir::new();
    let imported = load(&dir.write("imported.toml", &toml));
    let tunnel = &imported.tunnels[0];
    let mut ssh_args = vec!["-F", "none"];
    ssh_args.extend(args);
    let ssh = ssh_g(&ssh_args);
    // ssh prints an address hop in brackets.
    assert_eq!(ssh["proxyjump"], ["admin@192.0.2.1:2200,[192.0.2.2]"]);
    let hops: Vec<(&str, u16, &str)> = tunnel
        .jump
        .iter()
        .map(|hop| (hop.hostname.as_str(), hop.port, hop.user.as_str()))
        .collect();
    let me = user();
    assert_eq!(
        hops,
        [("192.0.2.1", 2200, "admin"), ("192.0.2.2", 22, me.as_str())],
        "{toml}{stderr}"
    );
    assert_eq!(
        (tunnel.name.as_str(), tunnel.target.user.as_str()),
        ("db", ssh["user"][0].as_str())
    );
}

#[test]
fn gateway_ports_and_clear_all_forwardings_change_the_forwards_as_in_ssh() {
    let dir = harness::TestDir::new();
    let key = KeyPair::generate(dir.path(), "id");
    let config = dir.write(
        "config",
        format!(
            "Host lan\n  HostName 192.0.2.3\n  GatewayPorts yes\n  LocalForward 8080 web:80\n  \
             LocalForward 127.0.0.1:8081 web:81\n  DynamicForward 1080\n  \
             RemoteForward 9000 localhost:3000\n\
             Host cleared\n  HostName 192.0.2.4\n  ClearAllForwardings yes\n  \
             LocalForward 8082 web:82\n\
             Host gw\n  HostName 192.0.2.5\n  LocalForward 8083 web:83\n\
             Host inner\n  HostName 192.0.2.6\n  ProxyJump gw\n  LocalForward 8084 web:84\n\
             Host *\n  IdentityFile {}\n",
            key.private.display()
        ),
    );
    let config = config.to_str().unwrap();
    let (status, toml, stderr) = tunneld(&["import-ssh-config", "-f", config, "lan", "cleared"]);
    // `cleared` has no forward: ssh makes none (ClearAllForwardings).
    assert_eq!(status, Some(0), "{toml}{stderr}");
    assert_eq!(ssh_g(&["-F", config, "lan"])["gatewayports"], ["yes"]);
    assert_eq!(
        ssh_g(&["-F", config, "cleared"])["clearallforwardings"],
        ["yes"]
    );
    for expected in [
        "local = [\"*:8080:web:80\", \"127.0.0.1:8081:web:81\"]\n",
        "dynamic = [\"*:1080\"]\n",
        "remote = [\"9000:localhost:3000\"]\n",
        "# ClearAllForwardings yes (",
        "# no [tunnels.cleared]: no forward that tunneld takes; add one with host = \"cleared\"\n",
    ] {
        assert!(toml.contains(expected), "{expected:?} missing from\n{toml}");
    }
    assert!(
        !toml.contains("8082") && !toml.contains("\n[tunnels.cleared]"),
        "{toml}"
    );
    // The host without forwards is an entry, not a tunnel that check would refuse.
    let out = dir.write("imported.toml", &toml);
    let (status, stdout, stderr) = tunneld(&["check", "--config", out.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{toml}\n{stdout}{stderr}");

    // A jump host's forwards are not the tunnel's: ssh -J makes none for it.
    let (status, toml, stderr) = tunneld(&["import-ssh-config", "-f", config, "inner"]);
    assert_eq!(status, Some(0), "{toml}{stderr}");
    assert!(!toml.contains("8083"), "{toml}");
    assert!(
        toml.contains("# its forwards apply when it is the destination, not when it is a jump"),
        "{toml}"
    );
}
