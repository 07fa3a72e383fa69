//! Packet captures on lab links with `tcpdump`, parsed enough to assert the wire format:
//! plain IPv4 between pod addresses, IP-in-IP (`proto IPIP (4)`) between node addresses, or
//! VXLAN (UDP 4789, `vni 4096`).
//!
//! A capture is started before the traffic it should see ([`Capture::start`] returns once
//! tcpdump prints "listening on"), and ended with [`Capture::finish`], which waits for the
//! requested number of packets or the timeout, whichever comes first. tcpdump runs with
//! `-nn -e -v -l`: numeric addresses and ports, link-level headers, the IP header (which names
//! the protocol) and one flushed line at a time.

use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::{command_line, nsenter_command};

/// How long tcpdump may take to start listening.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long tcpdump may take to exit after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// A capture that could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// tcpdump could not be started.
    #[error(
        "starting `{command}` failed: {source} (is tcpdump installed? `apt-get install tcpdump`)"
    )]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// tcpdump exited or stayed silent instead of listening.
    #[error(
        "tcpdump on {iface} in {netns} did not start listening within {timeout_s} s: {stderr}"
    )]
    NotListening {
        /// Capture interface.
        iface: String,
        /// Its namespace.
        netns: String,
        /// The limit.
        timeout_s: u64,
        /// What tcpdump printed on stderr.
        stderr: String,
    },
    /// tcpdump failed while capturing.
    #[error("tcpdump on {iface} in {netns} failed ({status}): {stderr}")]
    Failed {
        /// Capture interface.
        iface: String,
        /// Its namespace.
        netns: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// A running tcpdump. Dropping it kills tcpdump.
#[derive(Debug)]
pub struct Capture {
    netns: String,
    iface: String,
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
    deadline: Instant,
}

impl Capture {
    /// Starts `tcpdump -i <iface> -nn -e -v -l -c <max_packets> <filter>` in namespace `netns`
    /// and returns once it listens. The capture ends after `max_packets` packets or `timeout`
    /// from now, whichever comes first. `filter` is a pcap filter (`icmp or udp port 4789`).
    pub fn start(
        netns: &str,
        iface: &str,
        filter: &str,
        max_packets: usize,
        timeout: Duration,
    ) -> Result<Capture, CaptureError> {
        let count = max_packets.max(1).to_string();
        let mut args = vec!["-i", iface, "-nn", "-e", "-v", "-l", "-c", &count];
        if !filter.trim().is_empty() {
            args.push(filter);
        }
        let mut command = nsenter_command(netns, "tcpdump", &args);
        let line = command_line(&command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CaptureError::Spawn {
                command: line,
                source,
            })?;
        let deadline = Instant::now() + timeout;
        let stdout = child.stdout.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                buf
            })
        });
        let (sender, receiver) = mpsc::channel();
        if let Some(pipe) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut capture = Capture {
            netns: netns.to_owned(),
            iface: iface.to_owned(),
            child: Some(child),
            stdout,
            stderr: receiver,
            stderr_seen: Vec::new(),
            deadline,
        };
        capture.wait_listening()?;
        Ok(capture)
    }

    fn wait_listening(&mut self) -> Result<(), CaptureError> {
        let started = Instant::now();
        loop {
            let left = LISTEN_TIMEOUT.saturating_sub(started.elapsed());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let listening = line.contains("listening on");
                    self.stderr_seen.push(line);
                    if listening {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.stop();
                    self.drain_stderr();
                    return Err(CaptureError::NotListening {
                        iface: self.iface.clone(),
                        netns: self.netns.clone(),
                        timeout_s: LISTEN_TIMEOUT.as_secs(),
                        stderr: self.stderr_seen.join("\n"),
                    });
                }
            }
        }
    }

    /// Waits until tcpdump has seen its packets or the timeout has passed (then stops it), and
    /// returns what it printed. Fails only if tcpdump itself failed.
    pub fn finish(mut self) -> Result<Captured, CaptureError> {
        let status = loop {
            let Some(child) = self.child.as_mut() else {
                break None;
            };
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= self.deadline {
                break self.stop();
            }
            std::thread::sleep(POLL);
        };
        self.child = None;
        let stdout = self
            .stdout
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default();
        self.drain_stderr();
        if let Some(code) = status.and_then(|s| s.code()).filter(|&code| code != 0) {
            return Err(CaptureError::Failed {
                iface: self.iface.clone(),
                netns: self.netns.clone(),
                status: format!("exit status {code}"),
                stderr: self.stderr_seen.join("\n"),
            });
        }
        let text = String::from_utf8_lossy(&stdout);
        Ok(Captured::parse(&text))
    }

    /// SIGINT (tcpdump flushes and exits), SIGKILL if it lingers; reaps it.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let asked = Instant::now();
        while asked.elapsed() < STOP_GRACE {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        child.wait().ok()
    }

    fn drain_stderr(&mut self) {
        // The reader thread ends when tcpdump's stderr closes, i.e. once it has exited.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(500)) {
            self.stderr_seen.push(line);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a capture printed, as lines and as packets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// tcpdump's output lines.
    pub lines: Vec<String>,
    /// The same output grouped into packets.
    pub packets: Vec<Packet>,
}

