//! The state of each BGP session, read from BIRD (`show protocols all`).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::birdc::{BirdClient, BirdcError, ReplyLine};
use crate::calc::SessionKind;

/// Reply code of a protocol's summary row (`Name Proto Table State Since Info`).
const PROTOCOL_ROW: u16 = 1002;
/// Reply code of a protocol's detail lines.
const PROTOCOL_DETAILS: u16 = 1006;
/// Reply code of `show status`'s lines.
const STATUS_LINES: u16 = 1011;

/// A BGP session's finite state machine state, as BIRD prints it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BgpState {
    /// Not trying to connect (e.g. waiting after an error).
    Idle,
    /// Connecting to the peer.
    Connect,
    /// Waiting before the next attempt to connect, or for the peer to connect.
    Active,
    /// Waiting for the peer to connect (`passive on`).
    Passive,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for a keepalive.
    OpenConfirm,
    /// Up: routes are exchanged.
    Established,
    /// Closing.
    Close,
    /// The protocol is disabled or shut down.
    Down,
    /// A state this client does not know, as printed.
    Other(String),
}

impl BgpState {
    fn parse(text: &str) -> BgpState {
        match text {
            "Idle" => BgpState::Idle,
            "Connect" => BgpState::Connect,
            "Active" => BgpState::Active,
            "Passive" => BgpState::Passive,
            "OpenSent" => BgpState::OpenSent,
            "OpenConfirm" => BgpState::OpenConfirm,
            "Established" => BgpState::Established,
            "Close" => BgpState::Close,
            "Down" => BgpState::Down,
            other => BgpState::Other(other.to_string()),
        }
    }
}

impl fmt::Display for BgpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            BgpState::Idle => "Idle",
            BgpState::Connect => "Connect",
            BgpState::Active => "Active",
            BgpState::Passive => "Passive",
            BgpState::OpenSent => "OpenSent",
            BgpState::OpenConfirm => "OpenConfirm",
            BgpState::Established => "Established",
            BgpState::Close => "Close",
            BgpState::Down => "Down",
            BgpState::Other(text) => text,
        };
        f.write_str(text)
    }
}

/// One BGP protocol of the running BIRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// The protocol name, e.g. `Mesh_10_99_0_12`.
    pub name: String,
    /// The session kind read from the name; `None` for protocols tortie did not name.
    pub kind: Option<SessionKind>,
    /// The protocol's description (tortie writes the resource that asked for it).
    pub description: Option<String>,
    /// BIRD's protocol state: `up`, `start`, `down`, ...
    pub protocol_state: String,
    /// The BGP state.
    pub bgp_state: BgpState,
    /// The peer's address.
    pub peer_address: Option<IpAddr>,
    /// The peer's AS number.
    pub peer_as: Option<u32>,
    /// When the protocol entered its state, as BIRD prints it (`2024-05-06 10:11:12`, in
    /// BIRD's local time).
    pub since: String,
    /// How long the protocol has been in its state (for an established session, its
    /// uptime), measured against BIRD's own clock; `None` when a time did not parse.
    pub uptime: Option<Duration>,
    /// Routes imported from the peer (accepted by the import filter).
    pub routes_received: u64,
    /// The Info column, e.g. `Established` or `Active Socket: Connection refused`.
    pub info: String,
    /// The last error, e.g. `Socket: Connection refused` or `Received: Bad peer AS`.
    pub last_error: Option<String>,
}

impl SessionStatus {
    /// The kind's name, or `unknown` for protocols tortie did not name.
    pub fn kind_name(&self) -> &'static str {
        self.kind.map_or("unknown", SessionKind::as_str)
    }

    /// Whether the session is up.
    pub fn is_established(&self) -> bool {
        self.bgp_state == BgpState::Established
    }
}

/// Reads every BGP protocol's state from BIRD (`show status` for BIRD's clock, then
/// `show protocols all`). Other protocols (device, kernel, ...) are left out.
pub fn sessions(client: &mut BirdClient) -> Result<Vec<SessionStatus>, BirdcError> {
    let status = client.command("show status")?;
    let now = server_time(&status);
    let protocols = client.command("show protocols all")?;
    Ok(parse_sessions(&protocols, now.as_deref()))
}

