//! Runs the C miredo-checkconf (Debian's miredo 1.2.6) on the same corpus
//! and checks that we agree with it wherever it judges right, and that we
//! reject what it wrongly accepts (PROTOCOL.md, "Where the C
//! miredo-checkconf is wrong").

mod common;

use std::path::Path;

use common::{run, run_ours, scratch, write_case, Format, C, CORPUS};

const C_TOOL: &str = "/usr/sbin/miredo-checkconf";

/// A need of `lab_main!`: Debian's C miredo-checkconf installed.
fn c_tool() -> Option<String> {
    if Path::new(C_TOOL).exists() {
        return None;
    }
    Some(format!(
        "interop with the C miredo-checkconf: {C_TOOL} not installed (apt-get install miredo)"
    ))
}

fn agrees_with_the_c_tool_where_it_is_right() {
    let dir = scratch("interop");
    let mut failures = Vec::new();
    let mut tally = [0usize; 5];
    for case in CORPUS.iter().filter(|c| c.format == Format::Miredo) {
        let path = write_case(&dir, case);
        let (c_status, c_stderr) = run(C_TOOL, &[path.to_str().expect("UTF-8 temp path")]);
        let (our_status, _) = run_ours(case, &path);
        let c_valid = c_status == 0;
        let ours_valid = our_status == 0;
        let (slot, ok) = match case.c {
            C::Agrees => (0, c_valid == ours_valid),
            C::WronglyAccepts(_) => (1, c_valid && !ours_valid),
            C::WronglyRejects(_) => (2, !c_valid && ours_valid),
            C::Predates(_) => (3, !c_valid && ours_valid),
            C::NotComparable(_) => (4, true),
        };
        if let Some(n) = tally.get_mut(slot) {
            *n += 1;
        }
        if !ok {
            failures.push(format!(
                "{}: expected {:?}; C exit {} ({:?}), ours exit {}",
                case.name, case.c, c_status, c_stderr, our_status
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "interop with {C_TOOL}: {} agreed, {} wrongly accepted by C and rejected by us, \
         {} wrongly rejected by C, {} rejected by C as newer than 1.2.6, {} not comparable",
        tally[0], tally[1], tally[2], tally[3], tally[4]
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn the_c_tool_still_has_the_documented_faults() {
    // The reasons above rest on these; if a new C release fixes them, the
    // corpus labels must change.
    let dir = scratch("interop-faults");
    let path = dir.join("range.conf");
    std::fs::write(&path, "ServerAddress 192.0.2.1\nBindPort 70000\n").expect("write test file");
    let (status, stderr) = run(C_TOOL, &[path.to_str().expect("UTF-8 temp path")]);
    assert_ne!(status, 0);
    // PROTOCOL.md: an integer out of range is reported with a stale errno.
    assert!(stderr.iter().any(|l| l.contains("70000")), "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

teredo_lab::lab_main! {
    needs(c_tool): [
        agrees_with_the_c_tool_where_it_is_right,
        the_c_tool_still_has_the_documented_faults,
    ],
}
