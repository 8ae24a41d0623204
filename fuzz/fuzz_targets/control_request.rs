//! Fuzzes the control socket's request parser, `tunneld_control::parse_request`: what any local
//! client may send to the daemon. Checked, besides "never panics":
//!
//! - the answer is deterministic;
//! - anything longer than `MAX_REQUEST` is refused as too long, whatever it holds;
//! - a request that parses encodes (`Request::to_line`) to one line that parses to the same
//!   request, and that line is itself a fixed point of parse-then-encode;
//! - a parsed reconnect is never "every tunnel" unless the input said `"all": true`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld_control::{MAX_NAMES, MAX_REQUEST, Request, RequestError, parse_request};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_request(data);
    assert_eq!(parsed, parse_request(data), "not deterministic");
    if data.len() > MAX_REQUEST {
        assert_eq!(parsed, Err(RequestError::TooLong));
        return;
    }
    let Ok(request) = parsed else {
        return;
    };
    let line = request.to_line();
    let body = line.strip_suffix('\n').expect("a line ends with a newline");
    assert!(!body.contains('\n'), "one line: {line:?}");
    let again = parse_request(body.as_bytes()).expect("an encoded request parses");
    assert_eq!(again, request, "{line:?}");
    assert_eq!(again.to_line(), line);
    match &request {
        Request::Status { tunnels } | Request::Reconnect { tunnels } => {
            assert!(tunnels.len() <= MAX_NAMES);
        }
        Request::Reload => {}
    }
    if let Request::Reconnect { tunnels } = &request
        && tunnels.is_empty()
    {
        let value: serde_json::Value = serde_json::from_slice(data).expect("it parsed as JSON");
        assert_eq!(value["all"], serde_json::Value::Bool(true));
    }
});
