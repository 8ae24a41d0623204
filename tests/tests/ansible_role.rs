//! The Ansible role `packaging/ansible/roles/tunneld`, for real.
//!
//! - `role_lints_clean`: `ansible-lint --offline` (production profile) and
//!   `ansible-playbook --syntax-check` of the test play and of the README's example.
//! - `filter_plugin_unit_tests`: the role's TOML writer (`to_tunneld_toml`) and package
//!   chooser, through pytest, round-tripped through tomllib and through this tree's
//!   `tunneld check`.
//! - `role_deploys_reloads_and_removes_tunnel_sets_under_systemd`: the role applied with
//!   `-c local` inside the container of the systemd tests (a real systemd as PID 1, the
//!   container's own sshd as the server of every tunnel), installing the Debian package of
//!   `packaging/build-deb.sh` (or `$TUNNELD_TEST_DEB`): a first run that changes things, a
//!   second that changes nothing, bytes both ways through every forward, an upgrade to a
//!   repacked higher version (the role waits for the package's restart), `--check --diff` of a
//!   change (shown, not done), the change itself: a changed tunnel that
//!   reloads its instance (same MainPID, the unchanged tunnel keeps its sshd session, the other
//!   instance untouched), a bad variable refused at validate with tunneld's message and nothing
//!   changed, `state: absent`, and a change that validates but cannot come up failing the host
//!   with the instance's status.
//! - `role_generates_keys_on_the_device_and_installs_their_lines_on_the_server`:
//!   `tunneld_generate_keys` in the same kind of container (packaging/ansible/tests/
//!   generate-keys.yml): the device's `tunneld keygen` makes the key, its restricted line is
//!   installed in the server account's authorized_keys with `delegate_to`, and the tunnel (a
//!   local and a remote dynamic forward) comes up with it.
//!
//! Ansible comes from PyPI, pinned, in a venv made once by `packaging/ansible/venv.sh` (cached
//! next to the container's rootfs); inside the container the venv's packages run with the
//! container's python3 (the same Debian version). Skipped, saying why, where impossible (not
//! root, no PyPI), except in CI, where they must run.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::nspawn::{self, Container, RunDir, poll};
use harness::service::{self, build_deb, in_ci, rootfs_or_skip, ssh_through};
use harness::tunneld_bin;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn ansible_dir() -> PathBuf {
    workspace().join("packaging/ansible")
}

/// The venv of `packaging/ansible/venv.sh`, or why there cannot be one here (skip outside CI).
fn venv_or_skip(test: &str) -> Option<PathBuf> {
    let started = Instant::now();
    let output = Command::new(ansible_dir().join("venv.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run packaging/ansible/venv.sh");
    match output.status.code() {
        Some(0) => {
            let venv = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            eprintln!(
                "ansible: venv {} ready after {:.1} s",
                venv.display(),
                started.elapsed().as_secs_f64()
            );
            Some(venv)
        }
        Some(3) => {
            assert!(
                !in_ci(),
                "CI must run {test}, but packaging/ansible/venv.sh says it cannot work here (above)"
            );
            eprintln!("SKIPPED: {test}: no Ansible venv here (see venv.sh's message above)");
            None
        }
        _ => panic!(
            "packaging/ansible/venv.sh failed ({}); its messages are above",
            output.status
        ),
    }
}

/// A program of the venv, run on the host in packaging/ansible with a clean environment.
fn venv_command(venv: &Path, program: &str) -> Command {
    let mut command = Command::new(venv.join("bin").join(program));
    command
        .current_dir(ansible_dir())
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                venv.join("bin").display()
            ),
        )
        .env(
            "HOME",
            std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
        )
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn role_lints_clean() {
    let Some(venv) = venv_or_skip("role_lints_clean") else {
        return;
    };
    let started = Instant::now();
    // The configuration (production profile, offline) is packaging/ansible/.ansible-lint.
    let lint = venv_command(&venv, "ansible-lint").output().unwrap();
    let lint_text = text(&lint);
    eprintln!(
        "ansible: ansible-lint in {:.1} s:\n{lint_text}",
        started.elapsed().as_secs_f64()
    );
    assert!(lint.status.success(), "ansible-lint failed:\n{lint_text}");
    assert!(
        lint_text.contains("Profile 'production' was required, and it passed"),
        "ansible-lint did not check the production profile:\n{lint_text}"
    );

    for (dir, playbook) in [
        ("tests", "container.yml"),
        ("tests", "generate-keys.yml"),
        ("examples/pi-fleet", "site.yml"),
    ] {
        let check = venv_command(&venv, "ansible-playbook")
            .current_dir(ansible_dir().join(dir))
            .env("ANSIBLE_ROLES_PATH", ansible_dir().join("roles"))
            .args(["--syntax-check", "-i", "localhost,", playbook])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "ansible-playbook --syntax-check {dir}/{playbook} failed:\n{}",
            text(&check)
        );
    }
}

