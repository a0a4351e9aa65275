//! Noticing that the host slept (suspend to RAM or disk, or a virtual
//! machine paused).
//!
//! `CLOCK_MONOTONIC` stops while the host is suspended; `CLOCK_BOOTTIME`
//! does not. Their difference therefore grows by the time the host slept,
//! and by nothing else: [`offset`] read before and after, compared by
//! [`slept`], says whether (and how long) it slept.
//!
//! To know at once on waking rather than at the next timer, [`WakeAlarm`]
//! is a timer file descriptor on `CLOCK_REALTIME`, armed far in the future
//! with `TFD_TIMER_CANCEL_ON_SET`: the kernel cancels such timers, making
//! the descriptor readable, whenever the wall clock jumps, which includes
//! every resume from suspend (the kernel treats a resume as a clock set).
//! An idle daemon is not woken otherwise. A jump of the wall clock alone
//! (a clock set by NTP or by hand) also wakes it: the offset then says it
//! did not sleep.

use nix::libc;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A sleep shorter than this is not one (scheduling noise, a virtual
/// machine's stolen time): the RFC's timers cope with it.
pub const MIN_SLEEP: Duration = Duration::from_secs(2);

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec we own.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// `CLOCK_BOOTTIME - CLOCK_MONOTONIC`: the time the host spent suspended
/// since it booted.
pub fn offset() -> Duration {
    // The two reads are nanoseconds apart: noise far below MIN_SLEEP.
    let mono = clock(libc::CLOCK_MONOTONIC);
    let boot = clock(libc::CLOCK_BOOTTIME);
    boot.saturating_sub(mono)
}

/// How long the host slept between two readings of [`offset`], if it
/// slept at least `min` (see [`MIN_SLEEP`]). Pure, for tests.
pub fn slept(before: Duration, after: Duration, min: Duration) -> Option<Duration> {
    let d = after.checked_sub(before)?;
    (d >= min).then_some(d)
}

/// A descriptor that becomes readable when the wall clock jumps, as it
/// does when the host wakes up (see the module's text).
pub struct WakeAlarm {
    fd: OwnedFd,
}

impl WakeAlarm {
    pub fn new() -> io::Result<Self> {
        // SAFETY: timerfd_create takes integers and returns a descriptor we
        // then own.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just returned to us, owned by nobody else.
        let alarm = WakeAlarm {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        alarm.arm()?;
        Ok(alarm)
    }

    /// (Re)arms the timer: an absolute expiry about ten years from now,
    /// cancelled when the clock is set.
    fn arm(&self) -> io::Result<()> {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes a timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: now.tv_sec.saturating_add(10 * 365 * 86_400),
                tv_nsec: 0,
            },
        };
        // SAFETY: a valid timer descriptor and specs that live through the
        // call.
        let r = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// After the descriptor polled readable: consumes the event and arms
    /// the timer again. Returns whether the clock jumped (rather than the
    /// timer expiring, which takes ten years).
    pub fn acknowledge(&self) -> bool {
        let mut n = [0u8; 8];
        // SAFETY: reading 8 bytes into a buffer of 8 from our descriptor.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), n.as_mut_ptr().cast(), n.len()) };
        let jumped = r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECANCELED);
        let _ = self.arm();
        jumped
    }
}

impl AsFd for WakeAlarm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_sleep_is_the_growth_of_the_offset() {
        // Awake: the offset does not move (or by noise).
        assert_eq!(slept(S(100), S(100), MIN_SLEEP), None);
        assert_eq!(
            slept(S(100), S(100) + Duration::from_millis(1999), MIN_SLEEP),
            None
        );
        // Slept 2 s, an hour.
        assert_eq!(slept(S(100), S(102), MIN_SLEEP), Some(S(2)));
        assert_eq!(slept(S(0), S(3600), MIN_SLEEP), Some(S(3600)));
        // The offset never shrinks; if a reading says so, not a sleep.
        assert_eq!(slept(S(100), S(50), MIN_SLEEP), None);
    }

    #[test]
    fn the_offset_of_an_awake_host_does_not_grow() {
        let a = offset();
        std::thread::sleep(Duration::from_millis(50));
        let b = offset();
        assert_eq!(slept(a, b, Duration::from_millis(20)), None, "{a:?} {b:?}");
    }

    #[test]
    fn the_alarm_stays_quiet_while_the_clock_does_not_jump() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let alarm = WakeAlarm::new().expect("timerfd");
        let mut fds = [PollFd::new(alarm.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(50u8)).unwrap(), 0);
        // Nothing to read: not a jump, and armed again.
        assert!(!alarm.acknowledge());
    }
}
