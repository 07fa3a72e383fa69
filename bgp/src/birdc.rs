//! A client for BIRD's control socket, the protocol `birdc` speaks.
//!
//! BIRD greets with `0001 BIRD <version> ready.`, then answers each command line with
//! reply lines: `DDDD-text` (more lines follow), ` text` (continues the previous line's
//! code) and `DDDD text`, which ends the reply. Codes 0xxx report success, 1xxx and 2xxx
//! carry data and table headers, 8xxx and 9xxx are errors; lines starting with `+` are
//! asynchronous messages, not part of any reply.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a call waits for BIRD before giving up, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first reply code that reports an error (8xxx: runtime errors, 9xxx: parse errors).
pub const FIRST_ERROR_CODE: u16 = 8000;

/// One line of a BIRD reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyLine {
    /// The reply code (continuation lines carry the code of the line they continue).
    pub code: u16,
    /// The text after the code and separator (after the leading space for continuations).
    pub text: String,
}

/// What one raw line of the protocol is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawLine {
    /// `DDDD-text` (`last: false`) or `DDDD text` (`last: true`, the reply ends).
    Coded {
        /// The reply code.
        code: u16,
        /// Whether this line ends the reply.
        last: bool,
        /// The text after the separator.
        text: String,
    },
    /// ` text`: continues the previous code.
    Continuation(String),
    /// `+text`: an asynchronous message.
    Async(String),
}

/// Parses one line of BIRD's protocol (without its line break).
pub fn parse_line(line: &str) -> Option<RawLine> {
    if let Some(rest) = line.strip_prefix(' ') {
        return Some(RawLine::Continuation(rest.to_string()));
    }
    if let Some(rest) = line.strip_prefix('+') {
        return Some(RawLine::Async(rest.to_string()));
    }
    let bytes = line.as_bytes();
    if bytes.len() < 4 || !bytes[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line[..4].parse().ok()?;
    let (last, text) = match bytes.get(4) {
        Some(b'-') => (false, &line[5..]),
        Some(b' ') => (true, &line[5..]),
        // BIRD ends some replies with a bare code (`0000`).
        None => (true, ""),
        Some(_) => return None,
    };
    Some(RawLine::Coded {
        code,
        last,
        text: text.to_string(),
    })
}

/// Why talking to BIRD failed.
#[derive(Debug, thiserror::Error)]
pub enum BirdcError {
    /// The socket could not be opened.
    #[error(
        "cannot connect to BIRD's control socket {}: {source}: is BIRD running? its control \
         socket is set with -s",
        socket.display()
    )]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading or writing failed, or BIRD did not answer in time.
    #[error(
        "talking to BIRD on {} failed while {doing}: {source}: check that BIRD is running \
         and not stuck",
        socket.display()
    )]
    Io {
        /// The socket path.
        socket: PathBuf,
        /// What the client was doing.
        doing: String,
        /// Why.
        source: io::Error,
    },
    /// BIRD sent something that is not its protocol.
    #[error(
        "BIRD on {} sent an unexpected line {line:?} while {doing}: is that socket BIRD's \
         control socket?",
        socket.display()
    )]
    Protocol {
        /// The socket path.
        socket: PathBuf,
        /// What the client was doing.
        doing: String,
        /// The line.
        line: String,
    },
    /// BIRD answered the command with an error.
    #[error("BIRD on {} refused `{command}`: {code} {message}", socket.display())]
    Command {
        /// The socket path.
        socket: PathBuf,
        /// The command sent.
        command: String,
        /// The error code (8000 and up).
        code: u16,
        /// BIRD's message, lines joined.
        message: String,
    },
}

impl BirdcError {
    /// Whether the error means BIRD is not running: no socket, or nobody listening on it.
    pub fn is_not_running(&self) -> bool {
        matches!(
            self,
            BirdcError::Connect { source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                )
        )
    }
}

/// A connection to BIRD's control socket. Every call is bounded by the timeout, so a hung
/// BIRD cannot hang the caller.
#[derive(Debug)]
pub struct BirdClient {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// BIRD's greeting, e.g. `BIRD 2.0.12 ready.`.
    greeting: String,
}

