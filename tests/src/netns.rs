//! Named network-namespace operations on top of `ip` and `nsenter`.
//!
//! Every operation names the namespace and the object it touches, so a failure reads like
//! "add address 10.99.0.11/24 to eth0 in tortie-lab-node-0 failed: … File exists". Links are
//! always created inside a lab namespace (`ip -n`), never in the root namespace.
//!
//! Commands run inside a namespace go through `nsenter --net=/run/netns/<ns>`, not
//! `ip netns exec`: the latter remounts `/sys`, which hides the real bpffs from the command.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

/// Where iproute2 keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A failed namespace operation.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The tool could not be started.
    #[error("{what}: could not run `{command}`: {source} (are iproute2 and util-linux installed, and are we root?)")]
    Spawn {
        /// The operation.
        what: String,
        /// The command line.
        command: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The tool ran and failed.
    #[error("{what} failed: `{command}` exited with {status}: {stderr}")]
    Failed {
        /// The operation.
        what: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Whether a named namespace exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Pids of the processes whose network namespace is the named one (other than ours).
pub fn pids_in_netns(name: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(netns_path(name)) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid != 1)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|ns| ns.dev() == target.dev() && ns.ino() == target.ino())
        })
        .collect()
}

/// A command that runs `program args…` inside namespace `ns` (stdio inherited by default).
pub fn nsenter_command<S: AsRef<std::ffi::OsStr>>(ns: &str, program: S, args: &[S]) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", netns_path(ns).display()))
        .arg("--")
        .arg(program)
        .args(args);
    command
}

/// Runs a command to completion and returns its stdout; failures name `what`.
pub fn run_checked(what: impl Into<String>, command: &mut Command) -> Result<String, NetnsError> {
    let what = what.into();
    let line = command_line(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            what: what.clone(),
            command: line.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NetnsError::Failed {
            what,
            command: line,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip <args>`.
fn ip(what: String, args: &[&str]) -> Result<String, NetnsError> {
    run_checked(what, Command::new("ip").args(args))
}

/// `ip -n <ns> <args>`.
fn ip_in(ns: &str, what: String, args: &[&str]) -> Result<String, NetnsError> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(what, &full)
}

/// The shell-like rendering of a command, for messages.
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ip netns add <name>`.
pub fn create_netns(name: &str) -> Result<(), NetnsError> {
    ip(
        format!("create network namespace {name}"),
        &["netns", "add", name],
    )
    .map(drop)
}

/// `ip netns delete <name>`.
pub fn delete_netns(name: &str) -> Result<(), NetnsError> {
    ip(
        format!("delete network namespace {name}"),
        &["netns", "delete", name],
    )
    .map(drop)
}

/// Names of all named network namespaces.
pub fn list_netns() -> Result<Vec<String>, NetnsError> {
    let out = ip("list network namespaces".to_owned(), &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Creates veth `name` in `ns` whose peer `peer_name` is created directly in `peer_ns`, both
/// ends with MTU `mtu`.
pub fn create_veth_into(
    ns: &str,
    name: &str,
    peer_ns: &str,
    peer_name: &str,
    mtu: u32,
) -> Result<(), NetnsError> {
    let mtu = mtu.to_string();
    ip_in(
        ns,
        format!("create veth {name} (MTU {mtu}) in {ns} with peer {peer_name} in {peer_ns}"),
        &[
            "link", "add", name, "mtu", &mtu, "type", "veth", "peer", "name", peer_name, "mtu",
            &mtu, "netns", peer_ns,
        ],
    )
    .map(drop)
}

/// Creates bridge `name` in `ns`.
pub fn create_bridge(ns: &str, name: &str) -> Result<(), NetnsError> {
    let mtu = crate::spec::MTU.to_string();
    ip_in(
        ns,
        format!("create bridge {name} in {ns}"),
        &["link", "add", name, "mtu", &mtu, "type", "bridge"],
    )
    .map(drop)
}

/// Makes `link` a port of `bridge`.
pub fn attach_to_bridge(ns: &str, link: &str, bridge: &str) -> Result<(), NetnsError> {
    ip_in(
        ns,
        format!("attach {link} to bridge {bridge} in {ns}"),
        &["link", "set", link, "master", bridge],
    )
    .map(drop)
}

/// Sets `link` up.
pub fn set_link_up(ns: &str, link: &str) -> Result<(), NetnsError> {
    ip_in(
        ns,
        format!("set {link} up in {ns}"),
        &["link", "set", link, "up"],
    )
    .map(drop)
}

/// Sets the MAC address of `link`.
pub fn set_mac(ns: &str, link: &str, mac: &str) -> Result<(), NetnsError> {
    ip_in(
        ns,
        format!("set MAC {mac} on {link} in {ns}"),
        &["link", "set", link, "address", mac],
    )
    .map(drop)
}

/// Adds `address/prefix_len` to `link`.
pub fn add_address(
    ns: &str,
    link: &str,
    address: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetnsError> {
    let cidr = format!("{address}/{prefix_len}");
    ip_in(
        ns,
        format!("add address {cidr} to {link} in {ns}"),
        &["addr", "add", &cidr, "dev", link],
    )
    .map(drop)
}

/// Adds a link-scope host route `dst dev link`.
pub fn add_link_route(ns: &str, dst: Ipv4Addr, link: &str) -> Result<(), NetnsError> {
    let dst = dst.to_string();
    ip_in(
        ns,
        format!("add route {dst} dev {link} in {ns}"),
        &["route", "add", &dst, "dev", link, "scope", "link"],
    )
    .map(drop)
}

/// Adds `default via <gateway> dev <link>`.
pub fn add_default_route(ns: &str, gateway: Ipv4Addr, link: &str) -> Result<(), NetnsError> {
    let gateway = gateway.to_string();
    ip_in(
        ns,
        format!("add default route via {gateway} dev {link} in {ns}"),
        &["route", "add", "default", "via", &gateway, "dev", link],
    )
    .map(drop)
}

/// Sets sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) to `value` inside `ns`.
pub fn set_sysctl(ns: &str, key: &str, value: &str) -> Result<(), NetnsError> {
    let assignment = format!("{key}={value}");
    run_checked(
        format!("set sysctl {assignment} in {ns}"),
        &mut nsenter_command(ns, "sysctl", &["-q", "-w", &assignment]),
    )
    .map(drop)
}
