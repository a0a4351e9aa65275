//! The host's own network as a client sees it: the path to its server
//! (outgoing interface, gateway, source address, link state), what made it
//! change, and what the client waits for while it is not qualified. The
//! decisions are pure functions; the daemon feeds them rtnetlink
//! announcements (libteredo::sys::netlink) and send errors.

use libteredo::sys::netlink::{Changes, Monitor, Netlink, Path};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Announcements closer together than this are taken as one change (a
/// link going down takes its addresses and routes with it, one message
/// each; DHCP replaces an address and then the default route).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// What a client that is not qualified waits for (`waiting-for` on the
/// status socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    NameUnresolved,
    NoRoute,
    NoAddress,
    NoAnswer,
}

impl Waiting {
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::NameUnresolved => "server name does not resolve",
            Waiting::NoRoute => "no route to server",
            Waiting::NoAddress => "no IPv4 address",
            Waiting::NoAnswer => "no answer from server",
        }
    }
}

/// What the host knows of its way to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Not looked up (no rtnetlink).
    Unknown,
    /// No route at all; `addressed`: whether the host has any IPv4
    /// address (but the loopback's).
    NoRoute {
        addressed: bool,
    },
    Via(Path),
}

/// What the client waits for: `None` once qualified. `send_errno` is the
/// error of the last solicitation sent, if it failed.
pub fn waiting_for(
    has_server: bool,
    qualified: bool,
    reach: Reach,
    send_errno: i32,
) -> Option<Waiting> {
    use nix::errno::Errno;
    if !has_server {
        return Some(Waiting::NameUnresolved);
    }
    if qualified {
        return None;
    }
    match reach {
        Reach::NoRoute { addressed: false } => return Some(Waiting::NoAddress),
        Reach::NoRoute { addressed: true } => return Some(Waiting::NoRoute),
        Reach::Via(p) if p.src.is_none() => return Some(Waiting::NoAddress),
        Reach::Via(p) if !p.running => return Some(Waiting::NoRoute),
        _ => {}
    }
    match Errno::from_raw(send_errno) {
        Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::ENETDOWN => Some(Waiting::NoRoute),
        Errno::EADDRNOTAVAIL => Some(Waiting::NoAddress),
        _ => Some(Waiting::NoAnswer),
    }
}

/// Whether a path can carry a solicitation.
pub fn usable(r: &Reach) -> bool {
    matches!(r, Reach::Via(p) if p.src.is_some() && p.running)
}

/// How the path to the server changed between two lookups, said for the
/// log; `None` when it did not. `flapped`: the outgoing interface was seen
/// down in between (it may be up again, the path otherwise the same: the
/// network it joined may be another).
pub fn path_change(old: &Reach, new: &Reach, flapped: bool) -> Option<String> {
    match (old, new) {
        (Reach::Unknown, _) | (_, Reach::Unknown) => None,
        (Reach::NoRoute { .. }, Reach::NoRoute { .. }) => None,
        (Reach::Via(_), Reach::NoRoute { .. }) => Some("no route any more".into()),
        (Reach::NoRoute { .. }, Reach::Via(p)) => Some(format!("a route again, {}", describe(p))),
        (Reach::Via(a), Reach::Via(b)) => {
            let mut what = Vec::new();
            if a.oif != b.oif {
                what.push(format!(
                    "outgoing interface {} -> {}",
                    a.ifname(),
                    b.ifname()
                ));
            }
            if a.gateway != b.gateway {
                what.push(format!("gateway {} -> {}", opt(a.gateway), opt(b.gateway)));
            }
            if a.src != b.src {
                what.push(format!("source {} -> {}", opt(a.src), opt(b.src)));
            }
            if a.running != b.running {
                what.push(format!(
                    "{} {}",
                    b.ifname(),
                    if b.running { "up again" } else { "down" }
                ));
            } else if flapped && a.oif == b.oif && b.running {
                what.push(format!("{} went down and up", b.ifname()));
            }
            (!what.is_empty()).then(|| what.join(", "))
        }
    }
}

