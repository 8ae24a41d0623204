//! User certificates against a real OpenSSH sshd that trusts a CA (`TrustedUserCAKeys`) and
//! whose authorized_keys does not hold the keys: only a certificate can log in. Certificates are
//! made by the real `ssh-keygen -s`, keys put in a real `ssh-agent` with `ssh-add`, and each
//! tunnel is proven by a round trip through a `local` forward.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::{
    EchoServer, KeyKind, KeyPair, SshAgent, Sshd, TestDir, TunneldProcess, free_port, localhost,
    random_bytes, try_echo, tunneld_bin,
};
use support::{InProcess, echo_through, write_config};
use tunneld_ssh::FailureKind;
use tunneld_supervisor::TunnelState;

const LOG_TIMEOUT: Duration = Duration::from_secs(20);

/// The principal the CA signs for; sshd maps it to the login user with an
/// AuthorizedPrincipalsFile, as sites with a CA commonly do.
const PRINCIPAL: &str = "tunnel_user";

/// A site with an SSH CA: an ed25519 CA and an RSA CA, an sshd that trusts both for user
/// certificates, and a directory for keys and tunneld's files.
struct Site {
    dir: TestDir,
    ed25519_ca: KeyPair,
    rsa_ca: KeyPair,
    sshd: Sshd,
    echo: EchoServer,
}

