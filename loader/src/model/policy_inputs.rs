//! What policy compilation reads, from the datastore's resources: every workload endpoint of
//! the cluster (remote pods are the peers rules select), namespaces with their labels, Calico
//! and Kubernetes policies, and profiles.
//!
//! Pure: decodes the cached values. An object that does not decode is left out with a
//! warning naming its key; the rest still count. Local interface indices are not known here;
//! the calc layer fills them in from the interfaces it sees.

use tortie_policy::{Endpoint, Namespace, PolicyInputs};
use tortie_resources::{
    GlobalNetworkPolicy, K8sNetworkPolicy, NetworkPolicy, Profile, WorkloadEndpoint,
};

use super::from_resources::{ResourceCache, Section};

/// Decodes every policy-related section of `cache` into compilation inputs (without local
/// interface indices or host addresses).
pub fn policy_inputs(cache: &ResourceCache, warnings: &mut Vec<String>) -> PolicyInputs {
    let mut inputs = PolicyInputs::default();
    for (key, value) in cache.entries(Section::WorkloadEndpoints) {
        // The endpoint translation already reports undecodable endpoints.
        let Ok(wep) = serde_json::from_slice::<WorkloadEndpoint>(value) else {
            continue;
        };
        inputs.endpoints.extend(endpoint_of(key, &wep, warnings));
    }
    let mut namespaces = Vec::new();
    decode_into::<tortie_resources::Namespace>(
        cache,
        Section::Namespaces,
        "Namespace",
        &mut namespaces,
        warnings,
    );
    inputs.namespaces = namespaces.iter().map(Namespace::from_resource).collect();
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
    let endpoint = Endpoint::from_workload_endpoint(wep, None).ok();
    // IPv6-only endpoints are not this dataplane's business; say nothing about them.
    if endpoint.is_none() && wep.spec.ip_networks.iter().all(|net| !net.contains(':')) {
        warnings.push(format!(
            "{key}: spec.ipNetworks has no IPv4 address; not a policy peer"
        ));
    }
    endpoint
}
