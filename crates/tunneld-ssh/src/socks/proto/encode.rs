//! The messages a SOCKS server sends.

use std::net::{IpAddr, SocketAddr};

use super::{Method, Reply};

/// The method to answer a SOCKS5 greeting with: username/password when the forward requires
/// it, otherwise no authentication; [`Method::NoneAcceptable`] when the client did not offer it.
pub fn choose_method(offered: &[u8], auth_required: bool) -> Method {
    let wanted = if auth_required {
        Method::UserPass
    } else {
        Method::NoAuth
    };
    if offered.contains(&wanted.code()) {
        wanted
    } else {
        Method::NoneAcceptable
    }
}

/// The SOCKS5 method selection message.
pub fn encode_method_choice(method: Method) -> [u8; 2] {
    [0x05, method.code()]
}

/// The RFC 1929 status message: version 1, then 0 for success and 1 for failure (any non-zero
/// value is failure; close the connection after it).
pub fn encode_userpass_status(ok: bool) -> [u8; 2] {
    [0x01, if ok { 0x00 } else { 0x01 }]
}

/// A SOCKS5 reply. `bound` is the address the server bound; pass [`NO_BOUND_ADDRESS`], as
/// OpenSSH does, since an SSH channel has none to report.
pub fn encode_socks5_reply(reply: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut bytes = vec![0x05, reply.code(), 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            bytes.push(0x01);
            bytes.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            bytes.push(0x04);
            bytes.extend_from_slice(&ip.octets());
        }
    }
    bytes.extend_from_slice(&bound.port().to_be_bytes());
    bytes
}

/// A SOCKS4 reply: 0x5A "request granted" or 0x5B "request rejected or failed". The reply's
/// version byte is 0, not 4; the port and address are zero (clients ignore them for CONNECT,
/// and OpenSSH sends zeros too).
pub fn encode_socks4_reply(granted: bool) -> [u8; 8] {
    [0x00, if granted { 0x5A } else { 0x5B }, 0, 0, 0, 0, 0, 0]
}
