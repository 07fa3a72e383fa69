//! DEL: take everything of the attachment away; whatever is already gone is success.

use tortie_ipam::Ipam;

use super::Identity;
use crate::{
    config::{Container, NetConf},
    link,
    netns::NetNs,
    spec::{CniError, ErrorCode},
    store,
};

pub(super) async fn run(conf: &NetConf, container: &Container) -> Result<(), CniError> {
    let id = Identity::new(conf, container);
    let interface_error = |e: link::LinkError| {
        CniError::new(
            ErrorCode::InterfaceSetup,
            format!("interface teardown failed: {}", e.action),
        )
        .details(e.to_string())
    };

    // 1. Inside the pod: deleting its interface takes the host side with it, and it is
    //    certainly this container's. A namespace that is gone took the veth with it.
    match container.netns.as_deref().map(NetNs::open) {
        Some(Ok(netns)) => {
            let ifname = id.ifname.clone();
            let name = netns.path().display().to_string();
            let deleted = netns
                .run(move |handle| async move {
                    link::delete_link(&handle, &ifname, &format!("netns {name}")).await
                })
                .await
                .map_err(interface_error)?;
            tracing::info!(iface = %id.ifname, deleted, "pod interface");
        }
        Some(Err(error)) => {
            tracing::info!(%error, "the pod's netns is gone; nothing to delete inside it")
        }
        None => tracing::info!("no CNI_NETNS; nothing to delete inside the pod"),
    }

    // 2. The host side, if it still exists and is ours: the endpoint names its owner; an
    //    endpoint of a newer sandbox of the same pod means the interface is that sandbox's.
    let store = store::connect(&conf.etcd_endpoints).await?;
    let endpoint = store::workload_endpoint(&store, &id.endpoint_key).await?;
    let owner = endpoint
        .as_ref()
        .and_then(|(endpoint, _)| endpoint.as_ref())
        .and_then(|e| e.spec.container_id.clone());
    let host = link::connect().map_err(interface_error)?;
    match owner {
        Some(owner) if owner != id.container_id => {
            tracing::info!(iface = %id.host_ifname, %owner, "leaving the host interface to the pod's newer sandbox")
        }
        _ => {
            let deleted = link::delete_link(&host, &id.host_ifname, "the host netns")
                .await
                .map_err(interface_error)?;
            tracing::info!(iface = %id.host_ifname, deleted, "host interface");
        }
    }
    // A crash between creating the pair and moving the peer leaves it under this name.
    link::delete_link(&host, &id.temp_ifname, "the host netns")
        .await
        .map_err(interface_error)?;

    // 3. The addresses and the endpoint.
    let released = Ipam::new(&store)
        .release_by_handle(&id.handle)
        .await
        .map_err(|e| store::ipam_error(&format!("release IPAM handle {}", id.handle), e))?;
    tracing::info!(handle = %id.handle, ?released, "addresses released");
    let deleted =
        store::delete_workload_endpoint(&store, &id.endpoint_key, &id.container_id).await?;
    tracing::info!(key = %id.endpoint_key, deleted, "WorkloadEndpoint");
    Ok(())
}
