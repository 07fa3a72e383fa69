//! Netlink operations, each small and named, each error naming the object it was about.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context, Result};
use futures::{channel::mpsc::UnboundedReceiver, StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    address::AddressAttribute,
    link::{LinkAttribute, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope},
    RouteNetlinkMessage,
};
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};

use ipnet::Ipv4Net;

use crate::{
    calc::{HostInterface, KernelRoute, LearnedRoute},
    model::MacAddr,
};

/// Routing protocol number marking kernel routes tortie owns (`ip route show proto 81`), so
/// that sync and cleanup never touch anyone else's routes.
pub const TORTIE_ROUTE_PROTOCOL: u8 = 81;

/// Opens a netlink connection whose background task runs on the current tokio runtime.
pub fn connect() -> Result<Handle> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a netlink route socket")?;
    tokio::spawn(connection);
    Ok(handle)
}

fn host_interface(message: &LinkMessage) -> Option<HostInterface> {
    let mut name = None;
    let mut mac = MacAddr::default();
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                mac.0.copy_from_slice(bytes);
            }
            _ => {}
        }
    }
    Some(HostInterface {
        name: name?,
        index: message.header.index,
        mac,
    })
}

/// Every interface in this network namespace.
pub async fn list_interfaces(handle: &Handle) -> Result<Vec<HostInterface>> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .context("listing interfaces over netlink")?;
    Ok(links.iter().filter_map(host_interface).collect())
}

/// The IPv4 addresses (with prefix lengths) configured on interface `index`.
pub async fn interface_ipv4_addrs(handle: &Handle, index: u32) -> Result<Vec<Ipv4Net>> {
    let messages: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .with_context(|| format!("listing addresses of interface {index}"))?;
    Ok(messages
        .iter()
        .flat_map(|m| {
            m.attributes.iter().filter_map(|attribute| match attribute {
                AddressAttribute::Address(std::net::IpAddr::V4(addr)) => {
                    Ipv4Net::new(*addr, m.header.prefix_len).ok()
                }
                _ => None,
            })
        })
        .collect())
}

fn route_message(destination: &Ipv4Net, route: &KernelRoute) -> RouteMessage {
    let builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(destination.network(), destination.prefix_len())
        .protocol(RouteProtocol::Other(TORTIE_ROUTE_PROTOCOL));
    match *route {
        KernelRoute::Device { ifindex } => builder
            .output_interface(ifindex)
            .scope(RouteScope::Link)
            .build(),
        KernelRoute::Gateway { via, ifindex } => builder
            .output_interface(ifindex)
            .gateway(via)
            .onlink()
            .build(),
    }
}

/// Every IPv4 route of the namespace (one dump, shared by the steps of a sync).
pub async fn ipv4_routes(handle: &Handle) -> Result<Vec<RouteMessage>> {
    handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .context("listing kernel routes")
}

fn is_owned(route: &RouteMessage) -> bool {
    route.header.protocol == RouteProtocol::Other(TORTIE_ROUTE_PROTOCOL)
}

fn parse_route(route: &RouteMessage) -> Option<(Ipv4Net, KernelRoute)> {
    let mut destination = None;
    let mut oif = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => destination = Some(*addr),
            RouteAttribute::Oif(index) => oif = Some(*index),
            RouteAttribute::Gateway(RouteAddress::Inet(addr)) => gateway = Some(*addr),
            _ => {}
        }
    }
    let destination = Ipv4Net::new(
        destination.unwrap_or(Ipv4Addr::UNSPECIFIED),
        route.header.destination_prefix_length,
    )
    .ok()?;
    let ifindex = oif?;
    let kernel_route = match gateway {
        Some(via) => KernelRoute::Gateway { via, ifindex },
        None => KernelRoute::Device { ifindex },
    };
    Some((destination, kernel_route))
}

/// The routes BIRD installed in the main table (`proto bird`): what BGP learned. A route
/// over several next hops (ECMP) is taken with its first; one without any IPv4 gateway is
/// left out (there is nowhere to send its traffic but the host).
pub fn bgp_routes(routes: &[RouteMessage]) -> Vec<LearnedRoute> {
    routes
        .iter()
        .filter(|route| is_main_table_bird(route))
        .filter_map(|route| {
            let (prefix, kernel_route) = parse_route(route).or_else(|| first_hop_of(route))?;
            match kernel_route {
                KernelRoute::Gateway { via, .. } => Some(LearnedRoute {
                    prefix,
                    next_hop: via,
                }),
                KernelRoute::Device { .. } => None,
            }
        })
        .collect()
}