fn opt(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "none".into(), |a| a.to_string())
}

fn describe(p: &Path) -> String {
    let mut s = format!("via {}", p.ifname());
    if let Some(g) = p.gateway {
        s += &format!(" gateway {g}");
    }
    if let Some(a) = p.src {
        s += &format!(" from {a}");
    }
    s
}

/// The daemon's watch on the path to the server: the announcements, the
/// lookups, and the last path seen.
pub struct Watch {
    pub monitor: Option<Monitor>,
    routes: Option<Netlink>,
    /// Our own tunnel: what happens to it is ours, not the network's.
    tun: u32,
    /// The server the last lookup was for, and what it found.
    last: Option<(Ipv4Addr, Reach)>,
    /// When to look again (announcements came).
    check_at: Option<Instant>,
    /// The outgoing interface was announced down since the last lookup.
    flapped: bool,
}

/// What a lookup found.
pub struct Checked {
    pub reach: Reach,
    /// How the path changed, if it did, for the same server.
    pub change: Option<String>,
}

impl Watch {
    pub fn new(monitor: Option<Monitor>, routes: Option<Netlink>, tun: u32) -> Watch {
        Watch {
            monitor,
            routes,
            tun,
            last: None,
            check_at: None,
            flapped: false,
        }
    }

    /// The last lookup's result.
    pub fn reach(&self) -> Reach {
        self.last.map_or(Reach::Unknown, |(_, r)| r)
    }

    /// When a lookup is due.
    pub fn due(&self) -> Option<Instant> {
        self.check_at
    }

    /// Asks for a lookup at `at` at the latest.
    pub fn check_by(&mut self, at: Instant) {
        self.check_at = Some(self.check_at.map_or(at, |t| t.min(at)));
    }

