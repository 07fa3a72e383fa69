//! Matching: every operator against present, absent and empty labels, and precedence.

use super::{labels, parse};

#[test]
fn every_operator_with_present_absent_and_empty_labels() {
    let pod = labels(&[
        ("app", "web"),
        ("tier", "frontend"),
        ("empty", ""),
        ("example.com/team", "net"),
    ]);
    let cases = [
        ("all()", true),
        ("!all()", false),
        ("global()", true),
        ("", true),
        // == needs the label present with exactly the value.
        ("app == 'web'", true),
        ("app == 'we'", false),
        ("app == 'WEB'", false),
        ("missing == 'web'", false),
        ("missing == ''", false),
        ("empty == ''", true),
        ("example.com/team == \"net\"", true),
        // != also matches when the label is absent (Calico semantics).
        ("app != 'db'", true),
        ("app != 'web'", false),
        ("missing != 'web'", true),
        ("missing != ''", true),
        ("empty != ''", false),
        // has() and its negation.
        ("has(app)", true),
        ("has(empty)", true),
        ("has(missing)", false),
        ("!has(missing)", true),
        ("!has(app)", false),
        // in needs the label present; not in matches when it is absent.
        ("app in {'db', 'web'}", true),
        ("app in {'db'}", false),
        ("app in {}", false),
        ("missing in {'web'}", false),
        ("missing in {''}", false),
        ("empty in {''}", true),
        ("app not in {'db'}", true),
        ("app not in {'db', 'web'}", false),
        ("app not in {}", true),
        ("missing not in {'web'}", true),
        ("missing not in {}", true),
        // Substring operators need the label present, even with an empty string.
        ("app contains 'e'", true),
        ("app contains 'web'", true),
        ("app contains ''", true),
        ("app contains 'x'", false),
        ("missing contains ''", false),
        ("tier starts with 'front'", true),
        ("tier starts with 'end'", false),
        ("tier starts with ''", true),
        ("missing starts with ''", false),
        ("tier ends with 'end'", true),
        ("tier ends with 'front'", false),
        ("missing ends with ''", false),
        // Negation of a comparison is not the other comparison: absence differs.
        ("!missing == 'web'", true),
        ("!app contains 'x'", true),
        ("!missing contains 'x'", true),
        // Combinations.
        ("app == 'web' && has(tier)", true),
        ("app == 'web' && has(missing)", false),
        ("app == 'db' || has(tier)", true),
        ("app == 'db' || has(missing)", false),
        ("!(app == 'web' && has(tier))", false),
        ("!(app == 'db' || has(missing))", true),
        ("!has(missing) && !has(other)", true),
    ];
    for (text, expected) in cases {
        assert_eq!(
            parse(text).matches(&pod),
            expected,
            "{text:?} against {pod:?}"
        );
    }
}

#[test]
fn and_binds_tighter_than_or_and_not_tightest() {
    // a || (b && c) is true; (a || b) && c would be false.
    let abc = labels(&[("a", "x"), ("b", "n"), ("c", "n")]);
    assert!(parse("a == 'x' || b == 'y' && c == 'z'").matches(&abc));
    assert!(!parse("(a == 'x' || b == 'y') && c == 'z'").matches(&abc));
    // b && c || a: also (b && c) || a.
    assert!(parse("b == 'y' && c == 'z' || a == 'x'").matches(&abc));
    assert!(!parse("b == 'y' && (c == 'z' || a == 'x')").matches(&abc));
    // ! applies to the next operation only: (!has(a)) || has(b), not !(has(a) || has(b)).
    let b_only = labels(&[("b", "1")]);
    assert!(parse("!has(a) || has(b)").matches(&b_only));
    assert!(!parse("!(has(a) || has(b))").matches(&b_only));
    assert!(!parse("!has(b) && has(b)").matches(&b_only));
}

#[test]
fn no_labels_at_all() {
    let none = labels(&[]);
    assert!(parse("all()").matches(&none));
    assert!(parse("a != 'x'").matches(&none));
    assert!(parse("a not in {'x'}").matches(&none));
    assert!(parse("!has(a)").matches(&none));
    assert!(!parse("has(a)").matches(&none));
    assert!(!parse("a == ''").matches(&none));
    assert!(!parse("a contains ''").matches(&none));
}
