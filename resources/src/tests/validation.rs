//! Validation: every problem reported at once, with its exact path and reason.

use super::{errors_of, parse_one};
use crate::*;

#[test]
fn ip_pool_reports_every_problem() {
    let pool = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
  labels:
    bad key: x
spec:
  cidr: 10.65.0.1/16
  blockSize: 33
  ipipMode: Always
  vxlanMode: CrossSubnet
  nodeSelector: ''
",
    );
    assert_eq!(
        errors_of(&pool),
        vec![
            "IPPool default-ipv4-ippool: metadata.labels[\"bad key\"]: key \"bad key\" is not \
             valid: the name part must be 1 to 63 letters, digits, '-', '_' or '.', starting \
             and ending with a letter or digit",
            "IPPool default-ipv4-ippool: spec.cidr: 10.65.0.1/16 has host bits set: use the \
             network address 10.65.0.0/16",
            "IPPool default-ipv4-ippool: spec.blockSize: 33 is out of range: must be 20 to 32",
            "IPPool default-ipv4-ippool: spec.ipipMode: ipipMode and vxlanMode cannot both be \
             enabled: set one of them to Never",
            "IPPool default-ipv4-ippool: spec.nodeSelector: must not be empty: write a selector \
             such as all() or omit the field",
        ]
    );
    let Err(errors) = validate(&pool) else {
        panic!("invalid pool validated")
    };
    assert_eq!(
        errors[2],
        FieldError {
            object: "IPPool default-ipv4-ippool".into(),
            path: "spec.blockSize".into(),
            reason: "33 is out of range: must be 20 to 32".into(),
        }
    );
}

fn pool(name: &str, cidr: &str, block_size: Option<i32>) -> IpPool {
    IpPool {
        metadata: ObjectMeta::named(name),
        spec: IpPoolSpec {
            cidr: cidr.into(),
            block_size,
            ..IpPoolSpec::default()
        },
    }
}

fn pool_errors(pool: IpPool) -> Vec<String> {
    errors_of(&pool.into())
}

#[test]
fn ip_pool_sizes_families_and_ranges() {
    assert_eq!(
        pool_errors(pool("p", "10.65.0.0/16", Some(32))),
        Vec::<String>::new()
    );
    assert_eq!(
        pool_errors(pool("p", "10.65.0.0/28", None)),
        vec![
            "IPPool p: spec.cidr: the pool 10.65.0.0/28 is smaller than one block (the default \
             /26): use a larger CIDR or set blockSize to at least 28"
        ]
    );
    assert_eq!(
        pool_errors(pool("p", "10.65.0.0/24", Some(20))),
        vec![
            "IPPool p: spec.blockSize: /20 blocks do not fit in the /24 pool: blockSize must be \
             at least the CIDR's prefix length"
        ]
    );
    assert_eq!(
        pool_errors(pool("p", "fd00::/64", Some(26))),
        vec!["IPPool p: spec.blockSize: 26 is out of range: must be 116 to 128"]
    );
    assert_eq!(
        pool_errors(pool("p", "169.254.0.0/16", None)),
        vec!["IPPool p: spec.cidr: 169.254.0.0/16 overlaps the link-local range 169.254.0.0/16"]
    );
    assert_eq!(
        pool_errors(pool("p", "10.0.0.0/33", None)),
        vec!["IPPool p: spec.cidr: \"10.0.0.0/33\" is not a valid CIDR such as 10.65.0.0/16"]
    );
    assert_eq!(
        pool_errors(pool("Pool_1", "", None)),
        vec![
            "IPPool Pool_1: metadata.name: \"Pool_1\" is not a valid name: use lower-case \
             letters, digits, '-' and '.', starting and ending with a letter or digit",
            "IPPool Pool_1: spec.cidr: is required: the pool's range, e.g. 10.65.0.0/16",
        ]
    );
    let mut v6 = pool("p", "fd00::/64", None);
    v6.spec.ipip_mode = Some(EncapMode::CrossSubnet);
    v6.metadata.namespace = Some("prod".into());
    assert_eq!(
        pool_errors(v6),
        vec![
            "IPPool p: metadata.namespace: IPPool is cluster-scoped: remove the namespace",
            "IPPool p: spec.ipipMode: IP-in-IP is not supported on an IPv6 pool: use Never (or \
             vxlanMode)",
        ]
    );
}

