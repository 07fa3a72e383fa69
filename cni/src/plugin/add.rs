//! ADD: address, veth pair, pod-side configuration, WorkloadEndpoint — in that order, each
//! step recorded on the undo stack so that a failure anywhere leaves nothing behind.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use tortie_datastore::Datastore;
use tortie_ipam::{AssignRequest, Ipam, IpamConfig, PoolSpec};

use super::{
    undo::{Undo, UndoAction},
    Identity,
};
use crate::{
    calico::{ObjectMeta, PodInfo, WorkloadEndpoint, WorkloadEndpointSpec},
    config::{Container, NetConf},
    link::{self, format_mac, LinkError, HOST_SIDE_MAC, POD_GATEWAY},
    netns::{NetNs, NetnsError},
    spec::{CniError, CniResult, ErrorCode, Interface, IpConfig, Route},
    store,
};

/// A netns that cannot be opened: 3 when it is not there (or not a netns), 101 otherwise.
pub(super) fn netns_error(error: NetnsError) -> CniError {
    match error {
        NetnsError::NotFound { .. } | NetnsError::NotNetns { .. } => {
            CniError::new(ErrorCode::UnknownContainer, error.to_string()).details(
                "the container's network namespace (CNI_NETNS) is gone; was the sandbox deleted?",
            )
        }
        NetnsError::Open { .. } => CniError::new(ErrorCode::InterfaceSetup, error.to_string()),
    }
}

/// An interface step that failed: 101, naming the step.
fn interface_error(error: LinkError) -> CniError {
    CniError::new(
        ErrorCode::InterfaceSetup,
        format!("interface setup failed: {}", error.action),
    )
    .details(error.to_string())
}

pub(super) async fn run(conf: &NetConf, container: &Container) -> Result<Value, CniError> {
    let id = Identity::new(conf, container);
    let netns_path = container
        .netns
        .as_ref()
        .ok_or_else(|| CniError::new(ErrorCode::InvalidEnvironment, "CNI_NETNS is not set"))?;
    let netns = NetNs::open(netns_path).map_err(netns_error)?;
    let store = store::connect(&conf.etcd_endpoints).await?;
    let host = link::connect().map_err(interface_error)?;
    tracing::debug!("connected to the datastore and rtnetlink");

    let inputs = Inputs {
        pools: store::usable_pools(&store::ip_pools(&store).await?, &conf.nodename),
        ipam_config: store::ipam_config(&store).await?,
        pod_info: match container.pod.as_ref() {
            Some(pod) => store::pod_info(&store, &pod.namespace, &pod.name).await?,
            None => None,
        },
    };
    tracing::debug!(
        pools = inputs.pools.len(),
        "pools, IPAM configuration and pod read"
    );

    let attach = Attach {
        conf,
        id: &id,
        netns: &netns,
        store: &store,
        host: &host,
    };
    let mut undo = Undo::new(conf.etcd_endpoints.clone());
    let outcome = attach.steps(inputs, &mut undo).await;
    match outcome {
        Ok(result) => {
            undo.commit();
            tracing::info!(ip = %result.ips[0].address, iface = %id.host_ifname, "pod attached");
            Ok(result.render(conf.version))
        }
        Err(mut error) => {
            tracing::warn!(%error, steps = undo.actions().len(), "ADD failed; undoing");
            let failures = undo.unwind(&store, &host).await;
            if !failures.is_empty() {
                error.details = format!(
                    "{}; cleanup incomplete: {}",
                    error.details,
                    failures.join("; ")
                );
            }
            Err(error)
        }
    }
}

/// What ADD reads from the datastore before it changes anything.
struct Inputs {
    pools: Vec<PoolSpec>,
    ipam_config: IpamConfig,
    pod_info: Option<PodInfo>,
}

/// One attachment being made, with the connections it uses.
struct Attach<'a> {
    conf: &'a NetConf,
    id: &'a Identity,
    netns: &'a NetNs,
    store: &'a dyn Datastore,
    host: &'a rtnetlink::Handle,
}