fn is_main_table_bird(route: &RouteMessage) -> bool {
    route.header.protocol == RouteProtocol::Bird && route.header.table == 254
}

/// The destination and first next hop of a multipath route.
fn first_hop_of(route: &RouteMessage) -> Option<(Ipv4Net, KernelRoute)> {
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut first_hop = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => destination = *addr,
            RouteAttribute::MultiPath(hops) => {
                first_hop = hops.iter().find_map(|hop| {
                    hop.attributes.iter().find_map(|attribute| match attribute {
                        RouteAttribute::Gateway(RouteAddress::Inet(via)) => {
                            Some(KernelRoute::Gateway {
                                via: *via,
                                ifindex: hop.interface_index,
                            })
                        }
                        _ => None,
                    })
                });
            }
            _ => {}
        }
    }
    let prefix = Ipv4Net::new(destination, route.header.destination_prefix_length).ok()?;
    Some((prefix, first_hop?))
}

/// Subscribes to IPv4 route changes and reports those of BIRD's routes (`RTNLGRP_IPV4_ROUTE`,
/// `proto bird`), so that what BGP learns or withdraws reaches the maps without waiting for
/// the next resync. Each item only says "something changed"; the sync reads the table.
pub fn watch_bgp_routes() -> Result<UnboundedReceiver<()>> {
    let (connection, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Ipv4Route])
            .context("subscribing to netlink route events")?;
    tokio::spawn(connection);
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    tokio::spawn(async move {
        let mut messages = messages;
        while let Some((message, _)) = messages.next().await {
            let route = match &message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route))
                | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(route)) => route,
                _ => continue,
            };
            if is_main_table_bird(route) && sender.unbounded_send(()).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}

/// The gateway of the main table's default route, if there is one.
pub fn default_gateway(routes: &[RouteMessage]) -> Option<Ipv4Addr> {
    routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0 && r.header.table == 254)
        .find_map(|r| match parse_route(r) {
            Some((_, KernelRoute::Gateway { via, .. })) => Some(via),
            _ => None,
        })
}

/// Makes tortie's kernel routes equal to `desired`, touching only routes that differ. These
/// routes carry the host's own traffic to pods. `routes` is a fresh [`ipv4_routes`] dump.
pub async fn sync_kernel_routes(
    handle: &Handle,
    routes: &[RouteMessage],
    desired: &BTreeMap<Ipv4Net, KernelRoute>,
) -> Result<()> {
    let current: BTreeMap<Ipv4Net, KernelRoute> = routes
        .iter()
        .filter(|r| is_owned(r))
        .filter_map(parse_route)
        .collect();
    for (destination, route) in desired {
        if current.get(destination) != Some(route) {
            handle
                .route()
                .add(route_message(destination, route))
                .replace()
                .execute()
                .await
                .with_context(|| format!("adding kernel route {destination} ({route:?})"))?;
        }
    }
    for (destination, route) in current.iter().filter(|(d, _)| !desired.contains_key(d)) {
        delete_route(handle, route_message(destination, route)).await?;
    }
    Ok(())
}

/// Removes every kernel route tortie added.
pub async fn delete_owned_routes(handle: &Handle) -> Result<()> {
    for route in ipv4_routes(handle).await?.into_iter().filter(is_owned) {
        delete_route(handle, route).await?;
    }
    Ok(())
}

async fn delete_route(handle: &Handle, route: RouteMessage) -> Result<()> {
    let what = parse_route(&route);
    match handle.route().del(route).execute().await {
        // Already gone (its interface was deleted): the goal is reached.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        other => other.with_context(|| format!("deleting kernel route {what:?}")),
    }
}

/// A change to the set of interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// An interface appeared or changed.
    Added(HostInterface),
    /// An interface was deleted.
    Removed(HostInterface),
}

/// Subscribes to interface changes (`RTNLGRP_LINK`).
pub fn watch_links() -> Result<UnboundedReceiver<LinkEvent>> {
    let (connection, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .context("subscribing to netlink link events")?;
    tokio::spawn(connection);
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    tokio::spawn(async move {
        let mut messages = messages;
        while let Some((message, _)) = messages.next().await {
            if let Some(event) = link_event(message) {
                if sender.unbounded_send(event).is_err() {
                    break;
                }
            }
        }
    });
    Ok(receiver)
}

fn link_event(message: NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            host_interface(&link).map(LinkEvent::Added)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
            host_interface(&link).map(LinkEvent::Removed)
        }
        _ => None,
    }
}
