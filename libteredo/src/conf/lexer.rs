//! Splits a configuration file into directives: `Name value` per line,
//! `#` comments, blank lines ignored, names case-insensitive, each
//! directive at most once unless the caller lets it repeat.

use super::ConfError;

/// One directive as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// Line number, from 1.
    pub line: usize,
    /// The name as the file spells it (for messages).
    pub name: &'a str,
    /// The value: one word, never empty.
    pub value: &'a str,
}

/// Reads `text` against the directive names in `known` (canonical
/// spelling). Returns, for each known name, its occurrence if any; every
/// line that is not a well-formed, known, first occurrence of a directive
/// adds an error.
pub(crate) fn lex<'a>(
    text: &'a str,
    file: &str,
    known: &[&str],
    errors: &mut Vec<ConfError>,
) -> Vec<Option<Entry<'a>>> {
    lex_repeating(text, file, known, &[], errors).0
}

/// [`lex`], except that the directives whose indexes (in `known`) are in
/// `repeatable` may be given more than once: their first occurrence is in
/// the first list, the later ones in the second, in file order, each with
/// its index.
pub(crate) fn lex_repeating<'a>(
    text: &'a str,
    file: &str,
    known: &[&str],
    repeatable: &[usize],
    errors: &mut Vec<ConfError>,
) -> (Vec<Option<Entry<'a>>>, Vec<(usize, Entry<'a>)>) {
    let mut found: Vec<Option<Entry<'a>>> = vec![None; known.len()];
    let mut more = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // A comment runs from '#' to the end of the line. No value of either
        // file can contain '#', so this never cuts a value short.
        let content = match raw.find('#') {
            Some(at) => raw.get(..at).unwrap_or(""),
            None => raw,
        };
        let mut words = content.split_ascii_whitespace();
        let Some(name) = words.next() else {
            continue; // blank or comment only
        };
        if content.contains(char::REPLACEMENT_CHARACTER) {
            // read_text turned bytes that are not UTF-8 into U+FFFD.
            errors.push(ConfError::at(
                file,
                line,
                name,
                "the line is not valid UTF-8 text",
            ));
            continue;
        }
        let Some(value) = words.next() else {
            errors.push(ConfError::at(file, line, name, "missing value"));
            continue;
        };
        let rest: Vec<&str> = words.collect();
        if !rest.is_empty() {
            // The C tool silently drops everything after the first word;
            // a second word is much more likely a mistake than a comment.
            errors.push(ConfError::at(
                file,
                line,
                name,
                format!(
                    "unexpected text after the value \"{value}\": \"{}\" (a value is a single word)",
                    rest.join(" ")
                ),
            ));
            continue;
        }
        let Some(index) = known.iter().position(|k| k.eq_ignore_ascii_case(name)) else {
            let reason = match suggestion(name, known) {
                Some(meant) => format!("unknown directive; did you mean {meant}?"),
                None => "unknown directive".to_owned(),
            };
            errors.push(ConfError::at(file, line, name, reason));
            continue;
        };
        let Some(slot) = found.get_mut(index) else {
            continue;
        };
        match slot {
            Some(_) if repeatable.contains(&index) => {
                more.push((index, Entry { line, name, value }));
            }
            Some(first) => errors.push(ConfError::at(
                file,
                line,
                name,
                format!("given twice (first at line {})", first.line),
            )),
            None => *slot = Some(Entry { line, name, value }),
        }
    }
    (found, more)
}

/// The known names closest to an unknown `name`, for "did you mean":
/// those at the smallest edit distance (case-insensitive; a letter
/// inserted, deleted, changed, or two neighbours swapped), when that is
/// at most 2 and small beside the name (at most a third of its letters),
/// so that a short or unrelated word gets no guess. Several names equally
/// close are joined with "or".
fn suggestion(name: &str, known: &[&str]) -> Option<String> {
    let typed: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let limit = (typed.len() / 3).min(2);
    let mut best: Option<(usize, Vec<&str>)> = None;
    for k in known {
        let candidate: Vec<char> = k.chars().flat_map(char::to_lowercase).collect();
        let d = distance(&typed, &candidate);
        if d == 0 || d > limit {
            continue;
        }
        match &mut best {
            Some((b, names)) if d == *b => names.push(k),
            Some((b, _)) if d > *b => {}
            _ => best = Some((d, vec![k])),
        }
    }
    best.map(|(_, names)| names.join(" or "))
}

