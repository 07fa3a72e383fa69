//! Putting a rendered configuration in place: validated by BIRD before it replaces the old
//! file, swapped in atomically, then loaded by the running BIRD.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::birdc::{BirdClient, BirdcError};

/// Where BIRD's configuration lives and how to reach BIRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdConfig {
    /// The configuration file BIRD runs with (its `-c`).
    pub config_path: PathBuf,
    /// BIRD's control socket (its `-s`).
    pub socket_path: PathBuf,
    /// The BIRD binary, used to validate a configuration (`bird -p -c <file>`); found on
    /// `PATH` when it is a bare name.
    pub bird_binary: PathBuf,
}

/// What [`BirdConfig::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The file already had this text: nothing was written and BIRD was not asked to
    /// reload.
    Unchanged,
    /// The new text was written.
    Written {
        /// Whether the running BIRD loaded it; `false` when BIRD is not running (it reads
        /// the file when it starts).
        reloaded: bool,
    },
}

/// Why a configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the old file, or writing the new one, failed.
    #[error("{doing} {}: {source}", path.display())]
    File {
        /// What was being done.
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The BIRD binary could not be run to validate the configuration.
    #[error(
        "cannot run {} to validate the BIRD configuration: {source}: install BIRD 2 or set \
         the path of the bird binary",
        binary.display()
    )]
    Validator {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// BIRD rejected the new configuration; the old one is left in place.
    #[error(
        "the new BIRD configuration for {} is invalid, so it was not installed (the old one \
         stays in force): {message}",
        config.display()
    )]
    Invalid {
        /// The configuration file that was to be replaced.
        config: PathBuf,
        /// What `bird -p` said.
        message: String,
    },
    /// The running BIRD did not load the new file.
    #[error(
        "BIRD did not load {} (the file is in place and BIRD keeps its previous \
         configuration): {source}",
        config.display()
    )]
    Reload {
        /// The configuration file.
        config: PathBuf,
        /// BIRD's answer.
        source: BirdcError,
    },
}

impl BirdConfig {
    /// Configuration at `config_path`, BIRD reached on `socket_path`, `bird` from `PATH`.
    pub fn new(config_path: impl Into<PathBuf>, socket_path: impl Into<PathBuf>) -> Self {
        BirdConfig {
            config_path: config_path.into(),
            socket_path: socket_path.into(),
            bird_binary: PathBuf::from("bird"),
        }
    }

    /// Installs `text` as BIRD's configuration, if it differs from the file's.
    ///
    /// The text goes to a temporary file next to the configuration, is checked with
    /// `bird -p`, then renamed over the old file (so BIRD, and a crash, only ever see a
    /// whole file). A running BIRD is then asked to load it; if BIRD is not running that is
    /// fine, it reads the file when it starts.
    pub fn apply(&self, text: &str) -> Result<ApplyOutcome, ApplyError> {
        let config = &self.config_path;
        match std::fs::read(config) {
            Ok(old) if old == text.as_bytes() => return Ok(ApplyOutcome::Unchanged),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ApplyError::File {
                    doing: "cannot read the current BIRD configuration",
                    path: config.clone(),
                    source,
                })
            }
        }

        let dir = match config.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // Same directory, so the rename is atomic; tempfile creates it readable by the
        // owner only, which suits a file holding session passwords. Dropping it on any
        // error below removes it.
        let mut temp = tempfile::Builder::new()
            .prefix(".bird-config-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|source| ApplyError::File {
                doing: "cannot create a temporary file in",
                path: dir.to_path_buf(),
                source,
            })?;
        temp.write_all(text.as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|source| ApplyError::File {
                doing: "cannot write",
                path: temp.path().to_path_buf(),
                source,
            })?;

        self.validate(temp.path())?;

        temp.persist(config).map_err(|e| ApplyError::File {
            doing: "cannot replace",
            path: config.clone(),
            source: e.error,
        })?;
        tracing::info!(config = %config.display(), "wrote BIRD configuration");

        let reloaded = self.reload()?;
        Ok(ApplyOutcome::Written { reloaded })
    }

    /// Runs `bird -p -c <file>`, which parses the file and exits.
    fn validate(&self, file: &Path) -> Result<(), ApplyError> {
        let output = Command::new(&self.bird_binary)
            .arg("-p")
            .arg("-c")
            .arg(file)
            .output()
            .map_err(|source| ApplyError::Validator {
                binary: self.bird_binary.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let mut message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if message.is_empty() {
            message = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        if message.is_empty() {
            message = format!("bird -p exited with {}", output.status);
        }
        // BIRD names the temporary file; name the file the user knows instead.
        let message = message.replace(
            &*file.to_string_lossy(),
            &format!("{} (new version)", self.config_path.display()),
        );
        Err(ApplyError::Invalid {
            config: self.config_path.clone(),
            message,
        })
    }

    /// Asks the running BIRD to load the configuration file. `Ok(false)` when BIRD is not
    /// running.
    fn reload(&self) -> Result<bool, ApplyError> {
        let reload_error = |source| ApplyError::Reload {
            config: self.config_path.clone(),
            source,
        };
        let mut client = match BirdClient::connect(&self.socket_path) {
            Ok(client) => client,
            Err(e) if e.is_not_running() => {
                tracing::info!(
                    socket = %self.socket_path.display(),
                    "BIRD is not running; it reads the configuration when it starts"
                );
                return Ok(false);
            }
            Err(e) => return Err(reload_error(e)),
        };
        // Name the file: BIRD then loads this one even if it was started with another.
        let reply = client
            .configure_file(&self.config_path)
            .map_err(reload_error)?;
        tracing::info!(
            config = %self.config_path.display(),
            reply = %reply.last().map(|l| l.text.as_str()).unwrap_or(""),
            "BIRD reloaded its configuration"
        );
        Ok(true)
    }
}
