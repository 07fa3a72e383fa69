//! The plan as a BIRD 2 configuration file: deterministic (the same plan gives the same
//! bytes, so an unchanged cluster never reloads BIRD) and commented for whoever reads it
//! on a node.

use std::fmt::{self, Display};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use tortie_resources::LogSeverity;

use crate::calc::{BgpPlan, Session};

/// The static protocol holding this node's blocks; the export filter recognizes our own
/// advertisements by it.
pub const BLOCKS_PROTOCOL: &str = "tortie_blocks";
/// The import filter of every session.
pub const IMPORT_FILTER: &str = "tortie_import";
/// The export filter of internal (same AS) sessions.
pub const EXPORT_FILTER: &str = "tortie_export";
/// The export filter of external sessions: this node's own blocks only.
pub const EXPORT_OWN_FILTER: &str = "tortie_export_own";

/// Renders a complete BIRD 2 configuration for `plan`.
///
/// The file holds session passwords: write it readable by BIRD only.
pub fn render(plan: &BgpPlan) -> String {
    let mut out = Out::default();
    header(&mut out, plan);
    filters(&mut out, plan);
    base_protocols(&mut out, plan);
    out.comment(0, "BGP sessions, one per peer address.");
    if plan.sessions.is_empty() {
        out.comment(0, "(none: no other node or BGPPeer to peer with)");
    }
    for session in &plan.sessions {
        out.blank();
        bgp_protocol(&mut out, plan, session);
    }
    out.text
}

/// Text being built, with indentation by two spaces.
#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn line(&mut self, indent: usize, line: impl Display) {
        use fmt::Write;
        for _ in 0..indent {
            self.text.push_str("  ");
        }
        // Writing into a String cannot fail.
        let _ = writeln!(self.text, "{line}");
    }

    fn comment(&mut self, indent: usize, text: &str) {
        for line in text.lines() {
            self.line(indent, format_args!("# {line}"));
        }
    }

    fn blank(&mut self) {
        self.text.push('\n');
    }
}

fn header(out: &mut Out, plan: &BgpPlan) {
    out.comment(
        0,
        &format!(
            "BIRD 2 configuration of node {}, written by tortie from the cluster's Node,\n\
             BGPConfiguration, BGPPeer and IPPool resources. Do not edit: tortie rewrites\n\
             this file whenever they change.",
            one_line(&plan.node_name)
        ),
    );
    out.blank();
    out.line(0, format_args!("router id {};", plan.router_id));
    out.blank();
    out.comment(
        0,
        "Full dates in `birdc show protocols` and `show status`: tortie computes session\n\
         uptimes from them.",
    );
    out.line(0, "timeformat protocol iso long;");
    out.line(0, "timeformat base iso long;");
    out.blank();
    let (classes, debug) = log_settings(plan.log_severity);
    out.comment(
        0,
        &format!(
            "Log level {:?} (BGPConfiguration logSeverityScreen).",
            plan.log_severity
        ),
    );
    out.line(0, format_args!("log stderr {classes};"));
    if let Some(debug) = debug {
        out.line(0, format_args!("debug protocols {debug};"));
    }
    out.blank();
}

/// BIRD's log classes and protocol debug flags for a Calico log level.
fn log_settings(severity: LogSeverity) -> (&'static str, Option<&'static str>) {
    // Protocol debug messages (session state changes and the like) are logged in the
    // `trace` class, so every level that debugs protocols logs it.
    match severity {
        LogSeverity::Trace => ("all", Some("all")),
        LogSeverity::Debug => (
            "all",
            Some("{ states, routes, filters, interfaces, events }"),
        ),
        LogSeverity::Info => (
            "{ info, remote, warning, error, auth, fatal, bug, trace }",
            Some("{ states }"),
        ),
        LogSeverity::Warning => ("{ remote, warning, error, auth, fatal, bug }", None),
        LogSeverity::Error => ("{ error, auth, fatal, bug }", None),
        LogSeverity::Fatal => ("{ fatal, bug }", None),
    }
}

fn prefix_set(nets: &[Ipv4Net]) -> String {
    let items: Vec<String> = nets.iter().map(|net| format!("{net}+")).collect();
    format!("[ {} ]", items.join(", "))
}

fn filters(out: &mut Out, plan: &BgpPlan) {
    out.comment(
        0,
        "Routes from peers: everything but this node's own blocks (and anything inside\n\
         them). A node never learns its own pods' addresses back from a peer.",
    );
    out.line(0, format_args!("filter {IMPORT_FILTER} {{"));
    if !plan.local_blocks.is_empty() {
        out.line(
            1,
            format_args!("if net ~ {} then reject;", prefix_set(&plan.local_blocks)),
        );
    }
    out.line(1, "accept;");
    out.line(0, "}");
    out.blank();

    out.comment(
        0,
        "Routes to peers: this node's blocks, and routes learned from other nodes inside\n\
         IP pools that allow BGP export (a route reflector passes them on). Nothing else:\n\
         never interface routes.",
    );
    out.line(0, format_args!("filter {EXPORT_FILTER} {{"));
    out.line(
        1,
        format_args!("if proto = \"{BLOCKS_PROTOCOL}\" then accept;"),
    );
    if !plan.export_pools.is_empty() {
        out.line(
            1,
            format_args!(
                "if source = RTS_BGP && net ~ {} then accept;",
                prefix_set(&plan.export_pools)
            ),
        );
    }
    out.line(1, "reject;");
    out.line(0, "}");
    out.blank();

    out.comment(
        0,
        "Routes to external peers (another AS, such as a top-of-rack router): this\n\
         node's blocks only. Each block is advertised by the node that holds its pods, so\n\
         the fabric sends pod traffic straight there; a node does not forward other\n\
         nodes' pod traffic arriving from the fabric.",
    );
    out.line(0, format_args!("filter {EXPORT_OWN_FILTER} {{"));
    out.line(
        1,
        format_args!("if proto = \"{BLOCKS_PROTOCOL}\" then accept;"),
    );
    out.line(1, "reject;");
    out.line(0, "}");
    out.blank();
}

