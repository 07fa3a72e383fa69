//! Calico's label selector language: parsing, canonical printing and matching.
//!
//! A [`Selector`] is what Calico resources write in `selector`, `namespaceSelector`,
//! `nodeSelector` and the like:
//!
//! | Syntax                  | Matches labels that                                        |
//! |-------------------------|------------------------------------------------------------|
//! | `all()`                 | (anything)                                                 |
//! | `global()`              | (anything; the caller restricts it to non-namespaced ones) |
//! | `k == 'v'`              | have `k` with value `v`                                    |
//! | `k != 'v'`              | lack `k`, or have it with another value                    |
//! | `has(k)`                | have `k`, whatever its value                               |
//! | `k in {'a', 'b'}`       | have `k` with one of the values (`{}`: nothing)            |
//! | `k not in {'a', 'b'}`   | lack `k`, or have it with none of the values               |
//! | `k contains 's'`        | have `k` with a value containing `s`                       |
//! | `k starts with 's'`     | have `k` with a value starting with `s`                    |
//! | `k ends with 's'`       | have `k` with a value ending with `s`                      |
//!
//! Expressions combine with `!e`, `e && e`, `e || e` and parentheses; `!` binds tighter
//! than `&&`, which binds tighter than `||`.
//!
//! Values are always quoted, with `'` or `"`; there are no escapes, so a value holding
//! one kind of quote is written with the other. Label keys are Kubernetes label keys
//! (`[prefix/]name`). Spaces and tabs may stand between any two tokens, but not inside
//! `has(`, `all(` or `global(`, which Calico reads as one token; a line break is an error,
//! as it is in Calico.
//!
//! ```
//! use std::collections::BTreeMap;
//! use tortie_resources::selector::Selector;
//!
//! let selector = Selector::parse("app == 'web' && !has(canary)").unwrap();
//! let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
//! assert!(selector.matches(&labels));
//! assert_eq!(selector.to_string(), r#"app == "web" && !has(canary)"#);
//! ```

mod ast;
mod eval;
mod label_selector;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use ast::Node;
pub use eval::LabelSource;

/// The longest selector text accepted, in bytes. Real selectors are far shorter; the cap
/// bounds the work and memory a hostile document can demand.
pub const MAX_SELECTOR_BYTES: usize = 64 * 1024;

/// The deepest nesting of parentheses accepted. Parsing and matching recurse once per
/// level, so the cap keeps a crafted selector from overflowing the stack.
pub const MAX_NESTING_DEPTH: usize = 128;

/// A parsed Calico selector.
///
/// Two selectors are equal (and hash alike) when their canonical texts are equal: the
/// text [`Display`](fmt::Display) prints, with normalized spacing and quotes, minimal
/// parentheses, `&&`/`||` chains flattened, `!!` cancelled and set values sorted without
/// duplicates. Parsing the canonical text gives back an equal selector. Serde reads and
/// writes a selector as its text.
#[derive(Clone)]
pub struct Selector {
    root: Node,
    canonical: String,
}

