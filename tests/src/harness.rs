//! A test main for lab tests whose tests need root, Debian's C miredo, our
//! built binaries or anything else this machine may lack: such a test is
//! reported **ignored** (never passed) where it cannot run, with the reason
//! in the test runner's line and loudly on stderr (`IGNORED <test>: needs
//! root for network namespaces`), and runs as a normal test where it can
//! (CI runs as root, with everything installed).
//!
//! # The lab binary of this crate
//!
//! Every file of `tests/tests/lab/` is a module of one test binary
//! (`tests/tests/lab/main.rs`, `[[test]] name = "lab"`, `harness = false`),
//! built and linked once. Each module ends with one
//! [`lab_tests!`](crate::lab_tests), which gives it a `pub fn tests()`; the
//! main collects every module's list and hands it to [`run`]. A test's name
//! is its module path in the binary and its function's name,
//! `sandbox::every_process_runs_under_its_filter`, so
//! `cargo test --release -p teredo-lab --test lab -- sandbox::` runs one
//! module and `-- --exact sandbox::every_process_runs_under_its_filter` one
//! test.
//!
//! # A test main of its own, in another crate
//!
//! 1. In the crate's `Cargo.toml`, give the file its own main, and
//!    `teredo-lab = { path = "../tests" }` under `[dev-dependencies]`:
//!
//!    ```toml
//!    [[test]]
//!    name = "netns"
//!    path = "tests/netns.rs"
//!    harness = false
//!    ```
//!
//! 2. End the file with one [`lab_main!`](crate::lab_main): the same groups
//!    as [`lab_tests!`](crate::lab_tests), and a `main` that runs them. The
//!    names of its tests are the functions' names.
//!
//! # Writing the tests
//!
//! Write each test as a plain `fn name()` that panics to fail, **without
//! `#[test]`** (in a `harness = false` binary `#[test]` functions are
//! compiled out, silently) and without any skip check of its own, then list
//! every test with what it needs:
//!
//! ```text
//! teredo_lab::lab_tests! {
//!     needs(root, ours): [client_reaches_native_host, relay_survives_flood],
//!     needs(root, ours, c_miredo): [interop_c_client_our_relay],
//!     needs(netns, debian_hook): [hook_runs],   // `fn debian_hook() -> Option<String>` in the file
//!     needs(root, ours) alone: [idle_daemons_spend_no_cpu],
//!     plain: [parses_addresses],                // needs nothing: always runs
//! }
//! ```
//!
//! Groups come in any order and number. A need is one of the names of
//! [`needs`] (`root`, `netns`, `ours`, `c_miredo`), or any function
//! `fn() -> Option<String>` in scope that returns why the test cannot run
//! here, `None` when it can. Needs are checked in the order given, when the
//! test is about to run (not for `--list`); the first unmet one makes the
//! test ignored, with its reason. A need that only shows once the test is
//! under way ends it ignored too, with [`unmet`].
//!
//! A group marked `alone` (`needs(...) alone: [...]`, `plain alone: [...]`)
//! holds tests that must not share the machine with another test: they
//! measure time or CPU, or saturate the CPU themselves, and a neighbour
//! would make them (or the neighbour) fail on a two-core machine. They run
//! after every other test, one at a time, whatever `--test-threads` says.
//!
//! A function in the file that no group lists is dead code, which the
//! compiler reports (and `clippy -D warnings` refuses).
//!
//! Each test runs on a thread named after it, as under libtest, so
//! [`current_test_name`](crate::skip::current_test_name) and panic
//! messages name it; a panic fails the test. Tests are listed and run in
//! name order (those alone last), and the usual arguments work (a name
//! filter, `--exact`, `--skip`, `--list`, `--ignored`, `--include-ignored`,
//! `--test-threads`, also `RUST_TEST_THREADS`), from `libtest-mimic`.
//! Output is not captured: what a passing test prints shows.