/// BIRD's clock from a `show status` reply (`Current server time is ...`).
pub fn server_time(show_status: &[ReplyLine]) -> Option<String> {
    show_status
        .iter()
        .filter(|l| l.code == STATUS_LINES)
        .find_map(|l| l.text.trim().strip_prefix("Current server time is "))
        .map(|t| t.trim().to_string())
}

/// The BGP protocols in a `show protocols all` reply; `now` is BIRD's clock in the same
/// format as the times in the reply, for [`SessionStatus::uptime`].
pub fn parse_sessions(show_protocols_all: &[ReplyLine], now: Option<&str>) -> Vec<SessionStatus> {
    let now = now.and_then(parse_time);
    let mut sessions = Vec::new();
    let mut current: Option<SessionStatus> = None;
    for line in show_protocols_all {
        match line.code {
            PROTOCOL_ROW => {
                sessions.extend(current.take());
                current = parse_row(&line.text, now);
            }
            PROTOCOL_DETAILS => {
                if let Some(session) = &mut current {
                    apply_detail(session, line.text.trim());
                }
            }
            _ => {}
        }
    }
    sessions.extend(current);
    sessions
}

/// A summary row, when it is a BGP protocol's: `name BGP table state since info`.
fn parse_row(row: &str, now: Option<i64>) -> Option<SessionStatus> {
    let (name, rest) = next_word(row);
    let (proto, rest) = next_word(rest);
    let (_table, rest) = next_word(rest);
    let (state, rest) = next_word(rest);
    let (first, mut rest) = next_word(rest);
    let mut since = first.to_string();
    // `timeformat protocol iso long` prints a date and a time; other formats one word.
    if looks_like_date(first) {
        let (time, after) = next_word(rest);
        if time.contains(':') {
            since = format!("{first} {time}");
            rest = after;
        }
    }
    if proto != "BGP" {
        return None;
    }
    let info = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let uptime = match (now, parse_time(&since)) {
        (Some(now), Some(since)) if now >= since => Some(Duration::from_secs(now.abs_diff(since))),
        _ => None,
    };
    Some(SessionStatus {
        name: name.to_string(),
        kind: SessionKind::from_protocol_name(name),
        description: None,
        protocol_state: state.to_string(),
        bgp_state: BgpState::parse(info.split(' ').next().unwrap_or("")),
        peer_address: None,
        peer_as: None,
        since,
        uptime,
        routes_received: 0,
        info,
        last_error: None,
    })
}

/// Reads one detail line (`Key: value`) into `session`.
fn apply_detail(session: &mut SessionStatus, line: &str) {
    let Some((key, value)) = line.split_once(':') else {
        return;
    };
    let value = value.trim();
    match key {
        "Description" => session.description = Some(value.to_string()),
        "BGP state" => session.bgp_state = BgpState::parse(value),
        "Neighbor address" => session.peer_address = value.parse().ok(),
        "Neighbor AS" => session.peer_as = value.parse().ok(),
        "Last error" => session.last_error = Some(value.to_string()),
        // `1 imported, 0 filtered, 1 exported, 1 preferred`, once per channel.
        "Routes" => {
            let imported = value
                .split(',')
                .find_map(|part| part.trim().strip_suffix(" imported"))
                .and_then(|n| n.trim().parse::<u64>().ok());
            session.routes_received += imported.unwrap_or(0);
        }
        _ => {}
    }
}

/// The first whitespace-separated word of `text`, and what follows it.
fn next_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    text.split_at(end)
}

fn looks_like_date(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-'
}

