//! CHECK: the attachment still looks like the previous result says — the host side, the
//! pod's interface, address and routes, the endpoint and the address's owner in IPAM.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use tortie_ipam::Ipam;

use super::{add::netns_error, Identity};
use crate::{
    config::{Container, NetConf},
    link::{self, format_mac, PodSide, HOST_SIDE_MAC, POD_GATEWAY},
    netns::NetNs,
    spec::{CniError, CniResult, ErrorCode},
    store,
};

fn mismatch(what: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::CheckFailed, what).details(details)
}

pub(super) async fn run(conf: &NetConf, container: &Container) -> Result<(), CniError> {
    let id = Identity::new(conf, container);
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "invalid network configuration field `prevResult`",
        )
        .details("CHECK needs the result of ADD in prevResult")
    })?;
    let prev = CniResult::parse_prev(prev)?;
    let netns_path = container
        .netns
        .as_ref()
        .ok_or_else(|| CniError::new(ErrorCode::InvalidEnvironment, "CNI_NETNS is not set"))?;
    let netns = NetNs::open(netns_path).map_err(netns_error)?;
    let netns_name = netns.path().display().to_string();
    let interface_error = |e: link::LinkError| {
        CniError::new(
            ErrorCode::InterfaceSetup,
            format!("cannot inspect interfaces: {}", e.action),
        )
        .details(e.to_string())
    };

    // The host side.
    let host = link::connect().map_err(interface_error)?;
    let host_link = link::find_link(&host, &id.host_ifname, "the host netns")
        .await
        .map_err(interface_error)?
        .ok_or_else(|| {
            mismatch(
                format!("host interface {} is missing", id.host_ifname),
                "run DEL and ADD again",
            )
        })?;
    if !host_link.is_veth || host_link.mac != Some(HOST_SIDE_MAC) || !host_link.up {
        return Err(mismatch(
            format!(
                "host interface {} is not set up as tortie sets it up",
                id.host_ifname
            ),
            format!(
                "expected an up veth with MAC {}, found veth={} up={} mac={}",
                format_mac(&HOST_SIDE_MAC),
                host_link.is_veth,
                host_link.up,
                host_link.mac.map(|m| format_mac(&m)).unwrap_or_default()
            ),
        ));
    }

    // The pod side.
    let ifname = id.ifname.clone();
    let name = netns_name.clone();
    let pod = netns
        .run(move |handle| async move { link::inspect_pod_side(&handle, &ifname, &name).await })
        .await
        .map_err(interface_error)?
        .ok_or_else(|| {
            mismatch(
                format!("interface {} is missing in netns {netns_name}", id.ifname),
                "run DEL and ADD again",
            )
        })?;
    check_pod_side(&pod, &prev, &id, conf.mtu, &netns_name)?;

    // The endpoint and IPAM.
    let expected_ips: Vec<Ipv4Net> = prev.ips.iter().map(|ip| ip.address).collect();
    let store = store::connect(&conf.etcd_endpoints).await?;
    let endpoint = match store::workload_endpoint(&store, &id.endpoint_key).await? {
        Some((Some(endpoint), _)) => endpoint,
        Some((None, _)) => {
            return Err(mismatch(
                format!("WorkloadEndpoint {} does not parse", id.endpoint_key),
                "run DEL and ADD again",
            ))
        }
        None => {
            return Err(mismatch(
                format!("WorkloadEndpoint {} is missing", id.endpoint_key),
                "run DEL and ADD again",
            ))
        }
    };
    let stored_ips: Vec<String> = expected_ips.iter().map(|ip| ip.to_string()).collect();
    if endpoint.spec.container_id.as_deref() != Some(id.container_id.as_str())
        || endpoint.spec.interface_name.as_deref() != Some(id.host_ifname.as_str())
        || endpoint.spec.ip_networks != stored_ips
    {
        return Err(mismatch(
            format!("WorkloadEndpoint {} does not match this attachment", id.endpoint_key),
            format!(
                "expected containerID {}, interfaceName {}, ipNetworks {stored_ips:?}; found {:?}, {:?}, {:?}",
                id.container_id,
                id.host_ifname,
                endpoint.spec.container_id,
                endpoint.spec.interface_name,
                endpoint.spec.ip_networks
            ),
        ));
    }
    let held = Ipam::new(&store)
        .addresses_of(&id.handle)
        .await
        .map_err(|e| store::ipam_error(&format!("read IPAM handle {}", id.handle), e))?;
    for ip in &expected_ips {
        if !held.contains(&ip.addr()) {
            return Err(mismatch(
                format!("IPAM handle {} does not hold {}", id.handle, ip.addr()),
                format!("it holds {held:?}"),
            ));
        }
    }
    tracing::info!("attachment matches its previous result");
    Ok(())
}

fn check_pod_side(
    pod: &PodSide,
    prev: &CniResult,
    id: &Identity,
    mtu: u32,
    netns: &str,
) -> Result<(), CniError> {
    let ifname = &id.ifname;
    let expected_mac = prev
        .interfaces
        .iter()
        .find(|i| &i.name == ifname && i.sandbox.is_some())
        .map(|i| i.mac.to_ascii_lowercase());
    let actual_mac = pod.link.mac.map(|m| format_mac(&m)).unwrap_or_default();
    if let Some(expected) = expected_mac.filter(|m| !m.is_empty()) {
        if expected != actual_mac {
            return Err(mismatch(
                format!("interface {ifname} in netns {netns} has another MAC"),
                format!("expected {expected}, found {actual_mac}"),
            ));
        }
    }
    if pod.link.mtu != Some(mtu) || !pod.link.up {
        return Err(mismatch(
            format!("interface {ifname} in netns {netns} is not up with MTU {mtu}"),
            format!("found up={} mtu={:?}", pod.link.up, pod.link.mtu),
        ));
    }
    if prev.ips.is_empty() {
        return Err(mismatch(
            "prevResult has no IPv4 address",
            "CHECK compares against ADD's result",
        ));
    }
    for ip in &prev.ips {
        if !pod.addresses.contains(&ip.address) {
            return Err(mismatch(
                format!(
                    "address {} is missing on {ifname} in netns {netns}",
                    ip.address
                ),
                format!(
                    "found {:?}",
                    pod.addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }
    let index = pod.link.index;
    let has_route = |dst: Ipv4Net, gateway: Option<Ipv4Addr>| {
        pod.routes
            .iter()
            .any(|r| r.dst == dst && r.gateway == gateway && r.oif == Some(index))
    };
    let gateway_net = Ipv4Net::from(POD_GATEWAY);
    if !pod.routes.iter().any(|r| {
        r.dst == gateway_net && r.gateway.is_none() && r.oif == Some(index) && r.link_scope
    }) {
        return Err(mismatch(
            format!("route {POD_GATEWAY} dev {ifname} scope link is missing in netns {netns}"),
            "the pod cannot reach its gateway; run DEL and ADD again",
        ));
    }
    for route in &prev.routes {
        if !has_route(route.dst, route.gw) {
            let via = route.gw.map(|gw| format!(" via {gw}")).unwrap_or_default();
            return Err(mismatch(
                format!(
                    "route {}{via} dev {ifname} is missing in netns {netns}",
                    route.dst
                ),
                "the routes differ from ADD's result; run DEL and ADD again",
            ));
        }
    }
    Ok(())
}
