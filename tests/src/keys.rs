//! SSH key pairs made with the real `ssh-keygen`, so they are exactly what users have on disk.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `ssh-keygen -t ed25519`.
    Ed25519,
    /// `ssh-keygen -t rsa -b 2048`.
    Rsa2048,
    /// `ssh-keygen -t ecdsa -b 256`.
    EcdsaP256,
}

impl KeyKind {
    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            Self::Ed25519 => &["-t", "ed25519"],
            Self::Rsa2048 => &["-t", "rsa", "-b", "2048"],
            Self::EcdsaP256 => &["-t", "ecdsa", "-b", "256"],
        }
    }
}

/// A private key file (mode 0600, OpenSSH format) and its `.pub` next to it.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file (`<private>.pub`).
    pub public: PathBuf,
    /// The passphrase the private key is encrypted with, if any.
    pub passphrase: Option<String>,
    /// The algorithm.
    pub kind: KeyKind,
}

impl KeyPair {
    /// An unencrypted ed25519 key at `dir/name` (comment: `name`).
    pub fn generate(dir: &Path, name: &str) -> Self {
        Self::generate_with(dir, name, KeyKind::Ed25519, None)
    }

    /// An ed25519 key at `dir/name` encrypted with `passphrase`.
    pub fn generate_encrypted(dir: &Path, name: &str, passphrase: &str) -> Self {
        Self::generate_with(dir, name, KeyKind::Ed25519, Some(passphrase))
    }

    /// An unencrypted 2048-bit RSA key at `dir/name`.
    pub fn generate_rsa(dir: &Path, name: &str) -> Self {
        Self::generate_with(dir, name, KeyKind::Rsa2048, None)
    }

    /// A key of `kind` at `dir/name`, encrypted with `passphrase` when given.
    pub fn generate_with(dir: &Path, name: &str, kind: KeyKind, passphrase: Option<&str>) -> Self {
        let private = dir.join(name);
        let output = Command::new("ssh-keygen")
            .args(kind.keygen_args())
            .args(["-q", "-C", name, "-N", passphrase.unwrap_or("")])
            .arg("-f")
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen");
        assert!(
            output.status.success(),
            "ssh-keygen for {} failed: {}",
            private.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        // ssh-keygen already writes 0600; be explicit because ssh refuses anything looser.
        fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
            .expect("chmod private key");
        let mut public = private.clone().into_os_string();
        public.push(".pub");
        Self {
            private,
            public: public.into(),
            passphrase: passphrase.map(str::to_owned),
            kind,
        }
    }

    /// The contents of the `.pub` file without its line end: `ssh-ed25519 AAAA... name`.
    pub fn public_line(&self) -> String {
        let line = fs::read_to_string(&self.public)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.public.display()));
        line.trim_end().to_owned()
    }

    /// The algorithm and base64 blob of the public key, without the comment:
    /// `ssh-ed25519 AAAA...`, the form a known_hosts entry uses.
    pub fn public_key(&self) -> String {
        let line = self.public_line();
        let mut fields = line.split_whitespace();
        let (Some(algo), Some(blob)) = (fields.next(), fields.next()) else {
            panic!("malformed public key {}: {line:?}", self.public.display());
        };
        format!("{algo} {blob}")
    }

    /// The SHA256 fingerprint as OpenSSH prints it: `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        let output = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&self.public)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh-keygen -l");
        assert!(output.status.success(), "ssh-keygen -l failed");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint field")
            .to_owned()
    }
}
