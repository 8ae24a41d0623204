use std::net::{Ipv6Addr, SocketAddr};

use super::*;

type ParseFn<T> = fn(&[u8]) -> Result<Parsed<T>, ProtocolError>;

/// Asserts that `bytes` is exactly one message: every shorter prefix is `Incomplete`, the whole
/// is `Done` with all of it consumed, and bytes after it change nothing. Returns the message.
#[track_caller]
fn whole<T: fmt::Debug + PartialEq>(parse: ParseFn<T>, bytes: &[u8]) -> T {
    for len in 0..bytes.len() {
        assert_eq!(
            parse(&bytes[..len]),
            Ok(Parsed::Incomplete),
            "prefix of {len} bytes"
        );
    }
    let done = parse(bytes);
    let Ok(Parsed::Done { consumed, .. }) = &done else {
        panic!("not Done: {done:?}");
    };
    assert_eq!(*consumed, bytes.len());
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(b"\x05\x01\x00GET / HTTP/1.1\r\n");
    assert_eq!(parse(&longer), done);
    match done {
        Ok(Parsed::Done { value, .. }) => value,
        _ => unreachable!(),
    }
}

/// Asserts that `bytes` fail with `error`, and that a valid-looking prefix of them does not
/// fail yet (the error comes from the last byte, not from bytes missing).
#[track_caller]
fn fails<T: fmt::Debug + PartialEq>(parse: ParseFn<T>, bytes: &[u8], error: ProtocolError) {
    assert_eq!(parse(bytes), Err(error.clone()));
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[0; 600]);
    assert_eq!(parse(&longer), Err(error));
    assert_eq!(parse(&bytes[..bytes.len() - 1]), Ok(Parsed::Incomplete));
}

fn socks4(bytes: &[u8]) -> Socks4Request {
    match whole(parse_greeting, bytes) {
        Greeting::Socks4(request) => request,
        other => panic!("not SOCKS4: {other:?}"),
    }
}

fn ip(text: &str) -> Target {
    Target::Ip(text.parse().unwrap())
}

fn domain(name: &str) -> Target {
    Target::Domain(name.to_owned())
}

#[test]
fn socks5_greeting() {
    let greeting = whole(parse_greeting, &[5, 2, 0x00, 0x02]);
    assert_eq!(
        greeting,
        Greeting::Socks5 {
            methods: vec![0, 2]
        }
    );
    let all: Vec<u8> = [5, 255].into_iter().chain(0..=254).collect();
    assert_eq!(
        whole(parse_greeting, &all),
        Greeting::Socks5 {
            methods: (0..=254).collect()
        }
    );
}

#[test]
fn a_greeting_sent_together_with_the_request_consumes_only_itself() {
    let pipelined = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
    assert_eq!(
        parse_greeting(&pipelined),
        Ok(Parsed::Done {
            value: Greeting::Socks5 { methods: vec![0] },
            consumed: 3
        })
    );
    assert_eq!(
        parse_socks5_request(&pipelined[3..]),
        Ok(Parsed::Done {
            value: Socks5Request {
                command: Command::Connect,
                target: ip("127.0.0.1"),
                port: 80
            },
            consumed: 10
        })
    );
}

#[test]
fn a_greeting_without_methods_gets_no_acceptable_method() {
    fails(parse_greeting, &[5, 0], ProtocolError::NoMethods);
    let reply = ProtocolError::NoMethods.reply().unwrap();
    assert_eq!(reply.encode(), [0x05, 0xFF]);
}

