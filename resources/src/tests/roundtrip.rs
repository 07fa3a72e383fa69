//! Every kind read from realistic YAML, checked field by field, and written back.

use super::samples;
use super::{errors_of, parse_one};
use crate::*;

#[test]
fn every_sample_is_valid_and_round_trips_through_yaml_and_json() {
    for text in samples::ALL {
        let resources = parse_documents(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!resources.is_empty());
        for resource in &resources {
            assert_eq!(errors_of(resource), Vec::<String>::new(), "{text}");
        }
        let yaml = to_yaml(&resources);
        assert_eq!(parse_documents(&yaml).unwrap(), resources, "{yaml}");
        let json = to_json(&resources);
        assert_eq!(parse_documents(&json).unwrap(), resources, "{json}");
        // And each resource on its own, as stored in etcd.
        for resource in &resources {
            let stored = serde_json::to_string(resource).unwrap();
            let read: Resource = serde_json::from_str(&stored).unwrap();
            assert_eq!(&read, resource);
        }
        // Defaults survive a round trip too.
        let defaulted: Vec<Resource> = resources.into_iter().map(Resource::with_defaults).collect();
        assert_eq!(parse_documents(&to_yaml(&defaulted)).unwrap(), defaulted);
    }
}

#[test]
fn ip_pool_fields() {
    let Resource::IpPool(pool) = parse_one(samples::IPPOOL_V4) else {
        panic!("not an IPPool")
    };
    assert_eq!(pool.metadata.name, "default-ipv4-ippool");
    assert_eq!(pool.spec.cidr, "10.65.0.0/16");
    assert_eq!(pool.spec.ipip_mode, Some(EncapMode::CrossSubnet));
    assert_eq!(pool.spec.nat_outgoing, Some(true));
    assert_eq!(pool.spec.block_size, None);
    assert_eq!(pool.spec.block_size(), 26);
    assert_eq!(pool.spec.cidr_net(), Some("10.65.0.0/16".parse().unwrap()));
    assert_eq!(
        pool.spec.allowed_uses(),
        &[AllowedUse::Workload, AllowedUse::Tunnel]
    );
    // Written back as the user wrote it: nothing added.
    assert_eq!(to_yaml(&[pool.into()]), samples::IPPOOL_V4);
}

#[test]
fn node_fields() {
    let Resource::Node(node) = parse_one(samples::NODE) else {
        panic!("not a Node")
    };
    let bgp = node.spec.bgp.as_ref().unwrap();
    assert_eq!(bgp.ipv4_interface(), Some("10.99.0.11/24".parse().unwrap()));
    assert_eq!(bgp.as_number, Some(AsNumber(64512)));
    assert_eq!(bgp.route_reflector_cluster_id.as_deref(), Some("224.0.0.1"));
    assert_eq!(
        node.spec.addresses[0].address_type,
        Some(NodeAddressType::CalicoNodeIp)
    );
    assert_eq!(node.spec.orch_refs[0].orchestrator, "k8s");
    assert_eq!(node.metadata.resource_version.as_deref(), Some("1234"));
    assert_eq!(node.metadata.labels["rack"], "r1");
}

#[test]
fn workload_endpoint_fields() {
    let resource = parse_one(samples::WORKLOAD_ENDPOINT);
    assert_eq!(
        resource.key(),
        "/calico/resources/v3/projectcalico.org/workloadendpoints/prod/node--0-k8s-frontend--5gs43-eth0"
    );
    let Resource::WorkloadEndpoint(wep) = resource else {
        panic!("not a WorkloadEndpoint")
    };
    assert_eq!(
        wep.spec.expected_name().as_deref(),
        Some(wep.metadata.name.as_str())
    );
    assert_eq!(wep.spec.ip_nets(), vec!["10.65.0.10/32".parse().unwrap()]);
    assert_eq!(
        wep.spec.mac_addr(),
        Some([0xca, 0xfe, 0x1d, 0x52, 0xbb, 0xe9])
    );
    assert_eq!(wep.spec.ports[1].protocol, Protocol::Udp);
    assert_eq!(wep.spec.ports[1].host_port, Some(5353));
    assert_eq!(
        wep.spec.container_id.as_deref(),
        Some("1337495556942031415")
    );
}

#[test]
fn bgp_fields() {
    let peers = parse_documents(samples::BGP_PEERS).unwrap();
    let [Resource::BgpPeer(tor), Resource::BgpPeer(rr)] = &peers[..] else {
        panic!("expected two BGPPeers")
    };
    assert_eq!(
        tor.spec.peer_addr(),
        Some(("10.99.0.1".parse().unwrap(), None))
    );
    assert_eq!(tor.spec.as_number, Some(AsNumber(64513)));
    assert_eq!(
        tor.spec
            .password
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .key,
        "rr-password"
    );
    assert_eq!(
        validate::parse_go_duration(tor.spec.max_restart_time.as_deref().unwrap()),
        Ok(std::time::Duration::from_secs(120))
    );
    assert_eq!(rr.spec.source_address(), SourceAddress::None);
    assert_eq!(tor.spec.source_address(), SourceAddress::UseNodeIp);

    let Resource::BgpConfiguration(config) = parse_one(samples::BGP_CONFIGURATION) else {
        panic!("not a BGPConfiguration")
    };
    assert!(!config.spec.node_to_node_mesh_enabled());
    assert_eq!(config.spec.as_number(), AsNumber(63400));
    assert_eq!(config.spec.listen_port(), 178);
    assert_eq!(config.spec.service_cluster_ips[0].cidr, "10.96.0.0/12");
}

