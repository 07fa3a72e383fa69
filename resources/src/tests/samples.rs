//! Documents as users write them, following the examples of Calico's and Kubernetes'
//! documentation.

pub const IPPOOL_V4: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.65.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
";

pub const IPPOOL_V6: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv6-ippool
  labels:
    family: ipv6
spec:
  cidr: fd00:10:65::/48
  vxlanMode: Always
  disableBGPExport: true
  nodeSelector: rack == 'r1'
  allowedUses:
    - Workload
";

pub const IPAM_CONFIGURATION: &str = "\
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: true
  maxBlocksPerHost: 4
";

pub const NODE: &str = "\
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node-0
  labels:
    kubernetes.io/hostname: node-0
    rack: r1
  resourceVersion: '1234'
  uid: 6f2a1c8e-0d4b-4d1e-9a57-1f0c1b6f9e10
  creationTimestamp: '2024-05-01T10:00:00Z'
spec:
  bgp:
    ipv4Address: 10.99.0.11/24
    ipv4IPIPTunnelAddr: 10.65.0.1
    asNumber: 64512
    routeReflectorClusterID: 224.0.0.1
  ipv4VXLANTunnelAddr: 10.65.0.2
  vxlanTunnelMACAddr: 66:b0:5f:58:b5:a1
  addresses:
    - address: 10.99.0.11/24
      type: CalicoNodeIP
    - address: 10.99.0.11
      type: InternalIP
  orchRefs:
    - nodeName: node-0
      orchestrator: k8s
status:
  podCIDRs:
    - 10.65.0.0/24
";

pub const WORKLOAD_ENDPOINT: &str = "\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node--0-k8s-frontend--5gs43-eth0
  namespace: prod
  labels:
    app: frontend
    projectcalico.org/namespace: prod
    projectcalico.org/orchestrator: k8s
    projectcalico.org/serviceaccount: default
spec:
  orchestrator: k8s
  node: node-0
  containerID: '1337495556942031415'
  pod: frontend-5gs43
  endpoint: eth0
  serviceAccountName: default
  ipNetworks:
    - 10.65.0.10/32
  profiles:
    - kns.prod
    - ksa.prod.default
  interfaceName: cali0ef24ba4f4c
  mac: ca:fe:1d:52:bb:e9
  ports:
    - name: http
      protocol: TCP
      port: 8080
    - name: dns
      protocol: UDP
      port: 53
      hostPort: 5353
      hostIP: 10.99.0.11
";

pub const BGP_PEERS: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  nodeSelector: rack == 'r1'
  peerIP: 10.99.0.1
  asNumber: 64513
  keepOriginalNextHop: true
  maxRestartTime: 120s
  password:
    secretKeyRef:
      name: bgp-secrets
      key: rr-password
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
  sourceAddress: None
";

pub const BGP_CONFIGURATION: &str = "\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: false
  asNumber: 63400
  listenPort: 178
  serviceClusterIPs:
    - cidr: 10.96.0.0/12
  serviceExternalIPs:
    - cidr: 104.244.42.129/32
";

pub const GLOBAL_NETWORK_POLICY: &str = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-tcp-6379
spec:
  order: 100
  selector: role == 'database'
  types:
    - Ingress
    - Egress
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'frontend'
        nets:
          - 10.65.0.0/16
        notNets:
          - 10.65.99.0/24
      destination:
        ports:
          - 6379
          - 8000:8080
          - redis
    - action: Allow
      protocol: ICMP
      icmp:
        type: 8
        code: 0
    - action: Deny
      protocol: UDP
      source:
        namespaceSelector: global()
        serviceAccounts:
          names:
            - api
            - web
      destination:
        notPorts:
          - 1:1023
  egress:
    - action: Allow
";

pub const NETWORK_POLICY: &str = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: prod
spec:
  order: 10.5
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: app == 'frontend'
        namespaceSelector: team == 'shop'
      destination:
        ports:
          - http
          - 443
  egress:
    - action: Allow
      protocol: UDP
      destination:
        selector: k8s-app == 'kube-dns'
        ports:
          - 53
";

pub const PROFILE: &str = "\
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: kns.prod
spec:
  ingress:
    - action: Allow
  egress:
    - action: Allow
  labelsToApply:
    pcns.projectcalico.org/name: prod
";

pub const K8S_NETWORK_POLICY: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
            matchExpressions:
              - key: tier
                operator: In
                values: [web, api]
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 32000
          endPort: 32768
        - port: dns
";

pub const NAMESPACE: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels:
    kubernetes.io/metadata.name: prod
    team: shop
spec:
  finalizers:
    - kubernetes
status:
  phase: Active
";

pub const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: frontend-5gs43
  generateName: frontend-
  namespace: prod
  labels:
    app: frontend
  ownerReferences:
    - apiVersion: apps/v1
      kind: ReplicaSet
      name: frontend
      uid: 0b5c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d
spec:
  nodeName: node-0
  serviceAccountName: default
  containers:
    - name: web
      image: nginx:1.25
      ports:
        - name: http
          containerPort: 8080
  restartPolicy: Always
status:
  phase: Running
  podIP: 10.65.0.10
  podIPs:
    - ip: 10.65.0.10
";

/// Every sample, one kind each (two BGP peers).
pub const ALL: &[&str] = &[
    IPPOOL_V4,
    IPPOOL_V6,
    IPAM_CONFIGURATION,
    NODE,
    WORKLOAD_ENDPOINT,
    BGP_PEERS,
    BGP_CONFIGURATION,
    GLOBAL_NETWORK_POLICY,
    NETWORK_POLICY,
    PROFILE,
    K8S_NETWORK_POLICY,
    NAMESPACE,
    POD,
];