#[test]
fn what_is_not_socks_fails_on_its_first_byte_with_no_reply() {
    let error = parse_greeting(b"CONNECT example.com:443 HTTP/1.1\r\n").unwrap_err();
    assert_eq!(error, ProtocolError::UnknownVersion(b'C'));
    assert_eq!(
        error.to_string(),
        "not SOCKS: the first byte is 0x43 (expected 0x04 or 0x05) (text, perhaps an HTTP proxy \
         request; this port speaks SOCKS)"
    );
    assert_eq!(error.reply(), None);
    for first in [0u8, 1, 3, 6, 0x16, 0xFF] {
        fails(
            parse_greeting,
            &[first],
            ProtocolError::UnknownVersion(first),
        );
    }
    assert_eq!(
        ProtocolError::UnknownVersion(0x16).to_string(),
        "not SOCKS: the first byte is 0x16 (expected 0x04 or 0x05)"
    );
    assert_eq!(parse_greeting(&[]), Ok(Parsed::Incomplete));
}

#[test]
fn socks4_connect() {
    let request = socks4(&[4, 1, 0x1F, 0x90, 93, 184, 216, 34, b'b', b'o', b'b', 0]);
    assert_eq!(
        request,
        Socks4Request {
            command: Command::Connect,
            target: ip("93.184.216.34"),
            port: 8080,
            user_id: b"bob".to_vec(),
        }
    );
    let anonymous = socks4(&[4, 1, 0, 22, 127, 0, 0, 1, 0]);
    assert_eq!(anonymous.user_id, b"");
    assert_eq!(anonymous.target, ip("127.0.0.1"));
    // 0.0.0.0 is an address (if a useless one), not the SOCKS4a marker.
    assert_eq!(socks4(&[4, 1, 0, 22, 0, 0, 0, 0, 0]).target, ip("0.0.0.0"));
}

#[test]
fn socks4_commands_other_than_connect_parse_for_the_forwarder_to_reject() {
    assert_eq!(
        socks4(&[4, 2, 0, 22, 10, 0, 0, 1, 0]).command,
        Command::Bind
    );
    assert_eq!(
        socks4(&[4, 3, 0, 22, 10, 0, 0, 1, 0]).command,
        Command::Other(3)
    );
    assert_eq!(
        socks4(&[4, 0xF0, 0, 22, 10, 0, 0, 1, 0]).command,
        Command::Other(0xF0)
    );
}

#[test]
fn socks4a_carries_a_domain_after_the_user_id() {
    let mut bytes = vec![4, 1, 0x01, 0xBB, 0, 0, 0, 1];
    bytes.extend_from_slice(b"alice\0example.com\0");
    assert_eq!(
        socks4(&bytes),
        Socks4Request {
            command: Command::Connect,
            target: domain("example.com"),
            port: 443,
            user_id: b"alice".to_vec(),
        }
    );
    let mut anonymous = vec![4, 1, 0, 80, 0, 0, 0, 0xFF, 0];
    anonymous.extend_from_slice(b"db.internal\0");
    assert_eq!(socks4(&anonymous).target, domain("db.internal"));
}

