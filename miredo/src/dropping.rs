//! Start-up, step two, dropping privileges for good: what
//! `crate::opened_as_root` opened is kept, everything else goes. The
//! seccomp allow-list is compiled first (it allocates), then miredo
//! chroots, becomes its user and clears every capability
//! (libteredo::sys::privileges), builds the unprivileged daemon, and
//! enters the filter before it reads anything from the network or starts
//! a thread: from there on only the system calls of `Role::Daemon`
//! (libteredo::sys::seccomp) are allowed.

use crate::opened_as_root::Opened;
use crate::running::Daemon;
use libteredo::sys::privileges;
use libteredo::sys::seccomp::{allow_list, Role, Sandbox};

/// Drops every privilege and enters the filter; returns the daemon ready
/// to run.
pub fn drop_privileges(o: Opened) -> Result<Daemon, String> {
    // The allow-list, compiled while allocation is of no concern; it may
    // signal its configuration reader (to end it when stopping).
    // And the pid file's keeper, killed if it does not end by itself.
    let children: Vec<i32> = o
        .reader
        .iter()
        .map(|r| r.pid().as_raw())
        .chain(
            o.io.pid_keeper
                .as_ref()
                .map(libteredo::sys::pidfile::Keeper::pid),
        )
        .collect();
    let sandbox = Sandbox::with_children(Role::Daemon, &children)
        .map_err(|e| format!("cannot build the system call filter: {e}"))?;
    let root = privileges::drop_for_good(&o.target, o.root).map_err(|e| e.to_string())?;
    log::info!(
        "running as {} (uid {}), chrooted in {}, no capabilities",
        o.target.name,
        o.target.uid,
        root.display()
    );

    let mut d = Daemon::new(
        o.conf,
        o.engine,
        o.io,
        o.reader,
        o.cli_server,
        o.names,
        o.notify,
    )
    .map_err(|e| e.to_string())?;
    d.dispatch_early(o.early);
    // From here on, only the system calls on the list (no network input
    // has been read yet).
    sandbox
        .enter()
        .map_err(|e| format!("cannot enter the system call filter: {e}"))?;
    log::info!(
        "system call filter in place ({} entries)",
        allow_list(Role::Daemon).len()
    );
    Ok(d)
}