    /// Reads the announcements waiting; returns whether any may change a
    /// path (a lookup is then due within [`DEBOUNCE`]).
    pub fn announcements(&mut self, now: Instant) -> bool {
        let Some(m) = self.monitor.as_mut() else {
            return false;
        };
        let Changes { any, links } = match m.drain(self.tun) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("rtnetlink announcements: {e}: network changes are noticed at the next refresh only");
                self.monitor = None;
                return false;
            }
        };
        if let Some((_, Reach::Via(p))) = self.last {
            if links.iter().any(|&(i, up)| i == p.oif && !up) {
                self.flapped = true;
            }
        }
        if any && self.check_at.is_none() {
            self.check_at = Some(now + DEBOUNCE);
        }
        any
    }

    /// A lookup is not needed after all (no server to look up the path
    /// to): the announcements are taken as read.
    pub fn skip(&mut self) {
        self.check_at = None;
        self.flapped = false;
    }

    /// Looks up the path to `server` now.
    pub fn check(&mut self, server: Ipv4Addr) -> Checked {
        self.check_at = None;
        let flapped = std::mem::take(&mut self.flapped);
        let Some(nl) = self.routes.as_mut() else {
            return Checked {
                reach: Reach::Unknown,
                change: None,
            };
        };
        let reach = match nl.route_to(server) {
            Ok(Some(p)) => Reach::Via(p),
            Ok(None) => Reach::NoRoute {
                addressed: nl.has_ipv4_address(self.tun).unwrap_or(true),
            },
            Err(e) => {
                log::debug!("route to {server}: {e}");
                Reach::Unknown
            }
        };
        let change = match self.last {
            Some((s, old)) if s == server => path_change(&old, &reach, flapped),
            _ => None,
        };
        if reach != Reach::Unknown {
            self.last = Some((server, reach));
        }
        Checked { reach, change }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(oif: u32, gw: [u8; 4], src: Option<[u8; 4]>, running: bool) -> Reach {
        Reach::Via(Path {
            oif,
            gateway: Some(Ipv4Addr::from(gw)),
            src: src.map(Ipv4Addr::from),
            running,
            name: *b"eth0\0\0\0\0\0\0\0\0\0\0\0\0",
        })
    }

    const GW: [u8; 4] = [192, 168, 1, 1];
    const SRC: [u8; 4] = [192, 168, 1, 2];

    #[test]
    fn what_the_client_waits_for() {
        let ok = via(2, GW, Some(SRC), true);
        assert_eq!(
            waiting_for(false, false, ok, 0),
            Some(Waiting::NameUnresolved)
        );
        assert_eq!(waiting_for(true, true, ok, 0), None);
        assert_eq!(waiting_for(true, false, ok, 0), Some(Waiting::NoAnswer));
        assert_eq!(
            waiting_for(true, false, Reach::NoRoute { addressed: true }, 0),
            Some(Waiting::NoRoute)
        );
        assert_eq!(
            waiting_for(true, false, Reach::NoRoute { addressed: false }, 0),
            Some(Waiting::NoAddress)
        );
        assert_eq!(
            waiting_for(true, false, via(2, GW, None, true), 0),
            Some(Waiting::NoAddress)
        );
        assert_eq!(
            waiting_for(true, false, via(2, GW, Some(SRC), false), 0),
            Some(Waiting::NoRoute)
        );
        // Without rtnetlink, the send errors say it.
        let net = nix::errno::Errno::ENETUNREACH as i32;
        let addr = nix::errno::Errno::EADDRNOTAVAIL as i32;
        assert_eq!(
            waiting_for(true, false, Reach::Unknown, net),
            Some(Waiting::NoRoute)
        );
        assert_eq!(
            waiting_for(true, false, Reach::Unknown, addr),
            Some(Waiting::NoAddress)
        );
        assert_eq!(
            waiting_for(true, false, Reach::Unknown, 0),
            Some(Waiting::NoAnswer)
        );
        assert_eq!(
            Waiting::NameUnresolved.as_str(),
            "server name does not resolve"
        );
    }

    #[test]
    fn path_changes_that_matter_are_named() {
        let a = via(2, GW, Some(SRC), true);
        // Nothing changed: nothing to do, even after unrelated announcements.
        assert_eq!(path_change(&a, &a, false), None);
        let new_src = via(2, GW, Some([192, 168, 1, 7]), true);
        let c = path_change(&a, &new_src, false).unwrap();
        assert!(c.contains("source 192.168.1.2 -> 192.168.1.7"), "{c}");
        let new_gw = via(2, [10, 0, 0, 1], Some(SRC), true);
        assert!(path_change(&a, &new_gw, false)
            .unwrap()
            .contains("gateway 192.168.1.1 -> 10.0.0.1"));
        let other_if = via(3, GW, Some(SRC), true);
        assert!(path_change(&a, &other_if, false)
            .unwrap()
            .contains("outgoing interface"));
        let down = via(2, GW, Some(SRC), false);
        assert!(path_change(&a, &down, false).unwrap().contains("down"));
        assert!(path_change(&down, &a, false).unwrap().contains("up again"));
        // Down and up between two lookups.
        assert!(path_change(&a, &a, true)
            .unwrap()
            .contains("went down and up"));
        let none = Reach::NoRoute { addressed: true };
        assert!(path_change(&a, &none, false).unwrap().contains("no route"));
        assert!(path_change(&none, &a, false)
            .unwrap()
            .contains("a route again"));
        assert_eq!(path_change(&none, &none, true), None);
        assert_eq!(path_change(&Reach::Unknown, &a, false), None);
    }

    #[test]
    fn only_a_path_with_a_source_and_a_carrier_is_usable() {
        assert!(usable(&via(2, GW, Some(SRC), true)));
        assert!(!usable(&via(2, GW, None, true)));
        assert!(!usable(&via(2, GW, Some(SRC), false)));
        assert!(!usable(&Reach::NoRoute { addressed: true }));
        assert!(!usable(&Reach::Unknown));
    }

    #[test]
    fn interface_names() {
        let Reach::Via(mut p) = via(2, GW, None, true) else {
            unreachable!()
        };
        assert_eq!(p.ifname(), "eth0");
        p.name = [0; 16];
        assert_eq!(p.ifname(), "interface 2");
    }
}
