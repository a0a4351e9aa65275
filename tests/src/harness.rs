//! A test main for integration-test files whose tests need root, Debian's
//! C miredo, our built binaries or anything else this machine may lack:
//! such a test is reported **ignored** (never passed) where it cannot run,
//! with the reason in the test runner's line and loudly on stderr
//! (`IGNORED <test>: needs root for network namespaces`), and runs as a
//! normal test where it can (CI runs as root, with everything installed).
//!
//! # Using it in a test file
//!
//! 1. In the crate's `Cargo.toml`, give the file its own main (and, outside
//!    this crate, `teredo-lab = { path = "../tests" }` under
//!    `[dev-dependencies]`):
//!
//!    ```toml
//!    [[test]]
//!    name = "security"
//!    path = "tests/security.rs"
//!    harness = false
//!    ```
//!
//! 2. Write each test as a plain `fn name()` that panics to fail, **without
//!    `#[test]`** (in a `harness = false` file `#[test]` functions are
//!    compiled out, silently) and without any skip check of its own.
//!
//! 3. End the file with one [`lab_main!`](crate::lab_main) listing every
//!    test with what it needs:
//!
//!    ```text
//!    teredo_lab::lab_main! {
//!        needs(root, ours): [client_reaches_native_host, relay_survives_flood],
//!        needs(root, ours, c_miredo): [interop_c_client_our_relay],
//!        needs(netns, debian_hook): [hook_runs],   // `fn debian_hook() -> Option<String>` in the file
//!        plain: [parses_addresses],                // needs nothing: always runs
//!    }
//!    ```
//!
//!    Groups come in any order and number. A need is one of the names of
//!    [`needs`] (`root`, `netns`, `ours`, `c_miredo`), or any function
//!    `fn() -> Option<String>` in scope that returns why the test cannot
//!    run here, `None` when it can. Needs are checked in the order given,
//!    when the test is about to run (not for `--list`); the first unmet one
//!    makes the test ignored, with its reason.
//!
//! A function in the file that no group lists is dead code, which the
//! compiler reports (and `clippy -D warnings` refuses).
//!
//! Each test runs on a thread named after it, as under libtest, so
//! [`current_test_name`](crate::skip::current_test_name) and panic
//! messages name it; a panic fails the test. Tests are listed and run in
//! name order, and the usual arguments work (a name filter, `--exact`,
//! `--skip`, `--list`, `--ignored`, `--include-ignored`, `--test-threads`,
//! also `RUST_TEST_THREADS`), from `libtest-mimic`. Output is not captured:
//! what a passing test prints shows.

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::skip::loud;

/// Why a test cannot run on this machine, `None` when it can.
pub type Need = fn() -> Option<String>;

/// The needs [`lab_main!`](crate::lab_main) knows by name.
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

    /// Debian's C `miredo` and `miredo-server`, installed.
    pub fn c_miredo() -> Option<String> {
        Impl::C.unavailable()
    }
}

/// One test: `body` runs when every one of `needs` is met, else the test
/// is ignored with the first unmet need's reason.
pub fn trial(name: &'static str, needs: &[Need], body: fn()) -> Trial {
    let needs = needs.to_vec();
    Trial::ignorable_test(name, move || {
        for need in needs {
            if let Some(why) = need() {
                loud(&format!("IGNORED {name}: {why}"));
                return Ok(Completion::ignored_with(why));
            }
        }
        run_named(name, body).map(|()| Completion::Completed)
    })
}

/// Runs `body` on a thread named `name` (libtest does the same); a panic
/// is a failure.
fn run_named(name: &str, body: fn()) -> Result<(), Failed> {
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|e| Failed::from(format!("cannot start the test's thread: {e}")))?;
    thread.join().map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        match msg {
            Some(m) => Failed::from(format!("test panicked: {m}")),
            None => Failed::from("test panicked"),
        }
    })
}

/// Runs `trials` with the command line's arguments and exits: status 101
/// if a test failed, else 0.
pub fn run(mut trials: Vec<Trial>) -> ! {
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    if let Some(twice) = trials.windows(2).find(|w| w[0].name() == w[1].name()) {
        panic!("lab_main! lists {} twice", twice[0].name());
    }
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0);
    }
    libtest_mimic::run(&args, trials).exit()
}

/// The `main` of a `harness = false` test file: every test with its needs.
/// See [`crate::harness`].
///
/// ```text
/// teredo_lab::lab_main! {
///     needs(root, ours): [tcp_to_client],
///     plain: [parses_addresses],
/// }
/// ```
#[macro_export]
macro_rules! lab_main {
    ( $( $kind:ident $( ( $($need:ident),* $(,)? ) )? : [ $($test:ident),* $(,)? ] ),* $(,)? ) => {
        fn main() {
            let mut trials = ::std::vec::Vec::new();
            $( $crate::lab_main!(@group trials $kind ($( $($need),* )?) [$($test),*]); )*
            $crate::harness::run(trials)
        }
    };
    (@group $v:ident plain () [$($test:ident),*]) => {
        $( $v.push($crate::harness::trial(::std::stringify!($test), &[], $test)); )*
    };
    (@group $v:ident needs ($($need:ident),+) [$($test:ident),*]) => {
        let needs: &[$crate::harness::Need] = &[$($crate::lab_need!($need)),+];
        $( $v.push($crate::harness::trial(::std::stringify!($test), needs, $test)); )*
    };
    (@group $v:ident $kind:ident $needs:tt [$($test:ident),*]) => {
        ::std::compile_error!(::std::concat!(
            "lab_main!: a group is `needs(a, b): [tests]` (at least one need) or `plain: [tests]`, not `",
            ::std::stringify!($kind $needs),
            "`"
        ));
    };
}

/// One need of [`lab_main!`]: a name of [`harness::needs`](crate::harness::needs)
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