#[test]
fn overlapping_pools_name_the_other_pool() {
    let existing = vec![
        pool("default-ipv4-ippool", "10.65.0.0/16", None),
        pool("other", "192.168.0.0/24", None),
        pool("v6", "fd00::/48", None),
    ];
    let new = pool("new-pool", "10.65.128.0/20", None);
    let errors = validate_pool_against(&new, &existing);
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![
            "IPPool new-pool: spec.cidr: 10.65.128.0/20 overlaps IPPool default-ipv4-ippool \
             (10.65.0.0/16): pools must not share addresses"
        ]
    );
    // Replacing a pool by the same name is not an overlap with itself.
    let replacement = pool("default-ipv4-ippool", "10.65.0.0/17", None);
    assert!(validate_pool_against(&replacement, &existing).is_empty());
    let disjoint = pool("disjoint", "10.66.0.0/16", None);
    assert!(validate_pool_against(&disjoint, &existing).is_empty());
}

#[test]
fn validate_all_reports_every_resource_and_cross_checks() {
    let resources = vec![
        Resource::from(pool("a", "10.65.0.0/16", None)),
        Resource::from(pool("b", "10.65.0.0/24", Some(40))),
        Resource::from(pool("a", "10.70.0.0/16", None)),
    ];
    let errors = validate_all(&resources).unwrap_err();
    assert_eq!(
        errors,
        vec![
            "resource 2: IPPool b: spec.blockSize: 40 is out of range: must be 20 to 32",
            "resource 3: IPPool a: appears more than once in this set (first as resource 1): \
             keep one definition",
            "resource 2: IPPool b: spec.cidr: 10.65.0.0/24 overlaps IPPool a (10.65.0.0/16): \
             pools must not share addresses",
        ]
    );
    assert_eq!(validate_all(&resources[..1]), Ok(()));
}

#[test]
fn policy_rules_report_every_problem_with_paths() {
    let gnp = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: bad-policy
spec:
  selector: global()
  types: [Ingress, Ingress]
  preDNAT: true
  ingress:
    - action: Allow
      destination:
        ports: [80]
    - action: Allow
      protocol: TCP
      source:
        nets: [10.0.0.0/8, fd00::/8, not-a-cidr]
        selector: ''
      destination:
        ports: [0, '90:80', Bad_Name]
    - action: Deny
      protocol: UDP
      icmp:
        code: 300
      ipVersion: 5
    - action: Allow
      protocol: ICMPv6
      ipVersion: 4
      source:
        namespaceSelector: global() && team == 'a'
  egress:
    - action: Allow
",
    );
    let p = "GlobalNetworkPolicy bad-policy";
    assert_eq!(
        errors_of(&gnp),
        vec![
            format!("{p}: spec.selector: global() can only be used in a rule's namespaceSelector"),
            format!("{p}: spec.types[1]: Ingress is listed more than once"),
            format!(
                "{p}: spec.ingress[0].destination.ports: rules that match ports must set \
                 protocol to TCP, UDP, SCTP or UDPLite"
            ),
            format!(
                "{p}: spec.ingress[1].source.selector: must not be empty: write a selector such \
                 as all() or omit the field"
            ),
            format!(
                "{p}: spec.ingress[1].destination.ports[0]: 0 is not a valid port: use 1 to 65535"
            ),
            format!(
                "{p}: spec.ingress[1].destination.ports[1]: range 90:80 ends before it starts: \
                 write it as first:last"
            ),
            format!(
                "{p}: spec.ingress[1].destination.ports[2]: \"Bad_Name\" is not a valid port \
                 name: use 1 to 15 lower-case letters, digits and '-', with at least one letter \
                 and no '-' at either end or twice in a row"
            ),
            format!(
                "{p}: spec.ingress[1].source.nets[2]: \"not-a-cidr\" is not a valid CIDR such as \
                 10.0.0.0/8"
            ),
            format!(
                "{p}: spec.ingress[1].source.nets: the rule mixes IPv4 and IPv6 CIDRs: write one \
                 rule per IP version"
            ),
            format!(
                "{p}: spec.ingress[2].icmp: rules that match ICMP fields must set protocol to \
                 ICMP or ICMPv6"
            ),
            format!("{p}: spec.ingress[2].icmp.code: 300 is out of range: must be 0 to 255"),
            format!("{p}: spec.ingress[2].icmp.code: an ICMP code needs an ICMP type"),
            format!("{p}: spec.ingress[2].ipVersion: 5 is not an IP version: use 4 or 6"),
            format!(
                "{p}: spec.ingress[3].source.namespaceSelector: global() cannot be combined \
                 with other selectors"
            ),
            format!(
                "{p}: spec.ingress[3].ipVersion: must be 6 with protocol ICMPv6 (use ICMP for \
                 IPv4)"
            ),
            format!("{p}: spec.egress: a preDNAT policy cannot have egress rules"),
            format!("{p}: spec.applyOnForward: must be true when preDNAT or doNotTrack is true"),
        ]
    );
}

