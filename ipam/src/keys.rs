//! Where IPAM state lives in the datastore (Calico's etcd v3 layout).

use ipnet::Ipv4Net;

/// Prefix of every block.
pub const BLOCKS_PREFIX: &str = "/calico/ipam/v2/assignment/ipv4/block/";
/// Prefix of every handle.
pub const HANDLES_PREFIX: &str = "/calico/ipam/v2/handle/";
/// Prefix of every host affinity.
pub const AFFINITY_PREFIX: &str = "/calico/ipam/v2/host/";

/// `10.65.0.0/26` → `10.65.0.0-26`, how Calico names blocks in keys.
pub fn cidr_segment(cidr: &Ipv4Net) -> String {
    format!("{}-{}", cidr.network(), cidr.prefix_len())
}

/// Key of a block.
pub fn block(cidr: &Ipv4Net) -> String {
    format!("{BLOCKS_PREFIX}{}", cidr_segment(cidr))
}

/// Key of a handle.
pub fn handle(handle: &str) -> String {
    format!("{HANDLES_PREFIX}{handle}")
}

/// Key recording that `node` holds `cidr`.
pub fn affinity(node: &str, cidr: &Ipv4Net) -> String {
    format!("{AFFINITY_PREFIX}{node}/ipv4/block/{}", cidr_segment(cidr))
}

/// Prefix of `node`'s affinities.
pub fn node_affinities(node: &str) -> String {
    format!("{AFFINITY_PREFIX}{node}/ipv4/block/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_follow_calicos_layout() {
        let cidr = "10.65.0.0/26".parse().unwrap();
        assert_eq!(
            super::block(&cidr),
            "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26"
        );
        assert_eq!(
            super::affinity("node-0", &cidr),
            "/calico/ipam/v2/host/node-0/ipv4/block/10.65.0.0-26"
        );
        assert_eq!(
            super::handle("k8s-pod-network.x"),
            "/calico/ipam/v2/handle/k8s-pod-network.x"
        );
    }
}