impl BirdClient {
    /// Connects to BIRD's control socket and reads its greeting, with [`DEFAULT_TIMEOUT`].
    pub fn connect(socket: impl AsRef<Path>) -> Result<BirdClient, BirdcError> {
        BirdClient::connect_with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// Connects with a timeout for every read and write.
    pub fn connect_with_timeout(
        socket: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<BirdClient, BirdcError> {
        let socket = socket.as_ref().to_path_buf();
        let connect_error = |source| BirdcError::Connect {
            socket: socket.clone(),
            source,
        };
        let stream = UnixStream::connect(&socket).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(connect_error)?;
        let writer = stream.try_clone().map_err(connect_error)?;
        let mut client = BirdClient {
            socket,
            reader: BufReader::new(stream),
            writer,
            greeting: String::new(),
        };
        let doing = "reading BIRD's greeting";
        let greeting = client.read_reply(doing)?;
        match greeting.as_slice() {
            [ReplyLine { code: 1, text }] => client.greeting = text.clone(),
            _ => {
                return Err(client.protocol_error(
                    doing,
                    greeting
                        .iter()
                        .map(|l| format!("{:04} {}", l.code, l.text))
                        .collect::<Vec<_>>()
                        .join(" / "),
                ))
            }
        }
        Ok(client)
    }

    /// BIRD's greeting, e.g. `BIRD 2.0.12 ready.`.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one command (e.g. `show protocols all`) and returns the reply's lines, the
    /// closing line included. An error reply (code 8000 or more) is an error.
    pub fn command(&mut self, command: &str) -> Result<Vec<ReplyLine>, BirdcError> {
        if command.contains(['\n', '\r']) {
            return Err(BirdcError::Io {
                socket: self.socket.clone(),
                doing: format!("sending {command:?}"),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a command is one line: remove the line break",
                ),
            });
        }
        let doing = format!("sending `{command}`");
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|source| BirdcError::Io {
                socket: self.socket.clone(),
                doing: doing.clone(),
                source,
            })?;
        let lines = self.read_reply(&format!("reading the reply to `{command}`"))?;
        match lines.last() {
            Some(last) if last.code >= FIRST_ERROR_CODE => {
                let message = lines
                    .iter()
                    .filter(|l| l.code >= FIRST_ERROR_CODE)
                    .map(|l| l.text.trim())
                    .collect::<Vec<_>>()
                    .join(" ");
                Err(BirdcError::Command {
                    socket: self.socket.clone(),
                    command: command.to_string(),
                    code: last.code,
                    message,
                })
            }
            _ => Ok(lines),
        }
    }

    /// Asks BIRD to reread the configuration file it was started with (`configure`).
    /// Returns the reply; a configuration error is an error.
    pub fn configure(&mut self) -> Result<Vec<ReplyLine>, BirdcError> {
        self.command("configure")
    }

    /// Asks BIRD to read `config` and switch to it (`configure "<file>"`).
    pub fn configure_file(&mut self, config: &Path) -> Result<Vec<ReplyLine>, BirdcError> {
        let path = config.to_string_lossy();
        if path.contains(['"', '\n', '\r']) {
            return Err(BirdcError::Io {
                socket: self.socket.clone(),
                doing: format!("asking BIRD to read {}", config.display()),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path contains a quote or line break BIRD cannot take: rename it",
                ),
            });
        }
        self.command(&format!("configure \"{path}\""))
    }

    /// Reads lines until one ends the reply.
    fn read_reply(&mut self, doing: &str) -> Result<Vec<ReplyLine>, BirdcError> {
        let mut lines = Vec::new();
        let mut last_code = None;
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = self
                .reader
                .read_line(&mut buf)
                .map_err(|source| BirdcError::Io {
                    socket: self.socket.clone(),
                    doing: doing.to_string(),
                    source,
                })?;
            if n == 0 {
                return Err(BirdcError::Io {
                    socket: self.socket.clone(),
                    doing: doing.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "BIRD closed the connection",
                    ),
                });
            }
            let line = buf.trim_end_matches(['\n', '\r']);
            match parse_line(line) {
                Some(RawLine::Coded { code, last, text }) => {
                    last_code = Some(code);
                    lines.push(ReplyLine { code, text });
                    if last {
                        return Ok(lines);
                    }
                }
                Some(RawLine::Continuation(text)) => match last_code {
                    Some(code) => lines.push(ReplyLine { code, text }),
                    None => return Err(self.protocol_error(doing, line.to_string())),
                },
                Some(RawLine::Async(text)) => {
                    tracing::debug!(socket = %self.socket.display(), message = %text, "BIRD");
                }
                None => return Err(self.protocol_error(doing, line.to_string())),
            }
        }
    }

    fn protocol_error(&self, doing: &str, line: String) -> BirdcError {
        BirdcError::Protocol {
            socket: self.socket.clone(),
            doing: doing.to_string(),
            line,
        }
    }
}

