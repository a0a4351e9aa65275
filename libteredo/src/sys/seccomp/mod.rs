//! The seccomp allow-lists: what each long-lived process may still ask of
//! the kernel once it has dropped its privileges (OpenSSH's
//! `sandbox-seccomp-filter.c` is the model).
//!
//! Dropping root, capabilities and the file system (chroot) leaves a
//! process the descriptors it kept, and every system call on them. For the
//! daemon that means its TUN descriptor, and Linux lets whoever holds one
//! make the device persistent (`TUNSETPERSIST`) and hand it to another
//! user (`TUNSETOWNER`) without any capability. So after the drop each
//! process runs under a filter of its own: a list, in one place
//! ([`allow_list`]), of the calls it needs, each with why; `ioctl` only for
//! a few requests that change nothing (`FIONBIO`, `FIONREAD`, ...), never a
//! `TUNSET*`; `socket` only for the families it uses; `clone` only for
//! threads; nothing that opens, executes or signals outside what the
//! process does. Anything else is refused.
//!
//! # A refusal
//!
//! A refused call is not answered with an error that the code would carry
//! on from: the process is stopped. The kernel raises `SIGSYS`
//! (`SECCOMP_RET_TRAP`); our handler writes one line naming the system
//! call, its number and first two arguments (an `ioctl`'s request) to
//! syslog and to standard error, then lets `SIGSYS` end the process:
//! systemd shows `code=killed, status=31/SYS`, a shell `Bad system call`.
//! Stopping is the safe side: a refusal is either a bug that the line
//! names, or code doing what it should not, and miredo-privproc takes the
//! interface down when the daemon ends. The handler only makes system
//! calls (`write`, `sendto`, `getpid`, `gettid`, `tgkill`), formats into
//! a buffer on its stack, and never allocates.
//!
//! Two calls are the exception: `open` and `openat`, which glibc's
//! allocator makes behind the daemons' backs (see [`answered_with_error`])
//! and does without, are answered `EACCES`, as OpenSSH's filter answers
//! them.
//!
//! # Threads
//!
//! The filter is installed on every thread at once (`TSYNC`) and inherited
//! by the threads started later. glibc starts threads with `clone3`, whose
//! flags a filter cannot read (they are in memory): a second filter
//! answers `clone3` with `ENOSYS`, and glibc falls back to `clone`, which
//! is allowed only with `CLONE_THREAD` (a thread, not a process), except
//! for miredo-privproc running a hook.

mod names;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Which process a filter is for: each has its own list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `miredo`, client or relay, once unprivileged.
    Daemon,
    /// `miredo-server` once unprivileged.
    Server,
    /// A daemon's configuration reader: reads one file, resolves names.
    Reader,
    /// `miredo-privproc` with CAP_NET_ADMIN alone. With `hook`, it runs
    /// the client hook, which inherits the filter: the list then holds
    /// what starting a program and a shell script running `ip` need.
    Privproc { hook: bool },
    /// The pid file's keeper (libteredo::sys::pidfile::keep): waits for
    /// the daemon's end on a pipe, then removes the pid file. Nothing else.
    PidKeeper,
}

impl Role {
    /// The program's name, for the refusal's line.
    pub fn ident(self) -> &'static str {
        match self {
            Role::Daemon => "miredo",
            Role::Server => "miredo-server",
            Role::Reader => "miredo-reader",
            Role::PidKeeper => "miredo-pidfile",
            Role::Privproc { .. } => "miredo-privproc",
        }
    }
}

