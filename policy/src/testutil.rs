//! Builders for the unit tests: pods in a line, policies as YAML.

use std::net::Ipv4Addr;

use tortie_resources::{parse_documents, Resource};

use crate::model::{Endpoint, NamedPort, Namespace, PolicyInputs};

/// A remote pod `namespace/name` with labels and the usual `kns.` profile.
pub(crate) fn pod(key: &str, ip: &str, labels: &[(&str, &str)]) -> Endpoint {
    let (namespace, _) = key.split_once('/').expect("key is namespace/name");
    Endpoint {
        key: key.to_string(),
        namespace: namespace.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ipv4: ip.parse().expect("test address"),
        ifindex: None,
        service_account: None,
        named_ports: Vec::new(),
        profiles: Endpoint::kubernetes_profiles(namespace, None),
    }
}

/// The same pod, on this node.
pub(crate) fn local(mut ep: Endpoint, ifindex: u32) -> Endpoint {
    ep.ifindex = Some(ifindex);
    ep
}

/// The same pod, with a named port.
pub(crate) fn named(mut ep: Endpoint, name: &str, protocol: u8, port: u16) -> Endpoint {
    ep.named_ports.push(NamedPort {
        name: name.to_string(),
        protocol,
        port,
    });
    ep
}

/// A Kubernetes policy `prod/web`: pods `app: web` take TCP port 80 from the namespace's
/// `app: client` pods, and no other ingress.
pub(crate) const WEB_FROM_CLIENT_ON_80: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80}]
";

/// Inputs with these pods and the policies, profiles and namespaces of `yaml`; the local
/// host is 192.168.0.1 and one remote node 192.168.0.2.
pub(crate) fn inputs(pods: Vec<Endpoint>, yaml: &str) -> PolicyInputs {
    let mut inputs = PolicyInputs {
        endpoints: pods,
        local_host: vec![Ipv4Addr::new(192, 168, 0, 1)],
        remote_hosts: vec![Ipv4Addr::new(192, 168, 0, 2)],
        ..PolicyInputs::default()
    };
    if yaml.trim().is_empty() {
        return inputs;
    }
    for resource in parse_documents(yaml).expect("test YAML parses") {
        match resource {
            Resource::NetworkPolicy(p) => inputs.network_policies.push(p),
            Resource::GlobalNetworkPolicy(p) => inputs.global_network_policies.push(p),
            Resource::K8sNetworkPolicy(p) => inputs.k8s_network_policies.push(p),
            Resource::Profile(p) => inputs.profiles.push(p),
            Resource::Namespace(ns) => inputs.namespaces.push(Namespace::from_resource(&ns)),
            other => panic!("unexpected resource in test YAML: {other:?}"),
        }
    }
    inputs
}

/// An address as the tests write it.
pub(crate) fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("test address")
}
