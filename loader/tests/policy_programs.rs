//! Policy and connection tracking in the eBPF programs, run by the kernel on crafted packets
//! (BPF_PROG_TEST_RUN). Policies are written as Kubernetes and Calico YAML and go the agent's
//! way: resources in a datastore cache → policy inputs → compiled for node-0 of the fixture
//! cluster → desired state → map sync. Needs root.
//!
//! The fixture node has pods A (`default/a`, 10.65.0.10, on the test-run interface) and B
//! (`default/b`, 10.65.0.11); node-1 (10.99.0.12) runs pods C (`default/c`, 10.65.1.10) and D
//! (`default/d`, 10.65.1.11). Packets from pod A enter `tortie_from_wep`; packets from other
//! nodes enter `tortie_from_hep` (plain, or IPIP/VXLAN from node-1); packets the host stack
//! sends into pod B leave through `tortie_to_wep`.
//!
//! Steps check the verdict and the exact change of every counter, so a packet that passes
//! for the wrong reason (or is dropped for the wrong one) fails the test.

mod common;

use common::object;
use std::collections::BTreeMap;

use aya::maps::MapError;
use bpf_maps::{
    policy::{ct_flags, CtKey, CtValue, FragmentKey, FragmentValue, RULE_DEFAULT_DENY},
    program_names::{FROM_HOST_IFACE, FROM_WORKLOAD, TO_WORKLOAD},
    Counter,
};
use tortie::{
    calc::policy::PolicyAllocators,
    model::{policy_inputs::policy_inputs, ClusterConfig, PolicyInputs, ResourceCache},
    packets::{self, checksum, ethernet},
    sync::{
        conntrack_gc::FlowClass,
        test_run::{fixture, fixture::*, ProgramRunner, RunOutcome},
    },
};
use tortie_policy::{CompiledPolicy, Direction};
use tortie_resources::{parse_documents, workload_endpoint_name};

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Pod C on node-1 (the fixture's remote pod).
const POD_C: [u8; 4] = REMOTE_POD;
/// Pod D on node-1.
const POD_D: [u8; 4] = [10, 65, 1, 11];
/// A router between the nodes (TEST-NET-2), as the source of ICMP errors.
const ROUTER: [u8; 4] = [198, 51, 100, 1];

/// "Don't fragment", "more fragments" in the IPv4 flags/offset word.
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;

// ---------------------------------------------------------------------------------------
// The node under test.

/// The cluster's workload endpoints, as Calico stores them.
fn pods_yaml() -> String {
    [
        ("node-0", "a", "10.65.0.10", "02:54:0a:41:00:0a"),
        ("node-0", "b", "10.65.0.11", "02:54:0a:41:00:0b"),
        ("node-1", "c", "10.65.1.10", "02:54:0a:41:01:0a"),
        ("node-1", "d", "10.65.1.11", "02:54:0a:41:01:0b"),
    ]
    .iter()
    .map(|(node, pod, ip, mac)| {
        format!(
            "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {}
  namespace: default
  labels:
    app: {pod}
spec:
  orchestrator: k8s
  node: {node}
  pod: {pod}
  endpoint: eth0
  ipNetworks: [{ip}/32]
  interfaceName: cali-{pod}
  mac: \"{mac}\"
  profiles: [kns.default]
",
            workload_endpoint_name(node, "k8s", pod, "eth0")
        )
    })
    .collect::<Vec<_>>()
    .join("---\n")
}

/// The policy inputs the agent would read from a datastore holding the cluster's pods and
/// `policy_yaml`: each resource validated, defaulted and stored as JSON under its key, then
/// decoded by the agent's own translation.
fn policy_inputs_from(policy_yaml: &str) -> PolicyInputs {
    let mut cache = ResourceCache::default();
    let text = format!("{}---\n{policy_yaml}", pods_yaml());
    for resource in parse_documents(&text).expect("test YAML parses") {
        if let Err(problems) = resource.validate() {
            panic!("{} is invalid: {problems:?}", resource.describe());
        }
        let resource = resource.with_defaults();
        let value = serde_json::to_vec(&resource).expect("resource encodes");
        assert!(
            cache.put(resource.key(), value),
            "{} is stored",
            resource.key()
        );
    }
    let mut warnings = Vec::new();
    let inputs = policy_inputs(&cache, &mut warnings);
    assert_eq!(
        warnings,
        Vec::<String>::new(),
        "datastore translation warnings"
    );
    inputs
}

/// Counters summed over CPUs.
type Counters = BTreeMap<u32, u64>;

/// node-0, programmed like the agent programs it.
struct Node {
    runner: ProgramRunner,
    cluster: ClusterConfig,
    allocators: PolicyAllocators,
    compiled: CompiledPolicy,
    /// Counters as of the last [`Node::expect`].
    seen: Counters,
}

impl Node {
    /// A node in the given encapsulation modes with `policy_yaml` in force, or `None` when
    /// the tests cannot run here.
    fn start(ipip: &str, vxlan: &str, policy_yaml: &str) -> Option<Node> {
        let runner = ProgramRunner::load(&object()?).expect("load programs");
        let mut node = Node {
            runner,
            cluster: fixture::cluster(ipip, vxlan).expect("fixture cluster"),
            allocators: PolicyAllocators::default(),
            compiled: CompiledPolicy::default(),
            seen: Counters::new(),
        };
        node.set_policy(policy_yaml);
        Some(node)
    }

    /// A native-mode node (no encapsulation).
    fn native(policy_yaml: &str) -> Option<Node> {
        Node::start("Never", "Never", policy_yaml)
    }

    /// Puts `policy_yaml` in force through the agent's path: compile for this node with the
    /// allocators kept from before, fold into the desired state, sync the maps (which moves
    /// the policy epoch on when verdicts changed).
    fn set_policy(&mut self, policy_yaml: &str) {
        let inputs = policy_inputs_from(policy_yaml);
        let (desired, compiled) =
            fixture::desired_with_policy(&self.cluster, &inputs, &mut self.allocators)
                .expect("desired state");
        assert_eq!(compiled.errors, Vec::<String>::new(), "policy errors");
        assert_eq!(compiled.warnings, Vec::<String>::new(), "policy warnings");
        self.runner.maps.apply(&desired).expect("sync maps");
        self.compiled = compiled;
    }

    fn run(&mut self, program: &str, frame: &[u8]) -> RunOutcome {
        self.runner
            .run(program, frame, 1)
            .unwrap_or_else(|e| panic!("running {program}: {e:#}"))
    }

    fn counters(&self) -> Counters {
        self.runner
            .maps
            .counters()
            .expect("read counters")
            .into_iter()
            .map(|(counter, n)| (counter as u32, n))
            .collect()
    }

    /// Asserts that the counters moved by exactly `deltas` since the last call (every
    /// counter not listed stayed put).
    fn expect(&mut self, what: &str, deltas: &[(Counter, u64)]) {
        let now = self.counters();
        let mut expected = self.seen.clone();
        for (counter, delta) in deltas {
            *expected.entry(*counter as u32).or_default() += delta;
        }
        let moved = |counters: &Counters| -> Vec<(String, u64)> {
            Counter::ALL
                .iter()
                .map(|c| {
                    let was = self.seen.get(&(*c as u32)).copied().unwrap_or(0);
                    let is = counters.get(&(*c as u32)).copied().unwrap_or(0);
                    (format!("{c:?}"), is - was)
                })
                .filter(|(_, delta)| *delta != 0)
                .collect()
        };
        assert_eq!(
            moved(&now),
            moved(&expected),
            "{what}: counter changes (actual, expected)"
        );
        self.seen = now;
    }

    fn epoch(&self) -> u32 {
        self.runner
            .maps
            .node_config()
            .expect("node config")
            .policy_epoch
    }

    fn ct(&mut self, flow: Flow) -> Option<CtValue> {
        self.ct_at(&flow.ct_key())
    }

    /// The `TORTIE_CT` entry under `key`.
    fn ct_at(&mut self, key: &CtKey) -> Option<CtValue> {
        match self.runner.conntrack().expect("TORTIE_CT").get(key, 0) {
            Ok(value) => Some(value),
            Err(MapError::KeyNotFound) => None,
            Err(e) => panic!("reading TORTIE_CT: {e}"),
        }
    }

    fn ct_len(&mut self) -> usize {
        self.runner.conntrack().expect("TORTIE_CT").keys().count()
    }

    fn fragment(&mut self, key: FragmentKey) -> Option<FragmentValue> {
        match self.runner.fragments().expect("TORTIE_FRAGS").get(&key, 0) {
            Ok(value) => Some(value),
            Err(MapError::KeyNotFound) => None,
            Err(e) => panic!("reading TORTIE_FRAGS: {e}"),
        }
    }

    /// The id the compiler gave rule `index` of `direction` in policy `name`.
    fn rule(&self, name: &str, direction: Direction, index: u32) -> u32 {
        self.compiled
            .rules
            .iter()
            .find(|(_, info)| {
                info.key.name == name && info.key.direction == direction && info.key.index == index
            })
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("no rule {name} {direction}[{index}] compiled"))
    }

    fn rule_hits(&mut self, rule: u32) -> u64 {
        self.runner.rule_hits(rule).expect("TORTIE_RULEHITS")
    }
}

