//! The privsep frames.

use libteredo::privsep::{self, FrameError, Policy, Reply, Request, TeredoPrefix};

/// Reads frames from the stream until it ends or fails, as privproc does;
/// each request decoded goes through the policy, and survives a round
/// trip (the value, not the bytes: postcard takes over-long varints).
pub fn check_frames(data: &[u8]) {
    let policy = Policy {
        ifindex: 7,
        prefix: TeredoPrefix(0x2001_0000),
    };
    let mut r = data;
    for _ in 0..64 {
        let before = r;
        match privsep::read_frame::<_, Request>(&mut r) {
            Ok(req) => {
                assert!(before.len() - r.len() <= 2 + privsep::MAX_FRAME);
                let again = privsep::encode(&req).expect("a decoded request encodes");
                let back: Request = privsep::decode(&again[2..]).expect("re-decodes");
                assert_eq!(back, req, "request round trip");
                let _ = policy.check(&req);
                let _ = req.ifindex();
            }
            Err(FrameError::Closed) => break,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    if let Ok(rep) = privsep::decode::<Reply>(data) {
        let again = privsep::encode(&rep).expect("a decoded reply encodes");
        let back: Reply = privsep::decode(&again[2..]).expect("re-decodes");
        assert_eq!(back, rep, "reply round trip");
    }
    let _ = privsep::decode::<Request>(data);
}
