//! Calico's defaults, filled by `with_defaults` and shown on output.

use super::parse_one;
use super::samples;
use crate::*;

#[test]
fn ipv4_pool_defaults_are_written_out() {
    let pool = parse_one(samples::IPPOOL_V4).with_defaults();
    assert_eq!(
        to_yaml(&[pool]),
        "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.65.0.0/16
  blockSize: 26
  ipipMode: CrossSubnet
  vxlanMode: Never
  natOutgoing: true
  disabled: false
  disableBGPExport: false
  nodeSelector: all()
  allowedUses:
  - Workload
  - Tunnel
"
    );
}

#[test]
fn ipv6_pool_defaults_keep_what_is_set() {
    let Resource::IpPool(pool) = parse_one(samples::IPPOOL_V6).with_defaults() else {
        panic!("not an IPPool")
    };
    assert_eq!(pool.spec.block_size, Some(122));
    assert_eq!(pool.spec.ipip_mode, Some(EncapMode::Never));
    assert_eq!(pool.spec.vxlan_mode, Some(EncapMode::Always));
    assert_eq!(pool.spec.nat_outgoing, Some(false));
    assert_eq!(pool.spec.disable_bgp_export, Some(true));
    assert_eq!(pool.spec.node_selector.as_deref(), Some("rack == 'r1'"));
    assert_eq!(pool.spec.allowed_uses, vec![AllowedUse::Workload]);
}

#[test]
fn accessors_give_defaults_without_changing_the_object() {
    let spec = IpPoolSpec {
        cidr: "fd00::/64".into(),
        ..IpPoolSpec::default()
    };
    assert_eq!(spec.block_size(), 122);
    assert_eq!(spec.ipip_mode(), EncapMode::Never);
    assert!(!spec.nat_outgoing() && !spec.disabled() && !spec.disable_bgp_export());
    assert_eq!(spec.node_selector(), "all()");
    assert_eq!(spec.block_size, None);

    let ipam = IpamConfigurationSpec::default();
    assert!(!ipam.strict_affinity());
    assert_eq!(ipam.max_blocks_per_host(), None);
    assert!(ipam.auto_allocate_blocks());

    let bgp = BgpConfigurationSpec::default();
    assert_eq!(bgp.log_severity_screen(), LogSeverity::Info);
    assert!(bgp.node_to_node_mesh_enabled());
    assert_eq!(bgp.as_number(), AsNumber(64512));
    assert_eq!(bgp.listen_port(), 179);
}

#[test]
fn ipam_configuration_defaults() {
    let Resource::IpamConfiguration(config) = parse_one(
        "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata:\n  name: default\n",
    )
    .with_defaults() else {
        panic!("not an IPAMConfiguration")
    };
    assert_eq!(
        config.spec,
        IpamConfigurationSpec {
            strict_affinity: Some(false),
            max_blocks_per_host: Some(0),
            auto_allocate_blocks: Some(true),
        }
    );
}

#[test]
fn bgp_defaults_apply_to_the_default_configuration_only() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: node.node-0
spec:
  logSeverityScreen: Debug
";
    let resources: Vec<Resource> = parse_documents(text)
        .unwrap()
        .into_iter()
        .map(Resource::with_defaults)
        .collect();
    let [Resource::BgpConfiguration(global), Resource::BgpConfiguration(per_node)] = &resources[..]
    else {
        panic!("expected two BGPConfigurations")
    };
    assert_eq!(
        global.spec,
        BgpConfigurationSpec {
            log_severity_screen: Some(LogSeverity::Info),
            node_to_node_mesh_enabled: Some(true),
            as_number: Some(AsNumber(64512)),
            listen_port: Some(179),
            ..BgpConfigurationSpec::default()
        }
    );
    // A per-node configuration keeps inheriting what it does not set.
    assert_eq!(
        per_node.spec,
        BgpConfigurationSpec {
            log_severity_screen: Some(LogSeverity::Debug),
            ..BgpConfigurationSpec::default()
        }
    );
    let yaml = to_yaml(&resources);
    assert!(yaml.contains("nodeToNodeMeshEnabled: true"), "{yaml}");
    assert!(yaml.contains("asNumber: 64512"), "{yaml}");
}

#[test]
fn bgp_peer_defaults() {
    let peers: Vec<Resource> = parse_documents(samples::BGP_PEERS)
        .unwrap()
        .into_iter()
        .map(Resource::with_defaults)
        .collect();
    let [Resource::BgpPeer(tor), Resource::BgpPeer(rr)] = &peers[..] else {
        panic!("expected two BGPPeers")
    };
    assert_eq!(tor.spec.source_address, Some(SourceAddress::UseNodeIp));
    assert_eq!(tor.spec.keep_original_next_hop, Some(true));
    assert_eq!(rr.spec.source_address, Some(SourceAddress::None));
    assert_eq!(rr.spec.keep_original_next_hop, Some(false));
    assert!(to_yaml(&peers).contains("sourceAddress: UseNodeIP"));
}

#[test]
fn policy_types_are_filled_as_calico_infers_them() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: ingress-only
spec:
  ingress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: egress-only
spec:
  egress:
    - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: both
spec:
  ingress:
    - action: Allow
  egress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: no-rules
spec:
  selector: all()
";
    let resources: Vec<Resource> = parse_documents(text)
        .unwrap()
        .into_iter()
        .map(Resource::with_defaults)
        .collect();
    let types: Vec<Vec<PolicyType>> = resources
        .iter()
        .map(|r| match r {
            Resource::NetworkPolicy(p) => p.spec.types.clone(),
            Resource::GlobalNetworkPolicy(p) => p.spec.types.clone(),
            _ => panic!("not a policy"),
        })
        .collect();
    use PolicyType::{Egress, Ingress};
    assert_eq!(
        types,
        vec![
            vec![Ingress],
            vec![Egress],
            vec![Ingress, Egress],
            vec![Ingress]
        ]
    );
    // The namespace of namespaced kinds defaults too.
    assert_eq!(
        resources[0].metadata().namespace.as_deref(),
        Some("default")
    );
    assert_eq!(resources[2].metadata().namespace, None);
}

#[test]
fn kubernetes_defaults() {
    let Resource::K8sNetworkPolicy(knp) = parse_one(
        "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-dns
  namespace: prod
spec:
  podSelector: {}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
",
    )
    .with_defaults() else {
        panic!("not a Kubernetes NetworkPolicy")
    };
    // Kubernetes, unlike Calico, always includes Ingress.
    assert_eq!(
        knp.spec.policy_types,
        vec![PolicyType::Ingress, PolicyType::Egress]
    );
    let ports = &knp.spec.egress[0].ports;
    assert_eq!(ports[0].protocol, Some(K8sProtocol::Udp));
    assert_eq!(ports[1].protocol, Some(K8sProtocol::Tcp));

    let Resource::Pod(pod) = parse_one(samples::POD).with_defaults() else {
        panic!("not a Pod")
    };
    assert_eq!(
        pod.spec.containers[0].ports[0].protocol,
        Some(K8sProtocol::Tcp)
    );
}

#[test]
fn unset_namespace_reads_as_default() {
    let resource = parse_one(
        "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-all
spec:
  ingress:
    - action: Allow
",
    );
    assert_eq!(resource.metadata().namespace, None);
    assert_eq!(resource.namespace(), Some("default"));
    assert_eq!(
        resource.key(),
        "/calico/resources/v3/projectcalico.org/networkpolicies/default/allow-all"
    );
    let pool = parse_one(samples::IPPOOL_V4);
    assert_eq!(pool.namespace(), None);
}