// ---------------------------------------------------------------------------------------
// Packets.

/// One direction of a transport flow.
#[derive(Clone, Copy, Debug)]
struct Flow {
    protocol: u8,
    src: [u8; 4],
    src_port: u16,
    dst: [u8; 4],
    dst_port: u16,
}

impl Flow {
    fn tcp(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> Flow {
        Flow {
            protocol: TCP,
            src,
            src_port,
            dst,
            dst_port,
        }
    }

    fn udp(src: [u8; 4], src_port: u16, dst: [u8; 4], dst_port: u16) -> Flow {
        Flow {
            protocol: UDP,
            ..Flow::tcp(src, src_port, dst, dst_port)
        }
    }

    fn reply(self) -> Flow {
        Flow {
            src: self.dst,
            src_port: self.dst_port,
            dst: self.src,
            dst_port: self.src_port,
            ..self
        }
    }

    /// Whether this direction's source is side A of the flow's conntrack entry (the lower
    /// address and port).
    fn src_is_a(self) -> bool {
        (u32::from_be_bytes(self.src), self.src_port)
            <= (u32::from_be_bytes(self.dst), self.dst_port)
    }

    /// The flow's `TORTIE_CT` key (documented layout: canonical order, network byte order).
    fn ct_key(self) -> CtKey {
        let (a, b) = if self.src_is_a() {
            ((self.src, self.src_port), (self.dst, self.dst_port))
        } else {
            ((self.dst, self.dst_port), (self.src, self.src_port))
        };
        CtKey {
            addr_a: a.0,
            addr_b: b.0,
            port_a: a.1.to_be(),
            port_b: b.1.to_be(),
            protocol: self.protocol,
            _pad: [0; 3],
        }
    }

    /// The transport header and payload of a packet of this flow: TCP with `tcp_flags`
    /// (ignored for UDP), checksummed over the pseudo-header.
    fn transport(self, tcp_flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::with_capacity(20 + payload.len());
        l4.extend_from_slice(&self.src_port.to_be_bytes());
        l4.extend_from_slice(&self.dst_port.to_be_bytes());
        let check_at = if self.protocol == TCP {
            l4.extend_from_slice(&1000u32.to_be_bytes()); // sequence
            l4.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
            l4.extend_from_slice(&[0x50, tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
            16
        } else {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            6
        };
        l4.extend_from_slice(payload);
        let mut pseudo = Vec::with_capacity(12 + l4.len());
        pseudo.extend_from_slice(&self.src);
        pseudo.extend_from_slice(&self.dst);
        pseudo.extend_from_slice(&[0, self.protocol]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&l4);
        let check = checksum(&pseudo);
        l4[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
        l4
    }

    /// A whole IPv4 packet of this flow (no Ethernet header).
    fn packet(self, tcp_flags: u8) -> Vec<u8> {
        Ipv4::new(self.protocol, self.src, self.dst).packet(&self.transport(tcp_flags, b"tortie"))
    }
}

/// The IPv4 header fields the tests vary.
#[derive(Clone, Debug)]
struct Ipv4 {
    protocol: u8,
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    /// Flags and fragment offset (in 8-byte units), as on the wire.
    frag_off: u16,
    options: Vec<u8>,
}

impl Ipv4 {
    fn new(protocol: u8, src: [u8; 4], dst: [u8; 4]) -> Ipv4 {
        Ipv4 {
            protocol,
            src,
            dst,
            id: 1,
            frag_off: IP_DF,
            options: Vec::new(),
        }
    }

    /// The header (correct IHL, total length and checksum) followed by `payload`.
    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        assert!(self.options.len().is_multiple_of(4) && self.options.len() <= 40);
        let header_len = 20 + self.options.len();
        let mut ip = vec![0x40 | (header_len / 4) as u8, 0];
        ip.extend_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&self.id.to_be_bytes());
        ip.extend_from_slice(&self.frag_off.to_be_bytes());
        ip.extend_from_slice(&[64, self.protocol, 0, 0]);
        ip.extend_from_slice(&self.src);
        ip.extend_from_slice(&self.dst);
        ip.extend_from_slice(&self.options);
        let check = checksum(&ip);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        ip.extend_from_slice(payload);
        ip
    }
}

/// Rewrites the checksum of the first 20 bytes of an Ethernet frame's IPv4 header after a
/// deliberate change, so only the change itself is wrong with the packet.
fn fix_ip_checksum(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let check = checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&check.to_be_bytes());
}

/// An ICMP error of `icmp_type`/`code` quoting the start of `original` (an IPv4 packet):
/// its header and 8 bytes, as routers send them. `word` is the ICMP header's second word
/// (the next-hop MTU for "fragmentation needed").
fn icmp_error(icmp_type: u8, code: u8, word: u32, original: &[u8]) -> Vec<u8> {
    let quoted = usize::from(original[0] & 0x0f) * 4 + 8;
    let mut message = vec![icmp_type, code, 0, 0];
    message.extend_from_slice(&word.to_be_bytes());
    message.extend_from_slice(&original[..quoted.min(original.len())]);
    let check = checksum(&message);
    message[2..4].copy_from_slice(&check.to_be_bytes());
    message
}

/// The IPv4 packet `ip` in an Ethernet frame from `src` to `dst`.
fn frame(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(dst, src, 0x0800);
    frame.extend_from_slice(ip);
    frame
}

/// A frame pod A sends (it enters `tortie_from_wep` of A's interface).
fn from_pod_a(ip: &[u8]) -> Vec<u8> {
    frame(HOST_MAC, POD_A_MAC, ip)
}

/// A plain frame arriving from the fabric (it enters `tortie_from_hep`).
fn from_fabric(ip: &[u8]) -> Vec<u8> {
    frame(UPLINK_MAC, PEER_MAC, ip)
}

/// A frame the host stack sends into pod B (it leaves through `tortie_to_wep`).
fn from_host_to_b(ip: &[u8]) -> Vec<u8> {
    frame(POD_B_MAC, HOST_MAC, ip)
}

/// How node-1 encapsulates pod traffic to this node.
#[derive(Clone, Copy, Debug)]
enum Tunnel {
    Ipip,
    Vxlan,
}

/// `ip` as node-1 sends it to this node through `tunnel` (it enters `tortie_from_hep`).
fn from_node_1(tunnel: Tunnel, ip: &[u8]) -> Vec<u8> {
    let inner = frame(HOST_MAC, PEER_MAC, ip);
    let outer_macs = (UPLINK_MAC, PEER_MAC);
    match tunnel {
        Tunnel::Ipip => packets::ipip(outer_macs, REMOTE_NODE, NODE_IP, &inner),
        Tunnel::Vxlan => packets::vxlan(outer_macs, REMOTE_NODE, NODE_IP, 4789, 4096, &inner),
    }
}

fn assert_delivered_to(out: &RunOutcome, mac: [u8; 6], sent_ip: &[u8]) {
    assert_eq!(out.action, TC_ACT_REDIRECT, "redirected into the pod");
    assert_eq!(&out.packet[0..6], &mac, "destination MAC is the pod's");
    assert_eq!(&out.packet[6..12], &HOST_MAC, "source MAC is the host side");
    assert_eq!(
        &out.packet[14 + 12..14 + 20],
        &sent_ip[12..20],
        "addresses kept"
    );
    assert_eq!(out.packet[14 + 8], sent_ip[8] - 1, "TTL decremented once");
    let header_len = usize::from(sent_ip[0] & 0x0f) * 4;
    assert_eq!(
        checksum(&out.packet[14..14 + header_len]),
        0,
        "IPv4 checksum valid"
    );
    assert_eq!(
        &out.packet[14 + header_len..],
        &sent_ip[header_len..],
        "transport header and payload untouched"
    );
}

// ---------------------------------------------------------------------------------------
// Policies.

/// Every pod of `default` denies ingress unless another policy allows it (Kubernetes'
/// documented default-deny).
const DEFAULT_DENY_INGRESS: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: default
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

/// Pod B accepts TCP 80 from pod A.
const B_ALLOWS_A_ON_80: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b-allows-a
  namespace: default
spec:
  podSelector:
    matchLabels: {app: b}
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: a}
    ports:
    - {protocol: TCP, port: 80}