/// When an allowed call is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    /// Whatever its arguments.
    Always,
    /// Argument `.0` (its low 32 bits) is one of `.1`.
    OneOf(u8, &'static [u64]),
    /// Argument `.0` has every bit of `.1` set.
    AllOf(u8, u64),
    /// Argument `.0` has none of the bits of `.1` set.
    NoneOf(u8, u64),
    /// Argument 0 is our own process id (known when the filter is made)
    /// and argument 2 one of `.0` (signals).
    OwnPid(&'static [u64]),
    /// Argument 0 is the process id of one of the children named when the
    /// filter is made (the configuration reader), and argument 1 one of
    /// `.0` (signals).
    Children(&'static [u64]),
}

/// One entry of an allow-list.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    /// The system call's name.
    pub name: &'static str,
    nr: libc::c_long,
    /// When it is allowed.
    pub only: Only,
    /// Why the process needs it.
    pub why: &'static str,
}

const fn a(name: &'static str, nr: libc::c_long, only: Only, why: &'static str) -> Allowed {
    Allowed {
        name,
        nr,
        only,
        why,
    }
}

use Only::{AllOf, Always, NoneOf, OneOf};

const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
const CLONE_THREAD: u64 = libc::CLONE_THREAD as u64;
const SIGSYS: u64 = libc::SIGSYS as u64;
const SIGABRT: u64 = libc::SIGABRT as u64;
const SIGKILL: u64 = libc::SIGKILL as u64;
const SIGTERM: u64 = libc::SIGTERM as u64;

/// `ioctl` requests that only read, or set a descriptor's blocking mode.
/// None of them changes a device; the `TUNSET*` requests are not here.
const IOCTL_HARMLESS: &[u64] = &[libc::FIONBIO, libc::FIONREAD, libc::FIOCLEX];

/// What every process needs: memory, threads and locks, time, signals,
/// and reading and writing the descriptors it already holds.
#[rustfmt::skip]
const BASE: &[Allowed] = &[
    a("read", libc::SYS_read, Always, "sockets, the signal and timer descriptors, the TUN device"),
    a("write", libc::SYS_write, Always, "sockets, standard error, the TUN device"),
    a("readv", libc::SYS_readv, Always, "the TUN device (virtio-net header and packet)"),
    a("writev", libc::SYS_writev, Always, "the TUN device, standard error"),
    a("close", libc::SYS_close, Always, "descriptors it is done with"),
    a("poll", libc::SYS_poll, Always, "event loops"),
    a("ppoll", libc::SYS_ppoll, Always, "event loops (glibc's poll on some builds)"),
    a("brk", libc::SYS_brk, Always, "the allocator"),
    a("mmap", libc::SYS_mmap, NoneOf(2, PROT_EXEC), "the allocator, thread stacks; never executable"),
    a("mprotect", libc::SYS_mprotect, NoneOf(2, PROT_EXEC), "thread stacks' guard pages; never executable"),
    a("munmap", libc::SYS_munmap, Always, "the allocator, thread stacks"),
    a("mremap", libc::SYS_mremap, Always, "the allocator growing a buffer"),
    a("madvise", libc::SYS_madvise, Always, "the allocator giving memory back"),
    a("futex", libc::SYS_futex, Always, "locks, condition variables, joining threads"),
    a("set_robust_list", libc::SYS_set_robust_list, Always, "a new thread (glibc)"),
    a("rseq", libc::SYS_rseq, Always, "a new thread (glibc registers it)"),
    a("clone", libc::SYS_clone, AllOf(0, CLONE_THREAD), "threads only (CLONE_THREAD): no new process"),
    a("clone3", libc::SYS_clone3, Always, "answered ENOSYS by the second filter: glibc then uses clone"),
    a("sched_yield", libc::SYS_sched_yield, Always, "spinning locks"),
    a("sched_getaffinity", libc::SYS_sched_getaffinity, Always, "available parallelism"),
    a("getpid", libc::SYS_getpid, Always, "log lines carry the pid"),
    a("gettid", libc::SYS_gettid, Always, "the SIGSYS handler"),
    a("exit", libc::SYS_exit, Always, "a thread ends"),
    a("exit_group", libc::SYS_exit_group, Always, "the process ends"),
    a("rt_sigprocmask", libc::SYS_rt_sigprocmask, Always, "threads start with signals blocked"),
    a("rt_sigreturn", libc::SYS_rt_sigreturn, Always, "return from a signal handler"),
    a("restart_syscall", libc::SYS_restart_syscall, Always, "a wait interrupted by a stop (SIGSTOP, then SIGCONT) resumes"),
    a("rt_sigaction", libc::SYS_rt_sigaction, OneOf(0, &[32, 33]), "glibc's own signals for threads (SIGCANCEL, SIGSETXID), set at the first thread"),
    a("sigaltstack", libc::SYS_sigaltstack, Always, "a thread's stack-overflow handler (Rust)"),
    a("tgkill", libc::SYS_tgkill, Only::OwnPid(&[SIGSYS, SIGABRT]), "the SIGSYS handler ends the process; abort()"),
    a("clock_gettime", libc::SYS_clock_gettime, Always, "time (when the vDSO cannot)"),
    a("clock_nanosleep", libc::SYS_clock_nanosleep, Always, "short waits"),
    a("nanosleep", libc::SYS_nanosleep, Always, "short waits"),
    a("getrandom", libc::SYS_getrandom, Always, "nonces, keys, random flags (RFC 5991)"),
    a("prctl", libc::SYS_prctl, OneOf(0, &[libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64]), "a thread's name"),
    a("fcntl", libc::SYS_fcntl, OneOf(1, &[libc::F_GETFL as u64, libc::F_SETFL as u64, libc::F_GETFD as u64, libc::F_SETFD as u64, libc::F_DUPFD_CLOEXEC as u64]), "a descriptor's flags (non-blocking, close-on-exec), a copy of it"),
    a("ioctl", libc::SYS_ioctl, OneOf(1, IOCTL_HARMLESS), "FIONBIO, FIONREAD and FIOCLEX only: never a TUNSET* request"),
];

/// The sockets of a daemon that are open already, and those it opens once
/// running (port mapping, a reply to a status or metrics request).
#[rustfmt::skip]
const NET: &[Allowed] = &[
    a("recvfrom", libc::SYS_recvfrom, Always, "UDP, netlink, status and metrics requests"),
    a("recvmsg", libc::SYS_recvmsg, Always, "UDP with its control messages (ECN, TTL, GRO)"),
    a("recvmmsg", libc::SYS_recvmmsg, Always, "UDP in batches"),
    a("sendto", libc::SYS_sendto, Always, "UDP, netlink queries, syslog, sd_notify"),
    a("sendmsg", libc::SYS_sendmsg, Always, "UDP with its control messages (ECN, TTL, GSO)"),
    a("sendmmsg", libc::SYS_sendmmsg, Always, "UDP in batches"),
    a("accept4", libc::SYS_accept4, Always, "the status socket, the metrics listener"),
    a("shutdown", libc::SYS_shutdown, Always, "ending a status or metrics answer"),
    a("getsockname", libc::SYS_getsockname, Always, "a socket's local address"),
    a("getpeername", libc::SYS_getpeername, Always, "a status or metrics client"),
    a("getsockopt", libc::SYS_getsockopt, Always, "a socket's error and settings"),
    a("setsockopt", libc::SYS_setsockopt, Always, "timeouts and options of the sockets it opens"),
    a("timerfd_settime", libc::SYS_timerfd_settime, Always, "the clock-jump alarm, re-armed"),
];

/// What a client opens once running: port mapping (PCP and NAT-PMP over
/// UDP, UPnP IGD over SSDP and HTTP), IPv4 only.
#[rustfmt::skip]
const PORT_MAPPING: &[Allowed] = &[
    a("socket", libc::SYS_socket, OneOf(0, &[libc::AF_INET as u64]), "port mapping sockets (PCP, NAT-PMP, UPnP), IPv4 only"),
    a("connect", libc::SYS_connect, Always, "port mapping: the gateway"),
    a("bind", libc::SYS_bind, Always, "port mapping: SSDP's source port"),
];

/// The daemons reap their configuration reader when they stop.
#[rustfmt::skip]
const READER_CHILD: &[Allowed] = &[
    a("wait4", libc::SYS_wait4, Always, "reaping the configuration reader when stopping"),
    a("kill", libc::SYS_kill, Only::Children(&[SIGKILL, SIGTERM]), "the configuration reader, if it does not leave by itself"),
];

/// The configuration reader: one file, and the system resolver (which
/// reads /etc/hosts, /etc/resolv.conf, nsswitch modules, and talks to DNS
/// servers or nscd).
#[rustfmt::skip]
const READER: &[Allowed] = &[
    a("openat", libc::SYS_openat, NoneOf(2, (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64,), "the configuration file, the resolver's files: read only"),
    a("newfstatat", libc::SYS_newfstatat, Always, "the file's type and size"),
    a("fstat", libc::SYS_fstat, Always, "the file's type and size"),
    a("statx", libc::SYS_statx, Always, "the file's type and size"),
    a("lseek", libc::SYS_lseek, Always, "reading a file"),
    a("mmap", libc::SYS_mmap, Always, "nsswitch modules the resolver loads (executable)"),
    a("mprotect", libc::SYS_mprotect, Always, "nsswitch modules the resolver loads"),
    a("socket", libc::SYS_socket, OneOf(0, &[libc::AF_INET as u64, libc::AF_INET6 as u64, libc::AF_UNIX as u64, libc::AF_NETLINK as u64]), "DNS (IPv4 or IPv6 servers), nscd, the host's addresses"),
    a("connect", libc::SYS_connect, Always, "DNS servers, nscd"),
    a("bind", libc::SYS_bind, Always, "the resolver's netlink socket"),
    a("sendto", libc::SYS_sendto, Always, "DNS queries, syslog"),
    a("sendmmsg", libc::SYS_sendmmsg, Always, "DNS queries (A and AAAA at once)"),
    a("recvfrom", libc::SYS_recvfrom, Always, "DNS answers"),
    a("recvmsg", libc::SYS_recvmsg, Always, "DNS answers, netlink"),
    a("getsockname", libc::SYS_getsockname, Always, "the resolver's sockets"),
    a("setsockopt", libc::SYS_setsockopt, Always, "the resolver's sockets"),
    a("getsockopt", libc::SYS_getsockopt, Always, "the resolver's sockets"),
    a("uname", libc::SYS_uname, Always, "the resolver: the host's name"),
];

/// The pid file's keeper: a pipe read to its end, the file read and
/// removed in its directory (its root), and the SIGSYS handler's calls.
/// Not even memory: it allocates nothing once it waits.
#[rustfmt::skip]
const PIDKEEPER: &[Allowed] = &[
    a("read", libc::SYS_read, Always, "the pipe whose end is the daemon's, then the pid file"),
    a("close", libc::SYS_close, Always, "the pid file read"),
    a("openat", libc::SYS_openat, NoneOf(2, (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64,), "the pid file, read only: does it still name the daemon?"),
    a("unlinkat", libc::SYS_unlinkat, Always, "the pid file, removed"),
    a("exit_group", libc::SYS_exit_group, Always, "the end"),
    a("exit", libc::SYS_exit, Always, "the end"),
    a("rt_sigreturn", libc::SYS_rt_sigreturn, Always, "return from a signal handler"),
    a("restart_syscall", libc::SYS_restart_syscall, Always, "a read interrupted by a stop resumes"),
    a("write", libc::SYS_write, Always, "the SIGSYS handler's line, on standard error"),
    a("getpid", libc::SYS_getpid, Always, "the SIGSYS handler"),
    a("gettid", libc::SYS_gettid, Always, "the SIGSYS handler"),
    a("tgkill", libc::SYS_tgkill, Only::OwnPid(&[SIGSYS, SIGABRT]), "the SIGSYS handler ends the process"),
];

/// miredo-privproc without a hook: its netlink socket and the daemon's.
#[rustfmt::skip]
const PRIVPROC: &[Allowed] = &[
    a("sendto", libc::SYS_sendto, Always, "netlink requests, syslog"),
    a("recvfrom", libc::SYS_recvfrom, Always, "netlink answers"),
    a("sendmsg", libc::SYS_sendmsg, Always, "netlink requests"),
    a("recvmsg", libc::SYS_recvmsg, Always, "netlink answers"),
    a("getsockopt", libc::SYS_getsockopt, Always, "netlink errors"),
];

/// What running the client hook adds: a new process, a program started,
/// and whatever a shell script running `ip` asks of the kernel.
#[rustfmt::skip]
const HOOK: &[Allowed] = &[
    a("clone", libc::SYS_clone, Always, "the hook's process"),
    a("vfork", libc::SYS_vfork, Always, "the hook's process (posix_spawn)"),
    a("execve", libc::SYS_execve, Always, "the hook, and the programs it runs"),
    a("wait4", libc::SYS_wait4, Always, "the hook's end"),
    a("kill", libc::SYS_kill, Always, "the hook's process group, past its time limit"),
    a("setpgid", libc::SYS_setpgid, Always, "the hook in a process group of its own"),
    a("pipe2", libc::SYS_pipe2, Always, "the hook's output"),
    a("dup2", libc::SYS_dup2, Always, "the hook's standard streams"),
    a("dup3", libc::SYS_dup3, Always, "the hook's standard streams"),
    a("dup", libc::SYS_dup, Always, "a shell's redirections"),
    a("fcntl", libc::SYS_fcntl, Always, "a shell's redirections"),
    a("mmap", libc::SYS_mmap, Always, "programs and their libraries (executable)"),
    a("mprotect", libc::SYS_mprotect, Always, "programs and their libraries"),
    a("openat", libc::SYS_openat, Always, "programs, libraries, what the hook reads and writes"),
    a("open", libc::SYS_open, Always, "older programs"),
    a("newfstatat", libc::SYS_newfstatat, Always, "programs and files"),
    a("fstat", libc::SYS_fstat, Always, "programs and files"),
    a("stat", libc::SYS_stat, Always, "programs and files"),
    a("lstat", libc::SYS_lstat, Always, "programs and files"),
    a("statx", libc::SYS_statx, Always, "programs and files"),
    a("access", libc::SYS_access, Always, "programs and files"),
    a("faccessat", libc::SYS_faccessat, Always, "programs and files"),
    a("faccessat2", libc::SYS_faccessat2, Always, "programs and files"),
    a("readlink", libc::SYS_readlink, Always, "programs and files"),
    a("getdents64", libc::SYS_getdents64, Always, "programs and files"),
    a("lseek", libc::SYS_lseek, Always, "programs and files"),
    a("pread64", libc::SYS_pread64, Always, "the dynamic loader"),
    a("arch_prctl", libc::SYS_arch_prctl, Always, "a program's start (thread pointer)"),
    a("set_tid_address", libc::SYS_set_tid_address, Always, "a program's start"),
    a("prlimit64", libc::SYS_prlimit64, Always, "a program's start (stack limit)"),
    a("getuid", libc::SYS_getuid, Always, "a shell's start"),
    a("geteuid", libc::SYS_geteuid, Always, "a shell's start"),
    a("getgid", libc::SYS_getgid, Always, "a shell's start"),
    a("getegid", libc::SYS_getegid, Always, "a shell's start"),
    a("getppid", libc::SYS_getppid, Always, "a shell's start"),
    a("getpgrp", libc::SYS_getpgrp, Always, "a shell's start"),
    a("getcwd", libc::SYS_getcwd, Always, "a shell's start"),
    a("chdir", libc::SYS_chdir, Always, "a shell's cd"),
    a("uname", libc::SYS_uname, Always, "programs' start"),
    a("rt_sigaction", libc::SYS_rt_sigaction, Always, "a shell's and a program's signal handlers"),
    a("rt_sigsuspend", libc::SYS_rt_sigsuspend, Always, "a shell waiting for its children"),
    a("socket", libc::SYS_socket, Always, "ip: netlink and ioctl sockets"),
    a("bind", libc::SYS_bind, Always, "ip: netlink"),
    a("connect", libc::SYS_connect, Always, "ip: netlink; logger: syslog"),
    a("getsockname", libc::SYS_getsockname, Always, "ip: netlink"),
    a("setsockopt", libc::SYS_setsockopt, Always, "ip: netlink"),
    a("ioctl", libc::SYS_ioctl, OneOf(1, &[libc::TCGETS, libc::TIOCGPGRP, libc::TIOCGWINSZ, libc::SIOCGIFINDEX, libc::SIOCGIFNAME, libc::SIOCGIFFLAGS, libc::SIOCGIFMTU]), "a shell's terminal checks, ip's interface look-ups: nothing that changes a device"),
    a("umask", libc::SYS_umask, Always, "a shell's start"),
    a("sysinfo", libc::SYS_sysinfo, Always, "programs' start"),
    a("prctl", libc::SYS_prctl, Always, "ip reads its capability bounding set"),
    a("socketpair", libc::SYS_socketpair, Always, "the hook's output"),
    a("pidfd_open", libc::SYS_pidfd_open, Always, "the hook's process, waited for with a time limit"),
    a("waitid", libc::SYS_waitid, Always, "the hook's end"),
    a("close_range", libc::SYS_close_range, Always, "the hook inherits no descriptor"),
    a("setsid", libc::SYS_setsid, Always, "programs a hook runs"),
    a("capget", libc::SYS_capget, Always, "ip reads its capabilities"),
    a("statfs", libc::SYS_statfs, Always, "programs a hook runs (ls, sed)"),
    a("fstatfs", libc::SYS_fstatfs, Always, "programs a hook runs"),
    a("getxattr", libc::SYS_getxattr, Always, "programs a hook runs (ls)"),
    a("lgetxattr", libc::SYS_lgetxattr, Always, "programs a hook runs (ls)"),
    a("fgetxattr", libc::SYS_fgetxattr, Always, "programs a hook runs"),
    a("fadvise64", libc::SYS_fadvise64, Always, "programs a hook runs (tr, cat)"),
    a("getrlimit", libc::SYS_getrlimit, Always, "programs a hook runs"),
    a("gettimeofday", libc::SYS_gettimeofday, Always, "programs a hook runs (date)"),
    a("getpgid", libc::SYS_getpgid, Always, "a shell's job control"),
    a("getsid", libc::SYS_getsid, Always, "programs a hook runs"),
    a("getgroups", libc::SYS_getgroups, Always, "programs a hook runs"),
    a("getresuid", libc::SYS_getresuid, Always, "programs a hook runs"),
    a("getresgid", libc::SYS_getresgid, Always, "programs a hook runs"),
    a("times", libc::SYS_times, Always, "a shell's times"),
    a("getrusage", libc::SYS_getrusage, Always, "programs a hook runs"),
    a("pselect6", libc::SYS_pselect6, Always, "programs a hook runs"),
    a("select", libc::SYS_select, Always, "programs a hook runs"),
    a("unlink", libc::SYS_unlink, Always, "a hook's own files, within its user's rights"),
    a("unlinkat", libc::SYS_unlinkat, Always, "a hook's own files, within its user's rights"),
    a("rename", libc::SYS_rename, Always, "a hook's own files, within its user's rights"),
    a("renameat", libc::SYS_renameat, Always, "a hook's own files, within its user's rights"),
    a("renameat2", libc::SYS_renameat2, Always, "a hook's own files, within its user's rights"),
    a("mkdir", libc::SYS_mkdir, Always, "a hook's own files, within its user's rights"),
    a("mkdirat", libc::SYS_mkdirat, Always, "a hook's own files, within its user's rights"),
    a("rmdir", libc::SYS_rmdir, Always, "a hook's own files, within its user's rights"),
    a("symlink", libc::SYS_symlink, Always, "a hook's own files, within its user's rights"),
    a("link", libc::SYS_link, Always, "a hook's own files, within its user's rights"),
    a("fchmod", libc::SYS_fchmod, Always, "a hook's own files, within its user's rights"),
    a("fchmodat", libc::SYS_fchmodat, Always, "a hook's own files, within its user's rights"),
    a("chmod", libc::SYS_chmod, Always, "a hook's own files, within its user's rights"),
    a("ftruncate", libc::SYS_ftruncate, Always, "a hook's own files, within its user's rights"),
    a("utimensat", libc::SYS_utimensat, Always, "a hook's own files (touch)"),
    a("flock", libc::SYS_flock, Always, "a hook's own files (locks)"),
    a("fsync", libc::SYS_fsync, Always, "a hook's own files"),
    a("fdatasync", libc::SYS_fdatasync, Always, "a hook's own files"),
    a("sendfile", libc::SYS_sendfile, Always, "programs a hook runs (cp, cat)"),
    a("copy_file_range", libc::SYS_copy_file_range, Always, "programs a hook runs (cp)"),
    a("readlinkat", libc::SYS_readlinkat, Always, "programs a hook runs"),
    a("newfstatat", libc::SYS_newfstatat, Always, "programs a hook runs"),
    a("getrandom", libc::SYS_getrandom, Always, "programs a hook runs"),
];

/// Calls a process never makes itself but glibc makes behind its back,
/// and carries on without when they fail: answered with an error instead
/// of stopping the process (OpenSSH's filter does the same for `open`).
/// glibc's allocator opens `/proc/sys/vm/overcommit_memory` the first time
/// a thread's heap shrinks (a flood's buffers given back, say); refused,
/// it keeps the heap's pages instead. The file system is out of reach
/// anyway (chroot): no file could be opened there.
#[rustfmt::skip]
const ANSWERED_EACCES: &[Allowed] = &[
    a("openat", libc::SYS_openat, Always, "glibc's allocator reads overcommit_memory when a thread's heap shrinks: EACCES"),
    a("open", libc::SYS_open, Always, "the same, by its older name: EACCES"),
];

/// What a role's process gets answered with an error: the entries, and
/// the error. Not miredo-privproc running a hook, whose programs open
/// files, nor the configuration reader, which reads one.
pub fn answered_with_error(role: Role) -> (&'static [Allowed], i32) {
    match role {
        Role::Daemon | Role::Server | Role::Privproc { hook: false } => {
            (ANSWERED_EACCES, libc::EACCES)
        }
        Role::Reader | Role::Privproc { hook: true } | Role::PidKeeper => (&[], libc::EACCES),
    }
}

/// The allow-list of a process: every entry with why it is needed (the
/// same call may appear more than once, with other arguments).
pub fn allow_list(role: Role) -> Vec<Allowed> {
    let parts: &[&[Allowed]] = match role {
        Role::Daemon => &[BASE, NET, PORT_MAPPING, READER_CHILD],
        Role::Server => &[BASE, NET, READER_CHILD],
        Role::Reader => &[BASE, READER],
        Role::PidKeeper => &[PIDKEEPER],
        Role::Privproc { hook: false } => &[BASE, PRIVPROC],
        Role::Privproc { hook: true } => &[BASE, PRIVPROC, HOOK],
    };
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

/// The filter of a role, compiled, ready to be entered.
pub struct Sandbox {
    role: Role,
    allow: BpfProgram,
    /// `clone3`: ENOSYS (glibc falls back to `clone`).
    errno: BpfProgram,
    /// [`answered_with_error`]'s calls, if the role has any.
    answered: Option<BpfProgram>,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("seccomp filter: {e}"))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> io::Result<SeccompCondition> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(other)
}

fn rule(conds: Vec<SeccompCondition>) -> io::Result<SeccompRule> {
    SeccompRule::new(conds).map_err(other)
}

fn arch() -> io::Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(other)
}

impl Sandbox {
    /// Compiles the filter of `role`; `children`: the processes it may
    /// signal (its configuration reader). Allocates: call it before a
    /// fork, and [`Sandbox::enter`] after.
    pub fn with_children(role: Role, children: &[i32]) -> io::Result<Sandbox> {
        let me = std::process::id() as u64;
        // An entry whose condition is `Always` makes the call allowed
        // whatever else the list says of it.
        let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
        // The calls answered with an error pass the first filter; the
        // third answers them (the kernel keeps the strictest answer of
        // all the filters, and an error is stricter than allowing).
        let (answered, answer) = answered_with_error(role);
        for e in allow_list(role).into_iter().chain(answered.iter().copied()) {
            let alternatives = match e.only {
                Always => None,
                OneOf(arg, values) => Some(
                    values
                        .iter()
                        .map(|&v| rule(vec![cond(arg, SeccompCmpOp::Eq, v)?]))
                        .collect::<io::Result<Vec<_>>>()?,
                ),
                AllOf(arg, mask) => Some(vec![rule(vec![cond(
                    arg,
                    SeccompCmpOp::MaskedEq(mask),
                    mask,
                )?])?]),
                NoneOf(arg, mask) => Some(vec![rule(vec![cond(
                    arg,
                    SeccompCmpOp::MaskedEq(mask),
                    0,
                )?])?]),
                Only::OwnPid(signals) => Some(
                    signals
                        .iter()
                        .map(|&s| {
                            rule(vec![
                                cond(0, SeccompCmpOp::Eq, me)?,
                                cond(2, SeccompCmpOp::Eq, s)?,
                            ])
                        })
                        .collect::<io::Result<Vec<_>>>()?,
                ),
                Only::Children(signals) => {
                    let mut v = Vec::new();
                    for &pid in children {
                        for &s in signals {
                            v.push(rule(vec![
                                cond(0, SeccompCmpOp::Eq, pid as u32 as u64)?,
                                cond(1, SeccompCmpOp::Eq, s)?,
                            ])?);
                        }
                    }
                    Some(v)
                }
            };
            let slot = rules.entry(e.nr).or_insert(Some(Vec::new()));
            match (slot.as_mut(), alternatives) {
                (_, None) => *slot = None,
                (Some(v), Some(mut alt)) => v.append(&mut alt),
                (None, Some(_)) => {}
            }
        }
        // A call with no alternative left (a kill with no child to signal)
        // is not allowed at all.
        let rules: BTreeMap<i64, Vec<SeccompRule>> = rules
            .into_iter()
            .filter_map(|(nr, r)| match r {
                None => Some((nr, Vec::new())),
                Some(v) if v.is_empty() => None,
                Some(v) => Some((nr, v)),
            })
            .collect();
        let refused = if audit_only() {
            SeccompAction::Log
        } else {
            SeccompAction::Trap
        };
        let allow = SeccompFilter::new(rules, refused, SeccompAction::Allow, arch()?)
            .map_err(other)?
            .try_into()
            .map_err(other)?;
        let errno = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch()?,
        )
        .map_err(other)?
        .try_into()
        .map_err(other)?;
        let answered = if answered.is_empty() {
            None
        } else {
            Some(
                SeccompFilter::new(
                    answered.iter().map(|e| (e.nr, Vec::new())).collect(),
                    SeccompAction::Allow,
                    SeccompAction::Errno(answer as u32),
                    arch()?,
                )
                .map_err(other)?
                .try_into()
                .map_err(other)?,
            )
        };
        Ok(Sandbox {
            role,
            allow,
            errno,
            answered,
        })
    }

    /// Compiles the filter of `role`, for a process that signals no child.
    pub fn new(role: Role) -> io::Result<Sandbox> {
        Sandbox::with_children(role, &[])
    }

    /// The role it was made for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Installs the `SIGSYS` handler, then both filters on every thread of
    /// the process. Makes system calls only (no allocation): usable in a
    /// forked child. There is no way back.
    pub fn enter(&self) -> io::Result<()> {
        let ident = self.role.ident();
        IDENT_PTR.store(ident.as_ptr() as *mut u8, Ordering::Relaxed);
        IDENT_LEN.store(ident.len(), Ordering::Relaxed);
        // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO so that
        // it gets the siginfo and context, SA_RESETHAND so that a second
        // SIGSYS (ours, raised at its end) ends the process.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            // A thread that blocked SIGSYS would be killed without a word.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGSYS);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        seccompiler::apply_filter_all_threads(&self.errno).map_err(other)?;
        if let Some(answered) = &self.answered {
            seccompiler::apply_filter_all_threads(answered).map_err(other)?;
        }
        seccompiler::apply_filter_all_threads(&self.allow).map_err(other)?;
        Ok(())
    }
}

/// For measuring the lists only, never for use: in a build made with
/// `MIREDO_SECCOMP_AUDIT` set in the environment, a call outside the list
/// is allowed and logged by the kernel (`audit: type=1326 ...
/// syscall=NR` in its log) instead of stopping the process. Running the
/// lab suite on such a build and reading the kernel's log finds what a
/// list lacks on every path at once.
pub const AUDIT_ONLY: bool = option_env!("MIREDO_SECCOMP_AUDIT").is_some();

fn audit_only() -> bool {
    AUDIT_ONLY
}

static IDENT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static IDENT_LEN: AtomicUsize = AtomicUsize::new(0);

/// A line built on the stack.
struct Line {
    buf: [u8; 320],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The name of system call `nr` on this machine, if known.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    if cfg!(target_arch = "x86_64") {
        let nr = u16::try_from(nr).ok()?;
        names::X86_64
            .binary_search_by_key(&nr, |&(n, _)| n)
            .ok()
            .map(|i| names::X86_64[i].1)
    } else {
        None
    }
}

/// The first two arguments of the refused call, where the context says.
#[allow(unused_variables)]
fn arguments(ctx: *mut libc::c_void) -> Option<(u64, u64)> {
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    {
        if ctx.is_null() {
            return None;
        }
        // SAFETY: the kernel passes a ucontext_t to an SA_SIGINFO handler.
        let uc = unsafe { &*(ctx as *const libc::ucontext_t) };
        let g = &uc.uc_mcontext.gregs;
        return Some((
            g[libc::REG_RDI as usize] as u64,
            g[libc::REG_RSI as usize] as u64,
        ));
    }
    #[allow(unreachable_code)]
    None
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    use std::fmt::Write;
    // The siginfo of a seccomp SIGSYS: after si_signo, si_errno, si_code
    // (and padding to 8 bytes), the call's address, then its number.
    // SAFETY: the kernel filled `info` for this signal.
    let nr = unsafe {
        let base = info as *const u8;
        std::ptr::read_unaligned(base.add(16 + std::mem::size_of::<usize>()) as *const i32)
    };
    let ident = {
        let p = IDENT_PTR.load(Ordering::Relaxed);
        let n = IDENT_LEN.load(Ordering::Relaxed);
        if p.is_null() {
            "miredo"
        } else {
            // SAFETY: set from a &'static str in `enter`.
            unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(p, n)) }
        }
    };
    // SAFETY: getpid has no arguments.
    let pid = unsafe { libc::getpid() };
    let mut line = Line {
        buf: [0; 320],
        len: 0,
    };
    let _ = write!(line, "{ident}[{pid}]: seccomp refused system call ");
    let _ = match syscall_name(nr.into()) {
        Some(name) => write!(line, "{name} ({nr}"),
        None => write!(line, "number {nr} ("),
    };
    if let Some((a0, a1)) = arguments(ctx) {
        let _ = write!(line, ", arguments {a0:#x}, {a1:#x}");
    }
    let _ = write!(
        line,
        "): not in {ident}'s allow-list (a bug to report, or code doing what it must not); stopping with SIGSYS"
    );
    let _ = line.write_str("\n");
    let text = &line.buf[..line.len];
    crate::sys::logging::emergency(text);
    // SAFETY: write, getpid, gettid and tgkill: all async-signal-safe.
    unsafe {
        libc::write(2, text.as_ptr().cast(), text.len());
        // SA_RESETHAND made SIGSYS's action the default again; it is
        // blocked while we run, so it ends the process once we return.
        libc::syscall(libc::SYS_tgkill, pid, libc::gettid(), libc::SIGSYS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_compiles_and_says_why() {
        for role in [
            Role::Daemon,
            Role::Server,
            Role::Reader,
            Role::Privproc { hook: false },
            Role::Privproc { hook: true },
            Role::PidKeeper,
        ] {
            let list = allow_list(role);
            assert!(!list.is_empty());
            for e in &list {
                assert!(!e.why.is_empty(), "{role:?} {}", e.name);
                assert_eq!(syscall_name(e.nr), Some(e.name), "{role:?}");
            }
            Sandbox::with_children(role, &[1234]).unwrap();
            let mut calls: Vec<&str> = list.iter().map(|e| e.name).collect();
            calls.sort_unstable();
            calls.dedup();
            // The sizes, for the record (`-- --nocapture`).
            println!(
                "{role:?}: {} entries, {} system calls",
                list.len(),
                calls.len()
            );
        }
    }

    #[test]
    fn no_list_lets_the_tun_device_change() {
        // The TUN requests (linux/if_tun.h): _IOW('T', n, int).
        const TUN: [u64; 6] = [
            0x400454ca, 0x400454cb, 0x400454cc, 0x400454cd, 0x400454ce, 0x400454d8,
        ];
        for role in [
            Role::Daemon,
            Role::Server,
            Role::Reader,
            Role::Privproc { hook: true },
        ] {
            for e in allow_list(role).iter().filter(|e| e.name == "ioctl") {
                match e.only {
                    OneOf(1, values) => {
                        assert!(values.iter().all(|v| !TUN.contains(v)), "{role:?}")
                    }
                    other => panic!("{role:?}: ioctl allowed {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_daemons_open_and_execute_nothing() {
        for role in [Role::Daemon, Role::Server] {
            let names: Vec<&str> = allow_list(role).iter().map(|e| e.name).collect();
            for forbidden in [
                "open", "openat", "execve", "execveat", "ptrace", "chroot", "setuid", "mount",
                "unlink", "unlinkat", "chmod", "fchmod", "chown",
            ] {
                assert!(!names.contains(&forbidden), "{role:?} allows {forbidden}");
            }
        }
    }

    #[test]
    fn open_is_answered_only_where_nothing_is_opened() {
        for role in [Role::Daemon, Role::Server, Role::Privproc { hook: false }] {
            let (answered, errno) = answered_with_error(role);
            let names: Vec<&str> = answered.iter().map(|e| e.name).collect();
            assert_eq!(names, ["openat", "open"], "{role:?}");
            assert_eq!(errno, libc::EACCES);
            assert!(Sandbox::new(role).unwrap().answered.is_some());
        }
        // The hook's programs and the reader open files: no error filter
        // (it would win over their allow-list).
        for role in [Role::Reader, Role::Privproc { hook: true }] {
            assert!(answered_with_error(role).0.is_empty(), "{role:?}");
            assert!(Sandbox::new(role).unwrap().answered.is_none());
        }
    }

    #[test]
    fn the_pid_files_keeper_can_do_nothing_but_remove_it() {
        let names: Vec<&str> = allow_list(Role::PidKeeper).iter().map(|e| e.name).collect();
        for forbidden in [
            "socket", "connect", "mmap", "clone", "execve", "ioctl", "open", "openat2", "renameat",
            "chmod", "fchmod", "chown", "kill", "ptrace", "mount", "setuid",
        ] {
            assert!(!names.contains(&forbidden), "the keeper allows {forbidden}");
        }
        assert!(names.contains(&"unlinkat") && names.contains(&"read"));
    }

    #[test]
    fn names_are_sorted_and_known() {
        assert!(names::X86_64.windows(2).all(|w| w[0].0 < w[1].0));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(syscall_name(16), Some("ioctl"));
            assert_eq!(syscall_name(59), Some("execve"));
            assert_eq!(syscall_name(100_000), None);
        }
    }
}