/// One captured packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// Its lines, joined with newlines.
    pub text: String,
    /// The outer IPv4 protocol number (`proto ICMP (1)`, `proto IPIP (4)`, `proto UDP (17)`).
    pub protocol: Option<u8>,
    /// Every `source > destination` IPv4 pair in printing order: the outer header first,
    /// then the headers it encapsulates.
    pub flows: Vec<Flow>,
    /// The VXLAN network identifier, when tcpdump decoded VXLAN.
    pub vni: Option<u32>,
}

/// A `source > destination` pair of one IPv4 header (ports for TCP and UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port.
    pub dst_port: Option<u16>,
}

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of IP-in-IP.
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

impl Packet {
    /// The outermost IPv4 header's addresses.
    pub fn outer(&self) -> Option<&Flow> {
        self.flows.first()
    }

    /// The first encapsulated IPv4 header's addresses (IPIP or VXLAN payload).
    pub fn inner(&self) -> Option<&Flow> {
        self.flows.get(1)
    }

    /// Whether the outer header carries `protocol` from `src` to `dst`.
    pub fn is(&self, protocol: u8, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.protocol == Some(protocol)
            && self
                .outer()
                .is_some_and(|flow| flow.src == src && flow.dst == dst)
    }

    /// Whether this is IP-in-IP (outer protocol 4).
    pub fn is_ipip(&self) -> bool {
        self.protocol == Some(PROTO_IPIP)
    }

    /// Whether this is UDP to or from `port` (4789 for VXLAN).
    pub fn is_udp_port(&self, port: u16) -> bool {
        self.protocol == Some(PROTO_UDP)
            && self
                .outer()
                .is_some_and(|flow| flow.src_port == Some(port) || flow.dst_port == Some(port))
    }

    /// Every IPv4 address of every header of the packet.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.flows.iter().flat_map(|flow| [flow.src, flow.dst])
    }
}

impl Captured {
    /// Parses tcpdump's `-nn -e -v` output. A packet starts at a line beginning with a
    /// timestamp (`hh:mm:ss.frac`); continuation lines (the `-v` decodes) belong to it.
    pub fn parse(text: &str) -> Captured {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut groups: Vec<Vec<&str>> = Vec::new();
        for line in &lines {
            let starts_packet = line.split_whitespace().next().is_some_and(is_timestamp)
                && !line.starts_with(char::is_whitespace);
            match groups.last_mut() {
                Some(group) if !starts_packet => group.push(line),
                _ => groups.push(vec![line]),
            }
        }
        let packets = groups
            .into_iter()
            .map(|group| Packet::parse(&group.join("\n")))
            .collect();
        Captured { lines, packets }
    }

    /// Packets matching `predicate`.
    pub fn matching(&self, predicate: impl Fn(&Packet) -> bool) -> Vec<&Packet> {
        self.packets.iter().filter(|p| predicate(p)).collect()
    }

    /// The whole output, for failure messages.
    pub fn text(&self) -> String {
        if self.lines.is_empty() {
            "(no packets captured)".to_owned()
        } else {
            self.lines.join("\n")
        }
    }
}

impl Packet {
    fn parse(text: &str) -> Packet {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut packet = Packet {
            text: text.to_owned(),
            ..Packet::default()
        };
        for (i, token) in tokens.iter().enumerate() {
            let next = tokens.get(i + 1).copied();
            match *token {
                "proto" if packet.protocol.is_none() => {
                    // `proto ICMP (1),`: the number is in the parentheses after the name.
                    packet.protocol = tokens.get(i + 2).and_then(|t| {
                        t.trim_matches(|c| matches!(c, '(' | ')' | ','))
                            .parse()
                            .ok()
                    });
                }
                "vni" if packet.vni.is_none() => {
                    packet.vni = next.and_then(|t| t.trim_end_matches(',').parse().ok());
                }
                ">" => {
                    let src = i.checked_sub(1).and_then(|j| address(tokens[j]));
                    let dst = next.and_then(|t| address(t.trim_end_matches([':', ','])));
                    if let (Some((src, src_port)), Some((dst, dst_port))) = (src, dst) {
                        packet.flows.push(Flow {
                            src,
                            src_port,
                            dst,
                            dst_port,
                        });
                    }
                }
                _ => {}
            }
        }
        packet
    }
}