#[test]
fn filter_plugin_unit_tests() {
    let Some(venv) = venv_or_skip("filter_plugin_unit_tests") else {
        return;
    };
    let started = Instant::now();
    let pytest = venv_command(&venv, "pytest")
        .args(["-q", "-p", "no:cacheprovider", "-rs", "tests"])
        .env("TUNNELD_BIN", tunneld_bin())
        .output()
        .unwrap();
    let out = text(&pytest);
    eprintln!(
        "ansible: pytest in {:.1} s:\n{out}",
        started.elapsed().as_secs_f64()
    );
    assert!(pytest.status.success(), "pytest failed:\n{out}");
    assert!(
        !out.contains("skipped"),
        "no filter test may be skipped here (tunneld and dpkg are at hand):\n{out}"
    );
}

/// The package under test: `$TUNNELD_TEST_DEB` when set (a package built before, so that the
/// release build is not repeated), else `packaging/build-deb.sh --revision 1`.
fn package() -> PathBuf {
    match std::env::var_os("TUNNELD_TEST_DEB") {
        Some(deb) => {
            let deb = PathBuf::from(deb);
            assert!(
                deb.is_file(),
                "TUNNELD_TEST_DEB={} is not a file",
                deb.display()
            );
            eprintln!("ansible: using TUNNELD_TEST_DEB={}", deb.display());
            deb
        }
        None => build_deb(&["--revision", "1"]),
    }
}

/// Copies `from` into `to`, as hard links where both are on one filesystem (the venv's
/// packages are 100 MB in thousands of files; the run directory is next to the venv).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    let linked = Command::new("cp")
        .args(["-a", "--link"])
        .arg(from)
        .arg(to)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    if !linked.success() {
        let _ = fs::remove_dir_all(to);
        let copied = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(
            copied.success(),
            "cp -a {} {}",
            from.display(),
            to.display()
        );
    }
}

/// A copy of the package `deb` with a higher version (`VERSION+upgrade1`) in `dir`, to upgrade
/// to; returns its version.
fn repack_as_upgrade(deb: &Path, dir: &Path) -> String {
    fs::create_dir_all(dir).unwrap();
    let tree = dir.join("tree");
    let status = Command::new("dpkg-deb")
        .arg("-R")
        .arg(deb)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb -R {}", deb.display());
    let control = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("Version: in the package's control file")
        .to_owned();
    let upgrade = format!("{version}+upgrade1");
    fs::write(
        &control,
        text.replace(
            &format!("Version: {version}\n"),
            &format!("Version: {upgrade}\n"),
        ),
    )
    .unwrap();
    let out = dir.join(format!("tunneld_{upgrade}_amd64.deb"));
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(built.success(), "dpkg-deb -b {}", out.display());
    fs::remove_dir_all(&tree).unwrap();
    upgrade
}

/// Python's `major.minor` of an interpreter.
fn python_version(python: &str, run: impl Fn(&str) -> String) -> String {
    run(&format!(
        "{python} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
    ))
    .trim()
    .to_owned()
}

