//! Netlink operations for pod wiring, each small and named, each error naming the interface
//! and namespace it was about ("create veth cali12ab… (peer tmp34cd…) in the host netns:
//! File exists").
//!
//! Host-side operations take the plugin's own handle; pod-side ones run inside the pod's
//! namespace through [`crate::netns::NetNs::run`].

use std::{io, net::Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::{
    address::AddressAttribute,
    link::{
        InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
    },
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope},
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::netns::NetNs;

/// The MAC of every host-side `cali*` interface (Calico's choice: the pod's gateway MAC is
/// the same everywhere, so live migration and restarts never need new ARP entries).
pub const HOST_SIDE_MAC: [u8; 6] = [0xee; 6];

/// The pod's gateway: link-local, never on the wire; the eBPF program answers its ARP.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// A failed netlink operation: what was being done (naming the object) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {reason}")]
pub struct LinkError {
    /// What was being done, naming the interface and namespace.
    pub action: String,
    /// The kernel's (or the library's) reason.
    pub reason: String,
    /// The errno, when the kernel gave one.
    pub errno: Option<i32>,
}

impl LinkError {
    /// A failed I/O operation.
    pub fn io(action: impl Into<String>, error: io::Error) -> Self {
        LinkError {
            action: action.into(),
            reason: error.to_string(),
            errno: error.raw_os_error(),
        }
    }

    /// A failure without an errno.
    pub fn other(action: impl Into<String>, reason: impl Into<String>) -> Self {
        LinkError {
            action: action.into(),
            reason: reason.into(),
            errno: None,
        }
    }

    fn netlink(action: impl Into<String>, error: rtnetlink::Error) -> Self {
        match error {
            rtnetlink::Error::NetlinkError(message) if message.raw_code() < 0 => {
                let errno = -message.raw_code();
                LinkError {
                    action: action.into(),
                    reason: io::Error::from_raw_os_error(errno).to_string(),
                    errno: Some(errno),
                }
            }
            other => LinkError::other(action, other.to_string()),
        }
    }

    /// Whether the kernel said the object exists already.
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }
}

/// Opens a netlink connection in the calling thread's namespace, driven by the current
/// tokio runtime.
pub fn connect() -> Result<Handle, LinkError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| LinkError::io("open a netlink route socket", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the plugin needs to know about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Whether it is a veth.
    pub is_veth: bool,
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        mtu: None,
        up: message.header.flags.contains(LinkFlags::Up),
        is_veth: false,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0; 6];
                mac.copy_from_slice(bytes);
                link.mac = Some(mac);
            }
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::LinkInfo(infos) => {
                link.is_veth = infos
                    .iter()
                    .any(|info| matches!(info, NlLinkInfo::Kind(InfoKind::Veth)));
            }
            _ => {}
        }
    }
    link
}

/// The interface called `name` in the handle's namespace, if there is one.
pub async fn find_link(
    handle: &Handle,
    name: &str,
    netns: &str,
) -> Result<Option<Link>, LinkError> {
    let result = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match result {
        Ok(message) => Ok(message.as_ref().map(link_of)),
        Err(rtnetlink::Error::NetlinkError(message))
            if message.raw_code() == -libc::ENODEV || message.raw_code() == -libc::ENOENT =>
        {
            Ok(None)
        }
        Err(e) => Err(LinkError::netlink(
            format!("look up interface {name} in {netns}"),
            e,
        )),
    }
}

/// Creates a veth pair: `host` in the handle's (host) namespace, `peer` directly inside
/// `netns`, MTU `mtu` on both ends; returns the host side's index.
///
/// Creating the peer in its namespace costs one netlink request. Creating both ends here and
/// moving one afterwards would make the kernel wait for an RCU grace period while it
/// unregisters the device from this namespace: tens of milliseconds on a busy node, most of
/// an ADD.
pub async fn create_veth(
    handle: &Handle,
    host: &str,
    peer: &str,
    mtu: u32,
    netns: &NetNs,
) -> Result<u32, LinkError> {
    use std::os::fd::AsRawFd;
    let action = format!(
        "create veth {host} in the host netns with peer {peer} in netns {}",
        netns.path().display()
    );
    let peer_message = LinkUnspec::new_with_name(peer)
        .mtu(mtu)
        .setns_by_fd(netns.file().as_raw_fd())
        .build();
    let request = LinkVeth::new(host, peer)
        .mtu(mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_message)))
        .build();
    handle
        .link()
        .add(request)
        .execute()
        .await
        .map_err(|e| LinkError::netlink(&action, e))?;
    let created = find_link(handle, host, "the host netns").await?;
    let link =
        created.ok_or_else(|| LinkError::other(&action, "it vanished right after creation"))?;
    Ok(link.index)
}

/// Gives the host side its fixed MAC and brings it up.
pub async fn configure_host_side(handle: &Handle, index: u32, name: &str) -> Result<(), LinkError> {
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(HOST_SIDE_MAC.to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| {
            LinkError::netlink(
                format!(
                    "set MAC {} on {name} in the host netns",
                    format_mac(&HOST_SIDE_MAC)
                ),
                e,
            )
        })?;
    set_up(handle, index, name, "the host netns").await
}

async fn set_up(handle: &Handle, index: u32, name: &str, netns: &str) -> Result<(), LinkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| LinkError::netlink(format!("bring {name} up in {netns}"), e))
}