";

fn policies(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|part| part.trim_start_matches('\n'))
        .collect::<Vec<_>>()
        .join("---\n")
}

// ---------------------------------------------------------------------------------------
// 1. Default deny, allowed peers, egress.

#[test]
fn default_deny_ingress_drops_new_flows_and_lets_the_allowed_peer_in() {
    let Some(mut node) = Node::native(&policies(&[DEFAULT_DENY_INGRESS, B_ALLOWS_A_ON_80])) else {
        return;
    };
    let allow_rule = node.rule("b-allows-a", Direction::Ingress, 0);

    // Pod C (another node, not allowed) → B:80, arriving plain on the uplink.
    let from_c = Flow::tcp(POD_C, 40000, POD_B, 80).packet(SYN);
    let out = node.run(FROM_HOST_IFACE, &from_fabric(&from_c));
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("C → B:80", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(
        node.rule_hits(RULE_DEFAULT_DENY),
        1,
        "decided by the default deny"
    );

    // Pod A → B on a port no rule allows: denied by B's ingress in A's own program.
    let out = node.run(
        FROM_WORKLOAD,
        &from_pod_a(&Flow::tcp(POD_A, 40000, POD_B, 81).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("A → B:81", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(node.ct_len(), 0, "denied flows are not tracked");

    // Pod A → B:80 is what the policy allows.
    let flow = Flow::tcp(POD_A, 40000, POD_B, 80);
    let syn = flow.packet(SYN);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&syn));
    assert_delivered_to(&out, POD_B_MAC, &syn);
    node.expect(
        "A → B:80",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedLocal, 1)],
    );
    assert_eq!(node.rule_hits(allow_rule), 1, "decided by b-allows-a");
    assert!(node.ct(flow).is_some(), "the allowed flow is tracked");

    // Pod A itself is selected by the default deny too: C → A is refused as well.
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&Flow::tcp(POD_C, 40000, POD_A, 80).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("C → A:80", &[(Counter::DropPolicyDenied, 1)]);
}