/// The optimal string alignment distance between `a` and `b`: the fewest
/// insertions, deletions, substitutions and swaps of neighbours that turn
/// one into the other (each character edited once at most).
fn distance(a: &[char], b: &[char]) -> usize {
    // Three rows of the usual table: two back for the swaps.
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let mut d = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
            if i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca) {
                d = d.min(before[j - 1] + 1);
            }
            current[j + 1] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["Alpha", "Beta"];

    fn run(text: &str) -> (Vec<Option<Entry<'_>>>, Vec<String>) {
        let mut errors = Vec::new();
        let found = lex(text, "t", KNOWN, &mut errors);
        (found, errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn names_are_case_insensitive_and_spacing_is_free() {
        let (found, errors) = run("  aLPHA\t\t1  \nBETA 2\r\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            found[0],
            Some(Entry {
                line: 1,
                name: "aLPHA",
                value: "1"
            })
        );
        assert_eq!(found[1].map(|e| (e.line, e.value)), Some((2, "2")));
    }

    #[test]
    fn comments_and_blank_lines() {
        let (found, errors) = run("# Alpha 1\n\n   \n  # x\nAlpha 1 # trailing\nBeta 2#tight\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found[0].map(|e| (e.line, e.value)), Some((5, "1")));
        assert_eq!(found[1].map(|e| e.value), Some("2"));
    }

    #[test]
    fn every_error_is_collected() {
        let (_, errors) = run("Alpha\nGamma 1\nAlpha 1\nalpha 2\nBeta 1 2\nBeta #3\n");
        assert_eq!(
            errors,
            vec![
                "t:1: Alpha: missing value",
                "t:2: Gamma: unknown directive",
                "t:4: alpha: given twice (first at line 3)",
                "t:5: Beta: unexpected text after the value \"1\": \"2\" (a value is a single word)",
                "t:6: Beta: missing value",
            ]
        );
    }

    #[test]
    fn bytes_that_were_not_utf8() {
        let (found, errors) = run("Alpha t\u{fffd}redo\n# caf\u{fffd}\nBeta 1\n");
        assert_eq!(errors, vec!["t:1: Alpha: the line is not valid UTF-8 text"]);
        assert!(found[0].is_none());
        assert!(found[1].is_some());
    }

    #[test]
    fn unknown_directives_get_the_name_meant() {
        const NAMES: &[&str] = &["ServerAddress", "ServerAddress2", "BindPort", "Prefix"];
        let reason = |text: &str| {
            let mut errors = Vec::new();
            let _ = lex(text, "t", NAMES, &mut errors);
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        };
        // A letter missing, whatever the case.
        assert_eq!(
            reason("ServerAdress 192.0.2.1\n"),
            vec!["t:1: ServerAdress: unknown directive; did you mean ServerAddress?"]
        );
        assert_eq!(
            reason("serveradress 192.0.2.1\n"),
            vec!["t:1: serveradress: unknown directive; did you mean ServerAddress?"]
        );
        // Two neighbours swapped, a letter changed, two edits.
        assert!(reason("BnidPort 1\n")[0].ends_with("did you mean BindPort?"));
        assert!(reason("BindPost 1\n")[0].ends_with("did you mean BindPort?"));
        assert!(reason("BndPrt 1\n")[0].ends_with("did you mean BindPort?"));
        // Equally close to two names: both.
        assert!(reason("ServerAddress3 1\n")[0]
            .ends_with("did you mean ServerAddress or ServerAddress2?"));
        // Too far, or too short to guess: no suggestion.
        assert_eq!(reason("Gamma 1\n"), vec!["t:1: Gamma: unknown directive"]);
        assert_eq!(reason("BndPrt2 1\n")[0], "t:1: BndPrt2: unknown directive");
        assert_eq!(reason("Prfx 1\n")[0], "t:1: Prfx: unknown directive");
        assert_eq!(reason("P 1\n")[0], "t:1: P: unknown directive");
        assert_eq!(
            reason("\u{e9}t\u{e9} 1\n")[0],
            "t:1: \u{e9}t\u{e9}: unknown directive"
        );
    }

    #[test]
    fn edit_distances() {
        let d = |a: &str, b: &str| {
            distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("ab", "ba"), 1);
        assert_eq!(d("abcd", "acbd"), 1);
        assert_eq!(d("ca", "abc"), 3);
    }

    #[test]
    fn last_line_without_newline_counts() {
        // The C tool calls this an "overly long line" and fails.
        let (found, errors) = run("Alpha 1");
        assert!(errors.is_empty());
        assert!(found[0].is_some());
    }
}
