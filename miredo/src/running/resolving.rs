//! A client's server names, as the control loop resolves them: sent to
//! the configuration reader (libteredo::sys::reader, outside the chroot)
//! when due (`crate::servers::Names`), its answers read back, and the
//! servers they give handed to the client (`Client::set_server_list`).

use super::Daemon;
use crate::engine::EngineKind;
use crate::network::Waiting;
use crate::servers::{Names, Outcome, ServerList};
use std::net::Ipv4Addr;
use std::time::Instant;

impl Daemon {
    /// Sends the names due to the reader, and acts on a round that ended
    /// without it.
    pub(super) fn poll_names(&mut self, now: Instant) {
        let Some(n) = self.names.as_mut() else { return };
        let (send, outcome) = n.poll(now);
        for name in send {
            let sent = match self.reader.as_mut() {
                Some(r) => r.resolve(&name).map_err(|e| e.to_string()),
                None => Err("the configuration reader is gone".into()),
            };
            if let Err(e) = sent {
                log::error!("cannot resolve {name}: {e}");
                self.reader_lost();
                return;
            }
        }
        if let Some(o) = outcome {
            self.resolved(now, o);
        }
    }

    /// Reads the reader's answers about names.
    pub(super) fn read_answers(&mut self, readable: bool) {
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        match r.answers(readable) {
            Ok(answers) => {
                let now = Instant::now();
                for a in answers {
                    let out = self.names.as_mut().and_then(|n| n.answer(now, &a));
                    if let Some(o) = out {
                        self.resolved(now, o);
                    }
                }
            }
            Err(e) => {
                log::error!("configuration reader: {e}");
                self.reader_lost();
            }
        }
    }

    /// The reader died or broke its protocol: no more names, no more
    /// reloads (the daemon runs on with what it has).
    pub(super) fn reader_lost(&mut self) {
        if self.reader.take().is_some() {
            log::error!(
                "the configuration reader is gone: host names can no longer be resolved, nor the configuration reread; restart miredo"
            );
        }
        // Nothing will answer: no more tries (literals need no answer).
        if !self.names.as_ref().is_some_and(Names::literal) {
            self.names = None;
        }
    }

    /// A round of resolution ended.
    pub(super) fn resolved(&mut self, now: Instant, o: Outcome) {
        let name = self
            .names
            .as_ref()
            .map_or_else(String::new, |n| n.primary().to_string());
        match o {
            Outcome::Resolved(list, addrs, each) => {
                self.unresolved_logged = false;
                if self.resolved.as_ref() != Some(&addrs) {
                    for (name, r) in &each {
                        match r {
                            _ if name.parse::<Ipv4Addr>().is_ok() => {}
                            Ok(a) => {
                                let a: Vec<String> = a.iter().map(|a| a.to_string()).collect();
                                log::info!("ServerAddress {name} resolves to {}", a.join(", "));
                            }
                            Err(why) => log::warn!(
                                "ServerAddress {name} does not resolve ({why}): the other servers are used"
                            ),
                        }
                    }
                    self.resolved = Some(addrs);
                }
                self.apply_servers(now, list);
            }
            Outcome::Failed(why) => {
                if std::mem::replace(&mut self.unresolved_logged, true) {
                    return;
                }
                if let Some(server) = self.current_server() {
                    // The servers known are used: nothing is waited for.
                    let again = self.names.as_ref().and_then(Names::due).is_some();
                    log::warn!(
                        "ServerAddress {name} does not resolve ({why}): keeping the Teredo server {server}{}",
                        if again { "; trying again" } else { "" }
                    );
                } else {
                    self.waiting_logged = Some(Waiting::NameUnresolved);
                    log::warn!(
                        "waiting: the Teredo server name does not resolve ({why}); trying again in {} s, then less and less often (at most every {} s), and at once when the network changes",
                        self.names
                            .as_ref()
                            .and_then(Names::due)
                            .map_or(0, |t| t.saturating_duration_since(now).as_secs()),
                        crate::servers::MAX_RETRY.as_secs()
                    );
                }
            }
        }
    }

    /// Gives the client the servers a name resolved to. The server in use
    /// stays first if the name still gives it (no requalification).
    pub(super) fn apply_servers(&mut self, now: Instant, list: ServerList) {
        let mut out = Vec::new();
        let mut started = false;
        // A reload's new servers: said so once, whatever happens to them.
        let sighup = std::mem::take(&mut self.sighup_servers);
        let mut leaving = None;
        {
            let Some(mut e) = self.client() else { return };
            let EngineKind::Client(c) = &mut *e else {
                return;
            };
            // The list stays in the configuration's order (of preference):
            // the client keeps the server it uses if the list still has it.
            let current: Vec<(Ipv4Addr, Ipv4Addr)> = c.servers().collect();
            if c.has_server() && current == list.pairs() {
                return;
            }
            let first = !c.has_server();
            let others: Vec<String> = list.fallbacks.iter().map(|f| f.0.to_string()).collect();
            let changed = c.has_server() && !list.pairs().iter().any(|p| p.0 == c.config().server);
            if changed && c.qualification().is_some() {
                let old = c.config().server;
                leaving = Some(if sighup {
                    format!("SIGHUP: the Teredo server {old} is no longer in the configuration")
                } else {
                    format!("the Teredo server names no longer give {old}")
                });
            }
            c.set_server_list(
                now,
                list.server,
                list.server2,
                list.fallbacks.clone(),
                &mut out,
            );
            if first || changed {
                let then = if others.is_empty() {
                    String::new()
                } else {
                    format!(", then {}", others.join(", "))
                };
                let what = if others.is_empty() {
                    "Teredo server"
                } else {
                    "Teredo servers, in order of preference:"
                };
                if sighup {
                    log::info!(
                        "SIGHUP: {what} now {} (secondary {}){then}",
                        list.server,
                        list.server2
                    );
                } else {
                    log::info!(
                        "{what} {} (secondary address {}){then}",
                        list.server,
                        list.server2
                    );
                }
                started = true;
            } else {
                log::info!(
                    "Teredo servers now, in order of preference: {}{}",
                    list.server,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", others.join(", "))
                    }
                );
            }
        }
        if leaving.is_some() {
            self.leaving_because = leaving;
        }
        self.sh.dispatch(&mut out, &mut self.iobufs);
        if started {
            // A lookup for the new server: the baseline its changes are
            // measured from.
            if let Some(w) = self.watch.as_mut() {
                w.check_by(now);
            }
            self.sh.wake();
        }
    }
}