impl Site {
    /// `log_level` DEBUG1 makes sshd log the algorithm of each offer.
    fn new(log_level: &str) -> Self {
        let dir = TestDir::new();
        let ed25519_ca = KeyPair::generate(dir.path(), "ed25519_ca");
        let rsa_ca = KeyPair::generate_rsa(dir.path(), "rsa_ca");
        let cas = dir.write(
            "trusted_user_cas",
            format!("{}\n{}\n", ed25519_ca.public_line(), rsa_ca.public_line()),
        );
        let principals = dir.write("principals", format!("{PRINCIPAL}\n"));
        // sshd 9.2's defaults otherwise: no PubkeyAcceptedAlgorithms, so ssh-rsa (SHA-1)
        // signatures and ssh-rsa-cert-v01 are refused.
        let sshd = Sshd::builder()
            .config_line(format!("TrustedUserCAKeys {}", cas.display()))
            .config_line(format!("AuthorizedPrincipalsFile {}", principals.display()))
            .log_level(log_level)
            .start();
        Site {
            dir,
            ed25519_ca,
            rsa_ca,
            sshd,
            echo: EchoServer::start(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A key pair in the site's directory that authorized_keys does not hold.
    fn key(&self, name: &str, kind: KeyKind) -> KeyPair {
        KeyPair::generate_with(self.path(), name, kind, None)
    }

    /// The configuration of one tunnel `t` to the site's sshd, authenticating with `auth` (the
    /// identity_files, certificate_files and use_agent lines), forwarding a free port to the
    /// echo server. Returns the file and the port.
    fn config(&self, auth: &str) -> (PathBuf, u16) {
        let known_hosts = self.path().join("known_hosts");
        self.sshd.write_known_hosts(&known_hosts);
        let port = free_port();
        let text = format!(
            "[defaults]\nuser = \"{user}\"\nknown_hosts = \"{kh}\"\nbackoff_min = \"100ms\"\n\
             backoff_max = \"2s\"\nconnect_timeout = \"10s\"\n\n\
             [tunnels.t]\nhost = \"127.0.0.1:{sshd}\"\n{auth}local = [\"{port}:127.0.0.1:{echo}\"]\n",
            user = self.sshd.user(),
            kh = known_hosts.display(),
            sshd = self.sshd.port(),
            echo = self.echo.port(),
        );
        (write_config(self.path(), &text), port)
    }

    /// Whether sshd logged a login of the test user with a certificate `id` of type `kind`
    /// (`ED25519-CERT`, `RSA-CERT`).
    fn logged_in_with(&self, kind: &str, id: &str) -> bool {
        let expected = format!("Accepted publickey for {}", self.sshd.user());
        self.sshd.log().lines().any(|line| {
            line.contains(&expected) && line.contains(kind) && line.contains(&format!("ID {id} "))
        })
    }
}

/// `ssh-keygen -s CA -I ID -n PRINCIPALS -V VALIDITY KEY.pub`, which writes `KEY-cert.pub`
/// beside the key (replacing an older one); returns that file.
fn sign(ca: &KeyPair, key: &KeyPair, id: &str, principals: &str, validity: &str) -> PathBuf {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.private)
        .args(["-I", id, "-n", principals, "-V", validity])
        .arg(&key.public)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ssh-keygen -s: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut cert = key.private.clone().into_os_string();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

fn identity_files(keys: &[&KeyPair]) -> String {
    let paths: Vec<String> = keys
        .iter()
        .map(|key| format!("\"{}\"", key.private.display()))
        .collect();
    format!("identity_files = [{}]\n", paths.join(", "))
}

/// `(reason, kind, permanent)` once the tunnel is backing off.
async fn failure(tunneld: &InProcess) -> (String, FailureKind, bool) {
    let state = tunneld
        .wait_for("t", support::UP_TIMEOUT, |s| {
            matches!(s, TunnelState::BackingOff { .. })
        })
        .await;
    let TunnelState::BackingOff {
        reason,
        kind,
        permanent,
        ..
    } = state
    else {
        unreachable!()
    };
    (reason, kind, permanent)
}

async fn round_trip(port: u16, seed: u64) {
    let payload = random_bytes(100_000, seed);
    assert!(echo_through(localhost(port), &payload).await == payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_certificate_beside_its_key_is_offered_without_being_named() {
    let site = Site::new("VERBOSE");
    let key = site.key("id_ed25519", KeyKind::Ed25519);
    sign(&site.ed25519_ca, &key, "beside", PRINCIPAL, "-5m:+1d");
    let (config, port) = site.config(&identity_files(&[&key]));
    let tunneld = InProcess::start(&config);
    tunneld.wait_up("t").await;
    round_trip(port, 1).await;
    assert!(
        site.logged_in_with("ED25519-CERT", "beside"),
        "{}",
        site.sshd.log()
    );
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_certificate_is_signed_with_sha2_so_a_default_sshd_accepts_it() {
    let site = Site::new("DEBUG1");
    let key = site.key("id_rsa", KeyKind::Rsa2048);
    sign(&site.rsa_ca, &key, "rsa-user", PRINCIPAL, "-5m:+1d");
    let (config, port) = site.config(&identity_files(&[&key]));
    let tunneld = InProcess::start(&config);
    tunneld.wait_up("t").await;
    round_trip(port, 2).await;
    assert!(
        site.logged_in_with("RSA-CERT", "rsa-user"),
        "{}",
        site.sshd.log()
    );
    // The offer named a SHA-2 certificate algorithm, and the signature that logged in had to
    // match it. OpenSSH 8.8 and later refuse the SHA-1 ssh-rsa-cert-v01 by default, so logging
    // in at all already says as much.
    let log = site.sshd.log();
    assert!(
        log.contains("pkalg rsa-sha2-512-cert-v01@openssh.com")
            || log.contains("pkalg rsa-sha2-256-cert-v01@openssh.com"),
        "{log}"
    );
    assert!(!log.contains("pkalg ssh-rsa-cert-v01@openssh.com"), "{log}");
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_named_in_certificate_files_goes_with_the_key_it_certifies() {
    let site = Site::new("VERBOSE");
    let plain = site.key("plain", KeyKind::Ed25519);
    let key = site.key("deploy", KeyKind::EcdsaP256);
    let signed = sign(&site.ed25519_ca, &key, "named", PRINCIPAL, "-5m:+1d");
    // Kept elsewhere, under another name: nothing but certificate_files points to it.
    let named = site.path().join("certs").join("deploy.cert");
    std::fs::create_dir_all(named.parent().unwrap()).unwrap();
    std::fs::rename(&signed, &named).unwrap();
    let auth = format!(
        "{}certificate_files = [\"{}\"]\n",
        identity_files(&[&plain, &key]),
        named.display()
    );
    let (config, port) = site.config(&auth);
    let tunneld = InProcess::start(&config);
    tunneld.wait_up("t").await;
    round_trip(port, 3).await;
    assert!(
        site.logged_in_with("ECDSA-CERT", "named"),
        "{}",
        site.sshd.log()
    );
    tunneld.stop().await;
}

fn run_with_agent(config: &Path, agent: &SshAgent) -> TunneldProcess {
    TunneldProcess::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", agent.socket().to_str().unwrap())],
    )
}

#[test]
fn certificates_held_by_the_agent_ed25519_and_rsa() {
    for (kind, ca_is_rsa, cert_type) in [
        (KeyKind::Ed25519, false, "ED25519-CERT"),
        (KeyKind::Rsa2048, true, "RSA-CERT"),
    ] {
        let site = Site::new("VERBOSE");
        let key = site.key("agent_key", kind);
        let ca = if ca_is_rsa {
            &site.rsa_ca
        } else {
            &site.ed25519_ca
        };
        sign(ca, &key, "in-agent", PRINCIPAL, "-5m:+1d");
        let agent = SshAgent::start(site.path());
        // ssh-add adds the certificate beside the key with it; the key file is then removed,
        // so only the agent can sign.
        agent.add(&key);
        assert!(
            agent.list().contains("-cert-v01@openssh.com"),
            "{}",
            agent.list()
        );
        std::fs::remove_file(&key.private).unwrap();
        let (config, port) = site.config("use_agent = true\n");
        let tunneld = run_with_agent(&config, &agent);
        tunneld.expect_log(
            "authenticated with a certificate through the agent",
            LOG_TIMEOUT,
        );
        let payload = random_bytes(50_000, 4);
        assert_eq!(try_echo(port, &payload, LOG_TIMEOUT).unwrap(), payload);
        assert!(
            site.logged_in_with(cert_type, "in-agent"),
            "{}",
            site.sshd.log()
        );
    }
}

#[test]
fn a_certificate_file_whose_key_only_the_agent_holds() {
    let site = Site::new("VERBOSE");
    let key = KeyPair::generate_encrypted(site.path(), "locked", "correct horse");
    let agent = SshAgent::start(site.path());
    // The agent gets the plain key only: the certificate is signed after ssh-add.
    agent.add(&key);
    sign(&site.ed25519_ca, &key, "file-agent", PRINCIPAL, "-5m:+1d");
    assert!(!agent.list().contains("-cert-v01@openssh.com"));
    let (config, port) = site.config(&format!("{}use_agent = true\n", identity_files(&[&key])));
    let tunneld = run_with_agent(&config, &agent);
    tunneld.expect_log(
        "authenticated with a certificate through the agent",
        LOG_TIMEOUT,
    );
    assert_eq!(try_echo(port, b"locked", LOG_TIMEOUT).unwrap(), b"locked");
    assert!(
        site.logged_in_with("ED25519-CERT", "file-agent"),
        "{}",
        site.sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_other_principals_is_refused_and_the_error_names_them() {
    let site = Site::new("VERBOSE");
    let key = site.key("id", KeyKind::Ed25519);
    let cert = sign(
        &site.ed25519_ca,
        &key,
        "stranger",
        "intruder,nobody",
        "-5m:+30d",
    );
    let (config, _) = site.config(&identity_files(&[&key]));
    let tunneld = InProcess::start(&config);
    let (reason, kind, permanent) = failure(&tunneld).await;
    assert_eq!((kind, permanent), (FailureKind::Auth, true), "{reason}");
    let user = site.sshd.user();
    let expected = format!(
        "authentication refused for {user}@127.0.0.1:{} (tried: {} (certificate \"stranger\" \
         serial 0, valid from ",
        site.sshd.port(),
        cert.display()
    );
    assert!(reason.starts_with(&expected), "{reason}");
    assert!(
        reason.contains(&format!(
            ", principals: intruder, nobody; its principals (intruder, nobody) do not include \
             the user {user}; the server accepts it only if its AuthorizedPrincipalsFile"
        )),
        "{reason}"
    );
    // The plain key was offered after its certificate.
    assert!(
        reason.ends_with(&format!(", {})", key.private.display())),
        "{reason}"
    );
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_renewed_in_place_is_used_on_the_next_attempt() {
    let site = Site::new("VERBOSE");
    let key = site.key("id", KeyKind::Ed25519);
    sign(&site.ed25519_ca, &key, "old", PRINCIPAL, "-2d:-1d");
    let (config, port) = site.config(&identity_files(&[&key]));
    let tunneld = InProcess::start(&config);
    // Offered anyway (this machine's clock may be the wrong one), refused, and explained.
    let (reason, kind, _) = failure(&tunneld).await;
    assert_eq!(kind, FailureKind::Auth);
    assert!(reason.contains("certificate \"old\""), "{reason}");
    assert!(reason.contains("by this machine's clock"), "{reason}");
    assert!(site.sshd.log().contains("expired"), "{}", site.sshd.log());

    sign(&site.ed25519_ca, &key, "renewed", PRINCIPAL, "-5m:+1d");
    tunneld.wait_up("t").await;
    round_trip(port, 5).await;
    assert!(
        site.logged_in_with("ED25519-CERT", "renewed"),
        "{}",
        site.sshd.log()
    );
    tunneld.stop().await;
}

#[test]
fn a_certificate_near_its_end_is_warned_about_once_a_day_not_on_every_login() {
    let mut site = Site::new("VERBOSE");
    let key = site.key("id", KeyKind::Ed25519);
    sign(&site.ed25519_ca, &key, "short", PRINCIPAL, "-1h:+3d");
    let (config, port) = site.config(&identity_files(&[&key]));
    let tunneld = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    tunneld.expect_log(
        "the certificate this session logged in with expires soon",
        LOG_TIMEOUT,
    );
    assert_eq!(try_echo(port, b"soon", LOG_TIMEOUT).unwrap(), b"soon");
    // A new session logs in with the same certificate: no second warning the same day.
    site.sshd.restart();
    assert!(tunneld.wait_for_log_count("authenticated with a certificate", 2, LOG_TIMEOUT));
    assert_eq!(try_echo(port, b"again", LOG_TIMEOUT).unwrap(), b"again");
    assert_eq!(
        tunneld.count_in_logs("expires soon"),
        1,
        "{}",
        tunneld.logs()
    );
    let logs = tunneld.logs();
    let warning = logs
        .lines()
        .find(|line| line.contains("expires soon"))
        .unwrap();
    assert!(warning.contains("id-cert.pub"), "{warning}");
    // Three days from signing, less the second or so since.
    assert!(
        warning.contains("left=3days") || warning.contains("left=2days 23h"),
        "{warning}"
    );
}

fn check(config: &Path) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(tunneld_bin())
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn check_judges_certificates_by_this_machines_clock() {
    let site = Site::new("VERBOSE");
    let user = site.sshd.user().to_owned();
    let key = site.key("id", KeyKind::Ed25519);
    let auth = identity_files(&[&key]);
    let (config, _) = site.config(&auth);
    let cert = sign(&site.ed25519_ca, &key, "fine", &user, "-5m:+30d");
    let named = cert.display().to_string();

    // Valid, for the user: a note names it.
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "  note: host 127.0.0.1:{}: {named}: certificate \"fine\" serial 0, valid from ",
            site.sshd.port()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "principals: {user}; offered with the key {}",
            key.private.display()
        )),
        "{stdout}"
    );

    // Expired: the check fails, naming the file, its window and its principals.
    sign(&site.ed25519_ca, &key, "old", PRINCIPAL, "-2d:-1d");
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(78), "{stdout}{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.contains("expired at"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&format!("{named}: expired at ")), "{line}");
    assert!(line.contains("by this machine's clock"), "{line}");
    assert!(
        line.contains("certificate \"old\" serial 0, valid from "),
        "{line}"
    );
    assert!(line.contains(&format!("principals: {PRINCIPAL}")), "{line}");

    // Not yet valid: fails too.
    sign(&site.ed25519_ca, &key, "early", &user, "+1d:+2d");
    let (code, _, stderr) = check(&config);
    assert_eq!(code, Some(78));
    assert!(
        stderr.contains(&format!("{named}: not valid until ")),
        "{stderr}"
    );

    // Near its end, or for other principals: warnings, and the check passes.
    sign(&site.ed25519_ca, &key, "short", &user, "-1h:+3d");
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "  warning: host 127.0.0.1:{}: {named}: expires at ",
            site.sshd.port()
        )),
        "{stdout}"
    );
    sign(&site.ed25519_ca, &key, "other", "intruder", "-5m:+30d");
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "{named}: its principals (intruder) do not include the user {user}; "
        )),
        "{stdout}"
    );

    // A named certificate that no identity file's key signs for is a problem (no agent).
    let stranger = site.key("stranger", KeyKind::Ed25519);
    let orphan = sign(&site.ed25519_ca, &stranger, "orphan", &user, "-5m:+30d");
    let (config, _) = site.config(&format!(
        "{auth}certificate_files = [\"{}\"]\n",
        orphan.display()
    ));
    let (code, _, stderr) = check(&config);
    assert_eq!(code, Some(78));
    assert!(
        stderr.contains(&format!(
            "{} certifies {}, but no identity file holds that key; it is not offered",
            orphan.display(),
            stranger.fingerprint()
        )),
        "{stderr}"
    );
}