#[test]
fn egress_policy_is_enforced_in_the_source_pods_program() {
    // Calico policy: pod A may only send DNS; everything else it sends is denied.
    let Some(mut node) = Node::native(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: a-dns-only
  namespace: default
spec:
  selector: app == 'a'
  types: [Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
  - action: Deny
",
    ) else {
        return;
    };
    let allow_dns = node.rule("a-dns-only", Direction::Egress, 0);
    let deny_rest = node.rule("a-dns-only", Direction::Egress, 1);

    let out = node.run(
        FROM_WORKLOAD,
        &from_pod_a(&Flow::tcp(POD_A, 40000, POD_C, 80).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("A → C:80 (TCP)", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(node.rule_hits(deny_rest), 1, "decided by the explicit deny");

    // To a pod on the same node: B's ingress is open, A's egress still applies.
    let out = node.run(
        FROM_WORKLOAD,
        &from_pod_a(&Flow::tcp(POD_A, 40000, POD_B, 80).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("A → B:80 (TCP)", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(node.rule_hits(deny_rest), 2);

    let dns = Flow::udp(POD_A, 40000, POD_C, 53);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&dns.packet(0)));
    assert_eq!(out.action, TC_ACT_REDIRECT, "DNS leaves for node-1");
    node.expect(
        "A → C:53 (UDP)",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedRemote, 1)],
    );
    assert_eq!(node.rule_hits(allow_dns), 1);
    assert_eq!(node.ct_len(), 1);
    assert!(node.ct(dns).is_some());

    // docs/policy.md: a pod always reaches its own node's addresses, whatever its egress
    // policy says (kubelet, node-local services).
    let to_node = Flow::tcp(POD_A, 40001, NODE_IP, 10250);
    let packet = from_pod_a(&to_node.packet(SYN));
    let out = node.run(FROM_WORKLOAD, &packet);
    assert_eq!(out.action, TC_ACT_OK, "handed to the host");
    assert_eq!(out.packet, packet, "unchanged");
    node.expect(
        "A → node:10250",
        &[(Counter::PolicyAllowed, 1), (Counter::PassedToHost, 1)],
    );
    assert_eq!(node.rule_hits(deny_rest), 2, "no rule decided it");
}

// ---------------------------------------------------------------------------------------
// 2. Connection tracking.

/// Every pod denies ingress; pod A may open TCP 80 and UDP 53 to pod C.
fn client_a_policies() -> String {
    policies(&[
        DEFAULT_DENY_INGRESS,
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: a-to-c
  namespace: default
spec:
  podSelector:
    matchLabels: {app: a}
  policyTypes: [Egress]
  egress:
  - to:
    - podSelector:
        matchLabels: {app: c}
    ports:
    - {protocol: TCP, port: 80}
    - {protocol: UDP, port: 53}
",
    ])
}

#[test]
fn replies_and_established_packets_pass_on_the_conntrack_entry() {
    let Some(mut node) = Node::native(&client_a_policies()) else {
        return;
    };
    let egress_rule = node.rule("a-to-c", Direction::Egress, 0);
    let epoch = node.epoch();
    let flow = Flow::tcp(POD_A, 40000, POD_C, 80);
    assert!(flow.src_is_a(), "10.65.0.10 sorts before 10.65.1.10");

    // Without a tracked flow, C cannot reach A at all: A's ingress denies it.
    let stray = flow.reply().packet(SYN | ACK);
    let out = node.run(FROM_HOST_IFACE, &from_fabric(&stray));
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("SYN-ACK before any SYN", &[(Counter::DropPolicyDenied, 1)]);

    // A opens the connection: judged by A's egress policy and tracked.
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(SYN)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    node.expect(
        "SYN",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedRemote, 1)],
    );
    let entry = node.ct(flow).expect("the SYN created an entry");
    assert_eq!(entry.flags, ct_flags::OPENED_BY_A | ct_flags::SYN_A);
    assert_eq!(entry.epoch, epoch);
    assert!(entry.created_ns > 0 && entry.last_seen_ns == entry.created_ns);
    assert_eq!(FlowClass::of_conntrack(&entry, TCP), FlowClass::TcpSynSent);
    assert_eq!(node.rule_hits(egress_rule), 1);

    // C answers: the same SYN-ACK that was refused above now passes on the entry.
    let out = node.run(FROM_HOST_IFACE, &from_fabric(&stray));
    assert_delivered_to(&out, POD_A_MAC, &stray);
    node.expect(
        "SYN-ACK",
        &[(Counter::ConntrackHit, 1), (Counter::ForwardedLocal, 1)],
    );
    let entry = node.ct(flow).expect("entry");
    assert_eq!(
        entry.flags,
        ct_flags::OPENED_BY_A | ct_flags::SYN_A | ct_flags::SYN_B | ct_flags::ESTABLISHED
    );
    assert_eq!(
        FlowClass::of_conntrack(&entry, TCP),
        FlowClass::TcpEstablished
    );

    // Established traffic both ways: no policy lookups, no rule hits.
    for round in 0..3 {
        let out = node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(PSH | ACK)));
        assert_eq!(out.action, TC_ACT_REDIRECT, "A → C data, round {round}");
        let data = flow.reply().packet(PSH | ACK);
        let out = node.run(FROM_HOST_IFACE, &from_fabric(&data));
        assert_delivered_to(&out, POD_A_MAC, &data);
    }
    node.expect(
        "established data",
        &[
            (Counter::ConntrackHit, 6),
            (Counter::ForwardedRemote, 3),
            (Counter::ForwardedLocal, 3),
        ],
    );
    assert_eq!(
        node.rule_hits(egress_rule),
        1,
        "policy was not consulted again"
    );
    let entry = node.ct(flow).expect("entry");
    assert!(entry.last_seen_ns >= entry.created_ns);

    // The activity time is refreshed once it is a second old, not on every packet.
    let stale = CtValue {
        last_seen_ns: entry.created_ns - 2_000_000_000,
        ..entry
    };
    node.runner
        .conntrack()
        .expect("TORTIE_CT")
        .insert(flow.ct_key(), stale, 0)
        .expect("age the entry");
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(PSH | ACK)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let refreshed = node.ct(flow).expect("entry");
    assert!(
        refreshed.last_seen_ns >= entry.created_ns,
        "a packet on a flow idle for 2 s refreshes its activity time"
    );
    assert_eq!(refreshed.flags, entry.flags);
    node.expect(
        "established packet after the refresh",
        &[(Counter::ConntrackHit, 1), (Counter::ForwardedRemote, 1)],
    );

    // A new connection from C to A (not a reply) is still refused.
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&Flow::tcp(POD_C, 40000, POD_A, 80).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("C opens to A", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(node.ct_len(), 1);
}

#[test]
fn fin_and_rst_are_recorded_in_the_entry() {
    let Some(mut node) = Node::native(&client_a_policies()) else {
        return;
    };
    let handshake = |node: &mut Node, flow: Flow| {
        node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(SYN)));
        node.run(
            FROM_HOST_IFACE,
            &from_fabric(&flow.reply().packet(SYN | ACK)),
        );
        node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(ACK)));
    };
    let established =
        ct_flags::OPENED_BY_A | ct_flags::SYN_A | ct_flags::SYN_B | ct_flags::ESTABLISHED;

    // Orderly close: FIN from A, then from C, then the last ACK.
    let closed = Flow::tcp(POD_A, 40000, POD_C, 80);
    handshake(&mut node, closed);
    assert_eq!(node.ct(closed).expect("entry").flags, established);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&closed.packet(FIN | ACK)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let entry = node.ct(closed).expect("entry");
    assert_eq!(entry.flags, established | ct_flags::FIN_A);
    assert_eq!(
        FlowClass::of_conntrack(&entry, TCP),
        FlowClass::TcpEstablished
    );
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&closed.reply().packet(FIN | ACK)),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let entry = node.ct(closed).expect("entry");
    assert_eq!(entry.flags, established | ct_flags::FIN_A | ct_flags::FIN_B);
    assert_eq!(FlowClass::of_conntrack(&entry, TCP), FlowClass::TcpFinsSeen);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&closed.packet(ACK)));
    assert_eq!(out.action, TC_ACT_REDIRECT, "the last ACK still passes");

    // Abort: C resets the connection.
    let reset = Flow::tcp(POD_A, 40001, POD_C, 80);
    handshake(&mut node, reset);
    let out = node.run(FROM_HOST_IFACE, &from_fabric(&reset.reply().packet(RST)));
    assert_eq!(out.action, TC_ACT_REDIRECT, "the RST reaches A");
    let entry = node.ct(reset).expect("entry");
    assert_eq!(entry.flags, established | ct_flags::RST);
    assert_eq!(FlowClass::of_conntrack(&entry, TCP), FlowClass::TcpReset);

    node.expect(
        "two connections",
        &[
            (Counter::PolicyAllowed, 2),
            (Counter::ConntrackHit, 8),
            (Counter::ForwardedRemote, 6),
            (Counter::ForwardedLocal, 4),
        ],
    );
    // The other flow's entry was left alone.
    assert_eq!(
        node.ct(closed).expect("entry").flags,
        established | ct_flags::FIN_A | ct_flags::FIN_B
    );
}

