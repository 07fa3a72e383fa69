//! Logs go to the configured file (appended) or stderr — never stdout, which carries the
//! result.

use std::{fs::OpenOptions, sync::Mutex};

use tracing::Level;
use tracing_subscriber::{fmt::writer::BoxMakeWriter, EnvFilter};

use crate::config::LogConfig;

fn install(level: Level, writer: BoxMakeWriter) {
    // The configured level applies to tortie's crates; libraries (gRPC, HTTP/2) only say
    // when something is wrong, or their frame-by-frame debug output drowns ours.
    let level = level.as_str().to_ascii_lowercase();
    let filter = EnvFilter::new(format!(
        "warn,tortie_cni={level},tortie_ipam={level},tortie_datastore={level}"
    ));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
}

/// Logs warnings and errors to stderr (before the configuration is known).
pub fn init_stderr() {
    install(Level::WARN, BoxMakeWriter::new(std::io::stderr));
}

/// Logs as configured; falls back to stderr when the file cannot be opened.
pub fn init(config: &LogConfig) {
    let Some(path) = &config.file else {
        install(config.level, BoxMakeWriter::new(std::io::stderr));
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => install(config.level, BoxMakeWriter::new(Mutex::new(file))),
        Err(error) => {
            install(config.level, BoxMakeWriter::new(std::io::stderr));
            tracing::warn!(path = %path.display(), %error, "cannot open the log file; logging to stderr");
        }
    }
}