/// `10.65.0.10` or `10.65.0.10.5201` (tcpdump's address.port).
fn address(token: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    let parts: Vec<&str> = token.split('.').collect();
    let ip = parts.get(..4)?.join(".").parse().ok()?;
    match parts.len() {
        4 => Some((ip, None)),
        5 => Some((ip, Some(parts[4].parse().ok()?))),
        _ => None,
    }
}

fn is_timestamp(token: &str) -> bool {
    let mut parts = token.split(':');
    let fields: Vec<&str> = parts.by_ref().collect();
    fields.len() == 3
        && fields[2].contains('.')
        && fields
            .iter()
            .all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "\
06:10:00.000001 02:54:0a:41:00:0a > ee:ee:ee:ee:ee:ee, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 63, id 1, offset 0, flags [DF], proto ICMP (1), length 84)
    10.65.0.10 > 10.65.1.10: ICMP echo request, id 7, seq 1, length 64
";

    const IPIP: &str = "\
06:10:00.000002 aa:bb:cc:00:00:01 > aa:bb:cc:00:00:02, ethertype IPv4 (0x0800), length 118: (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto IPIP (4), length 104)
    10.99.0.11 > 10.99.0.12: (tos 0x0, ttl 63, id 1, offset 0, flags [DF], proto ICMP (1), length 84)
    10.65.0.10 > 10.65.1.10: ICMP echo request, id 7, seq 1, length 64
";

    const VXLAN: &str = "\
06:10:00.000003 aa:bb:cc:00:00:01 > aa:bb:cc:00:00:02, ethertype IPv4 (0x0800), length 148: (tos 0x0, ttl 64, id 0, offset 0, flags [none], proto UDP (17), length 134)
    10.99.0.11.40000 > 10.99.0.12.4789: VXLAN, flags [I] (0x08), vni 4096
66:6e:00:00:00:01 > 66:6e:00:00:00:02, ethertype IPv4 (0x0800), length 98: (tos 0x0, ttl 63, id 1, offset 0, flags [DF], proto ICMP (1), length 84)
    10.65.0.10 > 10.65.1.10: ICMP echo request, id 7, seq 1, length 64
";

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("an address")
    }

    #[test]
    fn plain_packets_show_pod_addresses_outside() {
        let captured = Captured::parse(PLAIN);
        assert_eq!(captured.packets.len(), 1);
        let packet = &captured.packets[0];
        assert!(packet.is(PROTO_ICMP, ip("10.65.0.10"), ip("10.65.1.10")));
        assert!(!packet.is_ipip());
        assert_eq!(packet.inner(), None);
    }

    #[test]
    fn ipip_packets_carry_pod_addresses_inside_node_addresses() {
        let captured = Captured::parse(&format!("{IPIP}{PLAIN}"));
        assert_eq!(captured.packets.len(), 2);
        let packet = &captured.packets[0];
        assert!(packet.is_ipip());
        assert!(packet.is(PROTO_IPIP, ip("10.99.0.11"), ip("10.99.0.12")));
        let inner = packet.inner().expect("inner header");
        assert_eq!((inner.src, inner.dst), (ip("10.65.0.10"), ip("10.65.1.10")));
    }

    #[test]
    fn vxlan_packets_are_one_packet_with_their_vni() {
        let captured = Captured::parse(VXLAN);
        assert_eq!(captured.packets.len(), 1, "{captured:?}");
        let packet = &captured.packets[0];
        assert!(packet.is_udp_port(4789));
        assert_eq!(packet.vni, Some(4096));
        assert_eq!(packet.protocol, Some(PROTO_UDP));
        let outer = packet.outer().expect("outer header");
        assert_eq!(outer.dst_port, Some(4789));
        assert_eq!(outer.src, ip("10.99.0.11"));
        assert_eq!(packet.inner().map(|f| f.dst), Some(ip("10.65.1.10")));
        assert_eq!(packet.addresses().count(), 4);
    }

    #[test]
    fn timestamps_are_not_macs() {
        assert!(is_timestamp("06:10:00.000003"));
        assert!(!is_timestamp("66:6e:00:00:00:01"));
        assert!(!is_timestamp("10.65.0.10"));
    }
}
