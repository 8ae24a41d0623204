//! What encrypting SSH packets costs with each AEAD implementation within tunneld's reach, in
//! seconds per GiB of payload on one core of this machine (wall clock of a loop that only does
//! that; run it on a quiet machine): the floor under a bulk transfer's client CPU.
//!
//! It answers one question of docs/performance.md ("What limits the goals that are not met"):
//! could tunneld's chacha20-poly1305@openssh.com cost less with another implementation? ring's
//! (what russh uses) runs its Poly1305 in portable C on x86_64; RustCrypto's `poly1305` has an
//! AVX2 backend, chosen at run time. The RustCrypto version of the OpenSSH construct below is
//! checked against ring's, byte for byte, before anything is timed.
//!
//! `cargo run --release -p tunneld-bench-aead` (`--help` for the options). CI only builds it.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use chacha20::ChaCha20Legacy;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use clap::Parser;
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use ring::aead::chacha20_poly1305_openssh as openssh;
use ring::aead::{AES_128_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use subtle::ConstantTimeEq;

/// The payload of one packet: a full channel packet, as a bulk transfer sends them.
const PAYLOAD: usize = 32 << 10;
/// The packet: its encrypted 4-byte length, then the payload.
const PACKET: usize = 4 + PAYLOAD;
const TAG: usize = 16;

#[derive(Parser)]
#[command(
    about = "Seconds per GiB of each AEAD implementation within tunneld's reach, on one core"
)]
struct Args {
    /// MiB of payload per measurement.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Measurements of each implementation, interleaved; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// 16 MiB, one measurement: checks that it runs, says nothing about speed.
    #[arg(long)]
    quick: bool,
}

/// chacha20-poly1305@openssh.com (OpenSSH's PROTOCOL.chacha20poly1305) with RustCrypto's
/// crates: the 64-byte key is K_2 (the payload's) then K_1 (the length's); the nonce is the
/// sequence number; block 0 of K_2's stream is the Poly1305 key and the payload starts at
/// block 1; the tag covers the encrypted length and payload.
struct RustCrypto {
    payload_key: [u8; 32],
    length_key: [u8; 32],
}

impl RustCrypto {
    fn new(key: &[u8; 64]) -> Self {
        let (payload_key, length_key) = key.split_at(32);
        RustCrypto {
            payload_key: payload_key.try_into().unwrap_or_default(),
            length_key: length_key.try_into().unwrap_or_default(),
        }
    }

    /// The payload's cipher positioned at block 1, and the Poly1305 instance keyed from block 0.
    fn begin(&self, seq: u32) -> (ChaCha20Legacy, Poly1305) {
        let nonce = u64::from(seq).to_be_bytes();
        let mut cipher = ChaCha20Legacy::new(&self.payload_key.into(), &nonce.into());
        let mut block0 = [0u8; 64];
        cipher.apply_keystream(&mut block0);
        let poly_key: [u8; 32] = block0[..32].try_into().unwrap_or_default();
        (cipher, Poly1305::new(&poly_key.into()))
    }

    fn crypt_length(&self, seq: u32, length: &mut [u8]) {
        let nonce = u64::from(seq).to_be_bytes();
        ChaCha20Legacy::new(&self.length_key.into(), &nonce.into()).apply_keystream(length);
    }

    fn seal(&self, seq: u32, packet: &mut [u8], tag: &mut [u8; TAG]) {
        let (mut cipher, mac) = self.begin(seq);
        let (length, payload) = packet.split_at_mut(4);
        self.crypt_length(seq, length);
        cipher.apply_keystream(payload);
        tag.copy_from_slice(&mac.compute_unpadded(packet));
    }

    fn open(&self, seq: u32, packet: &mut [u8], tag: &[u8; TAG]) -> bool {
        let (mut cipher, mac) = self.begin(seq);
        if !bool::from(mac.compute_unpadded(packet).as_slice().ct_eq(tag)) {
            return false;
        }
        let (length, payload) = packet.split_at_mut(4);
        self.crypt_length(seq, length);
        cipher.apply_keystream(payload);
        true
    }
}

/// The RustCrypto construct agrees with ring's on packets of several lengths and sequence
/// numbers, opens what ring sealed, and refuses a packet with one bit changed.
fn check(key: &[u8; 64]) -> Result<(), String> {
    let ring_seal = openssh::SealingKey::new(key);
    let ours = RustCrypto::new(key);
    for (seq, len) in [
        (0u32, 16usize),
        (1, 4 + 100),
        (7, PACKET),
        (u32::MAX, 4 + 4096),
    ] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 + seq as usize) as u8).collect();
        let (mut a, mut b) = (plain.clone(), plain.clone());
        let (mut tag_a, mut tag_b) = ([0u8; TAG], [0u8; TAG]);
        ring_seal.seal_in_place(seq, &mut a, &mut tag_a);
        ours.seal(seq, &mut b, &mut tag_b);
        if a != b || tag_a != tag_b {
            return Err(format!(
                "sequence {seq}, {len} bytes: RustCrypto's packet differs from ring's"
            ));
        }
        if !ours.open(seq, &mut b, &tag_a) || b != plain {
            return Err(format!(
                "sequence {seq}, {len} bytes: RustCrypto did not open ring's packet"
            ));
        }
        a[len / 2] ^= 1;
        if ours.open(seq, &mut a, &tag_a) {
            return Err(format!(
                "sequence {seq}, {len} bytes: a changed packet was accepted"
            ));
        }
    }
    Ok(())
}

/// One implementation's work on one packet; its argument is the packet's sequence number.
type Work = Box<dyn FnMut(u32)>;

