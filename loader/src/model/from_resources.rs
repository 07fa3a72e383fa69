//! The agent's inputs from the datastore's resources: Calico `IPPool`s, `Node`s,
//! `WorkloadEndpoint`s and IPAM blocks, as stored (JSON per key), become the
//! [`ClusterConfig`] and this node's [`LocalEndpoint`]s.
//!
//! Pure: [`ResourceCache`] holds the raw values by key and [`translate`] turns a whole cache
//! into inputs; reading the datastore is `crate::source`'s business. An object that cannot be
//! used is left out with a warning naming its key and the reason, and never takes the others
//! down with it: one pod with a broken record must not cut the whole node off. What is kept
//! passes the same checks as the JSON files ([`cluster::validate`], [`EndpointChecker`]),
//! so the calculation sees the same guarantees whatever the source.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use tortie_ipam::{AllocationBlock, Ipam};
use tortie_resources::{Kind, ResourceKey};

use super::bgp_resources::BgpResources;
use super::{
    cluster::{self, ClusterConfig, ClusterNode, EncapMode, IpPool},
    endpoint::{EndpointChecker, EndpointField, LocalEndpoint},
    MacAddr, PolicyInputs,
};

/// The groups of keys the agent reads, each under its own prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// `IPPool`s.
    IpPools,
    /// Calico `Node`s.
    Nodes,
    /// `WorkloadEndpoint`s of every namespace and node.
    WorkloadEndpoints,
    /// IPAM allocation blocks (IPv4).
    Blocks,
    /// Kubernetes namespaces (their labels feed namespace selectors).
    Namespaces,
    /// Calico `NetworkPolicy`s.
    NetworkPolicies,
    /// Calico `GlobalNetworkPolicy`s.
    GlobalNetworkPolicies,
    /// Kubernetes `NetworkPolicy`s.
    K8sNetworkPolicies,
    /// Calico `Profile`s.
    Profiles,
    /// `BGPPeer`s.
    BgpPeers,
    /// `BGPConfiguration`s.
    BgpConfigurations,
}

impl Section {
    /// Every section.
    pub const ALL: [Section; 11] = [
        Section::IpPools,
        Section::Nodes,
        Section::WorkloadEndpoints,
        Section::Blocks,
        Section::Namespaces,
        Section::NetworkPolicies,
        Section::GlobalNetworkPolicies,
        Section::K8sNetworkPolicies,
        Section::Profiles,
        Section::BgpPeers,
        Section::BgpConfigurations,
    ];

    /// The key prefix to list and watch.
    pub fn prefix(self) -> String {
        match self {
            Section::IpPools => Kind::IpPool.prefix(None),
            Section::Nodes => Kind::Node.prefix(None),
            // Without a namespace, a namespaced kind's prefix covers all namespaces.
            Section::WorkloadEndpoints => Kind::WorkloadEndpoint.prefix(None),
            Section::Blocks => tortie_ipam::keys::BLOCKS_PREFIX.to_string(),
            Section::Namespaces => Kind::Namespace.prefix(None),
            Section::NetworkPolicies => Kind::NetworkPolicy.prefix(None),
            Section::GlobalNetworkPolicies => Kind::GlobalNetworkPolicy.prefix(None),
            Section::K8sNetworkPolicies => Kind::K8sNetworkPolicy.prefix(None),
            Section::Profiles => Kind::Profile.prefix(None),
            Section::BgpPeers => Kind::BgpPeer.prefix(None),
            Section::BgpConfigurations => Kind::BgpConfiguration.prefix(None),
        }
    }

    /// The section `key` belongs to, if any.
    pub fn of_key(key: &str) -> Option<Section> {
        Section::ALL
            .into_iter()
            .find(|section| key.starts_with(&section.prefix()))
    }
}

/// The raw values of every key the agent reads, by section and key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceCache {
    sections: BTreeMap<Section, BTreeMap<String, Vec<u8>>>,
}

impl ResourceCache {
    /// Replaces one section with a fresh listing.
    pub fn replace(
        &mut self,
        section: Section,
        entries: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) {
        self.sections.insert(section, entries.into_iter().collect());
    }

    /// Stores `value` at `key`; `false` (and nothing stored) for a key outside every section.
    pub fn put(&mut self, key: String, value: Vec<u8>) -> bool {
        let Some(section) = Section::of_key(&key) else {
            return false;
        };
        self.sections.entry(section).or_default().insert(key, value);
        true
    }

