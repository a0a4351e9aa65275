//! The metrics listener's request parser and answer, fed any bytes: it
//! never panics, never accepts more than MAX_REQUEST bytes of headers,
//! and every answer is one HTTP/1.1 status line, headers that end, and a
//! body of the length announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo::metrics::http::{answer, parse_request, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_request(data);
    if let Ok(Some(_)) = parsed {
        let end = data.windows(4).position(|w| w == b"\r\n\r\n");
        assert!(end.is_some_and(|e| e + 4 <= MAX_REQUEST));
    }
    let out = answer(parsed, "interface: teredo\nudp-rx-packets: 1\n");
    let text = String::from_utf8(out).expect("answers are UTF-8");
    assert!(text.starts_with("HTTP/1.1 "));
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    assert!(body.is_empty() || body.len() == len);
});
