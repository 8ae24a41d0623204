//! The russh client configuration for one hop: algorithms in the configured order, keepalives.

use std::borrow::Cow;

use russh::keys::Algorithm;
use russh::{Preferred, cipher, compression};
use tunneld_config::{Hop, Keepalive};

/// What the server and tunneld agreed on, recorded when key exchange completes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The cipher, by its OpenSSH name.
    pub cipher: String,
    /// Compression from client to server: `none`, `zlib` or `zlib@openssh.com`.
    pub compression: String,
}

/// Ciphers offered when `ciphers` is absent. AES-GCM is fastest where the CPU has AES
/// instructions; without them (Raspberry Pi before the 5) chacha20-poly1305 is far faster.
fn default_ciphers() -> Vec<cipher::Name> {
    let mut ciphers = vec![
        cipher::AES_128_GCM,
        cipher::AES_256_GCM,
        cipher::CHACHA20_POLY1305,
    ];
    if !cpu_has_aes() {
        ciphers.rotate_right(1);
    }
    ciphers.extend([
        cipher::AES_128_CTR,
        cipher::AES_192_CTR,
        cipher::AES_256_CTR,
    ]);
    ciphers
}

fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn cipher_name(name: &str) -> Option<cipher::Name> {
    cipher::ALL_CIPHERS
        .iter()
        .find(|known| known.as_ref() == name)
        .map(|known| **known)
}

/// The algorithm preferences for a hop.
///
/// `known_key_algorithms` are the host key types known_hosts already has for this server: they go
/// first, as OpenSSH orders them, so that a server known by its RSA key is not asked for an
/// ed25519 key that tunneld would then have to refuse as unknown.
pub(crate) fn preferred(
    hop: &Hop,
    known_key_algorithms: &[Algorithm],
    trusts_certificates: bool,
) -> Preferred {
    let ciphers: Vec<cipher::Name> = if hop.ciphers.is_empty() {
        default_ciphers()
    } else {
        // The config crate only admits names russh implements; filter anyway rather than panic.
        hop.ciphers.iter().filter_map(|c| cipher_name(c)).collect()
    };

    // russh lists `none` first in every default list (pitfall 7): name exactly what is wanted.
    let compression: Vec<compression::Name> = if hop.compression {
        vec![
            compression::ZLIB_LEGACY,
            compression::ZLIB,
            compression::NONE,
        ]
    } else {
        vec![compression::NONE]
    };

    let defaults = Preferred::DEFAULT.key.to_vec();
    let mut keys: Vec<Algorithm> = known_key_algorithms
        .iter()
        .filter(|a| defaults.contains(a))
        .cloned()
        .collect();
    for algorithm in defaults {
        if !keys.contains(&algorithm) {
            keys.push(algorithm);
        }
    }

    // Certificates are only asked for when known_hosts trusts a CA for this host; otherwise a
    // server holding a certificate would present it and be refused.
    let host_key_certificates = if trusts_certificates {
        keys.clone()
    } else {
        Vec::new()
    };

    Preferred {
        cipher: Cow::Owned(ciphers),
        compression: Cow::Owned(compression),
        key: Cow::Owned(keys),
        host_key_certificates: Cow::Owned(host_key_certificates),
        ..Preferred::DEFAULT
    }
}

/// Messages a channel's queue holds: a 2 MiB window in packets of 2 KiB or more. OpenSSH sends
/// bulk data in 32 KiB packets; smaller ones come from a trickle, which fills no window.
const CHANNEL_QUEUE: usize = 1024;

/// The russh client configuration for a hop.
///
/// Keepalives alone miss a peer that stops reading while we write (pitfall 3: the writes queue
/// up and no reply is awaited), so an inactivity timeout of the same budget backs them up.
pub(crate) fn client_config(
    hop: &Hop,
    keepalive: Option<&Keepalive>,
    preferred: Preferred,
) -> russh::client::Config {
    // The config allows at most 1 GiB, which russh asserts; a usize holds it on every target.
    let data = usize::try_from(hop.rekey_limit.data).unwrap_or(1 << 30);
    let (keepalive_interval, keepalive_max, inactivity_timeout) = match keepalive {
        Some(k) if k.interval.is_some() => (k.interval, k.max as usize, k.stuck_link_budget()),
        _ => (None, 3, None),
    };
    russh::client::Config {
        client_id: russh::SshId::Standard(Cow::Borrowed(concat!(
            "SSH-2.0-tunneld_",
            env!("CARGO_PKG_VERSION")
        ))),
        preferred,
        keepalive_interval,
        keepalive_max,
        inactivity_timeout,
        nodelay: true,
        limits: russh::Limits::new(data, data, hop.rekey_limit.time),
        // Per-channel flow control (vendor/russh/PATCHES.md): the server's window for a channel
        // reopens only as its reader takes data, so a slow client slows only its own channel.
        window_on_consume: true,
        // Room for a whole window of small packets, so that a channel whose reader is behind
        // never fills its queue before the server runs out of window (a full queue would stall
        // the session loop, and with it every channel).
        channel_buffer_size: CHANNEL_QUEUE,
        ..Default::default()
    }
}

/// The OpenSSH name of a negotiated compression.
pub(crate) fn compression_name(c: &russh::compression::Compression) -> &'static str {
    match c {
        russh::compression::Compression::None => "none",
        russh::compression::Compression::Zlib => "zlib",
        russh::compression::Compression::ZlibOpenSSH => "zlib@openssh.com",
    }
}
