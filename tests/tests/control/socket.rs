//! Where the socket is and who owns it: a stale socket from a crash is replaced, a second daemon
//! for the same socket refuses to start.

use std::time::Duration;

use harness::{EchoServer, Sshd, TunneldProcess, free_port};
use nix::sys::signal::Signal;

use super::support::{test_dir, write_one_tunnel};
use super::{TIMEOUT, status};

#[test]
fn a_second_daemon_is_refused_and_a_stale_socket_is_replaced() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let block = format!("local = [\"{}:127.0.0.1:{}\"]\n", free_port(), echo.port());
    let config = write_one_tunnel(dir.path(), &sshd, "db", &block);
    let config = config.to_str().unwrap();
    let runtime = dir.join("run");
    std::fs::create_dir(&runtime).unwrap();
    let env = [("RUNTIME_DIRECTORY", runtime.to_str().unwrap())];
    let mut first = TunneldProcess::spawn(&["run", "--config", config], &env);
    // $RUNTIME_DIRECTORY/<the config file's stem>.sock
    let socket = runtime.join("tunneld.sock");
    assert!(
        harness::wait_until(TIMEOUT, || socket.exists()),
        "{}",
        first.logs()
    );
    assert!(harness::wait_until(TIMEOUT, || status(&socket).0 != Some(3)));

    let mut second = TunneldProcess::spawn(&["run", "--config", config], &env);
    let exit = second.wait_exit(TIMEOUT).expect("the second daemon exits");
    assert!(!exit.success());
    second.expect_log(
        &format!(
            "another tunneld already serves the control socket {}",
            socket.display()
        ),
        Duration::ZERO,
    );
    assert!(!second.logs().contains("tunnel up"), "{}", second.logs());
    assert!(first.is_running());
    assert_ne!(status(&socket).0, Some(3), "the first still answers");

    // A crash leaves the socket behind; the next daemon replaces it.
    first.signal(Signal::SIGKILL);
    first.wait_exit(TIMEOUT).unwrap();
    assert!(socket.exists());
    let third = TunneldProcess::spawn(&["run", "--config", config], &env);
    third.expect_log("replacing a stale control socket", TIMEOUT);
    assert!(
        harness::wait_until(TIMEOUT, || status(&socket).0 == Some(0)),
        "{}",
        third.logs()
    );
}