/// Deletes interface `name` if it exists (a veth takes its peer with it); returns whether
/// there was one.
pub async fn delete_link(handle: &Handle, name: &str, netns: &str) -> Result<bool, LinkError> {
    let Some(link) = find_link(handle, name, netns).await? else {
        return Ok(false);
    };
    match handle.link().del(link.index).execute().await {
        Ok(()) => Ok(true),
        // Gone in the meantime (its peer's namespace was destroyed): the goal is reached.
        Err(rtnetlink::Error::NetlinkError(message)) if message.raw_code() == -libc::ENODEV => {
            Ok(false)
        }
        Err(e) => Err(LinkError::netlink(format!("delete {name} in {netns}"), e)),
    }
}

/// Inside the pod's namespace: renames the moved peer `temp` to `ifname`, sets its MTU,
/// brings it and `lo` up, adds `ip/32` and the routes to the gateway; returns its MAC.
pub async fn configure_pod_side(
    handle: &Handle,
    temp: &str,
    ifname: &str,
    ip: Ipv4Addr,
    mtu: u32,
    netns: &str,
) -> Result<[u8; 6], LinkError> {
    if find_link(handle, ifname, netns).await?.is_some() {
        return Err(LinkError {
            action: format!("name the pod interface {ifname} in netns {netns}"),
            reason: format!(
                "interface {ifname} already exists there; was the container attached twice?"
            ),
            errno: Some(libc::EEXIST),
        });
    }
    let moved = find_link(handle, temp, netns).await?.ok_or_else(|| {
        LinkError::other(
            format!("find {temp} in netns {netns}"),
            "the moved interface is not there",
        )
    })?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(moved.index)
                .name(ifname.to_string())
                .mtu(mtu)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| {
            LinkError::netlink(
                format!("rename {temp} to {ifname} with MTU {mtu} in netns {netns}"),
                e,
            )
        })?;
    set_up(handle, moved.index, ifname, &format!("netns {netns}")).await?;
    if let Some(lo) = find_link(handle, "lo", netns).await? {
        set_up(handle, lo.index, "lo", &format!("netns {netns}")).await?;
    }
    handle
        .address()
        .add(moved.index, ip.into(), 32)
        .execute()
        .await
        .map_err(|e| {
            LinkError::netlink(
                format!("add address {ip}/32 to {ifname} in netns {netns}"),
                e,
            )
        })?;
    add_route(
        handle,
        gateway_route(moved.index),
        &format!("{POD_GATEWAY} dev {ifname} scope link"),
        netns,
    )
    .await?;
    add_route(
        handle,
        default_route(moved.index),
        &format!("default via {POD_GATEWAY} dev {ifname}"),
        netns,
    )
    .await?;
    // The gateway's MAC never changes (every host side has the same one), so the pod needs
    // no ARP for it: its first packet leaves at once instead of waiting for an ARP answer
    // that only comes once the agent has programmed the interface (a lost first ARP costs a
    // one-second retransmit).
    handle
        .neighbours()
        .add(moved.index, POD_GATEWAY.into())
        .link_layer_address(&HOST_SIDE_MAC)
        .replace()
        .execute()
        .await
        .map_err(|e| {
            LinkError::netlink(
                format!(
                    "add permanent neighbour {POD_GATEWAY} lladdr {} on {ifname} in netns {netns}",
                    format_mac(&HOST_SIDE_MAC)
                ),
                e,
            )
        })?;
    let configured = find_link(handle, ifname, netns).await?;
    configured.and_then(|l| l.mac).ok_or_else(|| {
        LinkError::other(
            format!("read the MAC of {ifname} in netns {netns}"),
            "the interface has none",
        )
    })
}

fn gateway_route(index: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(POD_GATEWAY, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build()
}

fn default_route(index: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(POD_GATEWAY)
        .output_interface(index)
        .build()
}

async fn add_route(
    handle: &Handle,
    route: RouteMessage,
    what: &str,
    netns: &str,
) -> Result<(), LinkError> {
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(|e| LinkError::netlink(format!("add route {what} in netns {netns}"), e))
}

/// An IPv4 route in the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRoute {
    /// Destination.
    pub dst: Ipv4Net,
    /// Gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Whether the route is link-scoped.
    pub link_scope: bool,
}

/// What CHECK compares against the previous result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSide {
    /// The pod's interface.
    pub link: Link,
    /// Its IPv4 addresses.
    pub addresses: Vec<Ipv4Net>,
    /// The main table's IPv4 routes.
    pub routes: Vec<PodRoute>,
}

/// Reads interface `ifname`, its addresses and the routes of the namespace; `None` when the
/// interface does not exist.
pub async fn inspect_pod_side(
    handle: &Handle,
    ifname: &str,
    netns: &str,
) -> Result<Option<PodSide>, LinkError> {
    let Some(link) = find_link(handle, ifname, netns).await? else {
        return Ok(None);
    };
    let messages: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(link.index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| {
            LinkError::netlink(format!("list addresses of {ifname} in netns {netns}"), e)
        })?;
    let addresses = messages
        .iter()
        .flat_map(|m| {
            m.attributes.iter().filter_map(|attribute| match attribute {
                AddressAttribute::Address(std::net::IpAddr::V4(addr)) => {
                    Ipv4Net::new(*addr, m.header.prefix_len).ok()
                }
                _ => None,
            })
        })
        .collect();
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| LinkError::netlink(format!("list routes in netns {netns}"), e))?;
    let routes = routes
        .iter()
        .filter(|r| r.header.table == RouteHeader::RT_TABLE_MAIN)
        .filter_map(pod_route)
        .collect();
    Ok(Some(PodSide {
        link,
        addresses,
        routes,
    }))
}

fn pod_route(route: &RouteMessage) -> Option<PodRoute> {
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => dst = *addr,
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => gateway = Some(*addr),
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    Some(PodRoute {
        dst: Ipv4Net::new(dst, route.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        link_scope: route.header.scope == RouteScope::Link,
    })
}
