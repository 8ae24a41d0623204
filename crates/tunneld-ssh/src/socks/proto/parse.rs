//! The parsers. Each reads its message front to back and fails as soon as the bytes so far
//! cannot begin a valid message, never because bytes are missing; so a result on a buffer holds
//! for every longer buffer, and a valid message cut anywhere is only ever `Incomplete`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    Command, DomainError, Greeting, MAX_NAME, Parsed, Protocol, ProtocolError, Secret, Socks4Field,
    Socks4Request, Socks5Request, Target, UserPass,
};

/// Returns `Incomplete` from the enclosing parser when the bytes are not there yet.
macro_rules! need {
    ($read:expr) => {
        match $read {
            Some(value) => value,
            None => return Ok(Parsed::Incomplete),
        }
    };
}

/// A read position in the buffer; every read answers `None` rather than run past its end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let bytes = self.rest().get(..len)?;
        self.pos += len;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        let (&byte, _) = self.rest().split_first()?;
        self.pos += 1;
        Some(byte)
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A NUL-terminated field of at most [`MAX_NAME`] bytes (without the NUL), which is
    /// consumed. `Ok(None)`: no NUL yet, and not too long yet.
    fn nul_terminated(&mut self, field: Socks4Field) -> Result<Option<&'a [u8]>, ProtocolError> {
        let rest = self.rest();
        let window = rest.get(..=MAX_NAME).unwrap_or(rest);
        match window.iter().position(|&byte| byte == 0) {
            Some(len) => {
                let value = rest.get(..len).unwrap_or_default();
                self.pos += len + 1;
                Ok(Some(value))
            }
            None if window.len() > MAX_NAME => Err(ProtocolError::Socks4TooLong(field)),
            None => Ok(None),
        }
    }

    fn done<T>(&self, value: T) -> Result<Parsed<T>, ProtocolError> {
        Ok(Parsed::Done {
            value,
            consumed: self.pos,
        })
    }
}

/// Parses the first message of a connection: a SOCKS5 method selection message, or a whole
/// SOCKS4/4a request (SOCKS4 has no greeting). The first byte decides, so a client that does not
/// speak SOCKS fails on its first byte.
pub fn parse_greeting(buf: &[u8]) -> Result<Parsed<Greeting>, ProtocolError> {
    let mut r = Reader::new(buf);
    match need!(r.u8()) {
        0x05 => {
            let count = need!(r.u8());
            if count == 0 {
                return Err(ProtocolError::NoMethods);
            }
            let methods = need!(r.take(usize::from(count))).to_vec();
            r.done(Greeting::Socks5 { methods })
        }
        0x04 => parse_socks4(r),
        other => Err(ProtocolError::UnknownVersion(other)),
    }
}

/// The rest of a SOCKS4 request, after its version byte:
/// `CD DSTPORT(2) DSTIP(4) USERID NUL [DOMAIN NUL]`.
fn parse_socks4(mut r: Reader<'_>) -> Result<Parsed<Greeting>, ProtocolError> {
    let command = match need!(r.u8()) {
        0x01 => Command::Connect,
        0x02 => Command::Bind,
        other => Command::Other(other),
    };
    let port = need!(r.u16());
    let ip = need!(r.array::<4>());
    let user_id = need!(r.nul_terminated(Socks4Field::UserId)?).to_vec();
    // SOCKS4a: an address 0.0.0.x (x != 0), which no one can connect to, means "the name
    // follows the user id".
    let target = if let [0, 0, 0, last] = ip
        && last != 0
    {
        let name = need!(r.nul_terminated(Socks4Field::Domain)?);
        Target::Domain(domain(name).map_err(|problem| ProtocolError::BadDomain {
            protocol: Protocol::Socks4a,
            problem,
        })?)
    } else {
        Target::Ip(IpAddr::V4(Ipv4Addr::from(ip)))
    };
    r.done(Greeting::Socks4(Socks4Request {
        command,
        target,
        port,
        user_id,
    }))
}

/// Parses a SOCKS5 request: `VER CMD RSV ATYP DST.ADDR DST.PORT(2)`. Any command code parses;
/// answering those other than CONNECT is the caller's business.
pub fn parse_socks5_request(buf: &[u8]) -> Result<Parsed<Socks5Request>, ProtocolError> {
    let mut r = Reader::new(buf);
    let version = need!(r.u8());
    if version != 0x05 {
        return Err(ProtocolError::RequestVersion(version));
    }
    let command = match need!(r.u8()) {
        0x01 => Command::Connect,
        0x02 => Command::Bind,
        0x03 => Command::UdpAssociate,
        other => Command::Other(other),
    };
    let reserved = need!(r.u8());
    if reserved != 0 {
        return Err(ProtocolError::ReservedNotZero(reserved));
    }
    let target = match need!(r.u8()) {
        0x01 => Target::Ip(IpAddr::V4(Ipv4Addr::from(need!(r.array::<4>())))),
        0x03 => {
            let bad = |problem| ProtocolError::BadDomain {
                protocol: Protocol::Socks5,
                problem,
            };
            let len = need!(r.u8());
            if len == 0 {
                return Err(bad(DomainError::Empty));
            }
            Target::Domain(domain(need!(r.take(usize::from(len)))).map_err(bad)?)
        }
        0x04 => Target::Ip(IpAddr::V6(Ipv6Addr::from(need!(r.array::<16>())))),
        other => return Err(ProtocolError::AddressType(other)),
    };
    let port = need!(r.u16());
    r.done(Socks5Request {
        command,
        target,
        port,
    })
}

/// Parses an RFC 1929 username/password request: `VER(1) ULEN UNAME PLEN PASSWD`.
pub fn parse_userpass(buf: &[u8]) -> Result<Parsed<UserPass>, ProtocolError> {
    let mut r = Reader::new(buf);
    let version = need!(r.u8());
    if version != 0x01 {
        return Err(ProtocolError::UserPassVersion(version));
    }
    let user_len = need!(r.u8());
    if user_len == 0 {
        return Err(ProtocolError::EmptyUser);
    }
    let user = need!(r.take(usize::from(user_len)));
    let user = std::str::from_utf8(user)
        .map_err(|_| ProtocolError::UserNotUtf8)?
        .to_owned();
    let password_len = need!(r.u8());
    if password_len == 0 {
        return Err(ProtocolError::EmptyPassword);
    }
    let password = Secret::new(need!(r.take(usize::from(password_len))).to_vec());
    r.done(UserPass { user, password })
}

/// Checks a domain name's bytes (the length was checked by the caller).
fn domain(bytes: &[u8]) -> Result<String, DomainError> {
    if bytes.is_empty() {
        return Err(DomainError::Empty);
    }
    if bytes.iter().any(|&byte| byte < 0x20 || byte == 0x7F) {
        return Err(DomainError::ControlCharacter);
    }
    match std::str::from_utf8(bytes) {
        Ok(name) => Ok(name.to_owned()),
        Err(_) => Err(DomainError::NotUtf8),
    }
}
