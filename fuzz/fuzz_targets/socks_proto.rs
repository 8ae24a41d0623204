//! Fuzzes the SOCKS parsers of `tunneld_ssh::socks::proto`.
//!
//! The first input byte seeds how the rest is cut into reads; the rest is what a client sends.
//! Checked, besides "never panics":
//!
//! - every parser's answer is decided by a prefix: all shorter prefixes are `Incomplete`, all
//!   longer ones give the same answer (so reads of any size see the same messages), and `Done`
//!   consumed exactly that prefix;
//! - nothing is `Incomplete` at `MAX_REQUEST` bytes, so that buffer size always suffices;
//! - a parsed message, encoded again as a client would, is the bytes it was parsed from (nothing
//!   is lost or invented), and error replies encode;
//! - a whole conversation (greeting, authentication, request) fed in random chunks to a buffer
//!   that drops consumed bytes, as the forwarder does, yields what parsing it at once yields.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld_ssh::socks::proto::{
    Command, Greeting, MAX_REQUEST, Method, Parsed, ProtocolError, Socks4Request, Socks5Request,
    Target, UserPass, choose_method, encode_method_choice, parse_greeting, parse_socks5_request,
    parse_userpass,
};

type ParseResult<T> = Result<Parsed<T>, ProtocolError>;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    check(parse_greeting, input, |greeting, bytes| match greeting {
        Greeting::Socks5 { methods } => {
            let mut out = vec![5, methods.len() as u8];
            out.extend_from_slice(methods);
            assert_eq!(out, bytes);
        }
        Greeting::Socks4(request) => assert_eq!(encode_socks4(request, bytes), bytes),
    });
    check(parse_socks5_request, input, |request, bytes| {
        assert_eq!(encode_socks5(request), bytes);
    });
    check(parse_userpass, input, |userpass, bytes| {
        assert_eq!(encode_userpass(userpass), bytes);
    });
    let whole = conversation(input, &mut std::iter::once(input.len()), seed & 1 == 1);
    let mut state = u64::from(seed) | 0x100;
    let mut chunks = std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Some((state % 64) as usize)
    });
    assert_eq!(conversation(input, &mut chunks, seed & 1 == 1), whole);
});

/// The prefix invariants of one parser on `input`, and `round_trip` on what it parses.
fn check<T: std::fmt::Debug + PartialEq>(
    parse: fn(&[u8]) -> ParseResult<T>,
    input: &[u8],
    round_trip: impl Fn(&T, &[u8]),
) {
    let full = parse(input);
    // Longer prefixes than this cannot differ (the answer is decided by MAX_REQUEST bytes), and
    // checking all of a long input would make every run quadratic.
    let checked = input.len().min(MAX_REQUEST + 16);
    let mut decided = None;
    for len in 0..=checked {
        let answer = parse(&input[..len]);
        match decided {
            None if answer == Ok(Parsed::Incomplete) => {}
            None => {
                decided = Some(len);
                assert_eq!(answer, full, "decided at {len} but the whole differs");
            }
            Some(at) => assert_eq!(answer, full, "decided at {at}, differs at {len}"),
        }
    }
    match &full {
        Ok(Parsed::Incomplete) => {
            assert!(decided.is_none());
            assert!(
                input.len() < MAX_REQUEST,
                "Incomplete at {} bytes",
                input.len()
            );
        }
        Ok(Parsed::Done { value, consumed }) => {
            assert_eq!(Some(*consumed), decided);
            assert!(*consumed > 0 && *consumed <= input.len());
            round_trip(value, &input[..*consumed]);
        }
        Err(error) => {
            assert!(decided.is_some());
            assert!(!error.to_string().is_empty());
            if let Some(reply) = error.reply() {
                assert!(!reply.encode().is_empty());
            }
        }
    }
}

