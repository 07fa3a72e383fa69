//! What policy compilation reads, from the datastore's resources: every workload endpoint of
//! the cluster (remote pods are the peers rules select), namespaces with their labels, Calico
//! and Kubernetes policies, and profiles.
//!
//! Pure: decodes the cached values. An object that does not decode is left out with a
//! warning naming its key; the rest still count. Local interface indices are not known here;
//! the calc layer fills them in from the interfaces it sees.

use std::net::Ipv4Addr;

use tortie_policy::{Endpoint, NamedPort, Namespace, PolicyInputs};
use tortie_resources::{
    GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint,
};

use super::from_resources::{ResourceCache, Section};

/// Decodes every policy-related section of `cache` into compilation inputs (without local
/// interface indices or host addresses).
pub fn policy_inputs(cache: &ResourceCache, warnings: &mut Vec<String>) -> PolicyInputs {
    let mut inputs = PolicyInputs::default();
    for (key, value) in cache.entries(Section::WorkloadEndpoints) {
        match serde_json::from_slice::<WorkloadEndpoint>(value) {
            Ok(wep) => {
                if let Some(endpoint) = endpoint_of(key, &wep, warnings) {
                    inputs.endpoints.push(endpoint);
                }
            }
            // The endpoint translation already reports undecodable endpoints.
            Err(_) => continue,
        }
    }
    for (key, value) in cache.entries(Section::Namespaces) {
        match serde_json::from_slice::<tortie_resources::k8s::Namespace>(value) {
            Ok(namespace) => inputs.namespaces.push(Namespace {
                name: namespace.metadata.name.clone(),
                labels: namespace.metadata.labels.clone(),
            }),
            Err(error) => warnings.push(format!("{key}: not a valid Namespace: {error}; ignored")),
        }
    }
    decode_into::<NetworkPolicy>(
        cache,
        Section::NetworkPolicies,
        "NetworkPolicy",
        &mut inputs.network_policies,
        warnings,
    );
    decode_into::<GlobalNetworkPolicy>(
        cache,
        Section::GlobalNetworkPolicies,
        "GlobalNetworkPolicy",
        &mut inputs.global_network_policies,
        warnings,
    );
    decode_into::<K8sNetworkPolicy>(
        cache,
        Section::K8sNetworkPolicies,
        "NetworkPolicy (networking.k8s.io/v1)",
        &mut inputs.k8s_network_policies,
        warnings,
    );
    decode_into::<Profile>(
        cache,
        Section::Profiles,
        "Profile",
        &mut inputs.profiles,
        warnings,
    );
    inputs
}

fn decode_into<T: serde::de::DeserializeOwned>(
    cache: &ResourceCache,
    section: Section,
    what: &str,
    out: &mut Vec<T>,
    warnings: &mut Vec<String>,
) {
    for (key, value) in cache.entries(section) {
        match serde_json::from_slice::<T>(value) {
            Ok(resource) => out.push(resource),
            Err(error) => warnings.push(format!("{key}: not a valid {what}: {error}; ignored")),
        }
    }
}

/// A workload endpoint as a policy peer/target; `None` (with a warning) without an IPv4.
fn endpoint_of(key: &str, wep: &WorkloadEndpoint, warnings: &mut Vec<String>) -> Option<Endpoint> {
    let namespace = wep.metadata.namespace.clone().unwrap_or_default();
    let ipv4 = wep.spec.ip_networks.iter().find_map(|net| {
        net.split('/')
            .next()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    });
    let Some(ipv4) = ipv4 else {
        // IPv6-only endpoints are not this dataplane's business; say nothing about them.
        if wep.spec.ip_networks.iter().all(|net| !net.contains(':')) {
            warnings.push(format!(
                "{key}: spec.ipNetworks has no IPv4 address; not a policy peer"
            ));
        }
        return None;
    };
    let name = wep
        .spec
        .pod
        .clone()
        .or_else(|| wep.spec.workload.clone())
        .unwrap_or_else(|| wep.metadata.name.clone());
    let profiles = if wep.spec.profiles.is_empty() {
        Endpoint::kubernetes_profiles(&namespace, wep.spec.service_account_name.as_deref())
    } else {
        wep.spec.profiles.clone()
    };
    Some(Endpoint {
        key: format!("{namespace}/{name}"),
        namespace,
        labels: wep.metadata.labels.clone(),
        ipv4,
        ifindex: None,
        service_account: wep.spec.service_account_name.clone(),
        named_ports: wep
            .spec
            .ports
            .iter()
            .filter(|port| !port.name.is_empty())
            .map(|port| NamedPort {
                name: port.name.clone(),
                protocol: port.protocol.number(),
                port: port.port,
            })
            .collect(),
        profiles,
    })
}
