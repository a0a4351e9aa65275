//! The status socket of a daemon, answered: whoever connects gets the
//! status lines (`key: value`, see [`crate::metrics::lines`]) and the
//! connection is closed. The socket itself is bound as root in the run
//! directory ([`super::rundir::StatusSocket`]); miredo and
//! miredo-server answer it from their control loops with this.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::Duration;

/// Connections answered at most per turn of the control loop (the
/// listener does not block: the others wait for the next turn).
const PER_TURN: usize = 16;

/// How long a reader has to take its answer: one that does not read
/// cannot hold the control loop longer.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Answers the connections waiting on `listener` (a non-blocking one) with
/// what `render` makes for each.
pub fn answer(listener: &UnixListener, mut render: impl FnMut() -> String) {
    for _ in 0..PER_TURN {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                let _ = s.write_all(render().as_bytes());
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn each_client_gets_the_lines() {
        let dir = std::env::temp_dir().join(format!("status-answer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        let mut clients: Vec<UnixStream> = (0..2)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let mut n = 0;
        answer(&l, || {
            n += 1;
            format!("mode: test\nturn: {n}\n")
        });
        assert_eq!(n, 2);
        for (i, c) in clients.iter_mut().enumerate() {
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            assert_eq!(text, format!("mode: test\nturn: {}\n", i + 1));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
