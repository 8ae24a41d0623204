use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::{http_connect, socks5_connect};

#[tokio::test]
async fn http_reads_the_answer_and_not_a_byte_of_the_server() {
    let (mut ours, mut proxy) = duplex(4096);
    proxy
        .write_all(b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\nSSH-2.0-OpenSSH\r\n")
        .await
        .unwrap();
    http_connect(&mut ours, "db:22").await.unwrap();
    let mut asked = vec![0u8; 37];
    proxy.read_exact(&mut asked).await.unwrap();
    assert_eq!(
        asked,
        b"CONNECT db:22 HTTP/1.1\r\nHost: db:22\r\n\r\n"[..37]
    );
    let mut banner = [0u8; 7];
    ours.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"SSH-2.0");
}

#[tokio::test]
async fn http_refusal_names_the_status_line_and_headers_are_bounded() {
    let (mut ours, mut proxy) = duplex(64 * 1024);
    proxy
        .write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        .await
        .unwrap();
    let err = http_connect(&mut ours, "db:22").await.unwrap_err();
    assert_eq!(err, "refused CONNECT db:22: HTTP/1.1 403 Forbidden");

    let (mut ours, mut proxy) = duplex(64 * 1024);
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b'x', 20_000));
    proxy.write_all(&endless).await.unwrap();
    let err = http_connect(&mut ours, "db:22").await.unwrap_err();
    assert!(err.contains("more than 8192 bytes"), "{err}");

    let (mut ours, proxy) = duplex(64);
    drop(proxy);
    let err = http_connect(&mut ours, "db:22").await.unwrap_err();
    assert!(err.contains("failed") || err.contains("closed"), "{err}");
}

#[tokio::test]
async fn socks5_sends_the_name_and_says_the_reply_in_words() {
    let (mut ours, mut proxy) = duplex(4096);
    // Method choice, then "connection refused" with an IPv4 bound address.
    proxy
        .write_all(&[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let err = socks5_connect(&mut ours, "db.example.com", 22, "db.example.com:22")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "refused CONNECT db.example.com:22: connection refused (SOCKS5 reply 5)"
    );
    let mut asked = vec![0u8; 3 + 5 + 14 + 2];
    proxy.read_exact(&mut asked).await.unwrap();
    let mut expected = vec![5, 1, 0, 5, 1, 0, 3, 14];
    expected.extend_from_slice(b"db.example.com");
    expected.extend_from_slice(&22u16.to_be_bytes());
    assert_eq!(asked, expected);

    let (mut ours, mut proxy) = duplex(4096);
    proxy.write_all(&[5, 0xFF]).await.unwrap();
    let err = socks5_connect(&mut ours, "db", 22, "db:22")
        .await
        .unwrap_err();
    assert!(err.contains("requires authentication"), "{err}");
}