#[test]
fn a_flow_whose_entry_was_lost_is_picked_up_again_only_if_policy_allows() {
    let Some(mut node) = Node::native(&client_a_policies()) else {
        return;
    };
    let flow = Flow::tcp(POD_A, 40000, POD_C, 80);
    node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(SYN)));
    node.run(
        FROM_HOST_IFACE,
        &from_fabric(&flow.reply().packet(SYN | ACK)),
    );
    node.expect(
        "handshake",
        &[
            (Counter::PolicyAllowed, 1),
            (Counter::ConntrackHit, 1),
            (Counter::ForwardedRemote, 1),
            (Counter::ForwardedLocal, 1),
        ],
    );

    // The entry goes, as when the LRU evicts it or expiry removes it too early.
    node.runner
        .conntrack()
        .expect("TORTIE_CT")
        .remove(&flow.ct_key())
        .expect("remove the entry");

    // C's next packet is now a new flow into A, which A's ingress policy refuses.
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&flow.reply().packet(PSH | ACK)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("C → A mid-stream", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(node.ct(flow), None);

    // A's next packet is judged by A's egress policy, which still allows it: picked up.
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(PSH | ACK)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    node.expect(
        "A → C mid-stream",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedRemote, 1)],
    );
    let entry = node.ct(flow).expect("picked up");
    assert_eq!(
        entry.flags,
        ct_flags::OPENED_BY_A | ct_flags::PICKED_UP | ct_flags::ESTABLISHED
    );
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&flow.reply().packet(PSH | ACK)),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT, "C's data flows again");
    node.expect(
        "C → A after the pick-up",
        &[(Counter::ConntrackHit, 1), (Counter::ForwardedLocal, 1)],
    );
}

#[test]
fn icmp_echo_replies_share_the_requests_entry() {
    let Some(mut node) = Node::native(DEFAULT_DENY_INGRESS) else {
        return;
    };
    let echo = |icmp_type: u8, src: [u8; 4], dst: [u8; 4], id: u16| {
        let mut message = vec![icmp_type, 0, 0, 0];
        message.extend_from_slice(&id.to_be_bytes());
        message.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
        let check = checksum(&message);
        message[2..4].copy_from_slice(&check.to_be_bytes());
        Ipv4::new(ICMP, src, dst).packet(&message)
    };
    let key = CtKey {
        addr_a: POD_A,
        addr_b: POD_C,
        port_a: 0x1234u16.to_be(),
        port_b: 0x1234u16.to_be(),
        protocol: ICMP,
        _pad: [0; 3],
    };

    let out = node.run(FROM_WORKLOAD, &from_pod_a(&echo(8, POD_A, POD_C, 0x1234)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    node.expect(
        "echo request",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedRemote, 1)],
    );
    let entry = node
        .ct_at(&key)
        .expect("entry keyed by the echo identifier");
    assert_eq!(entry.flags, ct_flags::OPENED_BY_A);
    assert_eq!(FlowClass::of_conntrack(&entry, ICMP), FlowClass::Icmp);

    let reply = echo(0, POD_C, POD_A, 0x1234);
    let out = node.run(FROM_HOST_IFACE, &from_fabric(&reply));
    assert_delivered_to(&out, POD_A_MAC, &reply);
    node.expect(
        "echo reply",
        &[(Counter::ConntrackHit, 1), (Counter::ForwardedLocal, 1)],
    );
    let entry = node.ct_at(&key).expect("entry");
    assert_eq!(entry.flags, ct_flags::OPENED_BY_A | ct_flags::ESTABLISHED);

    // A reply with another identifier belongs to no request: A's ingress refuses it.
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&echo(0, POD_C, POD_A, 0x4321)),
    );
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("unsolicited echo reply", &[(Counter::DropPolicyDenied, 1)]);
    // And C cannot ping A.
    let out = node.run(
        FROM_HOST_IFACE,
        &from_fabric(&echo(8, POD_C, POD_A, 0x9999)),
    );
    assert_eq!(out.action, TC_ACT_SHOT, "C's echo request");
    node.expect("C pings A", &[(Counter::DropPolicyDenied, 1)]);
}

// ---------------------------------------------------------------------------------------
// 3. ICMP errors.

#[test]
fn icmp_errors_about_tracked_flows_pass_as_related() {
    let Some(mut node) = Node::native(&client_a_policies()) else {
        return;
    };
    let dns = Flow::udp(POD_A, 40000, POD_C, 53);
    let web = Flow::tcp(POD_A, 40001, POD_C, 80);
    let dns_query = dns.packet(0);
    let web_syn = web.packet(SYN);
    for packet in [&dns_query, &web_syn] {
        let out = node.run(FROM_WORKLOAD, &from_pod_a(packet));
        assert_eq!(out.action, TC_ACT_REDIRECT);
    }
    node.expect(
        "two tracked flows",
        &[(Counter::PolicyAllowed, 2), (Counter::ForwardedRemote, 2)],
    );

    let errors = [
        (
            "port unreachable from C about the DNS query",
            POD_C,
            icmp_error(3, 3, 0, &dns_query),
        ),
        (
            "fragmentation needed from node-1 about the web SYN",
            REMOTE_NODE,
            icmp_error(3, 4, 1400, &web_syn),
        ),
        (
            "time exceeded from a router about the DNS query",
            ROUTER,
            icmp_error(11, 0, 0, &dns_query),
        ),
    ];
    for (what, source, message) in &errors {
        let packet = Ipv4::new(ICMP, *source, POD_A).packet(message);
        let out = node.run(FROM_HOST_IFACE, &from_fabric(&packet));
        assert_eq!(out.action, TC_ACT_REDIRECT, "{what}");
        assert_eq!(&out.packet[0..6], &POD_A_MAC, "{what}");
        assert_eq!(
            &out.packet[34..],
            &packet[20..],
            "{what}: message untouched"
        );
        node.expect(
            what,
            &[(Counter::ConntrackRelated, 1), (Counter::ForwardedLocal, 1)],
        );
    }
    assert_eq!(node.ct_len(), 2, "related errors create no entries");
}

