//! The client's watch on its way to the server, as the control loop
//! keeps it: the path the kernel takes (rtnetlink, `crate::network`), the
//! host's sleep (libteredo::sys::sleep), the errors of the solicitations
//! sent; a change makes the client solicit its server at once
//! (`Client::path_changed`), and what it waits for is said once in the log
//! and on the status page.

use super::Daemon;
use crate::engine::EngineKind;
use crate::io_threads::lock;
use crate::network::{self, Waiting, Watch};
use libteredo::proto::ClientState;
use libteredo::sys::netlink::Path;
use libteredo::sys::sleep;
use std::io;
use std::net::SocketAddrV4;
use std::time::Instant;

impl Daemon {
    /// How the main thread's last datagrams went (a client's solicitations
    /// leave from here): a new error asks the routing table why.
    pub(super) fn note_send(&mut self, now: Instant, sent: io::Result<()>) {
        let errno = match sent {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(0),
        };
        if errno != self.send_errno {
            self.send_errno = errno;
            if errno != 0 {
                if let Some(w) = self.watch.as_mut() {
                    w.check_by(now);
                }
            }
        }
    }

    /// Tells the client its path changed (or the host slept): a fresh
    /// solicitation at once.
    pub(super) fn path_changed(&mut self, now: Instant) {
        if let Some(mut e) = self.client() {
            if let EngineKind::Client(c) = &mut *e {
                c.path_changed(now);
            }
        }
        self.sh.wake();
    }

    /// Notices that the host slept since the last check (the boot clock
    /// ran on while the monotonic one stood still).
    pub(super) fn check_sleep(&mut self, now: Instant) {
        let off = sleep::offset();
        let slept = sleep::slept(self.boot_offset, off, sleep::MIN_SLEEP);
        self.boot_offset = off;
        let Some(d) = slept else { return };
        if self.client().is_none() {
            // A relay: nothing to requalify.
            log::info!("the host slept for {} s", d.as_secs());
            return;
        }
        if self.current_server().is_some() {
            log::info!(
                "the host slept for {} s: soliciting the Teredo server at once (the NAT has most likely forgotten us)",
                d.as_secs()
            );
            self.path_changed(now);
        } else {
            log::info!("the host slept for {} s", d.as_secs());
        }
        if let Some(n) = self.names.as_mut() {
            n.network_changed(now);
        }
        if let Some(w) = self.watch.as_mut() {
            w.check_by(now);
        }
    }

    /// Reads the kernel's announcements; a change that may matter makes a
    /// lookup due shortly (and a name that does not resolve is tried again
    /// then).
    pub(super) fn announcements(&mut self) {
        let now = Instant::now();
        let Some(w) = self.watch.as_mut() else { return };
        if w.announcements(now) {
            log::debug!("network announcements: the path to the server is looked up again");
        }
    }

    /// Looks up the path to the server; a change makes the client solicit
    /// it at once.
    pub(super) fn check_path(&mut self, now: Instant) {
        let server = self.current_server();
        let Some(w) = self.watch.as_mut() else { return };
        let Some(server) = server else {
            // No server yet: the network changed, the name may resolve now.
            w.skip();
            if let Some(n) = self.names.as_mut() {
                n.network_changed(now);
            }
            return;
        };
        let checked = w.check(server);
        if let Some(m) = self.mapper.as_mut() {
            match checked.reach {
                network::Reach::Via(Path {
                    gateway: Some(g),
                    src: Some(s),
                    running: true,
                    ..
                }) => m.set_path(Some((g, s))),
                network::Reach::Unknown => {}
                _ => m.set_path(None),
            }
        }
        let Some(what) = checked.change else { return };
        if network::usable(&checked.reach) {
            log::info!(
                "the path to the Teredo server {server} changed ({what}): soliciting it at once"
            );
            // Our local endpoint follows the source address of the path.
            if let network::Reach::Via(Path { src: Some(ip), .. }) = checked.reach {
                let port = self.local().port();
                if let Some(mut e) = self.client() {
                    if let EngineKind::Client(c) = &mut *e {
                        c.set_local(Some(SocketAddrV4::new(ip, port)));
                    }
                }
            }
            self.path_changed(now);
        } else {
            log::info!("the path to the Teredo server {server} changed ({what})");
        }
    }

    /// What the client waits for, for the status page (`None`: a relay, or
    /// qualified).
    pub(super) fn waiting_for(&self, e: &EngineKind) -> Option<Waiting> {
        let EngineKind::Client(c) = e else {
            return None;
        };
        let reach = self
            .watch
            .as_ref()
            .map_or(network::Reach::Unknown, Watch::reach);
        network::waiting_for(
            c.has_server(),
            c.qualification().is_some(),
            reach,
            self.send_errno,
        )
    }

    /// Says once in the log what the client waits for when it changes (a
    /// server that does not answer only once a round of solicitations
    /// failed; a name that does not resolve is said where it fails).
    pub(super) fn log_waiting(&mut self) {
        let (now_waiting, offline, server, answers) = {
            let e = lock(&self.sh.engine);
            let EngineKind::Client(c) = &*e else { return };
            // What each server of the list did, for "no answer": a server
            // that answered with something unusable is said so.
            let answers: Vec<String> = c
                .candidates()
                .iter()
                .map(|k| match &k.problem {
                    Some(p) => format!("{} {p}", k.server),
                    None => format!("{} does not answer", k.server),
                })
                .collect();
            (
                self.waiting_for(&e),
                c.state() == ClientState::Offline,
                c.config().server,
                answers,
            )
        };
        match now_waiting {
            None => self.waiting_logged = None,
            Some(Waiting::NameUnresolved) => {}
            Some(Waiting::NoAnswer) if !offline => {}
            Some(w) if Some(w) != self.waiting_logged => {
                self.waiting_logged = Some(w);
                match w {
                    Waiting::NoRoute => log::warn!("waiting: no route to the Teredo server {server}; soliciting it again as soon as the network changes"),
                    Waiting::NoAddress => log::warn!("waiting: no IPv4 address to reach the Teredo server {server} from; soliciting it again as soon as the network changes"),
                    _ if answers.len() > 1 || answers.iter().any(|a| !a.ends_with("does not answer")) => log::warn!(
                        "waiting: no server answered as a Teredo server should ({}); trying again",
                        answers.join("; ")
                    ),
                    _ => log::warn!("waiting: no answer from the Teredo server {server}; trying again"),
                }
            }
            Some(_) => {}
        }
    }
}
