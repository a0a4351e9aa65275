//! The lab: end-to-end tests of the Teredo suite over network namespaces,
//! as one test binary (built and linked once). Each module is one concern
//! and ends with its list of tests and what each needs
//! (`teredo_lab::lab_tests!`, see `teredo_lab::harness`); a test's name is
//! `module::function`.
//!
//! `cargo test --release -p teredo-lab --test lab` runs every test (root,
//! with the workspace built in the same profile: `cargo build --release
//! --workspace`); `-- ecn::` runs one module; `-- --exact
//! sandbox::every_process_runs_under_its_filter` one test. A test that
//! cannot run here is reported ignored, with the reason.

mod c_reference;
mod ecn;
mod fairness;
mod farm;
mod faults;
mod floods;
mod foreign_prefix;
mod interop;
mod manpages;
mod metrics;
mod network_changes;
mod network_daemon;
mod notify;
mod ours;
mod packaging;
mod portmap;
mod rfc6081;
mod sandbox;
mod scenarios;
mod security;
mod servers;
mod told;
mod two_servers;

fn main() {
    teredo_lab::harness::run(
        [
            c_reference::tests(),
            ecn::tests(),
            fairness::tests(),
            farm::tests(),
            faults::tests(),
            floods::tests(),
            foreign_prefix::tests(),
            interop::tests(),
            manpages::tests(),
            metrics::tests(),
            network_changes::tests(),
            network_daemon::tests(),
            notify::tests(),
            ours::tests(),
            packaging::tests(),
            portmap::tests(),
            rfc6081::tests(),
            sandbox::tests(),
            scenarios::tests(),
            security::tests(),
            servers::tests(),
            told::tests(),
            two_servers::tests(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}