/// Turns raw protocol text (as read from the socket, one reply) into reply lines, the way
/// [`BirdClient::command`] does. Useful for replies saved to files.
pub fn parse_reply(text: &str) -> Result<Vec<ReplyLine>, String> {
    let mut lines = Vec::new();
    let mut last_code = None;
    for (n, line) in text.lines().enumerate() {
        match parse_line(line) {
            Some(RawLine::Coded { code, text, .. }) => {
                last_code = Some(code);
                lines.push(ReplyLine { code, text });
            }
            Some(RawLine::Continuation(text)) => match last_code {
                Some(code) => lines.push(ReplyLine { code, text }),
                None => {
                    return Err(format!(
                        "line {}: a continuation with no code before it",
                        n + 1
                    ))
                }
            },
            Some(RawLine::Async(_)) => {}
            None => return Err(format!("line {}: not a BIRD reply line: {line:?}", n + 1)),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reply_lines() {
        assert_eq!(
            parse_line("1002-device1    Device"),
            Some(RawLine::Coded {
                code: 1002,
                last: false,
                text: "device1    Device".into()
            })
        );
        assert_eq!(
            parse_line("0003 Reconfigured"),
            Some(RawLine::Coded {
                code: 3,
                last: true,
                text: "Reconfigured".into()
            })
        );
        assert_eq!(
            parse_line("0000"),
            Some(RawLine::Coded {
                code: 0,
                last: true,
                text: String::new()
            })
        );
        assert_eq!(
            parse_line("    Neighbor AS: 64512"),
            Some(RawLine::Continuation("   Neighbor AS: 64512".into()))
        );
        assert_eq!(parse_line("+log"), Some(RawLine::Async("log".into())));
        assert_eq!(parse_line("hello"), None);
        assert_eq!(parse_line("12x4 a"), None);
        assert_eq!(parse_line("1234x"), None);
    }

    #[test]
    fn continuations_take_the_previous_code() {
        let lines = parse_reply("1006-  BGP state: Up\n    Neighbor AS: 1\n0000 \n").unwrap();
        assert_eq!(
            lines,
            vec![
                ReplyLine {
                    code: 1006,
                    text: "  BGP state: Up".into()
                },
                ReplyLine {
                    code: 1006,
                    text: "   Neighbor AS: 1".into()
                },
                ReplyLine {
                    code: 0,
                    text: String::new()
                },
            ]
        );
        assert!(parse_reply(" orphan\n").is_err());
    }

    /// A fake BIRD on a socket pair: greeting, one command, one reply.
    fn fake_bird(
        reply: &'static str,
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut command = String::new();
            reader.read_line(&mut command).unwrap();
            stream.write_all(reply.as_bytes()).unwrap();
            command
        });
        (dir, path, handle)
    }

    #[test]
    fn talks_to_a_fake_bird() {
        let (_dir, path, bird) =
            fake_bird("0002-Reading configuration from /etc/bird.conf\n0003 Reconfigured\n");
        let mut client = BirdClient::connect(&path).unwrap();
        assert_eq!(client.greeting(), "BIRD 2.0.12 ready.");
        let reply = client.configure().unwrap();
        assert_eq!(reply.last().unwrap().code, 3);
        assert_eq!(bird.join().unwrap(), "configure\n");
    }

    #[test]
    fn error_replies_are_errors() {
        let (_dir, path, _bird) = fake_bird("8002 /etc/bird.conf:3:1 syntax error\n");
        let mut client = BirdClient::connect(&path).unwrap();
        let err = client.configure().unwrap_err();
        assert!(
            matches!(&err, BirdcError::Command { code: 8002, message, .. }
                if message.contains("syntax error")),
            "{err}"
        );
    }

    #[test]
    fn a_silent_bird_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = BirdClient::connect_with_timeout(&path, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, BirdcError::Io { .. }), "{err}");
        assert!(!err.is_not_running());
    }

    #[test]
    fn a_missing_socket_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = BirdClient::connect(dir.path().join("absent.ctl")).unwrap_err();
        assert!(err.is_not_running());
        let text = err.to_string();
        assert!(
            text.contains("absent.ctl") && text.contains("is BIRD running?"),
            "{text}"
        );
    }
}
