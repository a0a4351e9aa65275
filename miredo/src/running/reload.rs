//! SIGHUP: the configuration file read again through the configuration
//! reader (the daemon keeps no way out of its chroot), and what needs no
//! privilege applied (the syslog facility, the Teredo server); what does
//! is said to need a restart, and keeps its old value.

use super::Daemon;
use crate::servers::Names;
use libteredo::conf::miredo::MiredoConfig;
use std::time::Instant;

impl Daemon {
    /// SIGHUP: read the file again (through the reader process); apply
    /// what needs no privilege.
    pub(super) fn reload(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            log::info!("SIGHUP: nothing to reload (built-in defaults, or the configuration reader is gone)");
            return;
        };
        let Some(path) = reader.path().map(std::path::Path::to_path_buf) else {
            log::info!("SIGHUP: running on built-in defaults, nothing to reload");
            // The server name is resolved again all the same.
            if let Some(n) = self.names.as_mut() {
                n.refresh(Instant::now());
            }
            return;
        };
        let user = reader.user().to_string();
        let text = reader.read();
        // Answers about names that came before the file's.
        self.read_answers(false);
        let text = match text {
            Ok(t) => t,
            Err(e) if e.to_string().contains("os error 13") => {
                // Read as the daemon's user (the reader runs as it, outside
                // the chroot): root could read it at start.
                log::error!(
                    "SIGHUP: {e}: the configuration is reread as {user}, who may not read it; make it readable by that user (chgrp it to the user's group and chmod g+r, for instance); keeping the running configuration"
                );
                return;
            }
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the running configuration");
                return;
            }
        };
        let new = match MiredoConfig::parse(&text, &path.to_string_lossy()) {
            Ok(mut c) => {
                if let Some(name) = &self.cli_server {
                    c.server_addresses = vec![name.clone()];
                    c.server_address_is_default = false;
                    c.server_address2 = None;
                }
                c
            }
            Err(errs) => {
                for e in errs {
                    log::error!("SIGHUP: {e}");
                }
                log::error!(
                    "SIGHUP: {} is invalid; keeping the running configuration",
                    path.display()
                );
                return;
            }
        };
        let old = &self.conf;
        let mut restart = Vec::new();
        if new.interface_name != old.interface_name {
            restart.push("InterfaceName");
        }
        if new.bind_address != old.bind_address {
            restart.push("BindAddress");
        }
        if new.bind_port != old.bind_port {
            restart.push("BindPort");
        }
        if new.relay_type != old.relay_type {
            restart.push("RelayType");
        }
        if new.prefix != old.prefix {
            restart.push("Prefix");
        }
        if new.interface_mtu != old.interface_mtu && !old.relay_type.is_client() {
            restart.push("InterfaceMTU");
        }
        if new.local_discovery != old.local_discovery {
            restart.push("LocalDiscovery");
        }
        if new.metrics_listen != old.metrics_listen {
            restart.push("MetricsListen");
        }
        for d in &restart {
            log::warn!("SIGHUP: {d} changed: that needs privileges, restart miredo to apply it; the old value stays");
        }
        if new.port_mapping != old.port_mapping
            || new.port_mapping_lifetime != old.port_mapping_lifetime
        {
            log::warn!("SIGHUP: PortMapping or PortMappingLifetime changed: they are read at start, restart miredo to apply them; the old values stay");
        }
        let mut applied = self.conf.clone();
        if new.syslog_facility != applied.syslog_facility {
            libteredo::sys::logging::set_facility(new.syslog_facility.as_str());
            applied.syslog_facility = new.syslog_facility;
            log::info!(
                "SIGHUP: syslog facility now {}",
                new.syslog_facility.as_str()
            );
        }
        let now = Instant::now();
        let mut start_names = false;
        if self.client().is_some() {
            let changed = new.server_addresses != applied.server_addresses
                || new.server_address2 != applied.server_address2;
            let name = new.server_addresses.join(", ");
            match new.server_addresses.first() {
                None => log::error!("SIGHUP: no Teredo server: keeping the running one"),
                Some(_) if changed => {
                    // The running server stays until the new names resolve
                    // (at once for addresses).
                    let names =
                        Names::new(&new.server_addresses, new.server_address2.as_deref(), now);
                    if names.literal() && names.literal_list().is_none() {
                        log::error!(
                            "SIGHUP: {name} has no next address; set ServerAddress2: keeping the running server"
                        );
                    } else {
                        if !names.literal() {
                            log::info!("SIGHUP: Teredo server name now {name}: the running server stays until it resolves");
                        }
                        applied.server_addresses = new.server_addresses.clone();
                        applied.server_address2 = new.server_address2.clone();
                        self.names = Some(names);
                        self.resolved = None;
                        self.unresolved_logged = false;
                        self.sighup_servers = true;
                        start_names = true;
                    }
                }
                Some(_) => {
                    // The same name: resolved again (its servers may have
                    // changed).
                    if let Some(n) = self.names.as_mut() {
                        n.refresh(now);
                    }
                }
            }
        }
        self.conf = applied;
        if start_names {
            self.poll_names(now);
        }
        log::info!("SIGHUP: configuration {} reloaded", path.display());
    }
}
