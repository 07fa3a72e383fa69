//! Parsing: every form of the language, its canonical text, and the API around it.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::super::ast::{CompareOp, Node};
use super::{labels, parse};
use crate::selector::Selector;

#[test]
fn canonical_text_of_every_form() {
    let cases = [
        // Operators, spacing and both quote styles.
        ("app=='web'", r#"app == "web""#),
        (r#"app == "web""#, r#"app == "web""#),
        ("  app   ==   'web'  ", r#"app == "web""#),
        ("\tapp\t==\t'web'\t", r#"app == "web""#),
        ("app!='web'", r#"app != "web""#),
        ("app contains'e'", r#"app contains "e""#),
        ("app starts  with 'w'", r#"app starts with "w""#),
        ("app ends\twith 'b'", r#"app ends with "b""#),
        ("app == ''", r#"app == """#),
        ("example.com/tier != 'db'", r#"example.com/tier != "db""#),
        ("a.b_c-9 == '1'", r#"a.b_c-9 == "1""#),
        // A quote inside the other kind of quote; printed with the kind that works.
        (r#"msg == 'say "hi"'"#, r#"msg == 'say "hi"'"#),
        (r#"msg == "it's""#, r#"msg == "it's""#),
        ("msg == 'a b, {c} && (d)'", r#"msg == "a b, {c} && (d)""#),
        // Sets: sorted, without duplicates; empty and trailing-comma sets as in Calico.
        (r#"k in {'b', "a", 'b'}"#, r#"k in {"a", "b"}"#),
        ("k in {}", "k in {}"),
        ("k in{ }", "k in {}"),
        ("k in {'a',}", r#"k in {"a"}"#),
        ("k not   in {'a'}", r#"k not in {"a"}"#),
        ("k not in {}", "k not in {}"),
        // Functions.
        ("all()", "all()"),
        ("all( )", "all()"),
        ("global()", "global()"),
        ("has(app)", "has(app)"),
        ("has( example.com/tier )", "has(example.com/tier)"),
        ("!has(app)", "!has(app)"),
        ("! has(app)", "!has(app)"),
        // Negation collapses as Calico collapses it.
        ("!!has(a)", "has(a)"),
        ("!!!has(a)", "!has(a)"),
        ("!(!has(a))", "has(a)"),
        ("!a == 'x'", r#"!a == "x""#),
        // Precedence and the fewest parentheses that keep it.
        ("(a == 'x')", r#"a == "x""#),
        ("((has(a)))", "has(a)"),
        (
            "a == 'x' || b == 'y' && c == 'z'",
            r#"a == "x" || b == "y" && c == "z""#,
        ),
        (
            "a == 'x' || (b == 'y' && c == 'z')",
            r#"a == "x" || b == "y" && c == "z""#,
        ),
        (
            "(a == 'x' || b == 'y') && c == 'z'",
            r#"(a == "x" || b == "y") && c == "z""#,
        ),
        (
            "(a == 'x' && b == 'y') && c == 'z'",
            r#"a == "x" && b == "y" && c == "z""#,
        ),
        ("has(a) || (has(b) || has(c))", "has(a) || has(b) || has(c)"),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("!(has(a) && has(b))", "!(has(a) && has(b))"),
        ("!has(a) && !has(b)", "!has(a) && !has(b)"),
        (
            "a=='x'&&b!=\"y\"||!has(c)",
            r#"a == "x" && b != "y" || !has(c)"#,
        ),
        // Keys spelled like keywords or functions are keys.
        ("in in {'a'}", r#"in in {"a"}"#),
        ("not not in {'a'}", r#"not not in {"a"}"#),
        ("has == 'x'", r#"has == "x""#),
        ("all != 'x'", r#"all != "x""#),
        ("contains contains 'x'", r#"contains contains "x""#),
        // Empty text is all().
        ("", "all()"),
        (" \t ", "all()"),
    ];
    for (text, canonical) in cases {
        let selector = parse(text);
        assert_eq!(
            selector.to_string(),
            canonical,
            "canonical text of {text:?}"
        );
        assert_eq!(selector.as_str(), canonical);
        assert_eq!(parse(canonical), selector, "{canonical:?} parses back");
        assert_eq!(parse(canonical).root, selector.root);
    }
}

#[test]
fn precedence_builds_the_right_tree() {
    let compare = |key: &str, value: &str| Node::Compare {
        key: key.into(),
        op: CompareOp::Eq,
        value: value.into(),
    };
    assert_eq!(
        parse("a == 'x' || b == 'y' && c == 'z'").root,
        Node::Or(vec![
            compare("a", "x"),
            Node::And(vec![compare("b", "y"), compare("c", "z")]),
        ])
    );
    assert_eq!(
        parse("!a == 'x' && b == 'y'").root,
        Node::And(vec![
            Node::Not(Box::new(compare("a", "x"))),
            compare("b", "y")
        ])
    );
    assert_eq!(
        parse("k not in {'b', 'a'}").root,
        Node::InSet {
            key: "k".into(),
            values: BTreeSet::from(["a".to_string(), "b".to_string()]),
            negated: true,
        }
    );
}

#[test]
fn equality_and_hashing_follow_the_canonical_text() {
    let a = parse("app=='web'&&has(tier)");
    let b = parse(r#"( app == "web" ) && has( tier )"#);
    assert_eq!(a, b);
    let set: HashSet<Selector> = [a.clone(), b].into_iter().collect();
    assert_eq!(set.len(), 1);
    assert_ne!(a, parse("app == 'web'"));
    assert_eq!(
        format!("{a:?}"),
        r#"Selector("app == \"web\" && has(tier)")"#
    );
    let from_str: Selector = "app == 'web' && has(tier)".parse().unwrap();
    assert_eq!(from_str, a);
}

#[test]
fn all_global_and_keys() {
    assert!(Selector::all().is_all());
    assert!(Selector::default().is_all());
    assert!(parse("").is_all());
    assert!(parse("all()").is_all());
    assert!(!parse("!all()").is_all());
    assert!(!parse("has(a) || !has(a)").is_all());
    assert_eq!(Selector::all(), parse(" all( ) "));

    assert!(parse("global()").uses_global());
    assert!(parse("global()").is_global());
    assert!(parse("has(a) && !global()").uses_global());
    assert!(!parse("has(a) && !global()").is_global());
    assert!(!parse("a == 'global()'").uses_global());
    assert!(!parse("all()").uses_global());

    assert_eq!(parse("all()").label_keys(), BTreeSet::new());
    let keys: Vec<String> = parse(
        "a == 'x' || !(has(b) && c in {'1'}) || d not in {} || e contains '' || a != 'y' \
         || example.com/f starts with 'g'",
    )
    .label_keys()
    .into_iter()
    .collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e", "example.com/f"]);
}

#[test]
fn serde_reads_and_writes_the_text() {
    let selector = parse("app=='web'");
    assert_eq!(
        serde_json::to_string(&selector).unwrap(),
        r#""app == \"web\"""#
    );
    let back: Selector = serde_json::from_str(r#""app == 'web'""#).unwrap();
    assert_eq!(back, selector);
    let in_yaml: BTreeSet<Selector> = serde_yaml::from_str("[has(a), 'b == \"c\"']").unwrap();
    assert_eq!(in_yaml.len(), 2);
    let error = serde_json::from_str::<Selector>(r#""app == web""#).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("invalid selector at character 8: expected a quoted value after '=='"),
        "{error}"
    );
    assert!(serde_json::from_str::<Selector>("42").is_err());
}

#[test]
fn label_sources() {
    let selector = parse("app == 'web'");
    let btree = labels(&[("app", "web")]);
    let hash: HashMap<String, String> = btree.clone().into_iter().collect();
    assert!(selector.matches(&btree));
    assert!(selector.matches(&hash));
    let as_dyn: &dyn crate::selector::LabelSource = &hash;
    assert!(selector.matches(as_dyn));
    assert!(selector.matches(&&btree));
}
