//! Signing a certificate offer with a key russh does not hold itself.
//!
//! russh's `authenticate_openssh_cert` signs an RSA certificate offer with SHA-1
//! (`ssh-rsa-cert-v01@openssh.com`), which OpenSSH 8.8 and later refuse by default.
//! `authenticate_certificate_with` lets the caller choose the hash, but signs through a
//! [`Signer`]: these are the two tunneld needs, a key read from a file and a plain key held by
//! the agent (for a certificate file whose private key only the agent has).

use std::future::Future;
use std::sync::Arc;

use russh::Signer;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::signature::Signer as _;
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::ssh_key::{PublicKey, Signature};
use russh::keys::{HashAlg, PrivateKey};
use russh::{AgentAuthError, SendError};
use tokio::net::UnixStream;

/// A private key read from an identity file.
pub(super) struct FileKey(pub(super) Arc<PrivateKey>);

/// Why a file key could not sign.
#[derive(Debug)]
pub(super) enum SignError {
    /// The session is gone.
    Send,
    /// The key could not make the signature (or it could not be encoded).
    Key(russh::Error),
}

impl From<SendError> for SignError {
    fn from(_: SendError) -> Self {
        SignError::Send
    }
}

impl SignError {
    pub(super) fn into_russh(self) -> russh::Error {
        match self {
            SignError::Send => russh::Error::SendError,
            SignError::Key(error) => error,
        }
    }
}

impl Signer for FileKey {
    type Error = SignError;

    /// Appends the signature of `to_sign` to it, as the SSH string that ends a publickey
    /// request (what russh does for its own keys, and what an agent's answer becomes).
    fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let signed = sign(&self.0, hash_alg, &to_sign).and_then(|blob| {
            blob.encode(&mut to_sign)
                .map_err(|error| SignError::Key(error.into()))
        });
        async move { signed.map(|()| to_sign) }
    }
}

/// The signature blob (`string algorithm, string signature`). RSA signs with `hash_alg` (the
/// best the server announced; `None` is SHA-1, for servers that announce nothing); other key
/// types have one hash of their own.
fn sign(key: &PrivateKey, hash_alg: Option<HashAlg>, data: &[u8]) -> Result<Vec<u8>, SignError> {
    let signature: Signature = match key.key_data() {
        KeypairData::Rsa(rsa) => (rsa, hash_alg).try_sign(data),
        _ => key.try_sign(data),
    }
    .map_err(|error| SignError::Key(error.into()))?;
    signature
        .encode_vec()
        .map_err(|error| SignError::Key(error.into()))
}

/// A plain key of the agent, signing for a certificate read from a file: the agent matches a
/// signing request by the key it holds, so it is asked with the plain key, never with the
/// certificate it does not know (as ssh does).
pub(super) struct AgentKey<'a> {
    pub(super) agent: &'a mut AgentClient<UnixStream>,
    pub(super) key: PublicKey,
}

impl Signer for AgentKey<'_> {
    type Error = AgentAuthError;

    fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let identity = AgentIdentity::from(self.key.clone());
        let agent = &mut *self.agent;
        async move { agent.auth_sign(&identity, hash_alg, to_sign).await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::signature::Verifier as _;
    use russh::keys::ssh_encoding::Decode;

    /// An ed25519 key made by ssh-keygen for these tests only.
    const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCSvSbQmFp3jm3m0HSeb1HEEPBJYoxZI9laAk39EBQuPQAAAIjfY79n32O/
ZwAAAAtzc2gtZWQyNTUxOQAAACCSvSbQmFp3jm3m0HSeb1HEEPBJYoxZI9laAk39EBQuPQ
AAAED606hPUIok7DJmJd2NpwFY/F7/1Rf+vJSCyvPpxaFoL5K9JtCYWneObebQdJ5vUcQQ
8ElijFkj2VoCTf0QFC49AAAAAAECAwQF
-----END OPENSSH PRIVATE KEY-----
";

    #[tokio::test]
    async fn a_file_key_appends_a_signature_that_verifies() {
        let key = Arc::new(PrivateKey::from_openssh(ED25519).unwrap());
        let identity = AgentIdentity::from(key.public_key().clone());
        let request = b"session id and the userauth request".to_vec();
        let signed = FileKey(key.clone())
            .auth_sign(&identity, None, request.clone())
            .await
            .unwrap();
        assert_eq!(&signed[..request.len()], request.as_slice());
        // What follows is one SSH string holding the signature blob.
        let mut rest = &signed[request.len()..];
        let blob = Vec::<u8>::decode(&mut rest).unwrap();
        assert!(rest.is_empty());
        let signature = Signature::decode(&mut blob.as_slice()).unwrap();
        key.public_key()
            .key_data()
            .verify(&request, &signature)
            .unwrap();
    }
}
