//! etcd client errors mapped to [`DatastoreError`]s a caller can act on.

use std::time::Duration;

use crate::DatastoreError;

pub(super) fn unavailable(endpoints: &[String], reason: String) -> DatastoreError {
    DatastoreError::Unavailable {
        endpoints: endpoints.join(","),
        reason,
    }
}

/// An expired or outdated auth token, which a new login fixes.
pub(super) fn is_stale_token(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            status.message().contains("invalid auth token")
                || status.message().contains("revision in header is old")
        }
        _ => false,
    }
}

/// Maps a client error to what a caller can act on: connection trouble is `Unavailable`,
/// everything else `Backend` with etcd's own words and a hint.
pub(super) fn map_error(
    endpoints: &[String],
    what: &str,
    err: etcd_client::Error,
) -> DatastoreError {
    use tonic::Code;
    let at = endpoints.join(",");
    match err {
        etcd_client::Error::TransportError(err) => unavailable(
            endpoints,
            format!("{what}: {}; is etcd running at {at}?", error_chain(&err)),
        ),
        etcd_client::Error::IoError(err) => unavailable(
            endpoints,
            format!("{what}: {err}; is etcd running at {at}?"),
        ),
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message().to_string();
            // tonic's "transport error" hides the cause (refused, reset, ...) in the source.
            let mut detail = if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                message.clone()
            };
            if let Some(source) = std::error::Error::source(&status) {
                let chain = error_chain(source);
                let cause = chain.strip_prefix("transport error: ").unwrap_or(&chain);
                if cause.contains(&detail) {
                    detail = cause.to_string();
                } else if !detail.contains(cause) {
                    detail = format!("{detail}: {cause}");
                }
            }
            if message.contains("user name is empty") {
                return DatastoreError::Backend(format!(
                    "{what}: etcd at {at} requires authentication ({detail}); set the etcd username and password"
                ));
            }
            if message.contains("authentication failed") {
                return DatastoreError::Backend(format!(
                    "{what}: etcd at {at} refused the login ({detail}); check the etcd username and password"
                ));
            }
            match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                    unavailable(
                        endpoints,
                        format!("{what}: {detail}; is etcd running and healthy at {at}?"),
                    )
                }
                Code::Unknown | Code::Internal if looks_like_connection_trouble(&detail) => {
                    unavailable(
                        endpoints,
                        format!("{what}: {detail}; is etcd running at {at}?"),
                    )
                }
                Code::Unauthenticated => DatastoreError::Backend(format!(
                    "{what}: etcd at {at} refused the credentials: {detail}; check the etcd username and password"
                )),
                Code::PermissionDenied => DatastoreError::Backend(format!(
                    "{what}: etcd at {at} denied access: {detail}; grant the etcd user a role covering this key"
                )),
                Code::ResourceExhausted if message.contains("space exceeded") => {
                    DatastoreError::Backend(format!(
                        "{what}: etcd at {at} is out of space ({detail}); compact and defragment it, then disarm the NOSPACE alarm"
                    ))
                }
                _ => DatastoreError::Backend(format!("{what}: etcd at {at}: {detail}")),
            }
        }
        other => DatastoreError::Backend(format!("{what}: etcd at {at}: {other}")),
    }
}

fn looks_like_connection_trouble(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "transport",
        "connect",
        "connection",
        "broken pipe",
        "h2 protocol",
        "stream closed",
        "operation was canceled",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// `err` and its causes, joined by ": " (tonic's transport errors say little on their own).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) fn fmt_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}
