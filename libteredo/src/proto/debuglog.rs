//! The engines' debug lines (`miredo -v`): solicitations, advertisements,
//! bubbles, connectivity tests and drops, each said as it happens, but at
//! most [`PER_SECOND`] lines a second for the whole process, so that a
//! flood cannot turn `-v` into a disk filler; the lines left out are
//! counted and said once the next second starts. Nothing is formatted
//! unless debug logging is on.

use std::sync::Mutex;
use std::time::Instant;

/// Debug lines a second, at most.
pub const PER_SECOND: u32 = 50;

struct Window {
    start: Option<Instant>,
    said: u32,
    left_out: u64,
}

static WINDOW: Mutex<Window> = Mutex::new(Window {
    start: None,
    said: 0,
    left_out: 0,
});

/// Whether debug lines are wanted at all (cheap: test it before building
/// anything a line needs).
pub fn enabled() -> bool {
    log::log_enabled!(log::Level::Debug)
}

/// Says one debug line, if this second's share is not spent.
pub fn line(args: std::fmt::Arguments<'_>) {
    if !enabled() {
        return;
    }
    let now = Instant::now();
    let Ok(mut w) = WINDOW.lock() else { return };
    if w.start.is_none_or(|s| now.duration_since(s).as_secs() >= 1) {
        if w.left_out > 0 {
            log::debug!(
                "{} more debug lines left out in the last second (at most {PER_SECOND} a second)",
                w.left_out
            );
        }
        *w = Window {
            start: Some(now),
            said: 0,
            left_out: 0,
        };
    }
    if w.said < PER_SECOND {
        w.said += 1;
        drop(w);
        log::debug!("{args}");
    } else {
        w.left_out += 1;
    }
}

/// `debug_line!("...", args)`: [`line`] with the formatting done only when
/// debug logging is on.
macro_rules! debug_line {
    ($($arg:tt)*) => {
        if $crate::proto::debuglog::enabled() {
            $crate::proto::debuglog::line(format_args!($($arg)*));
        }
    };
}
pub(crate) use debug_line;