#[test]
fn socks4_fields_are_held_to_255_bytes() {
    let header = [4, 1, 0, 80, 0, 0, 0, 1];
    let long = [b'x'; MAX_NAME];

    let mut longest = header.to_vec();
    longest.extend_from_slice(&long);
    longest.push(0);
    longest.extend_from_slice(&long);
    longest.push(0);
    assert_eq!(longest.len(), MAX_REQUEST);
    let request = socks4(&longest);
    assert_eq!(request.user_id.len(), MAX_NAME);
    assert_eq!(request.target, Target::Domain("x".repeat(MAX_NAME)));

    let mut user = header.to_vec();
    user.extend_from_slice(&long);
    user.push(b'x');
    fails(
        parse_greeting,
        &user,
        ProtocolError::Socks4TooLong(Socks4Field::UserId),
    );

    let mut name = header.to_vec();
    name.push(0);
    name.extend_from_slice(&long);
    name.push(b'x');
    fails(
        parse_greeting,
        &name,
        ProtocolError::Socks4TooLong(Socks4Field::Domain),
    );
    let error = ProtocolError::Socks4TooLong(Socks4Field::Domain);
    assert_eq!(
        error.to_string(),
        "SOCKS4 domain name is longer than 255 bytes"
    );
    assert_eq!(error.reply().unwrap().encode(), [0, 0x5B, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn socks4a_domains_are_checked() {
    let bad = |name: &[u8], problem| {
        let mut bytes = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
        bytes.extend_from_slice(name);
        bytes.push(0);
        let error = ProtocolError::BadDomain {
            protocol: Protocol::Socks4a,
            problem,
        };
        fails(parse_greeting, &bytes, error.clone());
        assert_eq!(error.reply(), Some(ErrorReply::Socks4Rejected));
    };
    bad(b"", DomainError::Empty);
    bad(b"\xFF\xFEexample", DomainError::NotUtf8);
    bad(b"evil\r\nhost", DomainError::ControlCharacter);
    bad(b"del\x7F", DomainError::ControlCharacter);
}

#[test]
fn socks5_requests() {
    assert_eq!(
        whole(
            parse_socks5_request,
            &[5, 1, 0, 1, 192, 168, 1, 50, 0x15, 0x38]
        ),
        Socks5Request {
            command: Command::Connect,
            target: ip("192.168.1.50"),
            port: 5432,
        }
    );
    let mut v6 = vec![5, 1, 0, 4];
    v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    v6.extend_from_slice(&[0, 22]);
    assert_eq!(
        whole(parse_socks5_request, &v6),
        Socks5Request {
            command: Command::Connect,
            target: ip("2001:db8::1"),
            port: 22,
        }
    );
    let mut name = vec![5, 1, 0, 3, 11];
    name.extend_from_slice(b"example.com");
    name.extend_from_slice(&[0x01, 0xBB]);
    assert_eq!(
        whole(parse_socks5_request, &name).target,
        domain("example.com")
    );
    let mut longest = vec![5, 1, 0, 3, 255];
    longest.extend_from_slice(&[b'a'; 255]);
    longest.extend_from_slice(&[0, 80]);
    assert_eq!(
        whole(parse_socks5_request, &longest).target,
        Target::Domain("a".repeat(255))
    );
    let unicode = "bücher.example";
    let mut idn = vec![5, 1, 0, 3, unicode.len() as u8];
    idn.extend_from_slice(unicode.as_bytes());
    idn.extend_from_slice(&[0, 80]);
    assert_eq!(whole(parse_socks5_request, &idn).target, domain(unicode));
}

#[test]
fn socks5_commands_other_than_connect_parse_for_the_forwarder_to_reject() {
    let command = |code| whole(parse_socks5_request, &[5, code, 0, 1, 10, 0, 0, 1, 0, 80]).command;
    assert_eq!(command(1), Command::Connect);
    assert_eq!(command(2), Command::Bind);
    assert_eq!(command(3), Command::UdpAssociate);
    assert_eq!(command(0), Command::Other(0));
    assert_eq!(command(9), Command::Other(9));
}

#[test]
fn malformed_socks5_requests() {
    fails(parse_socks5_request, &[4], ProtocolError::RequestVersion(4));
    fails(
        parse_socks5_request,
        &[5, 1, 1],
        ProtocolError::ReservedNotZero(1),
    );
    fails(
        parse_socks5_request,
        &[5, 1, 0, 2],
        ProtocolError::AddressType(2),
    );
    let empty = ProtocolError::BadDomain {
        protocol: Protocol::Socks5,
        problem: DomainError::Empty,
    };
    fails(parse_socks5_request, &[5, 1, 0, 3, 0], empty.clone());
    assert_eq!(empty.to_string(), "SOCKS5 request: domain name is empty");
    // Bad names fail as soon as the name is in, without waiting for the port.
    fails(
        parse_socks5_request,
        &[5, 1, 0, 3, 2, 0xC3, 0x28],
        ProtocolError::BadDomain {
            protocol: Protocol::Socks5,
            problem: DomainError::NotUtf8,
        },
    );
    fails(
        parse_socks5_request,
        &[5, 1, 0, 3, 4, b'a', 0, b'b', b'c'],
        ProtocolError::BadDomain {
            protocol: Protocol::Socks5,
            problem: DomainError::ControlCharacter,
        },
    );
}

#[test]
fn malformed_socks5_requests_say_what_to_reply() {
    let reply = |error: ProtocolError| error.reply().unwrap().encode();
    assert_eq!(
        reply(ProtocolError::RequestVersion(4)),
        [5, 0x01, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        reply(ProtocolError::ReservedNotZero(1)),
        [5, 0x01, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        reply(ProtocolError::AddressType(2)),
        [5, 0x08, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    let bad_name = ProtocolError::BadDomain {
        protocol: Protocol::Socks5,
        problem: DomainError::NotUtf8,
    };
    assert_eq!(reply(bad_name), [5, 0x04, 0, 1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn userpass() {
    let mut bytes = vec![1, 5];
    bytes.extend_from_slice(b"alice");
    bytes.push(11);
    bytes.extend_from_slice(b"s3cr:t pass");
    let parsed = whole(parse_userpass, &bytes);
    assert_eq!(parsed.user, "alice");
    assert_eq!(parsed.password.expose(), b"s3cr:t pass");
    assert!(!format!("{parsed:?}").contains("s3cr"));

    let mut longest = vec![1, 255];
    longest.extend_from_slice(&[b'u'; 255]);
    longest.push(255);
    longest.extend_from_slice(&[0xFF; 255]);
    assert_eq!(
        whole(parse_userpass, &longest).password.expose(),
        [0xFF; 255]
    );
}

#[test]
fn malformed_userpass_gets_a_failure_status() {
    fails(parse_userpass, &[5], ProtocolError::UserPassVersion(5));
    fails(parse_userpass, &[1, 0], ProtocolError::EmptyUser);
    fails(
        parse_userpass,
        &[1, 1, b'a', 0],
        ProtocolError::EmptyPassword,
    );
    fails(
        parse_userpass,
        &[1, 2, 0xC3, 0x28],
        ProtocolError::UserNotUtf8,
    );
    for error in [
        ProtocolError::UserPassVersion(5),
        ProtocolError::EmptyUser,
        ProtocolError::EmptyPassword,
        ProtocolError::UserNotUtf8,
    ] {
        assert_eq!(error.reply().unwrap().encode(), [1, 1]);
    }
}

#[test]
fn choosing_a_method() {
    let table: &[(&[u8], bool, Method)] = &[
        (&[0], false, Method::NoAuth),
        (&[0x80, 1, 0], false, Method::NoAuth),
        (&[2], false, Method::NoneAcceptable),
        (&[0, 2], true, Method::UserPass),
        (&[0], true, Method::NoneAcceptable),
        (&[], false, Method::NoneAcceptable),
        (&[], true, Method::NoneAcceptable),
    ];
    for &(offered, auth, expected) in table {
        assert_eq!(choose_method(offered, auth), expected, "{offered:?} {auth}");
    }
    assert_eq!(encode_method_choice(Method::NoAuth), [5, 0x00]);
    assert_eq!(encode_method_choice(Method::UserPass), [5, 0x02]);
    assert_eq!(encode_method_choice(Method::NoneAcceptable), [5, 0xFF]);
    assert_eq!(encode_userpass_status(true), [1, 0]);
    assert_eq!(encode_userpass_status(false), [1, 1]);
}

#[test]
fn socks5_replies() {
    let codes = [
        (Reply::Succeeded, 0),
        (Reply::GeneralFailure, 1),
        (Reply::NotAllowed, 2),
        (Reply::NetworkUnreachable, 3),
        (Reply::HostUnreachable, 4),
        (Reply::ConnectionRefused, 5),
        (Reply::TtlExpired, 6),
        (Reply::CommandNotSupported, 7),
        (Reply::AddressTypeNotSupported, 8),
    ];
    for (reply, code) in codes {
        assert_eq!(
            encode_socks5_reply(reply, NO_BOUND_ADDRESS),
            [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }
    let v4: SocketAddr = "10.1.2.3:1080".parse().unwrap();
    assert_eq!(
        encode_socks5_reply(Reply::Succeeded, v4),
        [5, 0, 0, 1, 10, 1, 2, 3, 0x04, 0x38]
    );
    let v6: SocketAddr = "[::1]:443".parse().unwrap();
    let mut expected = vec![5, 0, 0, 4];
    expected.extend_from_slice(&[0; 15]);
    expected.extend_from_slice(&[1, 0x01, 0xBB]);
    assert_eq!(encode_socks5_reply(Reply::Succeeded, v6), expected);
}

#[test]
fn socks4_replies() {
    assert_eq!(encode_socks4_reply(true), [0, 0x5A, 0, 0, 0, 0, 0, 0]);
    assert_eq!(encode_socks4_reply(false), [0, 0x5B, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn channel_open_failures_map_to_replies() {
    let table = [
        (1, Some("open failed"), Reply::NotAllowed),
        (2, Some("Connection refused"), Reply::ConnectionRefused),
        (2, Some("No route to host"), Reply::HostUnreachable),
        (2, Some("Network is unreachable"), Reply::NetworkUnreachable),
        (2, Some("Name or service not known"), Reply::HostUnreachable),
        (2, Some("Connection timed out"), Reply::HostUnreachable),
        (2, None, Reply::HostUnreachable),
        (3, Some("unknown channel type"), Reply::GeneralFailure),
        (4, None, Reply::GeneralFailure),
        (99, Some("Connection refused"), Reply::GeneralFailure),
    ];
    for (code, description, expected) in table {
        assert_eq!(
            Reply::for_open_failure(code, description),
            expected,
            "{code} {description:?}"
        );
    }
}

#[test]
fn targets_display_as_ssh_names_them() {
    assert_eq!(ip("::1").to_string(), "::1");
    assert_eq!(ip("127.0.0.1").to_string(), "127.0.0.1");
    assert_eq!(domain("example.com").to_string(), "example.com");
}

/// A small deterministic stand-in for the fuzz target (which CI does not run): random and
/// mutated messages never panic, and every parser's answer is the same on every longer buffer.
#[test]
fn random_and_mutated_input_keeps_the_invariants() {
    let seeds: [&[u8]; 5] = [
        &[5, 2, 0, 2],
        &[5, 1, 0, 3, 3, b'a', b'.', b'b', 0, 80],
        &[4, 1, 0, 80, 0, 0, 0, 1, b'u', 0, b'h', 0],
        &[1, 1, b'u', 1, b'p'],
        &[
            5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22,
        ],
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..20_000 {
        let mut bytes = seeds[round % seeds.len()].to_vec();
        for _ in 0..next() % 4 {
            let at = (next() as usize) % (bytes.len() + 1);
            match next() % 3 {
                0 => bytes.insert(at, next() as u8),
                1 if at < bytes.len() => bytes[at] = next() as u8,
                _ => bytes.truncate(at),
            }
        }
        check_prefixes(parse_greeting, &bytes);
        check_prefixes(parse_socks5_request, &bytes);
        check_prefixes(parse_userpass, &bytes);
    }
}

/// The answer on the whole buffer, once decided at some prefix, is the answer on every longer
/// prefix, and every shorter prefix is `Incomplete`.
fn check_prefixes<T: fmt::Debug + PartialEq>(parse: ParseFn<T>, bytes: &[u8]) {
    let full = parse(bytes);
    let decided = (0..=bytes.len())
        .find(|&len| parse(&bytes[..len]) != Ok(Parsed::Incomplete))
        .unwrap_or(bytes.len() + 1);
    for len in 0..=bytes.len() {
        let answer = parse(&bytes[..len]);
        if len < decided {
            assert_eq!(answer, Ok(Parsed::Incomplete), "{bytes:?}[..{len}]");
        } else {
            assert_eq!(answer, full, "{bytes:?}[..{len}]");
        }
    }
    if let Ok(Parsed::Done { consumed, .. }) = full {
        assert_eq!(consumed, decided);
    }
    if full == Ok(Parsed::Incomplete) {
        assert!(bytes.len() < MAX_REQUEST);
    }
}