fn base_protocols(out: &mut Out, plan: &BgpPlan) {
    out.comment(0, "Interface state, which every other protocol needs.");
    out.line(0, "protocol device {");
    out.line(1, "scan time 10;");
    out.line(0, "}");
    out.blank();

    out.comment(
        0,
        "Interface routes (but not pods' cali* interfaces), so next hops of routes\n\
         learned over internal BGP resolve recursively. They go neither to the kernel nor\n\
         to peers.",
    );
    out.line(0, "protocol direct {");
    out.line(1, "ipv4;");
    out.line(1, "interface -\"cali*\", -\"kube-ipvs*\", \"*\";");
    out.line(0, "}");
    out.blank();

    out.comment(
        0,
        "Routes learned over BGP go into the kernel's main table; nothing is read back.\n\
         persist and graceful restart keep them in the kernel across a BIRD restart until\n\
         BIRD has relearned them; merge paths installs one multipath route when several\n\
         peers offer the same prefix.",
    );
    out.line(0, "protocol kernel {");
    out.line(1, "ipv4 {");
    out.line(2, "import none;");
    out.line(2, "export where source = RTS_BGP;");
    out.line(1, "};");
    out.line(1, "persist;");
    out.line(1, "graceful restart;");
    out.line(1, "merge paths on;");
    out.line(0, "}");
    out.blank();

    out.comment(
        0,
        "This node's IPAM blocks in pools that allow BGP export: the origin of its\n\
         advertisements. The blackholes stay inside BIRD: the kernel gets BGP routes only\n\
         (and has a route per local pod).",
    );
    out.line(0, format_args!("protocol static {BLOCKS_PROTOCOL} {{"));
    out.line(1, "ipv4;");
    if plan.exported_blocks.is_empty() {
        out.comment(1, "(no block to advertise)");
    }
    for block in &plan.exported_blocks {
        out.line(1, format_args!("route {block} blackhole;"));
    }
    out.line(0, "}");
    out.blank();
}

fn bgp_protocol(out: &mut Out, plan: &BgpPlan, session: &Session) {
    let origin = one_line(&session.origin.to_string());
    out.comment(0, &origin);
    out.line(
        0,
        format_args!("protocol bgp {} {{", session.protocol_name()),
    );
    out.line(1, format_args!("description \"{}\";", quotable(&origin)));
    out.line(
        1,
        format_args!(
            "local {}as {};",
            LocalAddress(session.source_ip, plan.listen_port),
            plan.local_as
        ),
    );
    let port = match session.peer_port {
        Some(port) => format!(" port {port}"),
        None => String::new(),
    };
    out.line(
        1,
        format_args!("neighbor {}{port} as {};", session.peer_ip, session.peer_as),
    );
    if session.passive {
        out.line(
            1,
            "passive on; # in the mesh, the peer connects (its address sorts higher)",
        );
    }
    if let Some(password) = &session.password {
        // Calc leaves out passwords BIRD cannot quote; BIRD 2.0 strings have no escapes.
        out.line(
            1,
            format_args!("password \"{}\";", quotable(password.expose())),
        );
    }
    // Calc only makes internal peers clients; BIRD refuses the file otherwise, so a plan
    // built by hand cannot break it either.
    if let Some(cluster_id) = session
        .route_reflector_client
        .filter(|_| plan.is_internal(session))
    {
        out.line(1, "rr client;");
        out.line(1, format_args!("rr cluster id {cluster_id};"));
    }
    out.line(1, "graceful restart on;");
    if let Some(secs) = session.graceful_restart_time_secs {
        out.line(1, format_args!("graceful restart time {secs};"));
    }
    // Short timers, as Calico's: a peer that is not up yet is retried within seconds.
    out.line(1, "connect delay time 2;");
    out.line(1, "connect retry time 5;");
    out.line(1, "error wait time 5, 30;");
    out.line(1, "ipv4 {");
    out.line(2, format_args!("import filter {IMPORT_FILTER};"));
    let export = if plan.is_internal(session) {
        EXPORT_FILTER
    } else {
        EXPORT_OWN_FILTER
    };
    out.line(2, format_args!("export filter {export};"));
    if plan.is_internal(session) {
        out.line(2, "gateway recursive;");
    } else {
        out.line(2, "gateway direct;");
    }
    if session.keep_next_hop {
        out.line(2, "next hop keep;");
    }
    out.line(1, "};");
    out.line(0, "}");
}

/// `<ip> [port P] ` for `local`, with a trailing space when not empty.
struct LocalAddress(Option<Ipv4Addr>, u16);

impl Display for LocalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.0 {
            write!(f, "{ip} ")?;
        }
        if self.1 != tortie_resources::bgp::DEFAULT_BGP_PORT {
            write!(f, "port {} ", self.1)?;
        }
        Ok(())
    }
}

/// Text safe inside a BIRD string: BIRD 2.0 strings end at the first `"` and may not
/// span lines, and have no escapes, so those characters are dropped.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\n' && *c != '\r' && *c != '\0')
        .collect()
}

/// Text safe in a one-line comment.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests;