/// What the container sees as /opt/tunneld: the packages (the one under test and decoys that
/// the role must not pick; in debs-upgrade/, an upgrade of it), the role and the test play, and
/// the venv's Python packages. Returns the upgrade's version.
fn stage(opt: &Path, deb: &Path, venv: &Path, pyver: &str) -> String {
    let debs = opt.join("debs");
    fs::create_dir_all(&debs).unwrap();
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("tunneld_") && name.ends_with("_amd64.deb"),
        "the package under test must be tunneld_<version>_amd64.deb (the container is amd64): {name}"
    );
    fs::copy(deb, debs.join(&name)).unwrap();
    // Another architecture's newer package, and an older one of this architecture: neither is
    // a real package, so picking one fails the install.
    for decoy in [
        "tunneld_99.0.0-1_arm64.deb",
        "tunneld_99.0.0-1_armhf.deb",
        "tunneld_0.0.1-1_amd64.deb",
    ] {
        fs::write(
            debs.join(decoy),
            "not a package: the role must not choose it\n",
        )
        .unwrap();
    }
    let ansible = opt.join("ansible");
    copy_tree(&ansible_dir().join("roles"), &ansible.join("roles"));
    fs::create_dir_all(ansible.join("tests")).unwrap();
    for play in ["container.yml", "generate-keys.yml"] {
        fs::copy(
            ansible_dir().join("tests").join(play),
            ansible.join("tests").join(play),
        )
        .unwrap();
    }
    copy_tree(
        &venv.join(format!("lib/python{pyver}/site-packages")),
        &opt.join("python"),
    );
    repack_as_upgrade(deb, &opt.join("debs-upgrade"))
}

/// After [`service::SSHD`]: the key the role deploys (made here, read by the play with a
/// lookup), and the accounts of the tunnels: ta1 and ta2 (set alpha), tb1 (set beta), each
/// accepting that key; `tunnel` is the test's own client's. One account per tunnel: its sshd
/// session is then the one process that account runs.
const SETUP: &str = r#"set -euo pipefail
install -d -m 0700 /root/tunneld-ansible-test
ssh-keygen -q -t ed25519 -N '' -C tunneld-ansible-test -f /root/tunneld-ansible-test/id_ed25519
for u in tunnel ta1 ta2 tb1; do
    id "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
    install -d -m 0700 -o "$u" -g "$u" "/home/$u/.ssh"
    install -m 0600 -o "$u" -g "$u" /root/tunneld-ansible-test/id_ed25519.pub "/home/$u/.ssh/authorized_keys"
done
"#;

/// One ansible-playbook run inside: its success, the recap's `changed=` and its output.
struct Play {
    ok: bool,
    changed: u32,
    output: String,
    took: Duration,
}

/// Runs the test play inside the container with these extra variables (JSON), `-c local`.
fn play(c: &Container, extra_vars: &str, args: &str) -> Play {
    play_file(c, "container.yml", extra_vars, args)
}

/// Runs the play `file` of packaging/ansible/tests inside the container, `-c local`.
fn play_file(c: &Container, file: &str, extra_vars: &str, args: &str) -> Play {
    let started = Instant::now();
    let script = format!(
        "cd /opt/tunneld/ansible/tests && \
         HOME=/root PYTHONPATH=/opt/tunneld/python PYTHONDONTWRITEBYTECODE=1 \
         ANSIBLE_ROLES_PATH=/opt/tunneld/ansible/roles ANSIBLE_NOCOLOR=1 \
         ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
         python3 -m ansible.cli.playbook -i localhost, -c local {args} -e '{extra_vars}' {file} 2>&1"
    );
    let output = c.exec(&script, Duration::from_secs(600));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let recap = text
        .lines()
        .skip_while(|line| !line.starts_with("PLAY RECAP"))
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let field = |name: &str| -> u32 {
        recap
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the recap {recap:?}; output:\n{text}"))
    };
    let changed = field("changed=");
    let ok = output.status.success() && field("failed=") == 0;
    Play {
        ok,
        changed,
        // Failures are printed as JSON: unescape the quotes, so that messages read as written.
        output: text.replace("\\\"", "\""),
        took: started.elapsed(),
    }
}

