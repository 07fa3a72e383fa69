//! The parsed form of a selector and its canonical text.
//!
//! Trees are kept in one normal form so that equal meaning written in different ways
//! prints the same: `!` never wraps another `!` (Calico collapses `!!`), `&&` and `||`
//! are n-ary and never hold a child of their own kind (`(a && b) && c` is `a && b && c`),
//! and set values are sorted without duplicates (Calico stores sets that way). The
//! constructors [`Node::not`], [`Node::and`] and [`Node::or`] keep that form.

use std::collections::BTreeSet;
use std::fmt;

/// A comparison of one label's value with a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CompareOp {
    /// `==`: the label is present with exactly this value.
    Eq,
    /// `!=`: the label is absent or has another value.
    Ne,
    /// `contains`: the label is present and its value contains the string.
    Contains,
    /// `starts with`: the label is present and its value starts with the string.
    StartsWith,
    /// `ends with`: the label is present and its value ends with the string.
    EndsWith,
}

impl CompareOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Contains => "contains",
            CompareOp::StartsWith => "starts with",
            CompareOp::EndsWith => "ends with",
        }
    }
}

/// One node of a selector's syntax tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    /// `all()`.
    All,
    /// `global()`.
    Global,
    /// `has(key)`.
    Has(String),
    /// `key <op> "value"`.
    Compare {
        key: String,
        op: CompareOp,
        value: String,
    },
    /// `key in {...}`, or `key not in {...}` when `negated`.
    InSet {
        key: String,
        values: BTreeSet<String>,
        negated: bool,
    },
    /// `!expr`; never directly holds another `Not`.
    Not(Box<Node>),
    /// `a && b && ...`, two or more children, none an `And`.
    And(Vec<Node>),
    /// `a || b || ...`, two or more children, none an `Or`.
    Or(Vec<Node>),
}

impl Node {
    /// `!node`, with a double negation cancelled.
    pub(crate) fn not(node: Node) -> Node {
        match node {
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }

    /// The conjunction of `nodes`, flattened; a single node is returned as is.
    pub(crate) fn and(nodes: Vec<Node>) -> Node {
        Self::join(nodes, |n| matches!(n, Node::And(_)), Node::And)
    }

    /// The disjunction of `nodes`, flattened; a single node is returned as is.
    pub(crate) fn or(nodes: Vec<Node>) -> Node {
        Self::join(nodes, |n| matches!(n, Node::Or(_)), Node::Or)
    }

    fn join(nodes: Vec<Node>, same: fn(&Node) -> bool, make: fn(Vec<Node>) -> Node) -> Node {
        let mut flat = Vec::with_capacity(nodes.len());
        for node in nodes {
            if same(&node) {
                if let Node::And(children) | Node::Or(children) = node {
                    flat.extend(children);
                }
            } else {
                flat.push(node);
            }
        }
        if flat.len() == 1 {
            flat.pop().unwrap_or(Node::All)
        } else {
            make(flat)
        }
    }

    /// Calls `f` on this node and every node below it.
    pub(crate) fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Node)) {
        f(self);
        match self {
            Node::Not(inner) => inner.walk(f),
            Node::And(children) | Node::Or(children) => {
                for child in children {
                    child.walk(f);
                }
            }
            _ => {}
        }
    }
}

/// Writes `value` quoted: with `"` unless the value holds one, then with `'` (as Calico
/// prints). A value can never hold both, because the language has no escapes.
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    write!(f, "{quote}{value}{quote}")
}

/// Writes `node`, in parentheses when `parenthesize` says its operator binds more loosely
/// than where it stands.
fn write_child(f: &mut fmt::Formatter<'_>, node: &Node, parenthesize: bool) -> fmt::Result {
    if parenthesize {
        write!(f, "({node})")
    } else {
        write!(f, "{node}")
    }
}

/// The canonical text: the fewest parentheses that keep the meaning (`!` binds tighter
/// than `&&`, which binds tighter than `||`), single spaces around binary operators,
/// values in double quotes.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::All => f.write_str("all()"),
            Node::Global => f.write_str("global()"),
            Node::Has(key) => write!(f, "has({key})"),
            Node::Compare { key, op, value } => {
                write!(f, "{key} {} ", op.as_str())?;
                write_quoted(f, value)
            }
            Node::InSet {
                key,
                values,
                negated,
            } => {
                let op = if *negated { "not in" } else { "in" };
                write!(f, "{key} {op} {{")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, value)?;
                }
                f.write_str("}")
            }
            Node::Not(inner) => {
                f.write_str("!")?;
                write_child(f, inner, matches!(**inner, Node::And(_) | Node::Or(_)))
            }
            Node::And(children) => {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    write_child(f, child, matches!(child, Node::Or(_)))?;
                }
                Ok(())
            }
            Node::Or(children) => {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" || ")?;
                    }
                    write_child(f, child, false)?;
                }
                Ok(())
            }
        }
    }
}