/// Seconds since 1970-01-01 00:00:00 of a `YYYY-MM-DD HH:MM:SS[.fff]` time, read as if it
/// were UTC: BIRD prints local time, and only differences between two of its times are
/// taken, so the zone cancels out.
fn parse_time(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let time = time.split('.').next()?;
    let mut time = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::birdc::parse_reply;

    fn fixture(text: &str) -> Vec<ReplyLine> {
        parse_reply(text).expect("fixtures are BIRD replies")
    }

    #[test]
    fn established_active_and_passive_sessions() {
        let now = server_time(&fixture(include_str!("../tests/fixtures/show_status.txt")));
        assert_eq!(now.as_deref(), Some("2026-12-02 00:29:53"));
        let sessions = parse_sessions(
            &fixture(include_str!("../tests/fixtures/show_protocols_all.txt")),
            now.as_deref(),
        );
        let names: Vec<&str> = sessions.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["Mesh_10_99_201_2", "Global_10_99_201_3", "Node_10_99_201_4"]
        );

        let mesh = &sessions[0];
        assert_eq!(mesh.kind, Some(SessionKind::Mesh));
        assert_eq!(mesh.kind_name(), "Mesh");
        assert_eq!(
            mesh.description.as_deref(),
            Some("node-to-node mesh with node x")
        );
        assert_eq!(mesh.protocol_state, "up");
        assert!(mesh.is_established());
        assert_eq!(
            mesh.peer_address,
            Some(IpAddr::V4(Ipv4Addr::new(10, 99, 201, 2)))
        );
        assert_eq!(mesh.peer_as, Some(64512));
        assert_eq!(mesh.since, "2026-12-02 00:29:33");
        assert_eq!(mesh.uptime, Some(Duration::from_secs(20)));
        assert_eq!(mesh.routes_received, 1);
        assert_eq!(mesh.info, "Established");
        assert_eq!(mesh.last_error, None);

        let global = &sessions[1];
        assert_eq!(global.kind, Some(SessionKind::Global));
        assert_eq!(global.protocol_state, "start");
        assert_eq!(global.bgp_state, BgpState::Connect);
        assert_eq!(global.peer_as, Some(65001));
        assert_eq!(global.routes_received, 0);
        assert_eq!(global.info, "Connect Socket: No route to host");
        assert_eq!(
            global.last_error.as_deref(),
            Some("Socket: No route to host")
        );
        assert_eq!(global.uptime, Some(Duration::from_secs(22)));

        let node = &sessions[2];
        assert_eq!(node.kind, Some(SessionKind::Node));
        assert_eq!(node.bgp_state, BgpState::Passive);
        assert_eq!(node.info, "Passive");
    }

    #[test]
    fn sessions_after_the_peer_went_away() {
        let now = server_time(&fixture(include_str!(
            "../tests/fixtures/show_status_peer_down.txt"
        )));
        let sessions = parse_sessions(
            &fixture(include_str!(
                "../tests/fixtures/show_protocols_all_peer_down.txt"
            )),
            now.as_deref(),
        );
        let mesh = &sessions[0];
        assert_eq!(mesh.bgp_state, BgpState::Passive);
        assert_eq!(
            mesh.last_error.as_deref(),
            Some("Received: Administrative shutdown")
        );
        assert_eq!(mesh.routes_received, 0);
        assert_eq!(mesh.uptime, Some(Duration::from_secs(3)));
        let disabled = &sessions[1];
        assert_eq!(disabled.protocol_state, "down");
        assert_eq!(disabled.bgp_state, BgpState::Down);
        assert_eq!(disabled.info, "");
    }

    #[test]
    fn protocols_not_ours_are_unknown() {
        let reply = fixture(
            "2002-Name       Proto      Table      State  Since         Info\n\
             1002-upstream BGP        ---        up     2026-12-02 00:29:33  Established\n\
             1006-  BGP state:          Established\n\
             \x20    Routes:         3 imported, 2 filtered, 1 exported, 3 preferred\n\
             \x20  Channel ipv6\n\
             \x20    Routes:         2 imported, 0 exported, 2 preferred\n\
             0000 \n",
        );
        let sessions = parse_sessions(&reply, None);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].kind, None);
        assert_eq!(sessions[0].kind_name(), "unknown");
        assert_eq!(sessions[0].routes_received, 5);
        assert_eq!(sessions[0].uptime, None);
    }

    #[test]
    fn short_time_formats_still_parse() {
        let reply = fixture("1002-Mesh_10_0_0_2 BGP ---  up  00:29:33  Established\n0000 \n");
        let sessions = parse_sessions(&reply, Some("2026-12-02 00:29:43"));
        assert_eq!(sessions[0].since, "00:29:33");
        assert_eq!(sessions[0].info, "Established");
        assert_eq!(sessions[0].uptime, None);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_time("2000-03-01 00:00:01"), Some(951_868_801));
        assert_eq!(parse_time("2024-02-29 23:59:59.123"), Some(1_709_251_199));
        assert_eq!(parse_time("2024-13-01 00:00:00"), None);
        assert_eq!(parse_time("00:29:33"), None);
    }
}