#[test]
fn network_policy_names_tiers_and_rule_versions() {
    let np = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: a.b.c
  namespace: Prod
spec:
  tier: security
  ingress:
    - action: Allow
      ipVersion: 6
      protocol: 1
      source:
        nets: [10.0.0.0/8]
",
    );
    let p = "NetworkPolicy Prod/a.b.c";
    assert_eq!(
        errors_of(&np),
        vec![
            format!(
                "{p}: metadata.name: \"a.b.c\" is not a valid policy name: use lower-case \
                 letters, digits and '-' (with at most one '.'), starting and ending with a \
                 letter or digit"
            ),
            format!(
                "{p}: metadata.namespace: \"Prod\" is not a valid name: use lower-case letters, \
                 digits and '-', starting and ending with a letter or digit"
            ),
            format!(
                "{p}: spec.tier: tier \"security\" does not exist: only the default tier is \
                 supported"
            ),
            format!("{p}: spec.ingress[0].ipVersion: must be 4 with protocol ICMP (use ICMPv6 for IPv6)"),
            format!(
                "{p}: spec.ingress[0].source.nets: holds CIDRs of another IP version than \
                 ipVersion 6"
            ),
        ]
    );
}

#[test]
fn workload_endpoint_problems() {
    let wep = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node-0-k8s-pod-a-eth0
  namespace: prod
spec:
  orchestrator: k8s
  node: node-0
  pod: pod-a
  endpoint: eth0
  ipNetworks: [10.65.0.0/24, 10.65.0.300/32]
  ipNATs:
    - internalIP: 10.66.0.1
      externalIP: fd00::1
  interfaceName: this-name-is-too-long
  mac: zz:ee:ee:ee:ee:ee
  ports:
    - protocol: ICMP
      port: 0
",
    );
    let p = "WorkloadEndpoint prod/node-0-k8s-pod-a-eth0";
    assert_eq!(
        errors_of(&wep),
        vec![
            format!(
                "{p}: metadata.name: \"node-0-k8s-pod-a-eth0\" does not match the endpoint's \
                 node, orchestrator, workload and endpoint: name it \"node--0-k8s-pod--a-eth0\""
            ),
            format!("{p}: spec.ipNetworks[0]: 10.65.0.0/24 contains more than one address: use /32"),
            format!(
                "{p}: spec.ipNetworks[1]: \"10.65.0.300/32\" is not a valid address such as \
                 10.65.0.10/32"
            ),
            format!("{p}: spec.ipNATs[0].externalIP: fd00::1 and 10.66.0.1 are of different IP versions"),
            format!("{p}: spec.ipNATs[0].internalIP: 10.66.0.1 is not one of the endpoint's ipNetworks"),
            format!(
                "{p}: spec.interfaceName: \"this-name-is-too-long\" is not a valid interface \
                 name: use 1 to 15 letters, digits, '_', '.' or '-'"
            ),
            format!(
                "{p}: spec.mac: \"zz:ee:ee:ee:ee:ee\" is not a valid MAC address: write six hex \
                 pairs like ee:ee:ee:ee:ee:ee"
            ),
            format!("{p}: spec.ports[0].protocol: ICMP has no ports: use TCP, UDP or SCTP"),
            format!("{p}: spec.ports[0].port: 0 is not a valid port: use 1 to 65535"),
            format!("{p}: spec.ports[0].name: is required unless hostPort is set"),
        ]
    );
}