#[test]
fn icmp_errors_about_unknown_flows_are_judged_and_dropped() {
    let Some(mut node) = Node::native(&client_a_policies()) else {
        return;
    };
    let out = node.run(
        FROM_WORKLOAD,
        &from_pod_a(&Flow::udp(POD_A, 40000, POD_C, 53).packet(0)),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT);
    node.expect(
        "tracked DNS flow",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedRemote, 1)],
    );

    let errors = [
        (
            "port unreachable about another port",
            POD_C,
            icmp_error(3, 3, 0, &Flow::udp(POD_A, 40000, POD_C, 54).packet(0)),
        ),
        (
            "port unreachable about another source port",
            POD_C,
            icmp_error(3, 3, 0, &Flow::udp(POD_A, 40002, POD_C, 53).packet(0)),
        ),
        (
            "fragmentation needed about a flow to pod D",
            REMOTE_NODE,
            icmp_error(3, 4, 1400, &Flow::tcp(POD_A, 40000, POD_D, 80).packet(SYN)),
        ),
        (
            "time exceeded about a TCP flow on the DNS ports",
            ROUTER,
            icmp_error(11, 0, 0, &Flow::tcp(POD_A, 40000, POD_C, 53).packet(SYN)),
        ),
    ];
    for (what, source, message) in &errors {
        let packet = Ipv4::new(ICMP, *source, POD_A).packet(message);
        let out = node.run(FROM_HOST_IFACE, &from_fabric(&packet));
        assert_eq!(out.action, TC_ACT_SHOT, "{what}");
        node.expect(what, &[(Counter::DropPolicyDenied, 1)]);
    }
    assert_eq!(node.ct_len(), 1);
}

// ---------------------------------------------------------------------------------------
// 4. Fragments.

/// Pod B accepts UDP 9000 from pod A (and nothing else).
const B_ALLOWS_A_ON_UDP_9000: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b-allows-a-udp
  namespace: default
spec:
  podSelector:
    matchLabels: {app: b}
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: a}
    ports:
    - {protocol: UDP, port: 9000}
";

/// A datagram of `flow` cut into fragments: the first carries the UDP header and 16 bytes,
/// each later one 16 bytes. Returns the IPv4 packets of fragments 0..count.
fn fragments(flow: Flow, id: u16, count: usize) -> Vec<Vec<u8>> {
    let payload = vec![0x5a; 16 * count - 8];
    let datagram = flow.transport(0, &payload);
    datagram
        .chunks(24)
        .take(1)
        .chain(datagram[24..].chunks(16))
        .enumerate()
        .map(|(i, chunk)| {
            let offset_units = if i == 0 { 0 } else { (24 + 16 * (i - 1)) / 8 } as u16;
            let more = if i + 1 < count { IP_MF } else { 0 };
            Ipv4 {
                id,
                frag_off: more | offset_units,
                ..Ipv4::new(flow.protocol, flow.src, flow.dst)
            }
            .packet(chunk)
        })
        .collect()
}

fn fragment_key(flow: Flow, id: u16) -> FragmentKey {
    FragmentKey {
        src: flow.src,
        dst: flow.dst,
        id: id.to_be(),
        protocol: flow.protocol,
        _pad: 0,
    }
}

#[test]
fn fragments_pass_only_behind_an_allowed_first_fragment() {
    let Some(mut node) = Node::native(&policies(&[DEFAULT_DENY_INGRESS, B_ALLOWS_A_ON_UDP_9000]))
    else {
        return;
    };
    let allowed = Flow::udp(POD_A, 5000, POD_B, 9000);
    let frags = fragments(allowed, 0x1111, 3);
    assert_eq!(frags.len(), 3);

    let out = node.run(FROM_WORKLOAD, &from_pod_a(&frags[0]));
    assert_delivered_to(&out, POD_B_MAC, &frags[0]);
    node.expect(
        "first fragment of an allowed flow",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedLocal, 1)],
    );
    assert_eq!(
        node.fragment(fragment_key(allowed, 0x1111)),
        Some(FragmentValue {
            src_port: 5000u16.to_be(),
            dst_port: 9000u16.to_be(),
        }),
        "the datagram is remembered with its ports"
    );
    assert!(node.ct(allowed).is_some());

    for (i, frag) in frags.iter().enumerate().skip(1) {
        let out = node.run(FROM_WORKLOAD, &from_pod_a(frag));
        assert_delivered_to(&out, POD_B_MAC, frag);
        node.expect(
            &format!("fragment {i} of the allowed datagram"),
            &[(Counter::ConntrackHit, 1), (Counter::ForwardedLocal, 1)],
        );
    }

    // A later fragment of a datagram whose first fragment never passed.
    let orphan = fragments(allowed, 0x2222, 3);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&orphan[1]));
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("orphan fragment", &[(Counter::DropFragmentUnknown, 1)]);

    // A denied flow: its first fragment is dropped by policy and not remembered, so its
    // later fragments cannot slip through on their own.
    let denied = Flow::udp(POD_A, 5001, POD_B, 9001);
    let frags = fragments(denied, 0x3333, 3);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&frags[0]));
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect(
        "first fragment of a denied flow",
        &[(Counter::DropPolicyDenied, 1)],
    );
    assert_eq!(node.fragment(fragment_key(denied, 0x3333)), None);
    for frag in &frags[1..] {
        let out = node.run(FROM_WORKLOAD, &from_pod_a(frag));
        assert_eq!(out.action, TC_ACT_SHOT);
    }
    node.expect(
        "later fragments of the denied flow",
        &[(Counter::DropFragmentUnknown, 2)],
    );
    assert_eq!(node.ct(denied), None);

    // A fragment claiming to continue the allowed datagram but sent to another pod does
    // not match it: the datagram is (source, destination, id, protocol).
    let mut elsewhere = fragments(Flow::udp(POD_A, 5000, POD_C, 9000), 0x1111, 3);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&elsewhere.remove(1)));
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect(
        "fragment of another destination",
        &[(Counter::DropFragmentUnknown, 1)],
    );
}

#[test]
fn fragmented_datagrams_of_a_tracked_flow_pass_whole() {
    // docs/policy.md: a first fragment "judged on its ports like any packet; if allowed, its
    // datagram ... is remembered"; a non-first fragment "passes only as part of a datagram
    // whose first fragment was allowed". A tracked flow's packets are allowed (in both
    // directions), so every fragment of its later datagrams must pass: large UDP replies
    // (DNS, NFS, ...) are fragmented datagrams of a flow the request opened.
    let Some(mut node) = Node::native(&client_a_policies()) else {
        return;
    };
    let query = Flow::udp(POD_A, 40000, POD_C, 53);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&query.packet(0)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    node.expect(
        "query",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedRemote, 1)],
    );

    // The answer comes back from C in three fragments. Counters first: on failure they
    // say why fragments were dropped.
    let answer = fragments(query.reply(), 0x7777, 3);
    let actions: Vec<i32> = answer
        .iter()
        .map(|frag| node.run(FROM_HOST_IFACE, &from_fabric(frag)).action)
        .collect();
    node.expect(
        "fragmented answer",
        &[(Counter::ConntrackHit, 3), (Counter::ForwardedLocal, 3)],
    );
    assert_eq!(actions, [TC_ACT_REDIRECT; 3], "answer fragments");

    // A sends a second, fragmented datagram on the same flow.
    let second = fragments(query, 0x7778, 3);
    let actions: Vec<i32> = second
        .iter()
        .map(|frag| node.run(FROM_WORKLOAD, &from_pod_a(frag)).action)
        .collect();
    node.expect(
        "second datagram",
        &[(Counter::ConntrackHit, 3), (Counter::ForwardedRemote, 3)],
    );
    assert_eq!(actions, [TC_ACT_REDIRECT; 3], "second datagram's fragments");
}

// ---------------------------------------------------------------------------------------
// 5. Revocation.