use std::sync::{PoisonError, RwLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::skip::loud;

/// Why a test cannot run on this machine, `None` when it can.
pub type Need = fn() -> Option<String>;

/// The needs [`lab_tests!`](crate::lab_tests) knows by name.
pub mod needs {
    use crate::Impl;

    /// Root, working `ip netns`, and the tools lab worlds use (`nft`,
    /// `sysctl`, `ping`, `kill`, `ss`): what [`crate::World`] needs.
    pub fn root() -> Option<String> {
        crate::skip::root_unavailable()
    }

    /// Root and working `ip netns`, nothing else: for tests that set up
    /// their own namespaces or TUN devices.
    pub fn netns() -> Option<String> {
        crate::skip::netns_unavailable()
    }

    /// This workspace's `miredo` and `miredo-server`, built.
    pub fn ours() -> Option<String> {
        Impl::Ours.unavailable()
    }

    /// Debian's C `miredo` and `miredo-server`, installed (and not ours
    /// installed over them).
    pub fn c_miredo() -> Option<String> {
        Impl::C.unavailable()
    }
}

/// One test as [`lab_tests!`](crate::lab_tests) lists it.
pub struct LabTest {
    name: String,
    needs: Vec<Need>,
    body: fn(),
    alone: bool,
}

impl LabTest {
    /// The test `body` named `name` within `module` (a `module_path!()`:
    /// its first component, the crate, is left out of the name), run when
    /// every one of `needs` is met, else ignored with the first unmet
    /// need's reason; `alone`: with no other test beside it.
    pub fn new(module: &str, name: &str, needs: &[Need], body: fn(), alone: bool) -> LabTest {
        let name = match module.split_once("::") {
            Some((_crate, path)) => format!("{path}::{name}"),
            None => name.to_string(),
        };
        LabTest {
            name,
            needs: needs.to_vec(),
            body,
            alone,
        }
    }

    /// The test's name, with its module path.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn trial(self) -> Trial {
        let LabTest {
            name,
            needs,
            body,
            alone,
        } = self;
        Trial::ignorable_test(name.clone(), move || {
            for need in needs {
                if let Some(why) = need() {
                    loud(&format!("IGNORED {name}: {why}"));
                    return Ok(Completion::ignored_with(why));
                }
            }
            // A test alone holds the turn for writing, every other one for
            // reading: an alone test waits for those running to end, and
            // none starts beside it. (A panic ends on the test's own thread,
            // so the lock is never poisoned; if it were, the turn is still
            // a turn.)
            let _alone = alone.then(|| TURN.write().unwrap_or_else(PoisonError::into_inner));
            let _shared = (!alone).then(|| TURN.read().unwrap_or_else(PoisonError::into_inner));
            run_named(&name, body)
        })
    }
}

/// Who may run now: many tests side by side, or one alone.
static TURN: RwLock<()> = RwLock::new(());

/// A need that only shows while the test runs (see [`unmet`]).
struct Unmet(String);

/// Ends the running test as **ignored**, with `why`, when a need shows
/// unmet only once the test is under way: something this machine cannot
/// do that no cheap check foresees (systemd-nspawn booting a root the test
/// has just built). Said loudly, as for a need checked before the test;
/// what the test checked until then is not counted as passed. Call it on
/// the test's own thread (a thread it spawned would turn it into a
/// failure, which is still never a pass).
pub fn unmet(why: impl Into<String>) -> ! {
    // resume_unwind: no panic message, since this is no failure.
    std::panic::resume_unwind(Box::new(Unmet(why.into())))
}

/// Runs `body` on a thread named `name` (libtest does the same); a panic
/// is a failure, an [`unmet`] need makes the test ignored.
fn run_named(name: &str, body: fn()) -> Result<Completion, Failed> {
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|e| Failed::from(format!("cannot start the test's thread: {e}")))?;
    let Err(payload) = thread.join() else {
        return Ok(Completion::Completed);
    };
    if let Some(Unmet(why)) = payload.downcast_ref::<Unmet>() {
        loud(&format!("IGNORED {name}: {why}"));
        return Ok(Completion::ignored_with(why.clone()));
    }
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    Err(match msg {
        Some(m) => Failed::from(format!("test panicked: {m}")),
        None => Failed::from("test panicked"),
    })
}

