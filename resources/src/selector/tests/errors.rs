//! Malformed selectors: where each error points and what it says; the limits.

use crate::selector::{Selector, SelectorError, MAX_NESTING_DEPTH, MAX_SELECTOR_BYTES};

fn error_of(text: &str) -> SelectorError {
    match Selector::parse(text) {
        Ok(selector) => panic!("{text:?} parsed as {selector}"),
        Err(error) => error,
    }
}

#[test]
fn errors_point_at_the_offending_character() {
    // (text, 0-based character position, start of the message)
    let cases = [
        ("app == web", 7, "expected a quoted value after '==': values must be quoted, as in app == \"web\""),
        ("app == ", 7, "expected a quoted value after '==', found the end of the selector"),
        ("app == 'web", 7, "unterminated string: the ' opened here is never closed"),
        ("app == \"web' ", 7, "unterminated string: the \" opened here"),
        ("app = 'web'", 4, "unknown operator '=': compare with '=='"),
        ("app is 'web'", 4, "expected an operator after the label key 'app' (==, !=, in, not in, contains, starts with or ends with), found 'is'"),
        ("app", 3, "expected an operator after the label key 'app'"),
        ("(app == 'web'", 13, "expected ')' to close the '(' at character 1, found the end"),
        ("has(a) && (b == 'x' || (c == 'y')", 33, "expected ')' to close the '(' at character 11"),
        ("app == 'web' tier == 'x'", 13, "unexpected 'tier' after a complete expression: join expressions with && or ||"),
        ("app == 'web')", 12, "unexpected ')' after a complete expression: this ')' has no matching '('"),
        ("-app == 'web'", 0, "invalid label key: key \"-app\" is not valid"),
        ("app == 'x' && Bad.Prefix/app == 'y'", 14, "invalid label key: key \"Bad.Prefix/app\" has an invalid prefix"),
        ("has(a/b/c)", 4, "invalid label key: key \"a/b/c\""),
        ("app == 'x' &&", 13, "expected an expression after '&&'"),
        ("app == 'x' || ", 14, "expected an expression after '||'"),
        ("&& app == 'x'", 0, "expected an expression at the start, found '&&'"),
        ("!", 1, "expected an expression after '!'"),
        ("()", 1, "expected an expression after '(', found ')'"),
        ("app == 'x' & b == 'y'", 11, "unknown operator '&': write '&&'"),
        ("app == 'x' | b == 'y'", 11, "unknown operator '|': write '||'"),
        ("app in {'a' 'b'}", 12, "expected ',' or '}' in the set of values, found the quoted value \"b\""),
        ("app in {'a', b}", 13, "values must be quoted: write \"b\""),
        ("app in {'a'", 11, "expected ',' or '}' in the set of values, found the end"),
        ("app in 'a'", 7, "expected '{' after 'in', found the quoted value \"a\""),
        ("app not 'a'", 8, "expected 'in' after 'not'"),
        ("app starts 'a'", 11, "expected 'with' after 'starts'"),
        ("has(app", 7, "expected ')' to close has(, found the end"),
        ("has()", 4, "expected a label key inside has(), found ')'"),
        ("has('app')", 4, "expected a label key inside has(), found the quoted value"),
        ("all(x)", 4, "expected ')' to close all(, found 'x'"),
        ("has (app)", 4, "expected an operator after the label key 'has' (==, !=, in, not in, contains, starts with or ends with), found '(' (write has( with no space"),
        ("app == 'x' && b ~= 'y'", 16, "unexpected character '~'"),
        ("app == 'x'\n&& has(b)", 10, "unexpected line break"),
        // Positions count characters, not bytes: 'é' is two bytes.
        ("app == 'é' && b = 'x'", 16, "unknown operator '='"),
    ];
    for (text, position, message) in cases {
        let error = error_of(text);
        assert!(
            error.message.starts_with(message),
            "{text:?}: message {:?} does not start with {message:?}",
            error.message
        );
        assert_eq!(error.position, position, "{text:?}: {error}");
        assert_eq!(error.text, text);
    }
}

#[test]
fn display_shows_a_caret_under_the_character() {
    assert_eq!(
        error_of("app == web").to_string(),
        "invalid selector at character 8: expected a quoted value after '==': values must be \
         quoted, as in app == \"web\"\n  app == web\n         ^"
    );
    assert_eq!(
        error_of("has(a) &&").to_string(),
        format!(
            "invalid selector at character 10: expected an expression after '&&'\n  \
             has(a) &&\n{}^",
            " ".repeat(2 + 9)
        )
    );
    // Tabs and line breaks print as one space each so the caret stays in line.
    assert_eq!(
        error_of("a\t== 'x'\n").to_string(),
        format!(
            "invalid selector at character 9: unexpected line break: a selector is one line, with \
         spaces or tabs between its parts (in YAML, fold long selectors with '>-' or quote \
         them)\n  a == 'x' \n{}^",
            " ".repeat(2 + 8)
        )
    );
}

#[test]
fn display_of_a_long_selector_shows_a_window() {
    let text = format!(
        "{}app = 'x' && {}has(c)",
        "has(a) && ".repeat(20),
        "has(b) && ".repeat(20)
    );
    let error = error_of(&text);
    let shown = error.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[1].starts_with("  ...") && lines[1].ends_with("..."),
        "{shown}"
    );
    let caret = lines[2].find('^').unwrap();
    assert_eq!(&lines[1][caret..caret + 4], "= 'x", "{shown}");
    assert!(lines[1].chars().count() < 100);
}

#[test]
fn nesting_is_capped() {
    let nested = |depth: usize| format!("{}has(a){}", "(".repeat(depth), ")".repeat(depth));
    assert_eq!(
        Selector::parse(&nested(MAX_NESTING_DEPTH))
            .unwrap()
            .to_string(),
        "has(a)"
    );
    let error = error_of(&nested(MAX_NESTING_DEPTH + 1));
    assert_eq!(error.position, MAX_NESTING_DEPTH);
    assert_eq!(
        error.message,
        "parentheses are nested more than 128 deep: simplify the selector"
    );
    // Negations between the parentheses do not get around the cap.
    let negated = format!("{}has(a){}", "!(".repeat(200), ")".repeat(200));
    assert_eq!(error_of(&negated).position, 2 * MAX_NESTING_DEPTH + 1);
    // Nor does a document made of nothing but parentheses, which must fail cleanly
    // rather than overflow the stack.
    assert_eq!(error_of(&"(".repeat(60_000)).position, MAX_NESTING_DEPTH);
    // Runs of `!` cost no nesting: they cancel in pairs.
    let nots = format!("{}has(a)", "!".repeat(10_001));
    assert_eq!(Selector::parse(&nots).unwrap().to_string(), "!has(a)");
}

#[test]
fn length_is_capped() {
    let term = "has(a) || ";
    let mut fits = term.repeat(MAX_SELECTOR_BYTES / term.len());
    fits.push_str("has(b)");
    while fits.len() < MAX_SELECTOR_BYTES {
        fits.push(' ');
    }
    assert_eq!(fits.len(), MAX_SELECTOR_BYTES);
    let selector = Selector::parse(&fits).unwrap();
    assert_eq!(selector.label_keys().len(), 2);

    let too_long = format!("{fits} ");
    let error = error_of(&too_long);
    assert_eq!(error.position, MAX_SELECTOR_BYTES);
    assert_eq!(
        error.message,
        "the selector is 65537 bytes long: at most 65536 bytes are allowed"
    );
}
