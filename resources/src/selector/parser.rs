//! Recursive-descent parser for Calico selectors.
//!
//! ```text
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!"* primary
//! primary := "(" or ")" | "all(" ")" | "global(" ")" | "has(" key ")"
//!          | key ( "==" | "!=" | "contains" | "starts" "with" | "ends" "with" ) value
//!          | key ( "in" | "not" "in" ) "{" [ value ( "," value )* ] "}"
//! ```
//!
//! Recursion only happens at `(`, and the depth of parentheses is capped at
//! [`MAX_NESTING_DEPTH`], so hostile input cannot overflow the stack here or in the
//! functions that walk the tree afterwards.

use std::collections::BTreeSet;

use super::ast::{CompareOp, Node};
use super::lexer::{Tok, Token};
use super::{SelectorError, MAX_NESTING_DEPTH};
use crate::validate;

/// The operators that may follow a label key, for error messages.
const OPERATORS: &str = "==, !=, in, not in, contains, starts with or ends with";

pub(super) struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str, tokens: Vec<Token<'a>>) -> Self {
        Parser {
            text,
            tokens,
            next: 0,
            depth: 0,
        }
    }

    /// Parses the whole token list as one expression.
    pub(super) fn parse(mut self) -> Result<Node, SelectorError> {
        let node = self.or()?;
        let token = self.peek();
        if token.tok != Tok::Eof {
            let hint = match token.tok {
                Tok::RParen => "this ')' has no matching '('",
                _ => "join expressions with && or ||",
            };
            return Err(self.error(
                token.start,
                format!(
                    "unexpected {} after a complete expression: {hint}",
                    token.tok.describe()
                ),
            ));
        }
        Ok(node)
    }

    fn peek(&self) -> Token<'a> {
        // The lexer always ends the list with Eof, and nothing consumes past it.
        self.tokens.get(self.next).copied().unwrap_or(Token {
            tok: Tok::Eof,
            start: self.text.len(),
        })
    }

    fn bump(&mut self) -> Token<'a> {
        let token = self.peek();
        if token.tok != Tok::Eof {
            self.next += 1;
        }
        token
    }

    fn error(&self, byte: usize, message: impl Into<String>) -> SelectorError {
        SelectorError::at(self.text, byte, message)
    }

    fn or(&mut self) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.and()?];
        while self.peek().tok == Tok::Or {
            self.bump();
            nodes.push(self.and()?);
        }
        Ok(Node::or(nodes))
    }

    fn and(&mut self) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.unary()?];
        while self.peek().tok == Tok::And {
            self.bump();
            nodes.push(self.unary()?);
        }
        Ok(Node::and(nodes))
    }

    fn unary(&mut self) -> Result<Node, SelectorError> {
        // A loop, not recursion: any number of `!` costs no stack.
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let node = self.primary()?;
        Ok(if negated { Node::not(node) } else { node })
    }

    /// Where an operand was expected, for "expected an expression" errors: after the
    /// token before index `at`, or at the start.
    fn context(&self, at: usize) -> String {
        match at.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(previous) => format!("after {}", previous.tok.describe()),
            None => "at the start".into(),
        }
    }

    fn primary(&mut self) -> Result<Node, SelectorError> {
        let at = self.next;
        let token = self.bump();
        match token.tok {
            Tok::LParen => {
                if self.depth >= MAX_NESTING_DEPTH {
                    return Err(self.error(
                        token.start,
                        format!(
                            "parentheses are nested more than {MAX_NESTING_DEPTH} deep: \
                             simplify the selector"
                        ),
                    ));
                }
                self.depth += 1;
                let node = self.or()?;
                self.depth -= 1;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    let open = self.char_position(token.start) + 1;
                    return Err(self.error(
                        close.start,
                        format!(
                            "expected ')' to close the '(' at character {open}, found {}",
                            close.tok.describe()
                        ),
                    ));
                }
                Ok(node)
            }
            Tok::All => self.close_function("all", Node::All),
            Tok::Global => self.close_function("global", Node::Global),
            Tok::Has => {
                let key_token = self.bump();
                let Tok::Word(key) = key_token.tok else {
                    return Err(self.error(
                        key_token.start,
                        format!(
                            "expected a label key inside has(), found {}",
                            key_token.tok.describe()
                        ),
                    ));
                };
                self.check_key(key, key_token.start)?;
                self.close_function("has", Node::Has(key.to_string()))
            }
            Tok::Word(key) => self.operation(key, token.start),
            Tok::Eof => Err(self.error(
                token.start,
                format!("expected an expression {}", self.context(at)),
            )),
            other => Err(self.error(
                token.start,
                format!(
                    "expected an expression {}, found {}: start with a label key, has(), \
                     all(), '!' or '('",
                    self.context(at),
                    other.describe()
                ),
            )),
        }
    }

    fn close_function(&mut self, name: &str, node: Node) -> Result<Node, SelectorError> {
        let token = self.bump();
        if token.tok == Tok::RParen {
            Ok(node)
        } else {
            Err(self.error(
                token.start,
                format!(
                    "expected ')' to close {name}(, found {}",
                    token.tok.describe()
                ),
            ))
        }
    }

    /// The rest of `key <op> value` or `key [not] in {...}`.
    fn operation(&mut self, key: &'a str, key_start: usize) -> Result<Node, SelectorError> {
        self.check_key(key, key_start)?;
        let token = self.bump();
        let op = match token.tok {
            Tok::Eq => CompareOp::Eq,
            Tok::Ne => CompareOp::Ne,
            Tok::Word("contains") => CompareOp::Contains,
            Tok::Word(first @ ("starts" | "ends")) => {
                let with = self.bump();
                if with.tok != Tok::Word("with") {
                    return Err(self.error(with.start, format!("expected 'with' after '{first}'")));
                }
                if first == "starts" {
                    CompareOp::StartsWith
                } else {
                    CompareOp::EndsWith
                }
            }
            Tok::Word("in") => return self.set(key, false, "in"),
            Tok::Word("not") => {
                let word = self.bump();
                if word.tok != Tok::Word("in") {
                    return Err(self.error(word.start, "expected 'in' after 'not'"));
                }
                return self.set(key, true, "not in");
            }
            other => {
                let hint = if matches!(key, "has" | "all" | "global") && other == Tok::LParen {
                    format!(" (write {key}( with no space before the parenthesis)")
                } else {
                    String::new()
                };
                return Err(self.error(
                    token.start,
                    format!(
                        "expected an operator after the label key '{key}' ({OPERATORS}), \
                         found {}{hint}",
                        other.describe()
                    ),
                ));
            }
        };
        let value = self.bump();
        let Tok::Str(value) = value.tok else {
            let found = match value.tok {
                Tok::Word(word) => format!(
                    ": values must be quoted, as in {key} {} \"{word}\"",
                    op.as_str()
                ),
                other => format!(", found {}", other.describe()),
            };
            return Err(self.error(
                value.start,
                format!("expected a quoted value after '{}'{found}", op.as_str()),
            ));
        };
        Ok(Node::Compare {
            key: key.to_string(),
            op,
            value: value.to_string(),
        })
    }

    /// The `{...}` of `in` / `not in`. An empty set is allowed, as in Calico: `k in {}`
    /// matches nothing and `k not in {}` everything.
    fn set(&mut self, key: &str, negated: bool, op: &str) -> Result<Node, SelectorError> {
        let open = self.bump();
        if open.tok != Tok::LBrace {
            return Err(self.error(
                open.start,
                format!(
                    "expected '{{' after '{op}', found {}: write {key} {op} {{\"a\", \"b\"}}",
                    open.tok.describe()
                ),
            ));
        }
        let mut values = BTreeSet::new();
        loop {
            let token = self.bump();
            match token.tok {
                // After `{` or a comma: Calico accepts `{}` and a trailing comma.
                Tok::RBrace => break,
                Tok::Str(value) => {
                    values.insert(value.to_string());
                    let separator = self.bump();
                    match separator.tok {
                        Tok::Comma => continue,
                        Tok::RBrace => break,
                        other => {
                            return Err(self.error(
                                separator.start,
                                format!(
                                    "expected ',' or '}}' in the set of values, found {}",
                                    other.describe()
                                ),
                            ))
                        }
                    }
                }
                Tok::Word(word) => {
                    return Err(self.error(
                        token.start,
                        format!("values must be quoted: write \"{word}\""),
                    ))
                }
                other => {
                    return Err(self.error(
                        token.start,
                        format!(
                            "expected a quoted value in the set of values, found {}",
                            other.describe()
                        ),
                    ))
                }
            }
        }
        Ok(Node::InSet {
            key: key.to_string(),
            values,
            negated,
        })
    }

    /// Holds a key to the Kubernetes label-key rules, which Calico's own labels follow.
    fn check_key(&self, key: &str, start: usize) -> Result<(), SelectorError> {
        validate::qualified_name(key)
            .map_err(|reason| self.error(start, format!("invalid label key: {reason}")))
    }

    fn char_position(&self, byte: usize) -> usize {
        super::char_offset(self.text, byte)
    }
}
