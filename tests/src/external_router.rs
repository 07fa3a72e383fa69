//! A router outside the cluster that speaks BGP with the nodes, as a top-of-rack switch
//! does: a namespace on the lab's first fabric segment running its own BIRD (not configured
//! by tortie), with a host namespace behind it on a prefix only it knows.
//!
//! It learns the pod blocks from the nodes and installs them in its kernel, and advertises
//! its host prefix; pods reach that host only if the nodes learned the prefix over BGP. Both
//! namespaces carry the lab's prefix, so `lab down` (and a crashed test's rerun) removes
//! them and the router's BIRD with them.

use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::{Context, Result};

use crate::{
    bird, netns,
    spec::{self, BirdFiles, Node, FABRIC_PREFIX_LEN, MTU},
};

/// The router's AS (private, distinct from the cluster's 64512).
pub const ROUTER_AS: u32 = 65000;
/// The router's address on fabric segment 0.
pub const ROUTER_FABRIC_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 250);
/// The prefix behind the router.
pub const HOST_PREFIX: &str = "192.168.200.0/24";
/// The router's address on that prefix.
pub const ROUTER_HOST_SIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 1);
/// The host behind the router.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 10);

/// The router and the host behind it, once created.
#[derive(Clone, Debug)]
pub struct ExternalRouter {
    /// The router's namespace (`tortie-<lab>-tor`).
    pub netns: String,
    /// The host's namespace (`tortie-<lab>-behind`).
    pub host_netns: String,
    /// The router's BIRD, as a pseudo node for [`bird`]'s helpers.
    node: Node,
}

impl ExternalRouter {
    /// Wires the router into segment 0 of lab `lab` and the host behind it, and starts the
    /// router's BIRD with one eBGP session to each of `nodes` (AS 64512 each).
    pub fn create(lab: &str, nodes: &[Node]) -> Result<Self> {
        let prefix = spec::netns_prefix(lab);
        let (router, host) = (format!("{prefix}tor"), format!("{prefix}behind"));
        let fabric = spec::fabric_netns(lab);
        netns::create_netns(&router)?;
        netns::set_sysctl(&router, "net.ipv4.ip_forward", "1")?;
        netns::set_link_up(&router, "lo")?;
        netns::create_veth_into(&fabric, "veth-tor", &router, "eth0", MTU)?;
        netns::attach_to_bridge(&fabric, "veth-tor", &spec::segment_bridge(0))?;
        netns::set_link_up(&fabric, "veth-tor")?;
        netns::add_address(&router, "eth0", ROUTER_FABRIC_IP, FABRIC_PREFIX_LEN)?;
        netns::set_link_up(&router, "eth0")?;

        netns::create_netns(&host)?;
        netns::set_link_up(&host, "lo")?;
        netns::create_veth_into(&router, "eth1", &host, "eth0", MTU)?;
        netns::add_address(&router, "eth1", ROUTER_HOST_SIDE_IP, 24)?;
        netns::set_link_up(&router, "eth1")?;
        netns::add_address(&host, "eth0", HOST_IP, 24)?;
        netns::set_link_up(&host, "eth0")?;
        netns::add_default_route(&host, ROUTER_HOST_SIDE_IP, "eth0")?;

        let dir = spec::state_dir(lab);
        let files = BirdFiles {
            config: dir.join("tor.bird.conf"),
            socket: dir.join("tor.bird.ctl"),
            log: dir.join("tor.bird.log"),
            pid_file: dir.join("tor.bird.pid"),
        };
        std::fs::write(&files.config, config(nodes))
            .with_context(|| format!("writing {}", files.config.display()))?;
        let node = Node {
            name: "tor".into(),
            netns: router.clone(),
            log_file: files.log.clone(),
            bird: Some(files),
            ..nodes
                .first()
                .cloned()
                .context("an external router needs at least one node to peer with")?
        };
        bird::start(&node, bird::Start::Fresh)?;
        Ok(Self {
            netns: router,
            host_netns: host,
            node,
        })
    }

    /// The router's control socket, for `tortiectl node status --bird-socket`.
    pub fn socket(&self) -> PathBuf {
        self.node
            .bird
            .as_ref()
            .map(|files| files.socket.clone())
            .unwrap_or_default()
    }

    /// The routes the router learned over BGP, as `ip -4 route show proto bird` prints them.
    pub fn learned_routes(&self) -> Result<String> {
        Ok(netns::run_checked(
            "routes of the external router",
            &mut netns::nsenter_command(
                &self.netns,
                "ip",
                &["-4", "route", "show", "proto", "bird"],
            ),
        )?)
    }
}

/// The router's BIRD configuration: the host prefix out, everything the nodes advertise in
/// (into its kernel), graceful restart as a helper so a node's BIRD restart keeps traffic.
fn config(nodes: &[Node]) -> String {
    let mut text = format!(
        "router id {ROUTER_FABRIC_IP};\n\
         timeformat protocol iso long;\n\
         timeformat base iso long;\n\
         log stderr all;\n\
         protocol device {{ scan time 10; }}\n\
         protocol direct {{ ipv4; interface \"eth1\"; }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n\
         template bgp cluster_node {{\n  local {ROUTER_FABRIC_IP} as {ROUTER_AS};\n  \
         graceful restart on;\n  connect retry time 2;\n  error wait time 2, 10;\n  \
         ipv4 {{ import all; export where source = RTS_DEVICE; }};\n}}\n"
    );
    for node in nodes {
        text.push_str(&format!(
            "protocol bgp {} from cluster_node {{ neighbor {} as 64512; }}\n",
            node.name.replace('-', "_"),
            node.ip
        ));
    }
    text
}