impl Selector {
    /// Parses selector text.
    ///
    /// Empty text, or only spaces and tabs, is `all()`: Calico treats a policy's missing
    /// or empty `selector` as selecting everything. (Resource validation still rejects a
    /// field that is present but empty, asking for `all()` or no field at all.)
    ///
    /// Fails on anything Calico would reject and on label keys that are not valid
    /// Kubernetes label keys, on text longer than [`MAX_SELECTOR_BYTES`], and on
    /// parentheses nested deeper than [`MAX_NESTING_DEPTH`].
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.len() > MAX_SELECTOR_BYTES {
            let mut limit = MAX_SELECTOR_BYTES;
            while !text.is_char_boundary(limit) {
                limit -= 1;
            }
            return Err(SelectorError::at(
                text,
                limit,
                format!(
                    "the selector is {} bytes long: at most {MAX_SELECTOR_BYTES} bytes are \
                     allowed",
                    text.len()
                ),
            ));
        }
        let tokens = lexer::tokenize(text)?;
        let root = if tokens.first().is_none_or(|t| t.tok == lexer::Tok::Eof) {
            Node::All
        } else {
            parser::Parser::new(text, tokens).parse()?
        };
        Ok(Selector::from_node(root))
    }

    /// The selector `all()`, which matches everything.
    pub fn all() -> Selector {
        Selector::from_node(Node::All)
    }

    fn from_node(root: Node) -> Selector {
        let canonical = root.to_string();
        Selector { root, canonical }
    }

    /// Whether the labels match. Use it with a label map (`BTreeMap` or `HashMap` of
    /// `String` to `String`) or anything else implementing [`LabelSource`].
    pub fn matches<L: LabelSource + ?Sized>(&self, labels: &L) -> bool {
        struct Dyn<'a, L: ?Sized>(&'a L);
        impl<L: LabelSource + ?Sized> LabelSource for Dyn<'_, L> {
            fn label(&self, key: &str) -> Option<&str> {
                self.0.label(key)
            }
        }
        // One non-generic evaluator, whatever the label source: a thin wrapper makes an
        // unsized source usable as `&dyn`.
        eval::matches(&self.root, &Dyn(labels))
    }

    /// Whether the selector is exactly `all()` (as written, or empty text). Selectors
    /// that happen to match everything, such as `has(a) || !has(a)`, are not.
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }

    /// Whether `global()` appears anywhere in the selector. Calico allows it only in a
    /// rule's `namespaceSelector`, and only on its own.
    pub fn uses_global(&self) -> bool {
        let mut found = false;
        self.root.walk(&mut |node| found |= *node == Node::Global);
        found
    }

    /// Whether the selector is exactly `global()`.
    pub fn is_global(&self) -> bool {
        self.root == Node::Global
    }

    /// Every label key the selector reads. A change to any other label cannot change
    /// whether the selector matches, so incremental computations need only watch these.
    pub fn label_keys(&self) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        self.root.walk(&mut |node| match node {
            Node::Has(key) | Node::Compare { key, .. } | Node::InSet { key, .. } => {
                keys.insert(key.clone());
            }
            _ => {}
        });
        keys
    }

    /// The canonical text (the same as [`Display`](fmt::Display)).
    pub fn as_str(&self) -> &str {
        &self.canonical
    }
}

impl Default for Selector {
    /// `all()`, as Calico defaults an unset selector.
    fn default() -> Self {
        Selector::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Selector").field(&self.canonical).finish()
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl PartialOrd for Selector {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Selector {
    /// Orders by canonical text, so selectors can key ordered maps.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.canonical.cmp(&other.canonical)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Selector::parse(text)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why selector text did not parse, and where.
///
/// [`Display`](fmt::Display) shows the message, then the text with a caret under the
/// offending character (a window of the text when it is long):
///
/// ```text
/// invalid selector at character 8: expected a quoted value after '==': values must be quoted, as in app == "web"
///   app == web
///          ^
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    /// Where the problem is: a 0-based offset in characters (not bytes) into `text`;
    /// `text`'s length when the text ended too early. Display shows it 1-based.
    pub position: usize,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
    /// The selector text that failed.
    pub text: String,
}

/// Characters of context shown either side of the caret.
const SNIPPET_CONTEXT: usize = 40;

impl SelectorError {
    /// An error at byte offset `byte` of `text`.
    pub(crate) fn at(text: &str, byte: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            position: char_offset(text, byte),
            message: message.into(),
            text: text.to_string(),
        }
    }
}

/// The character offset of byte offset `byte` in `text` (clamped to the text).
pub(crate) fn char_offset(text: &str, byte: usize) -> usize {
    let mut end = byte.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().count()
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid selector at character {}: {}",
            self.position + 1,
            self.message
        )?;
        let first = self.position.saturating_sub(SNIPPET_CONTEXT);
        let shown: String = self
            .text
            .chars()
            .skip(first)
            .take(self.position - first + SNIPPET_CONTEXT)
            // One column per character, so the caret lines up.
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let lead = if first > 0 { "..." } else { "" };
        let tail = if first + shown.chars().count() < self.text.chars().count() {
            "..."
        } else {
            ""
        };
        let caret_column = lead.len() + self.position - first;
        write!(f, "\n  {lead}{shown}{tail}\n  {:caret_column$}^", "")
    }
}

impl std::error::Error for SelectorError {}