/// What a forwarder sees of a conversation: the messages parsed, in order, ending with the
/// error or the point where it would need more bytes. `reads` gives the size of each read.
fn conversation(
    input: &[u8],
    reads: &mut dyn Iterator<Item = usize>,
    auth_required: bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buffer = Vec::new();
    let mut rest = input;
    let mut step = 0;
    loop {
        let answer = match step {
            0 => parse_greeting(&buffer).map(|p| {
                describe(p, |g| match g {
                    Greeting::Socks5 { methods } => {
                        let method = choose_method(methods, auth_required);
                        assert_eq!(encode_method_choice(method)[0], 5);
                        match method {
                            Method::NoAuth => step = 2,
                            Method::UserPass => step = 1,
                            Method::NoneAcceptable => step = 3,
                        }
                    }
                    Greeting::Socks4(_) => step = 3,
                })
            }),
            1 => parse_userpass(&buffer).map(|p| describe(p, |_| step = 2)),
            2 => parse_socks5_request(&buffer).map(|p| describe(p, |_| step = 3)),
            _ => {
                // Whatever follows is data for the target, as a client may send it before the
                // reply arrives.
                seen.push(format!("data {}", buffer.len() + rest.len()));
                return seen;
            }
        };
        match answer {
            Err(error) => {
                seen.push(format!("error {error:?}"));
                return seen;
            }
            Ok((Some(message), consumed)) => {
                seen.push(message);
                buffer.drain(..consumed);
            }
            Ok((None, _)) => {
                assert!(buffer.len() < MAX_REQUEST);
                if rest.is_empty() {
                    seen.push(format!("incomplete {}", buffer.len()));
                    return seen;
                }
                let read = reads.next().unwrap_or(1).clamp(1, rest.len());
                let (now, later) = rest.split_at(read);
                buffer.extend_from_slice(now);
                rest = later;
            }
        }
    }
}

fn describe<T: std::fmt::Debug>(
    parsed: Parsed<T>,
    then: impl FnOnce(&T),
) -> (Option<String>, usize) {
    match parsed {
        Parsed::Incomplete => (None, 0),
        Parsed::Done { value, consumed } => {
            then(&value);
            (Some(format!("{value:?}")), consumed)
        }
    }
}

fn command_code(command: Command, socks5: bool) -> u8 {
    match command {
        Command::Connect => 1,
        Command::Bind => 2,
        Command::UdpAssociate => {
            assert!(socks5, "SOCKS4 has no UDP ASSOCIATE");
            3
        }
        Command::Other(code) => code,
    }
}

/// A SOCKS4a request names its domain with any address 0.0.0.x (x != 0): `original` says which.
fn encode_socks4(request: &Socks4Request, original: &[u8]) -> Vec<u8> {
    let mut out = vec![4, command_code(request.command, false)];
    out.extend_from_slice(&request.port.to_be_bytes());
    match &request.target {
        Target::Ip(std::net::IpAddr::V4(ip)) => {
            let [a, b, c, d] = ip.octets();
            assert!(
                !(a == 0 && b == 0 && c == 0 && d != 0),
                "0.0.0.x parsed as SOCKS4"
            );
            out.extend_from_slice(&ip.octets());
        }
        Target::Ip(ip) => panic!("SOCKS4 with {ip}"),
        Target::Domain(_) => {
            let last = original[7];
            assert_ne!(last, 0);
            out.extend_from_slice(&[0, 0, 0, last]);
        }
    }
    out.extend_from_slice(&request.user_id);
    out.push(0);
    if let Target::Domain(name) = &request.target {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}

fn encode_socks5(request: &Socks5Request) -> Vec<u8> {
    let mut out = vec![5, command_code(request.command, true), 0];
    match &request.target {
        Target::Ip(std::net::IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Target::Ip(std::net::IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Target::Domain(name) => {
            assert!(!name.is_empty() && name.len() <= 255);
            assert!(!name.bytes().any(|b| b < 0x20 || b == 0x7F));
            out.push(3);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&request.port.to_be_bytes());
    out
}

fn encode_userpass(userpass: &UserPass) -> Vec<u8> {
    let password = userpass.password.expose();
    assert!(format!("{userpass:?}").contains("password: Secret(..)"));
    let mut out = vec![1, userpass.user.len() as u8];
    out.extend_from_slice(userpass.user.as_bytes());
    out.push(password.len() as u8);
    out.extend_from_slice(password);
    out
}