const ALPHA: &str = "tunneld@alpha.service";
const BETA: &str = "tunneld@beta.service";
const KEY: &str = "/root/tunneld-ansible-test/id_ed25519";
/// Forwards of the test play: alpha's a1 and a2, beta's b1 (local), beta's remote forward.
const A1: u16 = 15001;
const A2: u16 = 15002;
const A2_CHANGED: u16 = 15012;
const B1: u16 = 15003;
const B1_REMOTE: u16 = 2222;
/// The extra variable of every run after the upgrade (else the role would go back to the
/// older package of /opt/tunneld/debs).
const UPGRADED: &str = r#""tunneld_deb_dir": "/opt/tunneld/debs-upgrade""#;

/// Sends `mib` MiB of random bytes through the forward on `port` to `cat` on the container's
/// sshd and back, with a real ssh client that trusts only what the role pinned.
fn assert_round_trip(c: &Container, port: u16, mib: u32, when: &str) {
    service::assert_round_trip(c, &ssh_through(port, KEY, "tunnel"), mib, when);
}

/// Whether something accepts connections on 127.0.0.1:`port` inside.
fn listening(c: &Container, port: u16) -> bool {
    c.exec(
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
        Duration::from_secs(10),
    )
    .status
    .success()
}

/// The pid of the sshd session that `user` is logged in with: the one process that account
/// runs (the tunnels' accounts run nothing else; `sshd: USER [priv]` is root's). Waits until
/// there is exactly one.
fn session(c: &Container, user: &str, when: &str) -> String {
    let mut last = String::new();
    poll(Duration::from_secs(20), Duration::from_millis(100), || {
        last = c.run(&format!("pgrep -u {user} || true"));
        let pids: Vec<&str> = last.split_whitespace().collect();
        (pids.len() == 1).then(|| pids[0].to_owned())
    })
    .unwrap_or_else(|| {
        panic!(
            "{when}: not exactly one sshd session of {user}: {last:?}; {}",
            c.run("ps -eo pid,user,args | grep [s]shd || true")
        )
    })
}

/// How many times the instance's tunneld has logged that it reloads ("reloading (SIGHUP)", or
/// "reloading (control socket)" for `systemctl reload`, which runs `tunneld reload`).
fn reloads(c: &Container, unit: &str) -> usize {
    c.run(&format!("journalctl -u {unit} --no-pager -o cat"))
        .lines()
        .filter(|l| l.contains("reloading ("))
        .count()
}

fn file_state(c: &Container, path: &str) -> String {
    c.run(&format!(
        "printf '%s %s\\n' \"$(stat -c '%U:%G %a' {path})\" \"$(sha256sum < {path} | cut -d' ' -f1)\""
    ))
    .trim()
    .to_owned()
}

fn assert_play(p: &Play, what: &str) {
    assert!(p.ok, "{what}: the play failed:\n{}", p.output);
    eprintln!(
        "ansible: {what}: changed={} in {:.1} s",
        p.changed,
        p.took.as_secs_f64()
    );
}