impl Attach<'_> {
    async fn steps(&self, inputs: Inputs, undo: &mut Undo) -> Result<CniResult, CniError> {
        let Attach {
            conf,
            id,
            netns,
            store,
            host,
        } = *self;
        let Inputs {
            pools,
            ipam_config,
            pod_info,
        } = inputs;
        // 1. The address. Recorded first: a failure half-way through IPAM may leave a handle.
        let mut attributes = BTreeMap::from([("node".to_string(), conf.nodename.clone())]);
        if !id.pod.is_empty() {
            attributes.insert("namespace".into(), id.namespace.clone());
            attributes.insert("pod".into(), id.pod.clone());
        }
        undo.push(UndoAction::ReleaseAddresses {
            handle: id.handle.clone(),
        });
        let ip = Ipam::new(store)
            .auto_assign(&AssignRequest {
                handle: &id.handle,
                node: &conf.nodename,
                attributes,
                pools: &pools,
                config: ipam_config,
            })
            .await
            .map_err(|e| store::ipam_error("assign an address", e))?;
        tracing::info!(%ip, handle = %id.handle, "address assigned");

        // 2. The veth pair, its host side here and its pod side in the pod's namespace. A
        //    leftover of an earlier sandbox of the same pod (or of a crashed ADD) is removed first,
        //    as Calico does.
        for stale in [&id.host_ifname, &id.temp_ifname] {
            if link::delete_link(host, stale, "the host netns")
                .await
                .map_err(interface_error)?
            {
                tracing::warn!(iface = %stale, "deleted a leftover interface of an earlier sandbox");
            }
        }
        let host_index = link::create_veth(host, &id.host_ifname, &id.temp_ifname, conf.mtu, netns)
            .await
            .map_err(interface_error)?;
        undo.push(UndoAction::DeleteHostLink {
            name: id.host_ifname.clone(),
        });
        tracing::debug!(iface = %id.host_ifname, "veth pair created");
        link::configure_host_side(host, host_index, &id.host_ifname)
            .await
            .map_err(interface_error)?;
        tracing::debug!(iface = %id.host_ifname, "host side configured");

        // 3. The pod side, created in the pod's namespace: renamed and configured there.
        let (temp, ifname, mtu) = (id.temp_ifname.clone(), id.ifname.clone(), conf.mtu);
        let netns_name = netns.path().display().to_string();
        let pod_mac = netns
            .run(move |handle| async move {
                link::configure_pod_side(&handle, &temp, &ifname, ip, mtu, &netns_name).await
            })
            .await
            .map_err(interface_error)?;
        tracing::info!(iface = %id.ifname, mac = %format_mac(&pod_mac), "pod side configured");

        // 4. The endpoint. Recorded before writing: a timed-out write may still have landed.
        let endpoint = workload_endpoint(conf, id, ip, &pod_mac, pod_info);
        undo.push(UndoAction::DeleteEndpoint {
            key: id.endpoint_key.clone(),
            container_id: id.container_id.clone(),
        });
        store::put_workload_endpoint(store, &endpoint).await?;
        tracing::info!(key = %id.endpoint_key, "WorkloadEndpoint written");

        Ok(CniResult {
            interfaces: vec![
                Interface {
                    name: id.host_ifname.clone(),
                    mac: format_mac(&HOST_SIDE_MAC),
                    sandbox: None,
                },
                Interface {
                    name: id.ifname.clone(),
                    mac: format_mac(&pod_mac),
                    sandbox: Some(netns.path().display().to_string()),
                },
            ],
            ips: vec![IpConfig {
                address: Ipv4Net::from(ip),
                gateway: Some(POD_GATEWAY),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default(),
                gw: Some(POD_GATEWAY),
            }],
            dns: json!({}),
        })
    }
}

fn workload_endpoint(
    conf: &NetConf,
    id: &Identity,
    ip: Ipv4Addr,
    pod_mac: &[u8; 6],
    pod_info: Option<PodInfo>,
) -> WorkloadEndpoint {
    let pod_info = pod_info.unwrap_or_default();
    let mut labels = pod_info.labels;
    labels.insert("projectcalico.org/namespace".into(), id.namespace.clone());
    labels.insert(
        "projectcalico.org/orchestrator".into(),
        id.orchestrator.into(),
    );
    let mut profiles = Vec::new();
    if id.orchestrator == "k8s" {
        profiles.push(format!("kns.{}", id.namespace));
        if let Some(account) = &pod_info.service_account {
            labels.insert("projectcalico.org/serviceaccount".into(), account.clone());
            profiles.push(format!("ksa.{}.{account}", id.namespace));
        }
    } else {
        profiles.push(conf.name.clone());
    }
    WorkloadEndpoint {
        metadata: ObjectMeta {
            labels,
            ..ObjectMeta::namespaced(&id.namespace, &id.endpoint_name)
        },
        spec: WorkloadEndpointSpec {
            orchestrator: Some(id.orchestrator.into()),
            // Kubernetes endpoints are identified by their pod; others by the container.
            workload: (id.orchestrator != "k8s").then(|| id.container_id.clone()),
            node: Some(conf.nodename.clone()),
            container_id: Some(id.container_id.clone()),
            pod: (!id.pod.is_empty()).then(|| id.pod.clone()),
            endpoint: Some(id.ifname.clone()),
            service_account_name: pod_info.service_account,
            ip_networks: vec![format!("{ip}/32")],
            ip_nats: Vec::new(),
            profiles,
            interface_name: Some(id.host_ifname.clone()),
            mac: Some(format_mac(pod_mac)),
            ports: pod_info.ports,
        },
    }
}