#[test]
fn node_ipam_and_bgp_problems() {
    let resources = parse_documents(
        "\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-0
spec:
  bgp:
    ipv4Address: fd00::11/64
    asNumber: 0
    routeReflectorClusterID: rr-1
  vxlanTunnelMACAddr: 66:b0:5f:58:b5
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: cluster
spec:
  maxBlocksPerHost: -1
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: bad-peer
spec:
  node: node-0
  nodeSelector: all()
  peerIP: 10.99.0.1:0
  peerSelector: rr == 'true'
  maxRestartTime: 2 minutes
  password:
    secretKeyRef:
      name: ''
      key: ''
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: node.node-0
spec:
  asNumber: 65000
  nodeToNodeMeshEnabled: false
  listenPort: 0
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  nodeToNodeMeshEnabled: false
  nodeMeshPassword:
    secretKeyRef:
      name: bgp-secrets
      key: mesh
  serviceClusterIPs:
    - cidr: 10.96.0.0/33
",
    )
    .unwrap();
    assert_eq!(
        validate_all(&resources).unwrap_err(),
        vec![
            "resource 1: Node node-0: spec.bgp.ipv4Address: \"fd00::11/64\" is IPv6: must be an \
             IPv4 address",
            "resource 1: Node node-0: spec.bgp.asNumber: 0 is not a valid AS number: use 1 to \
             4294967295",
            "resource 1: Node node-0: spec.bgp.routeReflectorClusterID: \"rr-1\" is not in IPv4 \
             address format (for example 224.0.0.1)",
            "resource 1: Node node-0: spec.vxlanTunnelMACAddr: \"66:b0:5f:58:b5\" is not a valid \
             MAC address: write six hex pairs like ee:ee:ee:ee:ee:ee",
            "resource 2: IPAMConfiguration cluster: metadata.name: \"cluster\": the \
             IPAMConfiguration must be named default",
            "resource 2: IPAMConfiguration cluster: spec.maxBlocksPerHost: -1 is negative: use 0 \
             for no limit or a positive count",
            "resource 3: BGPPeer bad-peer: spec.node: cannot be set together with nodeSelector: \
             use one",
            "resource 3: BGPPeer bad-peer: spec.peerIP: \"10.99.0.1:0\" has port 0: use 1 to \
             65535",
            "resource 3: BGPPeer bad-peer: spec.peerIP: cannot be set together with \
             peerSelector: use one",
            "resource 3: BGPPeer bad-peer: spec.asNumber: is required when peerIP is set",
            "resource 3: BGPPeer bad-peer: spec.password.secretKeyRef.name: is required",
            "resource 3: BGPPeer bad-peer: spec.password.secretKeyRef.key: is required",
            "resource 3: BGPPeer bad-peer: spec.maxRestartTime: \"2 minutes\" is not a valid \
             duration: write a number and a unit, like 120s or 2m30s",
            "resource 4: BGPConfiguration node.node-0: spec.nodeToNodeMeshEnabled: can only be \
             set in the BGPConfiguration named default",
            "resource 4: BGPConfiguration node.node-0: spec.asNumber: can only be set in the \
             BGPConfiguration named default",
            "resource 4: BGPConfiguration node.node-0: spec.listenPort: 0 is not a valid port: \
             use 1 to 65535",
            "resource 5: BGPConfiguration default: spec.nodeMeshPassword: cannot be set when \
             nodeToNodeMeshEnabled is false",
            "resource 5: BGPConfiguration default: spec.serviceClusterIPs[0].cidr: \
             \"10.96.0.0/33\" is not a valid CIDR such as 10.96.0.0/12",
        ]
    );
}

