//! What the engine reports (qualified, server lost, NAT observed, server
//! changed), acted on by the control loop: logs, miredo-privproc's
//! requests (crate::privproc_client), the port mapper, the path watch;
//! and local discovery's datagrams (RFC 4380 5.2.8), read here.

use super::Daemon;
use crate::io_threads::lock;
use libteredo::privsep::Request;
use libteredo::proto::{Event, NatBehaviour};
use libteredo::sys::socket;
use std::net::SocketAddrV4;
use std::os::fd::AsFd;
use std::time::Instant;

impl Daemon {
    /// Acts on what the engine reported.
    pub(super) fn events(&mut self) {
        let events = std::mem::take(&mut *lock(&self.sh.events));
        for e in events {
            self.event(e);
        }
    }

    pub(super) fn read_discovery(&mut self, buf: &mut [u8]) {
        for _ in 0..16 {
            let Some(sock) = &self.discovery else { return };
            // The ECN field of the outer IPv4 header (RFC 9601: congestion
            // marked on the way must reach the inner packet).
            let (n, from, ecn) = match socket::recv(sock.as_fd(), buf) {
                Ok((n, from, meta)) => (n, from, meta.tos & 0b11),
                Err(_) => return,
            };
            let Some(from) = from else { continue };
            let to = SocketAddrV4::new(
                libteredo::addr::DISCOVERY_ADDR,
                libteredo::addr::TEREDO_PORT,
            );
            let mut out = Vec::new();
            lock(&self.sh.engine).handle_udp(Instant::now(), from, to, ecn, &buf[..n], &mut out);
            self.sh.dispatch(&mut out, &mut self.iobufs);
        }
    }

    pub(super) fn event(&mut self, e: Event) {
        match e {
            Event::Qualified {
                addr,
                old,
                mapped,
                mtu,
                nat,
            } => {
                if self.qualified_at.is_none() {
                    self.qualified_at = Some(self.started.elapsed());
                }
                match old {
                    Some(o) => log::info!("new Teredo address {addr} (was {o}): mapped {mapped}, MTU {mtu}"),
                    None => log::info!(
                        "qualified: Teredo address {addr}, mapped {mapped}, MTU {mtu}, NAT {nat}, after {:.0} ms",
                        self.started.elapsed().as_secs_f64() * 1000.0
                    ),
                }
                self.ask_privproc(Request::Up {
                    ifindex: self.ifindex,
                    address: addr,
                    mtu,
                });
                // The endpoint the address embeds: the mapping's place.
                if let Some(m) = self.mapper.as_mut() {
                    m.set_wanted(Some(mapped));
                }
            }
            Event::ServerLost { old } => {
                match self.leaving_because.take() {
                    Some(why) => log::info!("{why}: {old} withdrawn, qualifying with the new list"),
                    None => log::warn!(
                        "the Teredo server stopped answering: {old} withdrawn, looking for a server again"
                    ),
                }
                self.ask_privproc(Request::Down {
                    ifindex: self.ifindex,
                });
                if let Some(m) = self.mapper.as_mut() {
                    m.set_wanted(None);
                }
                // The name may give other servers now.
                if let Some(n) = self.names.as_mut() {
                    n.refresh(Instant::now());
                }
            }
            Event::NatObserved(NatBehaviour::None) => log::info!(
                "no NAT: the Teredo server sees this host's own address and port, and nothing filters"
            ),
            Event::NatObserved(nat) => log::info!("NAT behaviour observed: {nat}"),
            Event::ServerChanged { from, to } => {
                log::warn!(
                    "Teredo server {to} in use: {from}, before it in the list, did not answer"
                );
                self.server_change = Some((from, to, std::time::SystemTime::now()));
                // The path to the new server: the baseline of its changes.
                if let Some(w) = self.watch.as_mut() {
                    w.check_by(Instant::now());
                }
            }
        }
    }
}