#[test]
fn a_policy_change_stops_established_flows_it_no_longer_allows() {
    let version = |web_ports: &str, c_to_a: bool| {
        let mut parts = vec![
            DEFAULT_DENY_INGRESS.to_string(),
            format!(
                "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b-web
  namespace: default
spec:
  podSelector:
    matchLabels: {{app: b}}
  ingress:
  - from:
    - podSelector:
        matchLabels: {{app: a}}
    ports: [{web_ports}]
"
            ),
        ];
        if c_to_a {
            parts.push(
                "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: a-accepts-c
  namespace: default
spec:
  selector: app == 'a'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'c'
    destination:
      ports: [8080]
"
                .to_string(),
            );
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        policies(&parts)
    };
    let Some(mut node) = Node::native(&version(
        "{protocol: TCP, port: 80}, {protocol: TCP, port: 443}",
        true,
    )) else {
        return;
    };
    let first_epoch = node.epoch();

    // Three flows under the first version: A → B:80, A → B:443, and C → A:8080.
    let http = Flow::tcp(POD_A, 40000, POD_B, 80);
    let https = Flow::tcp(POD_A, 40001, POD_B, 443);
    let into_a = Flow::tcp(POD_C, 40002, POD_A, 8080);
    for flow in [http, https] {
        let out = node.run(FROM_WORKLOAD, &from_pod_a(&flow.packet(SYN)));
        assert_eq!(out.action, TC_ACT_REDIRECT);
    }
    let out = node.run(FROM_HOST_IFACE, &from_fabric(&into_a.packet(SYN)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let out = node.run(
        FROM_WORKLOAD,
        &from_pod_a(&into_a.reply().packet(SYN | ACK)),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT, "A's answer to C");
    node.expect(
        "three flows opened",
        &[
            (Counter::PolicyAllowed, 3),
            (Counter::ConntrackHit, 1),
            (Counter::ForwardedLocal, 3),
            (Counter::ForwardedRemote, 1),
        ],
    );
    for flow in [http, https, into_a] {
        assert_eq!(node.ct(flow).expect("tracked").epoch, first_epoch);
    }

    // Re-applying the same policy changes nothing.
    node.set_policy(&version(
        "{protocol: TCP, port: 80}, {protocol: TCP, port: 443}",
        true,
    ));
    assert_eq!(node.epoch(), first_epoch, "no verdict changed");

    // The second version allows only 443 to B and drops C → A altogether.
    node.set_policy(&version("{protocol: TCP, port: 443}", false));
    let second_epoch = node.epoch();
    assert_eq!(
        second_epoch,
        first_epoch.wrapping_add(1),
        "the sync moved the epoch on"
    );

    let out = node.run(FROM_WORKLOAD, &from_pod_a(&http.packet(PSH | ACK)));
    assert_eq!(out.action, TC_ACT_SHOT, "A → B:80 is over");
    node.expect(
        "A → B:80 after the change",
        &[(Counter::DropPolicyRevoked, 1)],
    );
    assert_eq!(node.ct(http), None, "the revoked entry is gone");

    let out = node.run(FROM_WORKLOAD, &from_pod_a(&https.packet(PSH | ACK)));
    assert_eq!(out.action, TC_ACT_REDIRECT, "A → B:443 is still allowed");
    node.expect(
        "A → B:443 after the change",
        &[
            (Counter::ConntrackRechecked, 1),
            (Counter::ConntrackHit, 1),
            (Counter::ForwardedLocal, 1),
        ],
    );
    assert_eq!(node.ct(https).expect("kept").epoch, second_epoch);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&https.packet(PSH | ACK)));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    node.expect(
        "A → B:443 once rechecked",
        &[(Counter::ConntrackHit, 1), (Counter::ForwardedLocal, 1)],
    );

    // The reply direction of a revoked flow is judged in the flow's original direction:
    // A's answer to C stops because A's ingress no longer accepts C.
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&into_a.reply().packet(ACK)));
    assert_eq!(out.action, TC_ACT_SHOT, "A → C reply of a revoked flow");
    node.expect("A's reply to C", &[(Counter::DropPolicyRevoked, 1)]);
    assert_eq!(node.ct(into_a), None);

    // And the revoked flow cannot start over.
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&http.packet(SYN)));
    assert_eq!(out.action, TC_ACT_SHOT);
    node.expect("A → B:80 SYN again", &[(Counter::DropPolicyDenied, 1)]);
}

// ---------------------------------------------------------------------------------------
// 6. No way around policy.

/// Pod B accepts TCP 80 from pods A and C (and nothing else).
const B_ALLOWS_A_AND_C_ON_80: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b-allows-a-and-c
  namespace: default
spec:
  podSelector:
    matchLabels: {app: b}
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: a}
    - podSelector:
        matchLabels: {app: c}
    ports:
    - {protocol: TCP, port: 80}
";

/// Puts an IPv4 packet into the frame a path receives.
type Wrap = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// Broken variants of a well-formed frame (Ethernet + IPv4 + TCP) whose flow policy allows.
fn malformed_variants(good: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = Vec::new();
    let mut ihl_low = good.to_vec();
    ihl_low[14] = 0x44;
    fix_ip_checksum(&mut ihl_low);
    cases.push(("IHL 4", ihl_low));
    let mut ihl_past_total = good.to_vec();
    ihl_past_total[14] = 0x4f;
    fix_ip_checksum(&mut ihl_past_total);
    cases.push(("IHL 15 beyond the total length", ihl_past_total));
    let mut total_long = good.to_vec();
    let claimed = (good.len() - 14 + 1) as u16;
    total_long[16..18].copy_from_slice(&claimed.to_be_bytes());
    fix_ip_checksum(&mut total_long);
    cases.push(("total length one byte past the frame", total_long));
    let mut total_short = good.to_vec();
    total_short[16..18].copy_from_slice(&12u16.to_be_bytes());
    fix_ip_checksum(&mut total_short);
    cases.push(("total length inside the header", total_short));
    let mut truncated = good[..14 + 20 + 4].to_vec();
    truncated[16..18].copy_from_slice(&24u16.to_be_bytes());
    fix_ip_checksum(&mut truncated);
    cases.push(("TCP header cut after the ports", truncated));
    cases
}

