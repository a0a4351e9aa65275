//! ECN across the tunnel (RFC 9601 applying RFC 6040 "normal mode" to
//! Teredo): the inner IPv6 ECN field is copied to the outer IPv4 header on
//! encapsulation, and congestion marked on the outer header reaches the
//! inner one on decapsulation.

/// Not ECN-capable transport.
pub const NOT_ECT: u8 = 0b00;
/// ECN-capable transport, codepoint 1.
pub const ECT1: u8 = 0b01;
/// ECN-capable transport, codepoint 0.
pub const ECT0: u8 = 0b10;
/// Congestion experienced.
pub const CE: u8 = 0b11;

/// The outer ECN field for an inner one (RFC 6040 4.1, normal mode: copy).
pub fn encapsulate(inner: u8) -> u8 {
    inner & 0b11
}

/// The inner ECN field after decapsulation (RFC 6040 4.2, figure 4), or
/// `None` when the packet must be dropped (a CE mark on a packet whose
/// transport cannot understand it).
pub fn decapsulate(inner: u8, outer: u8) -> Option<u8> {
    let (inner, outer) = (inner & 0b11, outer & 0b11);
    match (inner, outer) {
        (NOT_ECT, CE) => None,
        (NOT_ECT, _) => Some(NOT_ECT),
        (CE, _) => Some(CE),
        (_, CE) => Some(CE),
        (ECT0, ECT1) => Some(ECT1),
        (i, _) => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6040_decapsulation_table() {
        // Rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE.
        let table = [
            (NOT_ECT, [Some(NOT_ECT), Some(NOT_ECT), Some(NOT_ECT), None]),
            (ECT0, [Some(ECT0), Some(ECT0), Some(ECT1), Some(CE)]),
            (ECT1, [Some(ECT1), Some(ECT1), Some(ECT1), Some(CE)]),
            (CE, [Some(CE), Some(CE), Some(CE), Some(CE)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NOT_ECT, ECT0, ECT1, CE].into_iter().zip(row) {
                assert_eq!(
                    decapsulate(inner, outer),
                    want,
                    "inner {inner:02b} outer {outer:02b}"
                );
            }
        }
    }

    #[test]
    fn encapsulation_copies() {
        for e in [NOT_ECT, ECT0, ECT1, CE] {
            assert_eq!(encapsulate(e), e);
        }
    }
}
