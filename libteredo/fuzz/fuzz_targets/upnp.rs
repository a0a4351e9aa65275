//! The UPnP IGD parsers (libteredo::proto::upnp) on arbitrary bytes, as a
//! LAN device could send them: an SSDP answer, an HTTP answer read whole or
//! in part, a device description, a SOAP answer. None may panic; what they
//! accept must respect their bounds (URLs on an IPv4 host with a path,
//! bodies within MAX_HTTP).
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo::proto::upnp::{
    find_service, parse_http, parse_soap, parse_ssdp, parse_url, HttpAnswer, MAX_HTTP,
};

fuzz_target!(|data: &[u8]| {
    if let Some(u) = parse_ssdp(data) {
        assert!(u.path.starts_with('/'));
    }
    for complete in [false, true] {
        if let Ok(Some(a)) = parse_http(data, complete) {
            assert!(a.body.len() <= MAX_HTTP);
            let _ = parse_soap(&a, &["NewExternalIPAddress"]);
        }
    }
    let base = parse_url("http://192.168.1.1:5000/rootDesc.xml").expect("a valid base");
    if let Some((_, ctl)) = find_service(data, &base) {
        assert!(ctl.path.starts_with('/'));
    }
    for status in [200, 500] {
        let a = HttpAnswer {
            status,
            body: data.to_vec(),
        };
        let _ = parse_soap(&a, &["NewExternalIPAddress"]);
    }
});
