//! GC: release what this node holds for attachments the runtime no longer knows
//! (`cni.dev/valid-attachments`): their WorkloadEndpoints, host interfaces and addresses.

use std::collections::BTreeSet;

use tortie_ipam::Ipam;

use crate::{
    calico::{self, WorkloadEndpoint},
    config::NetConf,
    link,
    spec::{CniError, ErrorCode},
    store,
};

pub(super) async fn run(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let valid_containers: BTreeSet<&str> = valid.iter().map(|a| a.container_id.as_str()).collect();
    let is_valid = |container: &str, ifname: &str| {
        valid
            .iter()
            .any(|a| a.container_id == container && a.ifname == ifname)
    };
    let store = store::connect(&conf.etcd_endpoints).await?;
    let host = link::connect().map_err(|e| {
        CniError::new(
            ErrorCode::InterfaceSetup,
            format!("cannot open netlink: {}", e.action),
        )
        .details(e.to_string())
    })?;

    // Endpoints of this node whose attachment is gone.
    let endpoints: Vec<_> = store::workload_endpoints(&store)
        .await?
        .into_iter()
        .map(|(endpoint, _)| endpoint)
        .filter(|e| e.spec.node.as_deref() == Some(conf.nodename.as_str()))
        .collect();
    let container_of = |e: &WorkloadEndpoint| e.spec.container_id.clone().unwrap_or_default();
    let (stale, live): (Vec<_>, Vec<_>) = endpoints.into_iter().partition(|e| {
        !is_valid(
            &container_of(e),
            e.spec.endpoint.as_deref().unwrap_or("eth0"),
        )
    });
    let live_interfaces: BTreeSet<&str> = live
        .iter()
        .filter_map(|e| e.spec.interface_name.as_deref())
        .collect();
    let mut stale_containers = BTreeSet::new();
    for endpoint in &stale {
        let interface = endpoint.spec.interface_name.as_deref().unwrap_or("");
        let container = container_of(endpoint);
        let key = calico::key_of(endpoint);
        // A live endpoint of the same pod (a newer sandbox) uses the same host interface name.
        if !interface.is_empty() && !live_interfaces.contains(interface) {
            match link::delete_link(&host, interface, "the host netns").await {
                Ok(deleted) => tracing::info!(iface = interface, deleted, "gc: host interface"),
                Err(error) => tracing::warn!(%error, "gc: cannot delete a stale host interface"),
            }
        }
        store::delete_workload_endpoint(&store, &key, &container).await?;
        tracing::info!(%key, %container, "gc: deleted stale WorkloadEndpoint");
        if !container.is_empty() && !valid_containers.contains(container.as_str()) {
            stale_containers.insert(container);
        }
    }

    // Handles of this network on this node whose container is gone, with or without an
    // endpoint (an ADD that died before writing it).
    let ipam = Ipam::new(&store);
    let prefix = format!("{}.", conf.name);
    let blocks = ipam
        .blocks()
        .await
        .map_err(|e| store::ipam_error("list IPAM blocks", e))?;
    for stored in &blocks {
        for (_, attribute) in stored.block.allocated() {
            let Some(attribute) = attribute else { continue };
            let Some(container) = attribute
                .handle_id
                .as_deref()
                .and_then(|h| h.strip_prefix(&prefix))
            else {
                continue;
            };
            let node = attribute
                .secondary
                .get("node")
                .map(String::as_str)
                .or(stored.block.affine_node());
            if node == Some(conf.nodename.as_str()) && !valid_containers.contains(container) {
                stale_containers.insert(container.to_string());
            }
        }
    }
    for container in &stale_containers {
        let handle = format!("{prefix}{container}");
        let released = ipam
            .release_by_handle(&handle)
            .await
            .map_err(|e| store::ipam_error(&format!("release IPAM handle {handle}"), e))?;
        if !released.is_empty() {
            tracing::info!(%handle, ?released, "gc: released addresses of a stale container");
        }
    }
    tracing::info!(
        stale = stale_containers.len(),
        valid = valid.len(),
        "gc done"
    );
    Ok(())
}