#[test]
fn global_network_policy_fields() {
    let Resource::GlobalNetworkPolicy(gnp) = parse_one(samples::GLOBAL_NETWORK_POLICY) else {
        panic!("not a GlobalNetworkPolicy")
    };
    assert_eq!(gnp.spec.order, Some(100.0));
    let redis = &gnp.spec.ingress[0];
    assert_eq!(redis.action, RuleAction::Allow);
    assert_eq!(redis.protocol, Some(Protocol::Tcp));
    assert_eq!(redis.source.selector.as_deref(), Some("role == 'frontend'"));
    assert_eq!(redis.source.not_nets, vec!["10.65.99.0/24"]);
    assert_eq!(
        redis.destination.ports,
        vec![
            Port::Number(6379),
            Port::Range {
                first: 8000,
                last: 8080
            },
            Port::Named("redis".into())
        ]
    );
    let ping = &gnp.spec.ingress[1];
    assert_eq!(
        ping.icmp,
        Some(IcmpFields {
            icmp_type: Some(8),
            code: Some(0)
        })
    );
    let deny = &gnp.spec.ingress[2];
    assert_eq!(deny.source.namespace_selector.as_deref(), Some("global()"));
    assert_eq!(
        deny.source.service_accounts.as_ref().unwrap().names,
        vec!["api", "web"]
    );
    assert_eq!(deny.destination.not_ports[0].range(), Some((1, 1023)));
    // calicoctl prints whole orders as integers.
    let yaml = to_yaml(&[gnp.into()]);
    assert!(yaml.contains("order: 100\n"), "{yaml}");
}

#[test]
fn network_policy_and_profile_fields() {
    let resource = parse_one(samples::NETWORK_POLICY);
    assert_eq!(resource.namespace(), Some("prod"));
    let Resource::NetworkPolicy(np) = resource else {
        panic!("not a NetworkPolicy")
    };
    assert_eq!(np.spec.order, Some(10.5));
    assert_eq!(
        np.spec.ingress[0].destination.ports,
        vec![Port::Named("http".into()), Port::Number(443)]
    );
    assert_eq!(
        np.spec.effective_types(),
        vec![PolicyType::Ingress, PolicyType::Egress]
    );

    let Resource::Profile(profile) = parse_one(samples::PROFILE) else {
        panic!("not a Profile")
    };
    assert_eq!(profile.spec.ingress, vec![Rule::new(RuleAction::Allow)]);
    assert_eq!(
        profile.spec.labels_to_apply["pcns.projectcalico.org/name"],
        "prod"
    );
}

#[test]
fn kubernetes_fields() {
    let resource = parse_one(samples::K8S_NETWORK_POLICY);
    assert_eq!(resource.kind(), Kind::K8sNetworkPolicy);
    assert_eq!(resource.api_version(), "networking.k8s.io/v1");
    assert_eq!(
        resource.key(),
        "/calico/resources/v3/k8s/networkpolicies/default/test-network-policy"
    );
    let Resource::K8sNetworkPolicy(knp) = resource else {
        panic!("not a Kubernetes NetworkPolicy")
    };
    assert_eq!(knp.spec.pod_selector.match_labels["role"], "db");
    let from = &knp.spec.ingress[0].from;
    let block = from[0].ip_block.as_ref().unwrap();
    assert_eq!(block.cidr, "172.17.0.0/16");
    assert_eq!(block.except, vec!["172.17.1.0/24"]);
    let requirement = &from[2].pod_selector.as_ref().unwrap().match_expressions[0];
    assert_eq!(requirement.operator, SelectorOperator::In);
    assert_eq!(requirement.values, vec!["web", "api"]);
    let ports = &knp.spec.egress[0].ports;
    assert_eq!(ports[0].port, Some(IntOrString::Int(32000)));
    assert_eq!(ports[0].end_port, Some(32768));
    assert_eq!(ports[1].port, Some(IntOrString::String("dns".into())));
    assert_eq!(ports[1].protocol, None);

    let Resource::Namespace(ns) = parse_one(samples::NAMESPACE) else {
        panic!("not a Namespace")
    };
    assert_eq!(ns.metadata.labels["team"], "shop");

    let resource = parse_one(samples::POD);
    assert_eq!(
        resource.key(),
        "/calico/resources/v3/k8s/pods/prod/frontend-5gs43"
    );
    let Resource::Pod(pod) = resource else {
        panic!("not a Pod")
    };
    assert_eq!(pod.spec.node_name.as_deref(), Some("node-0"));
    assert_eq!(pod.spec.containers[0].ports[0].container_port, 8080);
    assert_eq!(pod.status.pod_ip.as_deref(), Some("10.65.0.10"));
    // Fields not modelled are dropped on the way out.
    let yaml = to_yaml(&[pod.into()]);
    assert!(
        !yaml.contains("image") && !yaml.contains("ownerReferences"),
        "{yaml}"
    );
}

#[test]
fn typed_resources_serialize_as_whole_documents() {
    let pool = IpPool {
        metadata: ObjectMeta::named("p"),
        spec: IpPoolSpec {
            cidr: "10.1.0.0/16".into(),
            ..IpPoolSpec::default()
        },
    };
    let json = serde_json::to_value(&pool).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.1.0.0/16"}
        })
    );
    let back: IpPool = serde_json::from_value(json).unwrap();
    assert_eq!(back, pool);
    // A typed read refuses another kind.
    let err = serde_json::from_str::<IpPool>(
        r#"{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{"name":"n"}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected kind IPPool"), "{err}");
}
