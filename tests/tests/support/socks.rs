//! A SOCKS client for the tests of tunneld's two SOCKS servers: `dynamic` (here) and remote
//! dynamic forwarding (on the server's side).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use harness::localhost;

/// Runs curl with `args` (its proxy options) for `url`; returns (success, body, stderr).
pub fn curl(args: &[&str], url: &str) -> (bool, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `request` to the proxy on `port` after a no-authentication SOCKS5 greeting; returns
/// the reply's code byte. After a failure reply the proxy must have closed the connection.
pub fn socks5_connect(port: u16, request: &[u8]) -> u8 {
    let mut s = TcpStream::connect(localhost(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [5, 0]);
    s.write_all(request).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 5);
    if reply[1] != 0 {
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    }
    reply[1]
}

/// A SOCKS5 request `command` for 127.0.0.1:`port`.
pub fn ipv4_request(command: u8, port: u16) -> Vec<u8> {
    let mut r = vec![5, command, 0, 1, 127, 0, 0, 1];
    r.extend_from_slice(&port.to_be_bytes());
    r
}

/// A SOCKS5 request `command` for `name`:`port`.
pub fn domain_request(command: u8, name: &str, port: u16) -> Vec<u8> {
    let mut r = vec![5, command, 0, 3, u8::try_from(name.len()).unwrap()];
    r.extend_from_slice(name.as_bytes());
    r.extend_from_slice(&port.to_be_bytes());
    r
}
