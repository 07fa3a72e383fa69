//! `tortiectl node status`: this node's BGP sessions, read from BIRD's control socket
//! (calicoctl's `node status`).

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use tortie_bgp::{BirdClient, SessionStatus};

/// `tortiectl node …`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// BGP sessions of this node: peer, type (mesh, route reflector, global, node-specific),
    /// state, uptime and routes received. Run it on the node (in its network namespace).
    Status {
        /// BIRD's control socket.
        #[arg(
            long,
            env = "TORTIE_BIRD_SOCKET",
            default_value = "/var/run/bird/bird.ctl"
        )]
        bird_socket: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = StatusOutput::Table)]
        output: StatusOutput,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StatusOutput {
    Table,
    Json,
}

/// One row of the status, as printed and as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    /// BIRD's protocol name.
    pub name: String,
    /// The peer's address.
    pub peer: String,
    /// The peer's AS number.
    pub peer_as: Option<u32>,
    /// `Mesh`, `RouteReflector`, `Global`, `Node` (or `unknown`).
    pub peer_type: String,
    /// The BGP state (`Established`, `Active`, ...).
    pub state: String,
    /// When the session entered its state (BIRD's clock).
    pub since: String,
    /// Seconds in that state.
    pub uptime_seconds: Option<u64>,
    /// Routes received from the peer and accepted.
    pub routes_received: u64,
    /// BIRD's info column, with the last error when there is one.
    pub info: String,
}

impl SessionRow {
    fn of(session: &SessionStatus) -> Self {
        let mut info = session.info.clone();
        if let Some(error) = &session.last_error {
            if !info.contains(error.as_str()) {
                let _ = write!(info, " ({error})");
            }
        }
        Self {
            name: session.name.clone(),
            peer: session
                .peer_address
                .map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            peer_as: session.peer_as,
            peer_type: session.kind_name().to_string(),
            state: session.bgp_state.to_string(),
            since: session.since.clone(),
            uptime_seconds: session.uptime.map(|uptime| uptime.as_secs()),
            routes_received: session.routes_received,
            info,
        }
    }
}

/// Runs `tortiectl node …` and returns what to print.
pub fn run(args: &NodeArgs) -> Result<String> {
    match &args.command {
        NodeCommand::Status {
            bird_socket,
            output,
        } => {
            let mut client = BirdClient::connect(bird_socket).with_context(|| {
                format!(
                    "cannot read BGP status: is BIRD running on this node? (its control \
                     socket is set with --bird-socket or TORTIE_BIRD_SOCKET, now {})",
                    bird_socket.display()
                )
            })?;
            let greeting = client.greeting().to_string();
            let sessions = tortie_bgp::sessions(&mut client)
                .with_context(|| format!("reading sessions from {}", bird_socket.display()))?;
            let rows: Vec<SessionRow> = sessions.iter().map(SessionRow::of).collect();
            match output {
                StatusOutput::Json => Ok(serde_json::to_string_pretty(&rows)? + "\n"),
                StatusOutput::Table => Ok(table(&greeting, &rows)),
            }
        }
    }
}

/// The human view: BIRD's greeting, then one line per session.
pub fn table(greeting: &str, rows: &[SessionRow]) -> String {
    let greeting = greeting.trim_end_matches('.');
    let mut out = format!("BIRD is running ({greeting}).\n\nIPv4 BGP sessions\n");
    if rows.is_empty() {
        out.push_str("No BGP sessions are configured on this node.\n");
        return out;
    }
    let header = [
        "PEER ADDRESS",
        "PEER AS",
        "PEER TYPE",
        "STATE",
        "SINCE",
        "UPTIME",
        "ROUTES",
        "INFO",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|row| {
            [
                row.peer.clone(),
                row.peer_as.map_or_else(|| "-".into(), |n| n.to_string()),
                row.peer_type.clone(),
                row.state.clone(),
                row.since.clone(),
                row.uptime_seconds
                    .map_or_else(|| "-".into(), |s| human(Duration::from_secs(s))),
                row.routes_received.to_string(),
                row.info.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |values: &[&str]| {
        let mut text = String::new();
        for (value, width) in values.iter().zip(widths) {
            let _ = write!(text, "{value:<width$}  ");
        }
        text.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header));
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&refs));
    }
    out
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(250)), "4m10s");
        assert_eq!(human(Duration::from_secs(7_500)), "2h5m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3_600)), "3d4h");
    }

    #[test]
    fn table_lines_up_and_says_when_there_is_nothing() {
        let row = SessionRow {
            name: "Mesh_10_99_0_12".into(),
            peer: "10.99.0.12".into(),
            peer_as: Some(64512),
            peer_type: "mesh".into(),
            state: "Established".into(),
            since: "2026-12-02 00:40:00".into(),
            uptime_seconds: Some(75),
            routes_received: 1,
            info: "Established".into(),
        };
        let text = table("BIRD 2.0.12 ready.", &[row]);
        assert!(text.contains("PEER ADDRESS  PEER AS  PEER TYPE  STATE"));
        assert!(text.contains(
            "10.99.0.12    64512    mesh       Established  2026-12-02 00:40:00  1m15s   1"
        ));
        assert!(table("BIRD 2.0.12 ready.", &[]).contains("No BGP sessions"));
    }
}