fn cases(key: &[u8; 64]) -> Vec<(&'static str, Work)> {
    let sealing = openssh::SealingKey::new(key);
    let opening = openssh::OpeningKey::new(key);
    let ours = RustCrypto::new(key);
    let ours_too = RustCrypto::new(key);
    // The opens read a packet sealed once, copied afresh each time: opening decrypts in place.
    let mut sealed = vec![1u8; PACKET];
    let mut sealed_tag = [0u8; TAG];
    sealing.seal_in_place(0, &mut sealed, &mut sealed_tag);
    let (sealed_a, sealed_b, sealed_c) = (sealed.clone(), sealed.clone(), sealed);
    let payload_key: [u8; 32] = key[..32].try_into().unwrap_or_default();
    let rfc =
        |algorithm| UnboundKey::new(algorithm, &key[..algorithm.key_len()]).map(LessSafeKey::new);
    let (Ok(rfc_chacha), Ok(aes)) = (rfc(&CHACHA20_POLY1305), rfc(&AES_128_GCM)) else {
        unreachable!("the keys are of the algorithms' lengths")
    };
    let nonce = |seq: u32| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&u64::from(seq).to_be_bytes());
        Nonce::assume_unique_for_key(nonce)
    };
    vec![
        ("chacha20-poly1305@openssh.com, ring (tunneld's), seal", {
            let mut b = vec![1u8; PACKET];
            Box::new(move |seq| {
                let mut tag = [0u8; TAG];
                sealing.seal_in_place(seq, &mut b, &mut tag);
                black_box(tag);
            }) as Work
        }),
        ("chacha20-poly1305@openssh.com, ring (tunneld's), open", {
            let mut b = vec![1u8; PACKET];
            Box::new(move |_| {
                b.copy_from_slice(&sealed_a);
                assert!(opening.open_in_place(0, &mut b, &sealed_tag).is_ok());
            }) as Work
        }),
        (
            "chacha20-poly1305@openssh.com, RustCrypto chacha20 + poly1305, seal",
            {
                let mut b = vec![1u8; PACKET];
                Box::new(move |seq| {
                    let mut tag = [0u8; TAG];
                    ours.seal(seq, &mut b, &mut tag);
                    black_box(tag);
                }) as Work
            },
        ),
        (
            "chacha20-poly1305@openssh.com, RustCrypto chacha20 + poly1305, open",
            {
                let mut b = vec![1u8; PACKET];
                Box::new(move |_| {
                    b.copy_from_slice(&sealed_b);
                    assert!(ours_too.open(0, &mut b, &sealed_tag));
                }) as Work
            },
        ),
        ("the copy of the packet that both opens include", {
            let mut b = vec![1u8; PACKET];
            Box::new(move |_| {
                b.copy_from_slice(&sealed_c);
                black_box(&b);
            }) as Work
        }),
        ("ChaCha20 alone, RustCrypto", {
            let mut b = vec![1u8; PACKET];
            Box::new(move |seq| {
                let nonce = u64::from(seq).to_be_bytes();
                ChaCha20Legacy::new(&payload_key.into(), &nonce.into()).apply_keystream(&mut b);
            }) as Work
        }),
        ("Poly1305 alone, RustCrypto", {
            let b = vec![1u8; PACKET];
            Box::new(move |_| {
                black_box(Poly1305::new(&payload_key.into()).compute_unpadded(&b));
            }) as Work
        }),
        (
            "ChaCha20-Poly1305 of RFC 8439 (not SSH's construct), ring's assembly, seal",
            {
                let mut b = vec![1u8; PACKET];
                Box::new(move |seq| {
                    black_box(
                        rfc_chacha
                            .seal_in_place_separate_tag(nonce(seq), Aad::empty(), &mut b)
                            .is_ok(),
                    );
                }) as Work
            },
        ),
        ("AES-128-GCM, ring, seal (for scale)", {
            let mut b = vec![1u8; PACKET];
            Box::new(move |seq| {
                black_box(
                    aes.seal_in_place_separate_tag(nonce(seq), Aad::empty(), &mut b)
                        .is_ok(),
                );
            }) as Work
        }),
    ]
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (mib, runs) = if args.quick {
        (16, 1)
    } else {
        (args.mib.max(1), args.runs.max(1))
    };
    let key: [u8; 64] = std::array::from_fn(|i| (i * 7 + 3) as u8);
    if let Err(err) = check(&key) {
        eprintln!("tunneld-bench-aead: {err}");
        return ExitCode::FAILURE;
    }
    let packets = (mib << 20).div_ceil(PAYLOAD);
    let gib = (packets * PAYLOAD) as f64 / f64::from(1u32 << 30);
    let mut cases = cases(&key);
    let mut seconds = vec![Vec::new(); cases.len()];
    for _ in 0..runs {
        for ((_, work), seconds) in cases.iter_mut().zip(&mut seconds) {
            let start = Instant::now();
            for seq in 0..packets {
                work(seq as u32);
            }
            seconds.push(start.elapsed().as_secs_f64() / gib);
        }
    }
    println!(
        "{mib} MiB in packets of {PAYLOAD} bytes, median of {runs}, seconds per GiB on one core:"
    );
    for ((name, _), mut seconds) in cases.iter().zip(seconds) {
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        let low_high = (seconds[0], seconds[seconds.len() - 1]);
        println!(
            "  {median:6.3}  ({:.3} to {:.3})  {name}",
            low_high.0, low_high.1
        );
    }
    ExitCode::SUCCESS
}