#[test]
fn role_deploys_reloads_and_removes_tunnel_sets_under_systemd() {
    let test = "role_deploys_reloads_and_removes_tunnel_sets_under_systemd";
    let total = Instant::now();
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(venv) = venv_or_skip(test) else {
        return;
    };
    let deb = package();
    let prepared = total.elapsed();

    let host_python = Command::new(venv.join("bin/python"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    let pyver = String::from_utf8_lossy(&host_python.stdout)
        .trim()
        .to_owned();

    nspawn::clean_leftovers();
    let run = RunDir::new();
    let upgrade_version = stage(&run.opt(), &deb, &venv, &pyver);
    let c = Container::boot(&rootfs, run);
    eprintln!(
        "ansible: container booted in {:.2} s",
        c.booted_in().as_secs_f64()
    );
    let inside = python_version("python3", |s| c.run(s));
    assert_eq!(
        inside, pyver,
        "the container's python3 must be the venv's version to run its packages \
         (set TUNNELD_ANSIBLE_PYTHON to a python{inside} for venv.sh)"
    );
    c.run(service::SSHD);
    c.run(SETUP);

    // First run: installs the package, writes keys, host keys and both sets, starts them and
    // waits until they are up. --diff shows the files; never the key.
    let first = play(&c, "{}", "--diff");
    eprintln!("ansible: the first run said:\n{}", first.output);
    assert_play(&first, "first run");
    assert!(
        first.changed > 0,
        "the first run must change things:\n{}",
        first.output
    );
    let key_body = c.run(&format!("sed -n 2p {KEY}"));
    assert!(
        !first.output.contains(key_body.trim()),
        "the private key appeared in Ansible's output:\n{}",
        first.output
    );
    let installed = c.run("dpkg-query -W -f='${Status} ${Version}' tunneld");
    let deb_name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        installed.starts_with("install ok installed ")
            && deb_name.contains(&format!(
                "_{}_",
                installed.split_whitespace().last().unwrap()
            )),
        "the package under test ({deb_name}) must be installed: {installed}"
    );
    let layout = c.run(
        "stat -c '%n %U:%G %a' /etc/tunneld /etc/tunneld/keys /etc/tunneld/keys/test \
         /etc/tunneld/alpha.toml /etc/tunneld/beta.toml /etc/tunneld/known_hosts; \
         cmp /etc/tunneld/keys/test /root/tunneld-ansible-test/id_ed25519 && echo key-identical; \
         systemctl is-enabled tunneld@alpha tunneld@beta | tr '\\n' ' '; echo",
    );
    for line in [
        "/etc/tunneld root:tunneld 750",
        "/etc/tunneld/keys root:tunneld 750",
        "/etc/tunneld/keys/test tunneld:tunneld 600",
        "/etc/tunneld/alpha.toml root:tunneld 640",
        "/etc/tunneld/beta.toml root:tunneld 640",
        "/etc/tunneld/known_hosts root:root 644",
        "key-identical",
        "enabled enabled",
    ] {
        assert!(
            layout.contains(line),
            "after the first run, {line:?} is missing:\n{layout}"
        );
    }
    let pinned = c.run("cat /etc/tunneld/known_hosts");
    let host_key = c.run("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(pinned.trim(), format!("127.0.0.1 {}", host_key.trim()));
    eprintln!(
        "ansible: beta.toml as the role wrote it:\n{}",
        c.run("cat /etc/tunneld/beta.toml")
    );
    // The role waited for these: each set says all its tunnels are up.
    assert_eq!(c.property(ALPHA, "StatusText"), "2/2 tunnels up");
    assert_eq!(c.property(BETA, "StatusText"), "1/1 tunnels up");
    for port in [A1, A2, B1, B1_REMOTE] {
        assert_round_trip(&c, port, 2, "after the first run");
    }

    // Second run: nothing to do.
    let second = play(&c, "{}", "");
    assert_play(&second, "second run");
    assert_eq!(
        second.changed, 0,
        "the second run must change nothing:\n{}",
        second.output
    );

    // A new package: the package restarts the running instances (after dpkg, from a transient
    // timer); the role waits for that restart and for the tunnels before it returns.
    let (alpha_old, beta_old) = (c.property(ALPHA, "MainPID"), c.property(BETA, "MainPID"));
    let upgrade = play(&c, &format!("{{{UPGRADED}}}"), "");
    assert_play(&upgrade, "package upgrade");
    let installed = c.run("dpkg-query -W -f='${Version}' tunneld");
    assert_eq!(
        installed.trim(),
        upgrade_version,
        "the upgrade must be installed"
    );
    assert_eq!(
        c.property("tunneld-upgrade-restart.service", "LoadState"),
        "not-found",
        "the role must wait until the package's restart has run"
    );
    let (alpha_pid, beta_pid) = (c.property(ALPHA, "MainPID"), c.property(BETA, "MainPID"));
    assert!(
        alpha_pid != alpha_old && beta_pid != beta_old,
        "the upgrade must restart both instances (MainPID {alpha_old} -> {alpha_pid}, {beta_old} -> {beta_pid})"
    );
    assert_eq!(
        c.property(ALPHA, "StatusText"),
        "2/2 tunnels up",
        "the role waited for this"
    );
    assert_eq!(
        c.property(BETA, "StatusText"),
        "1/1 tunnels up",
        "the role waited for this"
    );
    assert_round_trip(&c, A1, 1, "after the upgrade");

    // One tunnel of one set changes: alpha reloads (same process), its unchanged tunnel a1
    // keeps its sshd session, a2 gets a new one, and beta is not touched at all.
    let beta_pid = c.property(BETA, "MainPID");
    let a1 = session(&c, "ta1", "before the change");
    let a2 = session(&c, "ta2", "before the change");
    let b1 = session(&c, "tb1", "before the change");
    let (alpha_reloads, beta_reloads) = (reloads(&c, ALPHA), reloads(&c, BETA));
    let changed_a2 = format!(r#"{{{UPGRADED}, "alpha_a2_local": ["{A2_CHANGED}:127.0.0.1:22"]}}"#);

    // --check --diff first: it shows the change and does nothing.
    let alpha_file = file_state(&c, "/etc/tunneld/alpha.toml");
    let check = play(&c, &changed_a2, "--check --diff");
    assert_play(&check, "check mode");
    assert!(
        check.changed > 0
            && check
                .output
                .contains(&format!("+local = [\"{A2_CHANGED}:127.0.0.1:22\"]")),
        "--check --diff must show the change:\n{}",
        check.output
    );
    assert_eq!(
        file_state(&c, "/etc/tunneld/alpha.toml"),
        alpha_file,
        "--check wrote the file"
    );
    assert_eq!(reloads(&c, ALPHA), alpha_reloads, "--check reloaded alpha");
    assert_eq!(c.property(ALPHA, "MainPID"), alpha_pid);

    let change = play(&c, &changed_a2, "--diff");
    eprintln!("ansible: the run that changes a2 said:\n{}", change.output);
    assert_play(&change, "one tunnel changed");
    assert!(change.changed > 0, "{}", change.output);
    assert_eq!(
        c.property(ALPHA, "MainPID"),
        alpha_pid,
        "alpha must be reloaded, not restarted"
    );
    assert_eq!(
        reloads(&c, ALPHA),
        alpha_reloads + 1,
        "alpha must have reloaded once:\n{}",
        c.run(&format!(
            "journalctl -u {ALPHA} --no-pager -o short-monotonic"
        ))
    );
    assert_eq!(
        session(&c, "ta1", "after the change"),
        a1,
        "the unchanged tunnel a1 must keep its sshd session across the reload"
    );
    let a2_after = session(&c, "ta2", "after the change");
    assert_ne!(a2_after, a2, "the changed tunnel a2 must have reconnected");
    assert_eq!(
        c.property(BETA, "MainPID"),
        beta_pid,
        "beta must not be touched"
    );
    assert_eq!(reloads(&c, BETA), beta_reloads, "beta must not be reloaded");
    assert_eq!(
        session(&c, "tb1", "after the change"),
        b1,
        "beta's session must stay"
    );
    assert_eq!(c.property(ALPHA, "StatusText"), "2/2 tunnels up");
    assert!(!listening(&c, A2), "a2's old port {A2} must be closed");
    assert_round_trip(&c, A2_CHANGED, 2, "through a2's new port");
    assert_round_trip(&c, A1, 2, "through a1 after alpha's reload");

    // A bad variable: tunneld check refuses the file, the play fails with tunneld's message,
    // and the file, the process and a1's session stay as they were.
    let alpha_file = file_state(&c, "/etc/tunneld/alpha.toml");
    let bad = play(
        &c,
        &format!(
            r#"{{{UPGRADED}, "alpha_a2_local": ["{A2_CHANGED}:127.0.0.1:22"], "alpha_a1_local": ["{A1}:localhost"]}}"#
        ),
        "",
    );
    eprintln!(
        "ansible: bad variable: failed in {:.1} s",
        bad.took.as_secs_f64()
    );
    assert!(!bad.ok, "a bad forward must fail the play:\n{}", bad.output);
    assert!(
        bad.output.contains(&format!(
            "tunnels.a1.local[0]: \"{A1}:localhost\" is not [bind:]port:host:hostport"
        )),
        "the play must fail with tunneld check's message:\n{}",
        bad.output
    );
    assert_eq!(
        file_state(&c, "/etc/tunneld/alpha.toml"),
        alpha_file,
        "the file must stay"
    );
    assert_eq!(c.property(ALPHA, "MainPID"), alpha_pid);
    assert_eq!(
        reloads(&c, ALPHA),
        alpha_reloads + 1,
        "nothing may be reloaded"
    );
    assert_eq!(session(&c, "ta1", "after the bad variable"), a1);
    assert_round_trip(&c, A1, 1, "after the bad variable");

    // state: absent stops, disables and deletes beta; alpha goes on untouched.
    let absent = play(
        &c,
        &format!(
            r#"{{{UPGRADED}, "alpha_a2_local": ["{A2_CHANGED}:127.0.0.1:22"], "beta_state": "absent"}}"#
        ),
        "",
    );
    assert_play(&absent, "beta absent");
    let gone = c.run(
        "echo active=$(systemctl is-active tunneld@beta || true) \
         enabled=$(systemctl is-enabled tunneld@beta 2>/dev/null || true); \
         test -e /etc/tunneld/beta.toml && echo file-left || echo file-gone",
    );
    assert!(
        gone.contains("active=inactive")
            && gone.contains("enabled=disabled")
            && gone.contains("file-gone"),
        "state: absent must stop, disable and delete beta: {gone}"
    );
    poll(Duration::from_secs(20), Duration::from_millis(100), || {
        c.run("pgrep -u tb1 || true")
            .trim()
            .is_empty()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("beta's sshd session outlived its instance"));
    assert!(!listening(&c, B1), "beta's forward must be closed");
    assert_eq!(c.property(ALPHA, "MainPID"), alpha_pid);
    assert_eq!(
        reloads(&c, ALPHA),
        alpha_reloads + 1,
        "alpha must not be reloaded"
    );
    assert_eq!(session(&c, "ta1", "after beta was removed"), a1);

    // A change that tunneld check accepts but that cannot come up (an account that does not
    // accept the key): the reload applies it, and the play fails the host with the status.
    let refused = play(
        &c,
        &format!(
            r#"{{{UPGRADED}, "alpha_a2_local": ["{A2_CHANGED}:127.0.0.1:22"], "beta_state": "absent", "alpha_a2_user": "nobody", "tunneld_wait_timeout": 6}}"#
        ),
        "",
    );
    eprintln!(
        "ansible: a tunnel that cannot come up: failed in {:.1} s",
        refused.took.as_secs_f64()
    );
    assert!(
        !refused.ok,
        "a tunnel that is not up must fail the play:\n{}",
        refused.output
    );
    assert!(
        refused.output.contains(
            "tunneld@alpha did not report every tunnel up within 6 s: \"1/2 tunnels up; a2:"
        ),
        "the play must fail with the instance's status:\n{}",
        refused.output
    );
    assert_eq!(c.property(ALPHA, "MainPID"), alpha_pid);
    assert_eq!(session(&c, "ta1", "after a2 was refused"), a1);
    assert_round_trip(&c, A1, 1, "while a2 is refused");

    drop(c);
    eprintln!(
        "ansible: whole test {:.1} s (rootfs, venv and package ready after {:.1} s)",
        total.elapsed().as_secs_f64(),
        prepared.as_secs_f64()
    );
}

/// With `tunneld_generate_keys`: the device makes its key (owned by tunneld, never in Ansible's
/// output), the line keygen printed lands in the server account's authorized_keys through
/// `delegate_to`, and the tunnel comes up with it: bytes through the local forward, and curl on
/// the server side through the remote dynamic forward's SOCKS proxy. A second run changes
/// nothing; a changed forward replaces the line, the account's other lines stay.
#[test]
fn role_generates_keys_on_the_device_and_installs_their_lines_on_the_server() {
    let test = "role_generates_keys_on_the_device_and_installs_their_lines_on_the_server";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(venv) = venv_or_skip(test) else {
        return;
    };
    let deb = package();
    let host_python = Command::new(venv.join("bin/python"))
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    let pyver = String::from_utf8_lossy(&host_python.stdout)
        .trim()
        .to_owned();
    nspawn::clean_leftovers();
    let run = RunDir::new();
    stage(&run.opt(), &deb, &venv, &pyver);
    let c = Container::boot(&rootfs, run);
    c.run(service::SSHD);
    c.run(SETUP);
    // tg1: the tunnel's account, with no ~/.ssh at all; an unrelated line of its own file must
    // survive the role's later runs.
    c.run("useradd --create-home --shell /bin/bash tg1");

    let first = play_file(&c, "generate-keys.yml", "{}", "--diff");
    eprintln!("ansible: the first run said:\n{}", first.output);
    assert_play(&first, "first run with tunneld_generate_keys");
    let layout = c.run(
        "stat -c '%n %U:%G %a' /etc/tunneld/keys/gamma /home/tg1/.ssh \
         /home/tg1/.ssh/authorized_keys",
    );
    for line in [
        "/etc/tunneld/keys/gamma tunneld:tunneld 600",
        "/home/tg1/.ssh tg1:",
        "/home/tg1/.ssh/authorized_keys tg1:",
    ] {
        assert!(layout.contains(line), "{line:?} missing:\n{layout}");
    }
    let private = c.run("sed -n 2p /etc/tunneld/keys/gamma");
    assert!(
        !private.trim().is_empty() && !first.output.contains(private.trim()),
        "the private key appeared in Ansible's output:\n{}",
        first.output
    );
    let public = c.run("cut -d' ' -f1,2 /etc/tunneld/keys/gamma.pub");
    let device = c.run("hostname");
    let comment = format!("tunneld:g1@{}", device.trim());
    let authorized = c.run("cat /home/tg1/.ssh/authorized_keys");
    assert_eq!(
        authorized.trim(),
        format!(
            "restrict,port-forwarding,command=\"/usr/sbin/nologin\",permitopen=\"127.0.0.1:22\",\
             permitlisten=\"localhost:15022\" {} {comment}",
            public.trim()
        )
    );
    assert_eq!(
        c.property("tunneld@gamma.service", "StatusText"),
        "1/1 tunnels up"
    );
    assert_round_trip(&c, 15021, 1, "through the tunnel of the generated key");
    // The server side's curl, through the remote dynamic forward, reaches the device's sshd.
    let banner = c.run(
        "curl --silent --http0.9 --max-time 10 --socks5-hostname 127.0.0.1:15022 \
         http://127.0.0.1:22/ | head -c 7 || true",
    );
    assert_eq!(
        banner, "SSH-2.0",
        "curl through the SOCKS proxy on the server"
    );

    let second = play_file(&c, "generate-keys.yml", "{}", "");
    assert_play(&second, "second run");
    assert_eq!(
        second.changed, 0,
        "the second run must change nothing:\n{}",
        second.output
    );

    // Other forwards (another remote port): the same key, its line replaced; the account's own
    // line stays.
    c.run("echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwn other@elsewhere' >> /home/tg1/.ssh/authorized_keys");
    let changed = play_file(
        &c,
        "generate-keys.yml",
        r#"{"gamma_local": ["15023:127.0.0.1:22"], "gamma_remote": ["15024"]}"#,
        "",
    );
    assert_play(&changed, "a changed forward");
    let authorized = c.run("cat /home/tg1/.ssh/authorized_keys");
    let lines: Vec<&str> = authorized.lines().collect();
    assert_eq!(lines.len(), 2, "{authorized}");
    assert!(
        lines[0].contains("permitopen=\"127.0.0.1:22\",permitlisten=\"localhost:15024\"")
            && lines[0].ends_with(&comment),
        "{authorized}"
    );
    assert!(lines[1].ends_with("other@elsewhere"), "{authorized}");
    assert_eq!(
        c.run("cut -d' ' -f1,2 /etc/tunneld/keys/gamma.pub"),
        public,
        "the key stays"
    );
    assert_round_trip(&c, 15023, 1, "after the change");
}
