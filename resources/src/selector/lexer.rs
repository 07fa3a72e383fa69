//! Splits selector text into tokens, as Calico's tokenizer does.
//!
//! The lexer knows no grammar: operator words (`in`, `not`, `contains`, `starts`,
//! `ends`, `with`) come out as [`Tok::Word`]s and the parser decides what they mean by
//! where they stand, because Calico allows a label key to be spelled like an operator
//! (`in in {'a'}` is a valid selector on the label `in`).

use super::SelectorError;

/// One token of selector text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// A run of label-key characters (`A-Za-z0-9_./-`): a key or an operator word.
    Word(&'a str),
    /// A quoted value, without its quotes.
    Str(&'a str),
    /// `has(`; Calico only knows the function when `(` follows the name directly.
    Has,
    /// `all(`.
    All,
    /// `global(`.
    Global,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `{`.
    LBrace,
    /// `}`.
    RBrace,
    /// `,`.
    Comma,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `!`.
    Not,
    /// `&&`.
    And,
    /// `||`.
    Or,
    /// The end of the text.
    Eof,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Word(word) => format!("'{word}'"),
            Tok::Str(value) => format!("the quoted value {value:?}"),
            Tok::Has => "'has('".into(),
            Tok::All => "'all('".into(),
            Tok::Global => "'global('".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Not => "'!'".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Eof => "the end of the selector".into(),
        }
    }
}

/// A token and the byte offset where it starts in the selector text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub(super) tok: Tok<'a>,
    pub(super) start: usize,
}

/// Whether `c` may appear in a label key (Calico's tokenizer class; the parser then holds
/// keys to the stricter Kubernetes rules).
pub(super) fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// Tokenizes `text`. The last token is always [`Tok::Eof`].
///
/// Only spaces and tabs separate tokens: Calico's tokenizer skips nothing else, so a
/// line break inside a selector is an error here too rather than something that would
/// pass `tortiectl validate` and then fail in Calico.
pub(super) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, SelectorError> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    while let Some(c) = text[pos..].chars().next() {
        let start = pos;
        let rest = &text[pos..];
        let mut single = |tok: Tok<'static>| {
            tokens.push(Token { tok, start });
            start + 1
        };
        pos = match c {
            ' ' | '\t' => start + 1,
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            '{' => single(Tok::LBrace),
            '}' => single(Tok::RBrace),
            ',' => single(Tok::Comma),
            '"' | '\'' => {
                let Some(len) = rest[1..].find(c) else {
                    return Err(SelectorError::at(
                        text,
                        start,
                        format!(
                            "unterminated string: the {c} opened here is never closed \
                             (values cannot contain their own quote character; quote a value \
                             holding {c} with the other kind of quote)"
                        ),
                    ));
                };
                tokens.push(Token {
                    tok: Tok::Str(&rest[1..1 + len]),
                    start,
                });
                start + len + 2
            }
            '=' if rest.starts_with("==") => double(&mut tokens, Tok::Eq, start),
            '=' => {
                return Err(SelectorError::at(
                    text,
                    start,
                    "unknown operator '=': compare with '==' (or '!=')",
                ))
            }
            '!' if rest.starts_with("!=") => double(&mut tokens, Tok::Ne, start),
            '!' => single(Tok::Not),
            '&' if rest.starts_with("&&") => double(&mut tokens, Tok::And, start),
            '|' if rest.starts_with("||") => double(&mut tokens, Tok::Or, start),
            '&' | '|' => {
                return Err(SelectorError::at(
                    text,
                    start,
                    format!("unknown operator '{c}': write '{c}{c}'"),
                ))
            }
            '\n' | '\r' => {
                return Err(SelectorError::at(
                    text,
                    start,
                    "unexpected line break: a selector is one line, with spaces or tabs \
                     between its parts (in YAML, fold long selectors with '>-' or quote them)",
                ))
            }
            c if is_key_char(c) => {
                let len = rest.find(|c| !is_key_char(c)).unwrap_or(rest.len());
                let word = &rest[..len];
                // Calico recognises the functions only with `(` right after the name, so
                // `has (app)` is the key `has` followed by a parenthesis, as there.
                let function = match word {
                    "has" => Some(Tok::Has),
                    "all" => Some(Tok::All),
                    "global" => Some(Tok::Global),
                    _ => None,
                };
                match function {
                    Some(tok) if rest[len..].starts_with('(') => {
                        tokens.push(Token { tok, start });
                        start + len + 1
                    }
                    _ => {
                        tokens.push(Token {
                            tok: Tok::Word(word),
                            start,
                        });
                        start + len
                    }
                }
            }
            c => {
                return Err(SelectorError::at(
                    text,
                    start,
                    format!(
                        "unexpected character {c:?}: label keys use letters, digits, '-', '_', \
                         '.' and '/', and values must be quoted"
                    ),
                ))
            }
        };
    }
    tokens.push(Token {
        tok: Tok::Eof,
        start: text.len(),
    });
    Ok(tokens)
}

fn double<'a>(tokens: &mut Vec<Token<'a>>, tok: Tok<'a>, start: usize) -> usize {
    tokens.push(Token { tok, start });
    start + 2
}
