//! Daemons whose Teredo interface has a name of its own: our daemons serve
//! a status socket at `/run/miredo/IFACE.status`, shared by every namespace,
//! so two daemons of parallel tests (or a relay and a client of one world)
//! must not both call their interface `teredo`.

use std::io::Read;
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::cmd::{wait_for, wait_until};
use crate::impls::Impl;
use crate::ns::{teredo_addr_of, Netns};
use crate::world::{Daemon, World, SERVER_V4};

/// `stem` followed by the last 5 characters of the world's prefix: unique
/// per world, at most 15 bytes for a `stem` of up to 10.
pub fn unique_iface(w: &World, stem: &str) -> String {
    let p = w.prefix();
    let name = format!("{stem}{}", &p[p.len().saturating_sub(5)..]);
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// The configuration of a relay (`relay_type` cone or restricted).
pub fn relay_conf(relay_type: &str, iface: &str) -> String {
    format!("RelayType {relay_type}\nInterfaceName {iface}\n")
}

/// The configuration of a client of the world's server.
pub fn client_conf(iface: &str, extra: &str) -> String {
    format!("RelayType client\nServerAddress {SERVER_V4}\nInterfaceName {iface}\n{extra}")
}

/// Starts `imp`'s relay on the world's relay host with interface `iface`
/// and waits (at most 5 s) for its 2001::/32 route; `None` when the route
/// does not come (the daemon is left to the world).
pub fn start_relay(w: &World, imp: Impl, iface: &str, label: &str) -> Option<Daemon> {
    start_relay_with(w, imp, iface, label, "")
}

/// Like [`start_relay`], with `extra` lines appended to the relay's
/// miredo.conf (such as `MaxPeers 262144`, which only ours knows).
pub fn start_relay_with(
    w: &World,
    imp: Impl,
    iface: &str,
    label: &str,
    extra: &str,
) -> Option<Daemon> {
    let d = w.spawn_daemon(
        w.relay(),
        label,
        &imp.miredo(),
        &format!("{}{extra}", relay_conf("cone", iface)),
        &[],
    );
    let up = wait_until(Duration::from_secs(5), || {
        !w.relay()
            .routes6(&format!("2001::/32 dev {iface}"))
            .is_empty()
    });
    up.then_some(d)
}

/// Starts our client of site `n` with interface `iface`, its
/// miredo-privproc running `hook` (a script made with
/// [`World::write_hook`]). miredo has no directive for the hook: it starts
/// the privproc `--privproc` names, here a wrapper (beside the hook) that
/// gives ours `--hook`. Does not wait for anything.
pub fn start_client_with_hook(
    w: &World,
    n: usize,
    iface: &str,
    hook: &Path,
    label: &str,
) -> Daemon {
    start_client_with_hook_env(w, n, iface, hook, label, &[])
}

/// Like [`start_client_with_hook`], with `env` (`NAME=value`) added to the
/// daemon's environment through env(1), which executes the daemon in its
/// place (the pid stays the daemon's).
pub fn start_client_with_hook_env(
    w: &World,
    n: usize,
    iface: &str,
    hook: &Path,
    label: &str,
    env: &[String],
) -> Daemon {
    let wrapper = w.write_hook(
        &format!("{label}-privproc"),
        &format!(
            "#!/bin/sh\nexec {} --hook {} \"$@\"\n",
            Impl::Ours.path("miredo-privproc").display(),
            hook.display()
        ),
    );
    let conf = w.write_file(&format!("{label}.conf"), &client_conf(iface, ""));
    let mut argv = vec!["env".to_string()];
    argv.extend(env.iter().cloned());
    argv.extend([
        Impl::Ours.miredo().display().to_string(),
        "--privproc".into(),
        wrapper.display().to_string(),
        "-f".into(),
        "-c".into(),
        conf.display().to_string(),
        "-p".into(),
        w.dir().join(format!("{label}.pid")).display().to_string(),
    ]);
    w.spawn(w.client(n), label, &argv)
}

/// Starts `imp`'s client on site `n` with interface `iface` and waits (at
/// most `timeout`) until it has a Teredo address.
pub fn start_client(
    w: &World,
    n: usize,
    imp: Impl,
    iface: &str,
    label: &str,
    timeout: Duration,
) -> (Daemon, Option<Ipv6Addr>) {
    let d = w.spawn_daemon(
        w.client(n),
        label,
        &imp.miredo(),
        &client_conf(iface, ""),
        &[],
    );
    let addr = wait_addr(w.client(n), iface, timeout);
    (d, addr)
}

/// Waits (at most `timeout`) for a Teredo address on `iface` in `ns`.
pub fn wait_addr(ns: &Netns, iface: &str, timeout: Duration) -> Option<Ipv6Addr> {
    wait_for(timeout, || teredo_addr_of(ns, iface))
}

/// Our daemon's status page for `iface` as `key: value` pairs (empty when
/// the socket does not answer within a second).
pub fn status_of(iface: &str) -> Vec<(String, String)> {
    status_at(Path::new(&format!("/run/miredo/{iface}.status")))
}

/// The status page a daemon serves on the socket `path` (our miredo's or
/// miredo-server's), as `key: value` pairs (empty when the socket does not
/// answer within a second).
pub fn status_at(path: &Path) -> Vec<(String, String)> {
    let Ok(mut s) = UnixStream::connect(path) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    status_pairs(&text)
}

/// A status page's `key: value` lines as pairs (other lines left out).
pub fn status_pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One numeric field of [`status_of`].
pub fn status_number(iface: &str, key: &str) -> Option<u64> {
    status_of(iface)
        .into_iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}
