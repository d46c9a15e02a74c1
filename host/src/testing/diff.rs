//! Expected output lines against actual ones: equal when they are the same JSON value
//! (whitespace and key order aside), and a readable line diff when they are not.

use std::fmt::Write;

/// The result of comparing outputs with the expected ones.
#[derive(Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Every line matches.
    Same,
    /// They differ; `first` is the 0-based index of the first actual line that does not
    /// match (or the number of actual lines, when lines are missing at the end).
    Different {
        /// Where the outputs first go wrong.
        first: usize,
        /// The diff, for the user: `-` expected only, `+` actual only, with line numbers.
        diff: String,
    },
}

/// Lines of context shown around each change.
const CONTEXT: usize = 2;
/// Above this many cells (expected × actual lines) only the first mismatch is shown.
const MAX_TABLE: usize = 4_000_000;

fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One step of the edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// expected[i] matches actual[j].
    Keep(usize, usize),
    /// expected[i] is missing from the actual output.
    Missing(usize),
    /// actual[j] was not expected.
    Extra(usize),
}

/// Compares `actual` with `expected`, line by line.
pub fn compare(expected: &[String], actual: &[String]) -> Comparison {
    let steps = script(expected, actual);
    let Some(first) = steps.iter().position(|s| !matches!(s, Step::Keep(..))) else {
        return Comparison::Same;
    };
    let first_actual = steps[..first]
        .iter()
        .filter(|s| !matches!(s, Step::Missing(_)))
        .count();
    let changes = steps
        .iter()
        .filter(|s| !matches!(s, Step::Keep(..)))
        .count();
    let mut diff = format!(
        "expected {} lines, got {}; {changes} differ (- expected, + actual):\n",
        expected.len(),
        actual.len()
    );
    let shown = |k: usize| {
        steps[k.saturating_sub(CONTEXT)..(k + CONTEXT + 1).min(steps.len())]
            .iter()
            .any(|s| !matches!(s, Step::Keep(..)))
    };
    let mut skipped = false;
    for (k, step) in steps.iter().enumerate() {
        if !shown(k) {
            skipped = true;
            continue;
        }
        if skipped {
            diff += "  …\n";
            skipped = false;
        }
        let _ = match *step {
            Step::Keep(_, j) => writeln!(diff, "  {:>5}  {}", j + 1, actual[j]),
            Step::Missing(i) => writeln!(diff, "- {:>5}  {}", i + 1, expected[i]),
            Step::Extra(j) => writeln!(diff, "+ {:>5}  {}", j + 1, actual[j]),
        };
    }
    if skipped {
        diff += "  …\n";
    }
    Comparison::Different {
        first: first_actual,
        diff,
    }
}

/// A shortest edit script (longest common subsequence), or, for huge outputs, matching
/// lines up to the first difference and everything after it as changed.
fn script(expected: &[String], actual: &[String]) -> Vec<Step> {
    let (n, m) = (expected.len(), actual.len());
    if n.saturating_mul(m) > MAX_TABLE {
        let common = (0..n.min(m))
            .take_while(|&k| same(&expected[k], &actual[k]))
            .count();
        return (0..common)
            .map(|k| Step::Keep(k, k))
            .chain((common..n).map(Step::Missing))
            .chain((common..m).map(Step::Extra))
            .collect();
    }
    // lcs[i][j]: the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same(&expected[i], &actual[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut steps) = (0, 0, Vec::with_capacity(n + m));
    while i < n || j < m {
        if i < n && j < m && same(&expected[i], &actual[j]) {
            steps.push(Step::Keep(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            steps.push(Step::Missing(i));
            i += 1;
        } else {
            steps.push(Step::Extra(j));
            j += 1;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn equal_json_values_match_whatever_their_spacing_and_key_order() {
        let expected = lines("{\"a\":1,\"b\":[1,2]}\n{\"c\":\"x\"}");
        let actual = lines("{ \"b\": [1, 2], \"a\": 1 }\n{\"c\":\"x\"}");
        assert_eq!(compare(&expected, &actual), Comparison::Same);
    }

    #[test]
    fn a_changed_line_shows_both_versions_with_line_numbers() {
        let expected = lines("{\"n\":1}\n{\"n\":2}\n{\"n\":3}");
        let actual = lines("{\"n\":1}\n{\"n\":5}\n{\"n\":3}");
        let Comparison::Different { first, diff } = compare(&expected, &actual) else {
            panic!("should differ");
        };
        assert_eq!(first, 1);
        assert!(diff.contains("-     2  {\"n\":2}"), "{diff}");
        assert!(diff.contains("+     2  {\"n\":5}"), "{diff}");
        assert!(diff.contains("      1  {\"n\":1}"), "context: {diff}");
    }

    #[test]
    fn missing_and_extra_lines_are_told_apart() {
        let expected = lines("a\nb\nc");
        let Comparison::Different { first, diff } = compare(&expected, &lines("a\nc")) else {
            panic!("should differ");
        };
        assert_eq!(first, 1);
        assert!(diff.contains("-     2  b"), "{diff}");
        assert!(!diff.lines().any(|l| l.starts_with('+')), "{diff}");
        let Comparison::Different { first, diff } = compare(&expected, &lines("a\nb\nc\nd")) else {
            panic!("should differ");
        };
        assert_eq!(first, 3);
        assert!(diff.contains("+     4  d"), "{diff}");
    }

    #[test]
    fn long_runs_of_equal_lines_are_elided() {
        let expected: Vec<String> = (0..100).map(|n| n.to_string()).collect();
        let mut actual = expected.clone();
        actual[50] = "x".into();
        let Comparison::Different { diff, .. } = compare(&expected, &actual) else {
            panic!("should differ");
        };
        assert_eq!(diff.lines().count(), 1 + 1 + 2 + 2 + 2 + 1, "{diff}");
    }
}