#[test]
fn kubernetes_network_policy_problems() {
    let knp = parse_one(
        "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad
  namespace: prod
spec:
  podSelector:
    matchExpressions:
      - key: tier
        operator: In
      - key: env
        operator: Exists
        values: [prod]
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except: [172.18.0.0/24, 172.17.0.0/16]
          podSelector: {}
        - {}
      ports:
        - port: 70000
        - port: http
          endPort: 90
        - port: 100
          endPort: 80
",
    );
    let p = "Kubernetes NetworkPolicy prod/bad";
    assert_eq!(
        errors_of(&knp),
        vec![
            format!("{p}: spec.podSelector.matchExpressions[0].values: must not be empty with operator In"),
            format!("{p}: spec.podSelector.matchExpressions[1].values: must be empty with operator Exists"),
            format!(
                "{p}: spec.ingress[0].from[0].ipBlock: cannot be combined with podSelector or \
                 namespaceSelector in one peer: write them as separate peers"
            ),
            format!(
                "{p}: spec.ingress[0].from[0].ipBlock.except[0]: 172.18.0.0/24 must be strictly \
                 inside the ipBlock's cidr 172.17.0.0/16"
            ),
            format!(
                "{p}: spec.ingress[0].from[0].ipBlock.except[1]: 172.17.0.0/16 must be strictly \
                 inside the ipBlock's cidr 172.17.0.0/16"
            ),
            format!("{p}: spec.ingress[0].from[1]: must set podSelector, namespaceSelector or ipBlock"),
            format!("{p}: spec.ingress[0].ports[0].port: 70000 is out of range: must be 1 to 65535"),
            format!("{p}: spec.ingress[0].ports[1].endPort: needs a numeric port to start the range"),
            format!("{p}: spec.ingress[0].ports[2].endPort: 80 must be between port (100) and 65535"),
        ]
    );
}

#[test]
fn valid_defaulted_resources_stay_valid() {
    for text in super::samples::ALL {
        for resource in parse_documents(text).unwrap() {
            let defaulted = resource.with_defaults();
            assert_eq!(validate(&defaulted), Ok(()), "{}", defaulted.describe());
        }
    }
}

#[test]
fn selector_syntax_errors_carry_the_field_and_a_caret() {
    let pool = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: rack-pool
spec:
  cidr: 10.66.0.0/16
  nodeSelector: rack == r1
",
    );
    assert_eq!(
        errors_of(&pool),
        vec![
            "IPPool rack-pool: spec.nodeSelector: invalid selector at character 9: expected a \
             quoted value after '==': values must be quoted, as in rack == \"r1\"\n  \
             rack == r1\n          ^"
        ]
    );

    let peer = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: mesh
spec:
  nodeSelector: has(route-reflector
  peerSelector: rr in {'a' 'b'}
",
    );
    let messages = errors_of(&peer);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].starts_with(
        "BGPPeer mesh: spec.nodeSelector: invalid selector at character 20: expected ')' to \
         close has("
    ));
    assert!(messages[1].starts_with(
        "BGPPeer mesh: spec.peerSelector: invalid selector at character 12: expected ',' or '}'"
    ));
}

#[test]
fn policy_selectors_are_parsed_not_searched_as_text() {
    let gnp = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: selectors
spec:
  selector: role == 'global()'
  namespaceSelector: has(team) &&
  serviceAccountSelector: global( )
  ingress:
    - action: Allow
      source:
        selector: app == 'web' app == 'db'
        notSelector: Bad/key == 'x'
        namespaceSelector: '!global()'
        serviceAccounts:
          selector: name in {'a', 'b'
    - action: Allow
      source:
        namespaceSelector: global( )
",
    );
    let p = "GlobalNetworkPolicy selectors";
    let messages = errors_of(&gnp);
    let heads: Vec<&str> = messages
        .iter()
        .map(|m| m.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(
        heads,
        vec![
            format!(
                "{p}: spec.serviceAccountSelector: global() can only be used in a rule's \
                 namespaceSelector"
            ),
            format!(
                "{p}: spec.ingress[0].source.selector: invalid selector at character 14: \
                 unexpected 'app' after a complete expression: join expressions with && or ||"
            ),
            format!(
                "{p}: spec.ingress[0].source.notSelector: invalid selector at character 1: \
                 invalid label key: key \"Bad/key\" has an invalid prefix \"Bad\": it must be a \
                 DNS subdomain such as example.com"
            ),
            format!(
                "{p}: spec.ingress[0].source.namespaceSelector: global() cannot be combined with \
                 other selectors"
            ),
            format!(
                "{p}: spec.ingress[0].source.serviceAccounts.selector: invalid selector at \
                 character 18: expected ',' or '}}' in the set of values, found the end of the \
                 selector"
            ),
            format!(
                "{p}: spec.namespaceSelector: invalid selector at character 13: expected an \
                 expression after '&&'"
            ),
        ]
    );
    assert_eq!(
        messages[1].lines().skip(1).collect::<Vec<_>>(),
        vec!["  app == 'web' app == 'db'", "               ^"]
    );
}