    /// Forgets `key`; `false` when it was not there.
    pub fn remove(&mut self, key: &str) -> bool {
        Section::of_key(key)
            .and_then(|section| self.sections.get_mut(&section))
            .and_then(|entries| entries.remove(key))
            .is_some()
    }

    /// The entries of one section, ordered by key.
    pub fn entries(&self, section: Section) -> impl Iterator<Item = (&str, &[u8])> {
        self.sections
            .get(&section)
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.sections.values().map(BTreeMap::len).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The inputs made from a [`ResourceCache`], and what was left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Translation {
    /// Pools (IPv4), nodes with an IPv4 address, and the blocks affine to them.
    pub cluster: ClusterConfig,
    /// The endpoints on this node.
    pub endpoints: Vec<LocalEndpoint>,
    /// What policy compilation reads (local interface indices not filled in yet).
    pub policy: PolicyInputs,
    /// What the BIRD configuration is rendered from.
    pub bgp: BgpResources,
    /// One line per object left out: its key and why.
    pub warnings: Vec<String>,
}

/// Translates the whole cache for node `node_name`.
///
/// Objects are taken in key order, so when two clash (overlapping pools, two endpoints with
/// one address) the first key wins and the later one is reported. IPv6 pools and other
/// nodes' endpoints are left out silently: they are not this dataplane's business.
pub fn translate(cache: &ResourceCache, node_name: &str) -> Translation {
    let mut warnings = Vec::new();
    let mut cluster = ClusterConfig {
        vxlan_vni: cluster::DEFAULT_VXLAN_VNI,
        vxlan_port: cluster::DEFAULT_VXLAN_PORT,
        ip_pools: Vec::new(),
        nodes: Vec::new(),
    };
    add_pools(&mut cluster, cache, &mut warnings);
    add_nodes(&mut cluster, cache, &mut warnings);
    add_blocks(&mut cluster, cache, &mut warnings);
    let endpoints = local_endpoints(cache, node_name, &mut warnings);
    let policy = super::policy_inputs::policy_inputs(cache, &mut warnings);
    let bgp = super::bgp_resources::bgp_resources(cache, &cluster, node_name, &mut warnings);
    // Holds by construction: every object was checked against those kept before it.
    debug_assert_eq!(cluster::validate(&cluster), Vec::<String>::new());
    debug_assert_eq!(super::endpoint::validate(&endpoints), Vec::<String>::new());
    Translation {
        cluster,
        endpoints,
        policy,
        bgp,
        warnings,
    }
}

fn skipped(key: &str, reason: impl std::fmt::Display) -> String {
    format!("{key}: {reason}; ignored")
}

/// The object's name: `metadata.name`, else the last segment of its key.
fn name_of(key: &str, metadata_name: &str) -> String {
    if !metadata_name.is_empty() {
        return metadata_name.to_string();
    }
    ResourceKey::parse(key).map_or_else(
        || key.rsplit('/').next().unwrap_or(key).to_string(),
        |parsed| parsed.name,
    )
}

fn encap_mode(mode: tortie_resources::EncapMode) -> EncapMode {
    match mode {
        tortie_resources::EncapMode::Never => EncapMode::Never,
        tortie_resources::EncapMode::Always => EncapMode::Always,
        tortie_resources::EncapMode::CrossSubnet => EncapMode::CrossSubnet,
    }
}

/// A CIDR or a bare address (a host route), host bits kept so that checks can report them.
fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn add_pools(cluster: &mut ClusterConfig, cache: &ResourceCache, warnings: &mut Vec<String>) {
    for (key, value) in cache.entries(Section::IpPools) {
        let resource: tortie_resources::IpPool = match serde_json::from_slice(value) {
            Ok(resource) => resource,
            Err(error) => {
                warnings.push(skipped(key, format_args!("not a valid IPPool: {error}")));
                continue;
            }
        };
        let cidr = match parse_net(&resource.spec.cidr) {
            Some(IpNet::V4(cidr)) => cidr,
            Some(IpNet::V6(_)) => continue,
            None => {
                warnings.push(skipped(
                    key,
                    format_args!("spec.cidr: {:?} is not a CIDR", resource.spec.cidr),
                ));
                continue;
            }
        };
        let pool = IpPool {
            name: name_of(key, &resource.metadata.name),
            cidr,
            ipip_mode: encap_mode(resource.spec.ipip_mode()),
            vxlan_mode: encap_mode(resource.spec.vxlan_mode()),
            nat_outgoing: resource.spec.nat_outgoing(),
        };
        let mut problems: Vec<String> = cluster::pool_problems(&pool)
            .iter()
            .map(|problem| problem.at("spec"))
            .collect();
        if let Some(other) = cluster
            .ip_pools
            .iter()
            .find(|other| cluster::pools_overlap(&pool, other))
        {
            problems.push(format!(
                "spec.cidr: {} overlaps pool {} ({})",
                pool.cidr, other.name, other.cidr
            ));
        }
        if problems.is_empty() {
            cluster.ip_pools.push(pool);
        } else {
            warnings.push(skipped(key, problems.join("; ")));
        }
    }
}

fn add_nodes(cluster: &mut ClusterConfig, cache: &ResourceCache, warnings: &mut Vec<String>) {
    for (key, value) in cache.entries(Section::Nodes) {
        let resource: tortie_resources::Node = match serde_json::from_slice(value) {
            Ok(resource) => resource,
            Err(error) => {
                warnings.push(skipped(key, format_args!("not a valid Node: {error}")));
                continue;
            }
        };
        let name = name_of(key, &resource.metadata.name);
        let Some(ipv4_address) = resource
            .spec
            .bgp
            .as_ref()
            .and_then(|bgp| bgp.ipv4_interface())
        else {
            warnings.push(skipped(
                key,
                "spec.bgp.ipv4Address: no valid IPv4 address; pods on this node are not routed",
            ));
            continue;
        };
        // A bad tunnel MAC only costs the VXLAN peer entry, not the node's routes.
        let vxlan_tunnel_mac_addr = match resource.spec.vxlan_tunnel_mac_addr.as_deref() {
            None => None,
            Some(text) => match text.parse::<MacAddr>() {
                Ok(mac) => Some(mac),
                Err(error) => {
                    warnings.push(format!(
                        "{key}: spec.vxlanTunnelMACAddr: {error}; the node is used without it"
                    ));
                    None
                }
            },
        };
        if cluster.node(&name).is_some() {
            warnings.push(skipped(
                key,
                format_args!("another Node is also named {name}"),
            ));
            continue;
        }
        cluster.nodes.push(ClusterNode {
            name,
            ipv4_address,
            blocks: Vec::new(),
            vxlan_tunnel_mac_addr,
        });
    }
}

fn add_blocks(cluster: &mut ClusterConfig, cache: &ResourceCache, warnings: &mut Vec<String>) {
    for (key, value) in cache.entries(Section::Blocks) {
        let block: AllocationBlock = match serde_json::from_slice(value) {
            Ok(block) => block,
            Err(error) => {
                warnings.push(skipped(
                    key,
                    format_args!("not a valid allocation block: {error}"),
                ));
                continue;
            }
        };
        if let Some(from_key) = Ipam::block_cidr_of_key(key) {
            if from_key != block.cidr {
                warnings.push(skipped(
                    key,
                    format_args!("cidr {} does not match the key ({from_key})", block.cidr),
                ));
                continue;
            }
        }
        // A released or half-deleted block belongs to no node, so no node routes it.
        let Some(node) = block.affine_node().filter(|_| !block.deleted) else {
            continue;
        };
        let problems: Vec<String> = cluster::block_problems(cluster, &block.cidr)
            .iter()
            .map(|problem| problem.reason.clone())
            .collect();
        if !problems.is_empty() {
            warnings.push(skipped(key, problems.join("; ")));
            continue;
        }
        let Some(owner) = cluster.nodes.iter_mut().find(|n| n.name == node) else {
            warnings.push(skipped(
                key,
                format_args!(
                    "block {} is affine to node {node}, which is unknown or unusable",
                    block.cidr
                ),
            ));
            continue;
        };
        owner.blocks.push(block.cidr);
    }
}

fn local_endpoints(
    cache: &ResourceCache,
    node_name: &str,
    warnings: &mut Vec<String>,
) -> Vec<LocalEndpoint> {
    let mut endpoints = Vec::new();
    let mut checker = EndpointChecker::default();
    for (key, value) in cache.entries(Section::WorkloadEndpoints) {
        let resource: tortie_resources::WorkloadEndpoint = match serde_json::from_slice(value) {
            Ok(resource) => resource,
            Err(error) => {
                warnings.push(skipped(
                    key,
                    format_args!("not a valid WorkloadEndpoint: {error}"),
                ));
                continue;
            }
        };
        if resource.spec.node.as_deref() != Some(node_name) {
            continue;
        }
        let endpoint = match local_endpoint(key, resource) {
            Ok(endpoint) => endpoint,
            Err(reason) => {
                warnings.push(skipped(key, reason));
                continue;
            }
        };
        let problems: Vec<String> = checker
            .problems(&endpoint)
            .into_iter()
            .map(|problem| {
                let field = match problem.field {
                    EndpointField::Identity => "spec.pod",
                    EndpointField::Iface => "spec.interfaceName",
                    EndpointField::Ipv4 => "spec.ipNetworks",
                    EndpointField::Mac => "spec.mac",
                };
                format!("{field}: {}", problem.reason)
            })
            .collect();
        if problems.is_empty() {
            checker.record(&endpoint);
            endpoints.push(endpoint);
        } else {
            warnings.push(skipped(key, problems.join("; ")));
        }
    }
    endpoints
}

fn local_endpoint(
    key: &str,
    resource: tortie_resources::WorkloadEndpoint,
) -> Result<LocalEndpoint, String> {
    let spec = resource.spec;
    let ipv4 = spec
        .ip_networks
        .iter()
        .filter_map(|text| parse_net(text))
        .find_map(|net| match net {
            IpNet::V4(net) => Some(net.addr()),
            IpNet::V6(_) => None,
        })
        .ok_or_else(|| format!("spec.ipNetworks: no IPv4 address in {:?}", spec.ip_networks))?;
    let iface = spec
        .interface_name
        .ok_or("spec.interfaceName: missing; the host side of the pod's veth is needed")?;
    let mac = spec
        .mac
        .as_deref()
        .ok_or_else(|| "spec.mac: missing".to_string())?
        .parse::<MacAddr>()
        .map_err(|error| format!("spec.mac: {error}"))?;
    let name = spec
        .pod
        .or(spec.workload)
        .unwrap_or_else(|| name_of(key, &resource.metadata.name));
    Ok(LocalEndpoint {
        name,
        namespace: resource.metadata.namespace_or_default().to_string(),
        node: spec.node.unwrap_or_default(),
        iface,
        ipv4,
        mac,
        labels: resource.metadata.labels,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ipnet::Ipv4Net;

    use super::*;
    use serde_json::json;
    use tortie_resources::{
        IpPoolSpec, Node, NodeBgpSpec, NodeSpec, ObjectMeta, WorkloadEndpoint, WorkloadEndpointSpec,
    };

    const NODE: &str = "node-0";

    fn pool(name: &str, cidr: &str, edit: impl FnOnce(&mut IpPoolSpec)) -> (String, Vec<u8>) {
        let mut resource = tortie_resources::IpPool {
            metadata: ObjectMeta::named(name),
            spec: IpPoolSpec {
                cidr: cidr.into(),
                ..IpPoolSpec::default()
            },
        };
        edit(&mut resource.spec);
        (
            Kind::IpPool.key(None, name),
            serde_json::to_vec(&resource).unwrap(),
        )
    }

    fn node(name: &str, address: Option<&str>, mac: Option<&str>) -> (String, Vec<u8>) {
        let resource = Node {
            metadata: ObjectMeta::named(name),
            spec: NodeSpec {
                bgp: address.map(|address| NodeBgpSpec {
                    ipv4_address: Some(address.into()),
                    ..NodeBgpSpec::default()
                }),
                vxlan_tunnel_mac_addr: mac.map(Into::into),
                ..NodeSpec::default()
            },
        };
        (
            Kind::Node.key(None, name),
            serde_json::to_vec(&resource).unwrap(),
        )
    }

    fn block(cidr: &str, node: &str) -> (String, Vec<u8>) {
        let cidr: Ipv4Net = cidr.parse().unwrap();
        let block = AllocationBlock::new(cidr, node);
        (
            tortie_ipam::keys::block(&cidr),
            serde_json::to_vec(&block).unwrap(),
        )
    }

    fn wep(
        namespace: &str,
        pod: &str,
        node: &str,
        edit: impl FnOnce(&mut WorkloadEndpointSpec),
    ) -> (String, Vec<u8>) {
        let name = format!("{node}-k8s-{pod}-eth0");
        let mut metadata = ObjectMeta::namespaced(namespace, &name);
        metadata.labels.insert("app".into(), pod.into());
        let mut resource = WorkloadEndpoint {
            metadata,
            spec: WorkloadEndpointSpec {
                orchestrator: Some("k8s".into()),
                node: Some(node.into()),
                pod: Some(pod.into()),
                endpoint: Some("eth0".into()),
                ip_networks: vec!["10.65.0.10/32".into()],
                interface_name: Some(format!("cali{pod:0>11}")),
                mac: Some("02:54:0a:41:00:0a".into()),
                ..WorkloadEndpointSpec::default()
            },
        };
        edit(&mut resource.spec);
        (
            Kind::WorkloadEndpoint.key(Some(namespace), &name),
            serde_json::to_vec(&resource).unwrap(),
        )
    }

    fn cache(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> ResourceCache {
        let mut cache = ResourceCache::default();
        for (key, value) in entries {
            assert!(cache.put(key.clone(), value), "{key} is in no section");
        }
        cache
    }

    fn assert_warned(translation: &Translation, key_part: &str, reason: &str) {
        assert!(
            translation
                .warnings
                .iter()
                .any(|w| w.contains(key_part) && w.contains(reason) && w.ends_with("ignored")),
            "no warning about {key_part} saying {reason:?} in {:#?}",
            translation.warnings
        );
    }

    #[test]
    fn builds_the_cluster_and_this_nodes_endpoints() {
        let translation = translate(
            &cache([
                pool("default-ipv4-ippool", "10.65.0.0/16", |spec| {
                    spec.vxlan_mode = Some(tortie_resources::EncapMode::CrossSubnet);
                    spec.nat_outgoing = Some(true);
                }),
                pool("v6", "fd00:65::/48", |_| {}),
                node(NODE, Some("10.99.0.11/24"), Some("66:0a:41:00:00:01")),
                node("node-1", Some("10.99.1.12/24"), None),
                block("10.65.0.0/26", NODE),
                block("10.65.0.64/26", "node-1"),
                wep("default", "a", NODE, |_| {}),
                wep("default", "b", "node-1", |spec| {
                    spec.ip_networks = vec!["10.65.0.70/32".into()];
                }),
            ]),
            NODE,
        );
        assert_eq!(translation.warnings, Vec::<String>::new());
        let cluster = &translation.cluster;
        assert_eq!(cluster.vxlan_vni, cluster::DEFAULT_VXLAN_VNI);
        assert_eq!(
            cluster.ip_pools,
            [IpPool {
                name: "default-ipv4-ippool".into(),
                cidr: "10.65.0.0/16".parse().unwrap(),
                ipip_mode: EncapMode::Never,
                vxlan_mode: EncapMode::CrossSubnet,
                nat_outgoing: true,
            }]
        );
        assert_eq!(
            cluster.nodes,
            [
                ClusterNode {
                    name: NODE.into(),
                    ipv4_address: "10.99.0.11/24".parse().unwrap(),
                    blocks: vec!["10.65.0.0/26".parse().unwrap()],
                    vxlan_tunnel_mac_addr: Some("66:0a:41:00:00:01".parse().unwrap()),
                },
                ClusterNode {
                    name: "node-1".into(),
                    ipv4_address: "10.99.1.12/24".parse().unwrap(),
                    blocks: vec!["10.65.0.64/26".parse().unwrap()],
                    vxlan_tunnel_mac_addr: None,
                },
            ]
        );
        assert_eq!(
            translation.endpoints,
            [LocalEndpoint {
                name: "a".into(),
                namespace: "default".into(),
                node: NODE.into(),
                iface: "cali0000000000a".into(),
                ipv4: Ipv4Addr::new(10, 65, 0, 10),
                mac: "02:54:0a:41:00:0a".parse().unwrap(),
                labels: [("app".to_string(), "a".to_string())].into(),
            }]
        );
    }

    #[test]
    fn an_empty_datastore_gives_empty_inputs() {
        let translation = translate(&ResourceCache::default(), NODE);
        assert!(translation.cluster.ip_pools.is_empty());
        assert!(translation.cluster.nodes.is_empty());
        assert!(translation.endpoints.is_empty());
        assert!(translation.warnings.is_empty());
    }

    #[test]
    fn bad_pools_are_skipped_and_the_rest_kept() {
        let translation = translate(
            &cache([
                pool("a", "10.65.0.0/16", |_| {}),
                pool("b-overlaps", "10.65.128.0/17", |_| {}),
                pool("c-host-bits", "10.66.0.1/16", |_| {}),
                pool("d-both", "10.67.0.0/16", |spec| {
                    spec.ipip_mode = Some(tortie_resources::EncapMode::Always);
                    spec.vxlan_mode = Some(tortie_resources::EncapMode::Always);
                }),
                pool("e-garbage", "not-a-cidr", |_| {}),
                (Kind::IpPool.key(None, "f-json"), b"{".to_vec()),
                pool("g", "10.68.0.0/16", |_| {}),
            ]),
            NODE,
        );
        let names: Vec<&str> = translation
            .cluster
            .ip_pools
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["a", "g"]);
        assert_warned(&translation, "ippools/b-overlaps", "overlaps pool a");
        assert_warned(&translation, "ippools/c-host-bits", "has host bits set");
        assert_warned(&translation, "ippools/d-both", "cannot both be enabled");
        assert_warned(&translation, "ippools/e-garbage", "is not a CIDR");
        assert_warned(&translation, "ippools/f-json", "not a valid IPPool");
        assert_eq!(translation.warnings.len(), 5, "{:#?}", translation.warnings);
    }

    #[test]
    fn nodes_without_an_address_and_their_blocks_are_skipped() {
        let translation = translate(
            &cache([
                pool("p", "10.65.0.0/16", |_| {}),
                node(NODE, Some("10.99.0.11/24"), Some("not-a-mac")),
                node("node-1", None, None),
                block("10.65.0.0/26", NODE),
                block("10.65.0.64/26", "node-1"),
                block("10.65.0.128/26", "node-9"),
                block("10.70.0.0/26", NODE),
            ]),
            NODE,
        );
        assert_eq!(translation.cluster.nodes.len(), 1);
        let this = &translation.cluster.nodes[0];
        assert_eq!(this.blocks, ["10.65.0.0/26".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(this.vxlan_tunnel_mac_addr, None);
        assert!(
            translation
                .warnings
                .iter()
                .any(|w| w.contains("nodes/node-0")
                    && w.contains("spec.vxlanTunnelMACAddr")
                    && w.ends_with("used without it")),
            "{:#?}",
            translation.warnings
        );
        assert_warned(&translation, "nodes/node-1", "no valid IPv4 address");
        assert_warned(
            &translation,
            "10.65.0.64-26",
            "node node-1, which is unknown",
        );
        assert_warned(
            &translation,
            "10.65.0.128-26",
            "node node-9, which is unknown",
        );
        assert_warned(&translation, "10.70.0.0-26", "lies in no IP pool");
    }

    #[test]
    fn released_and_mismatched_blocks_are_not_routed() {
        let (key, _) = block("10.65.0.0/26", NODE);
        let (_, other_value) = block("10.65.0.64/26", NODE);
        let mut released = AllocationBlock::new("10.65.1.0/26".parse().unwrap(), NODE);
        released.affinity = None;
        let translation = translate(
            &cache([
                pool("p", "10.65.0.0/16", |_| {}),
                node(NODE, Some("10.99.0.11/24"), None),
                (key, other_value),
                (
                    tortie_ipam::keys::block(&released.cidr),
                    serde_json::to_vec(&released).unwrap(),
                ),
            ]),
            NODE,
        );
        assert!(translation.cluster.nodes[0].blocks.is_empty());
        assert_warned(&translation, "10.65.0.0-26", "does not match the key");
        assert_eq!(translation.warnings.len(), 1, "{:#?}", translation.warnings);
    }

    #[test]
    fn bad_workload_endpoints_are_skipped_one_by_one() {
        let translation = translate(
            &cache([
                wep("default", "a", NODE, |_| {}),
                wep("default", "b-same-ip", NODE, |spec| {
                    spec.interface_name = Some("calib".into());
                }),
                wep("default", "c-v6-only", NODE, |spec| {
                    spec.ip_networks = vec!["fd00::10/128".into()];
                }),
                wep("default", "d-bad-mac", NODE, |spec| {
                    spec.ip_networks = vec!["10.65.0.13/32".into()];
                    spec.mac = Some("zz:zz".into());
                }),
                wep("default", "e-no-iface", NODE, |spec| {
                    spec.ip_networks = vec!["10.65.0.14/32".into()];
                    spec.interface_name = None;
                }),
                wep("default", "f-multicast-mac", NODE, |spec| {
                    spec.ip_networks = vec!["10.65.0.15/32".into()];
                    spec.interface_name = Some("calif".into());
                    spec.mac = Some("03:00:00:00:00:01".into());
                }),
                (
                    Kind::WorkloadEndpoint.key(Some("default"), "g-json"),
                    json!({"kind": "WorkloadEndpoint", "spec": {"node": NODE}})
                        .to_string()
                        .into_bytes(),
                ),
                wep("prod", "h", NODE, |spec| {
                    spec.ip_networks = vec!["fd00::11/128".into(), "10.65.0.17".into()];
                    spec.interface_name = Some("calih".into());
                }),
            ]),
            NODE,
        );
        let names: Vec<String> = translation.endpoints.iter().map(|e| e.key()).collect();
        assert_eq!(names, ["default/a", "prod/h"]);
        assert_eq!(translation.endpoints[1].ipv4, Ipv4Addr::new(10, 65, 0, 17));
        assert_warned(
            &translation,
            "default/node-0-k8s-b-same-ip-eth0",
            "spec.ipNetworks: 10.65.0.10 is also used by default/a",
        );
        assert_warned(&translation, "c-v6-only", "no IPv4 address");
        assert_warned(&translation, "d-bad-mac", "spec.mac: invalid MAC address");
        assert_warned(&translation, "e-no-iface", "spec.interfaceName: missing");
        assert_warned(&translation, "f-multicast-mac", "not a unicast address");
        assert_warned(
            &translation,
            "default/g-json",
            "not a valid WorkloadEndpoint",
        );
        assert_eq!(translation.warnings.len(), 6, "{:#?}", translation.warnings);
    }

    #[test]
    fn other_nodes_endpoints_are_left_out_silently_even_when_broken() {
        let translation = translate(
            &cache([
                wep("default", "a", "node-1", |_| {}),
                wep("default", "b", "node-1", |spec| spec.mac = None),
                wep("default", "c", NODE, |spec| {
                    spec.ip_networks = vec!["10.65.0.12/32".into()];
                }),
            ]),
            NODE,
        );
        assert_eq!(translation.endpoints.len(), 1);
        assert_eq!(translation.endpoints[0].name, "c");
        assert!(
            translation.warnings.is_empty(),
            "{:#?}",
            translation.warnings
        );
    }

    #[test]
    fn endpoint_names_fall_back_to_the_workload_then_the_object() {
        let translation = translate(
            &cache([
                wep("default", "a", NODE, |spec| {
                    spec.pod = None;
                    spec.workload = Some("vm-a".into());
                }),
                wep("default", "b", NODE, |spec| {
                    spec.pod = None;
                    spec.ip_networks = vec!["10.65.0.11".into()];
                }),
            ]),
            NODE,
        );
        let names: Vec<&str> = translation
            .endpoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["vm-a", "node-0-k8s-b-eth0"]);
    }

    #[test]
    fn the_cache_sorts_keys_into_sections() {
        let mut cache = ResourceCache::default();
        let (pool_key, pool_value) = pool("p", "10.65.0.0/16", |_| {});
        assert!(cache.put(pool_key.clone(), pool_value));
        assert!(cache.put(
            "/calico/resources/v3/projectcalico.org/profiles/x".into(),
            vec![]
        ));
        assert!(cache.put(
            "/calico/resources/v3/projectcalico.org/bgppeers/x".into(),
            vec![]
        ));
        assert!(!cache.put(
            "/calico/resources/v3/projectcalico.org/felixconfigurations/x".into(),
            vec![]
        ));
        assert_eq!(Section::of_key(&pool_key), Some(Section::IpPools));
        assert_eq!(
            Section::of_key(&Kind::WorkloadEndpoint.key(Some("kube-system"), "w")),
            Some(Section::WorkloadEndpoints)
        );
        assert_eq!(
            Section::of_key("/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26"),
            Some(Section::Blocks)
        );
        assert_eq!(cache.len(), 3);
        assert!(cache.remove(&pool_key));
        assert!(!cache.remove(&pool_key));
        assert!(cache.remove("/calico/resources/v3/projectcalico.org/profiles/x"));
        assert!(cache.remove("/calico/resources/v3/projectcalico.org/bgppeers/x"));
        assert!(cache.is_empty());
        cache.replace(Section::Nodes, [node(NODE, Some("10.99.0.11/24"), None)]);
        assert_eq!(cache.entries(Section::Nodes).count(), 1);
    }
}