#[test]
fn malformed_headers_are_dropped_before_policy_on_every_path() {
    let Some(mut node) = Node::start(
        "Always",
        "Never",
        &policies(&[DEFAULT_DENY_INGRESS, B_ALLOWS_A_AND_C_ON_80]),
    ) else {
        return;
    };
    let from_a = Flow::tcp(POD_A, 40000, POD_B, 80).packet(SYN);
    let from_c = Flow::tcp(POD_C, 40000, POD_B, 80).packet(SYN);
    let paths: [(&str, &str, Wrap, &[u8]); 4] = [
        ("pod A → B", FROM_WORKLOAD, Box::new(from_pod_a), &from_a),
        (
            "C → B plain",
            FROM_HOST_IFACE,
            Box::new(from_fabric),
            &from_c,
        ),
        (
            "C → B in IPIP from node-1",
            FROM_HOST_IFACE,
            Box::new(|ip: &[u8]| from_node_1(Tunnel::Ipip, ip)),
            &from_c,
        ),
        ("host → B", TO_WORKLOAD, Box::new(from_host_to_b), &from_c),
    ];
    for (path, program, wrap, ip) in &paths {
        // The inner frame is broken; IPIP wraps it in a correct outer header.
        let good = from_pod_a(ip);
        for (what, broken) in malformed_variants(&good) {
            let frame = wrap(&broken[14..]);
            let out = node.run(program, &frame);
            assert_eq!(out.action, TC_ACT_SHOT, "{path}: {what} was not dropped");
            let decapsulated = u64::from(path.contains("IPIP"));
            node.expect(
                &format!("{path}: {what}"),
                &[
                    (Counter::DropMalformed, 1),
                    (Counter::Decapsulated, decapsulated),
                ],
            );
        }
    }
    assert_eq!(node.ct_len(), 0, "nothing malformed was tracked");

    // The same packets, well formed, are allowed on every path: the drops above were the
    // header checks, not policy.
    for (path, program, wrap, ip) in &paths {
        let out = node.run(program, &wrap(ip));
        assert_ne!(
            out.action, TC_ACT_SHOT,
            "{path}: the well-formed packet passes"
        );
    }
    assert_eq!(
        node.counters()[&(Counter::PolicyAllowed as u32)],
        2,
        "two flows (A → B, C → B) allowed by policy"
    );
}

#[test]
fn ip_options_cannot_misplace_the_ports_policy_judges() {
    // docs/policy.md: packets with IP options are accepted and their ports read after the
    // options. These options hold bytes that read as ports 40000 → 80 (allowed) if the
    // transport header were assumed at offset 20.
    let Some(mut node) = Node::native(&policies(&[DEFAULT_DENY_INGRESS, B_ALLOWS_A_ON_80])) else {
        return;
    };
    let with_options = |flow: Flow| {
        Ipv4 {
            options: vec![0x9c, 0x40, 0x00, 0x50],
            ..Ipv4::new(TCP, flow.src, flow.dst)
        }
        .packet(&flow.transport(SYN, b"tortie"))
    };

    let denied = Flow::tcp(POD_A, 40000, POD_B, 81);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&with_options(denied)));
    assert_eq!(
        out.action, TC_ACT_SHOT,
        "port 81 behind options is still port 81"
    );
    node.expect("options, port 81", &[(Counter::DropPolicyDenied, 1)]);
    assert_eq!(node.ct_len(), 0);

    let allowed = Flow::tcp(POD_A, 40001, POD_B, 80);
    let packet = with_options(allowed);
    let out = node.run(FROM_WORKLOAD, &from_pod_a(&packet));
    assert_delivered_to(&out, POD_B_MAC, &packet);
    node.expect(
        "options, port 80",
        &[(Counter::PolicyAllowed, 1), (Counter::ForwardedLocal, 1)],
    );
    assert!(node.ct(allowed).is_some(), "tracked with the real ports");
}

#[test]
fn encapsulated_traffic_is_subject_to_the_pods_ingress_policy() {
    for (ipip, vxlan, kind, tunnel) in [
        ("Always", "Never", Tunnel::Ipip, "IPIP"),
        ("Never", "Always", Tunnel::Vxlan, "VXLAN"),
    ] {
        let Some(mut node) = Node::start(
            ipip,
            vxlan,
            &policies(&[DEFAULT_DENY_INGRESS, B_ALLOWS_A_AND_C_ON_80]),
        ) else {
            return;
        };
        let wrap = |ip: &[u8]| from_node_1(kind, ip);

        // D is on a known node, but B does not accept it.
        let out = node.run(
            FROM_HOST_IFACE,
            &wrap(&Flow::tcp(POD_D, 40000, POD_B, 80).packet(SYN)),
        );
        assert_eq!(out.action, TC_ACT_SHOT, "{tunnel}: D → B");
        node.expect(
            &format!("{tunnel}: D → B"),
            &[(Counter::Decapsulated, 1), (Counter::DropPolicyDenied, 1)],
        );
        // C on port 22 is not allowed either.
        let out = node.run(
            FROM_HOST_IFACE,
            &wrap(&Flow::tcp(POD_C, 40000, POD_B, 22).packet(SYN)),
        );
        assert_eq!(out.action, TC_ACT_SHOT, "{tunnel}: C → B:22");
        node.expect(
            &format!("{tunnel}: C → B:22"),
            &[(Counter::Decapsulated, 1), (Counter::DropPolicyDenied, 1)],
        );
        // C on port 80 is.
        let allowed = Flow::tcp(POD_C, 40000, POD_B, 80);
        let syn = allowed.packet(SYN);
        let out = node.run(FROM_HOST_IFACE, &wrap(&syn));
        assert_delivered_to(&out, POD_B_MAC, &syn);
        assert_eq!(out.packet.len(), 14 + syn.len(), "{tunnel}: decapsulated");
        node.expect(
            &format!("{tunnel}: C → B:80"),
            &[
                (Counter::Decapsulated, 1),
                (Counter::PolicyAllowed, 1),
                (Counter::ForwardedLocal, 1),
            ],
        );
        assert!(node.ct(allowed).is_some());
    }
}

#[test]
fn host_to_pod_traffic_is_subject_to_the_pods_ingress_policy() {
    let Some(mut node) = Node::native(&policies(&[DEFAULT_DENY_INGRESS, B_ALLOWS_A_AND_C_ON_80]))
    else {
        return;
    };
    // Routed by the host stack from outside the cluster (e.g. a node port).
    let out = node.run(
        TO_WORKLOAD,
        &from_host_to_b(&Flow::tcp(EXTERNAL, 40000, POD_B, 80).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT, "external → B");
    node.expect("external → B:80", &[(Counter::DropPolicyDenied, 1)]);

    let out = node.run(
        TO_WORKLOAD,
        &from_host_to_b(&Flow::tcp(POD_D, 40000, POD_B, 80).packet(SYN)),
    );
    assert_eq!(out.action, TC_ACT_SHOT, "D → B through the host");
    node.expect("D → B:80", &[(Counter::DropPolicyDenied, 1)]);

    // An allowed peer passes, unchanged (the host stack already routed it).
    let frame = from_host_to_b(&Flow::tcp(POD_C, 40000, POD_B, 80).packet(SYN));
    let out = node.run(TO_WORKLOAD, &frame);
    assert_eq!(out.action, TC_ACT_OK, "C → B through the host");
    assert_eq!(out.packet, frame);
    node.expect(
        "C → B:80",
        &[(Counter::PolicyAllowed, 1), (Counter::ToWorkload, 1)],
    );

    // docs/policy.md: this node's own addresses always reach its pods (kubelet probes).
    let probe = Flow::tcp(NODE_IP, 40000, POD_B, 8081);
    let out = node.run(TO_WORKLOAD, &from_host_to_b(&probe.packet(SYN)));
    assert_eq!(out.action, TC_ACT_OK, "kubelet probe from the node");
    node.expect(
        "node → B:8081",
        &[(Counter::PolicyAllowed, 1), (Counter::ToWorkload, 1)],
    );
    assert!(node.ct(probe).is_some());
}