/// Runs `tests` with the command line's arguments and exits: status 101
/// if a test failed, else 0. Those alone run last (see [`crate::harness`]).
pub fn run(mut tests: Vec<LabTest>) -> ! {
    tests.sort_by(|a, b| (a.alone, &a.name).cmp(&(b.alone, &b.name)));
    let mut names: Vec<&str> = tests.iter().map(LabTest::name).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("the lab lists {} twice", twice[0]);
    }
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0);
    }
    let trials = tests.into_iter().map(LabTest::trial).collect();
    libtest_mimic::run(&args, trials).exit()
}

/// A module's `pub fn tests()`: every test of the module with its needs,
/// for a main that gathers several modules (see [`crate::harness`]).
///
/// ```text
/// teredo_lab::lab_tests! {
///     needs(root, ours): [tcp_to_client],
///     needs(root, ours) alone: [idle_daemons_spend_no_cpu],
///     plain: [parses_addresses],
/// }
/// ```
#[macro_export]
macro_rules! lab_tests {
    ( $($groups:tt)* ) => {
        /// Every test of this module with its needs (`teredo_lab::lab_tests!`).
        pub fn tests() -> ::std::vec::Vec<$crate::harness::LabTest> {
            $crate::lab_list!($($groups)*)
        }
    };
}

/// The `main` of a `harness = false` test file of its own: every test with
/// its needs, in the groups of [`lab_tests!`]. See [`crate::harness`].
#[macro_export]
macro_rules! lab_main {
    ( $($groups:tt)* ) => {
        fn main() {
            $crate::harness::run($crate::lab_list!($($groups)*))
        }
    };
}

/// The list of [`lab_tests!`] and [`lab_main!`], as an expression.
#[doc(hidden)]
#[macro_export]
macro_rules! lab_list {
    ( $( $kind:ident $( ( $($need:ident),* $(,)? ) )? $($alone:ident)? : [ $($test:ident),* $(,)? ] ),* $(,)? ) => {{
        let mut tests = ::std::vec::Vec::new();
        $( $crate::lab_list!(@group tests $kind ($( $($need),* )?) ($($alone)?) [$($test),*]); )*
        tests
    }};
    (@group $v:ident plain () $alone:tt [$($test:ident),*]) => {
        $( $v.push($crate::harness::LabTest::new(
            ::std::module_path!(), ::std::stringify!($test), &[], $test, $crate::lab_list!(@alone $alone),
        )); )*
    };
    (@group $v:ident needs ($($need:ident),+) $alone:tt [$($test:ident),*]) => {
        let needs: &[$crate::harness::Need] = &[$($crate::lab_need!($need)),+];
        $( $v.push($crate::harness::LabTest::new(
            ::std::module_path!(), ::std::stringify!($test), needs, $test, $crate::lab_list!(@alone $alone),
        )); )*
    };
    (@group $v:ident $kind:ident $needs:tt $alone:tt [$($test:ident),*]) => {
        ::std::compile_error!(::std::concat!(
            "lab_tests!: a group is `needs(a, b): [tests]` (at least one need) or `plain: [tests]`, ",
            "either followed by `alone` or not, not `",
            ::std::stringify!($kind $needs $alone),
            "`"
        ));
    };
    (@alone ()) => { false };
    (@alone (alone)) => { true };
    (@alone ($other:ident)) => {
        ::std::compile_error!(::std::concat!(
            "lab_tests!: after a group's needs comes `alone` or nothing, not `",
            ::std::stringify!($other),
            "`"
        ))
    };
}

/// One need of [`lab_tests!`]: a name of [`harness::needs`](crate::harness::needs)
/// or a function in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! lab_need {
    (root) => {
        $crate::harness::needs::root as $crate::harness::Need
    };
    (netns) => {
        $crate::harness::needs::netns as $crate::harness::Need
    };
    (ours) => {
        $crate::harness::needs::ours as $crate::harness::Need
    };
    (c_miredo) => {
        $crate::harness::needs::c_miredo as $crate::harness::Need
    };
    ($f:ident) => {
        $f as $crate::harness::Need
    };
}
