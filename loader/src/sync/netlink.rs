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

use crate::{calc::HostInterface, model::MacAddr};

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

/// The IPv4 addresses configured on interface `index`.
pub async fn interface_ipv4_addrs(handle: &Handle, index: u32) -> Result<Vec<Ipv4Addr>> {
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
        .flat_map(|m| m.attributes.iter())
        .filter_map(|attribute| match attribute {
            AddressAttribute::Address(std::net::IpAddr::V4(addr)) => Some(*addr),
            _ => None,
        })
        .collect())
}

fn pod_route(addr: Ipv4Addr, ifindex: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(addr, 32)
        .output_interface(ifindex)
        .scope(RouteScope::Link)
        .protocol(RouteProtocol::Other(TORTIE_ROUTE_PROTOCOL))
        .build()
}

/// tortie's kernel routes: destination /32 → output interface.
async fn owned_routes(handle: &Handle) -> Result<Vec<RouteMessage>> {
    let all: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .context("listing kernel routes")?;
    Ok(all
        .into_iter()
        .filter(|r| r.header.protocol == RouteProtocol::Other(TORTIE_ROUTE_PROTOCOL))
        .collect())
}

fn route_target(route: &RouteMessage) -> Option<(Ipv4Addr, u32)> {
    let mut destination = None;
    let mut oif = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(addr)) => destination = Some(*addr),
            RouteAttribute::Oif(index) => oif = Some(*index),
            _ => {}
        }
    }
    Some((destination?, oif?))
}

/// Makes tortie's kernel routes equal to `desired` (pod address → interface), touching only
/// routes that differ. These routes carry host-originated traffic to local pods.
pub async fn sync_pod_routes(handle: &Handle, desired: &BTreeMap<Ipv4Addr, u32>) -> Result<()> {
    let current: BTreeMap<Ipv4Addr, u32> = owned_routes(handle)
        .await?
        .iter()
        .filter_map(route_target)
        .collect();
    for (addr, ifindex) in desired {
        if current.get(addr) != Some(ifindex) {
            handle
                .route()
                .add(pod_route(*addr, *ifindex))
                .replace()
                .execute()
                .await
                .with_context(|| {
                    format!("adding kernel route {addr}/32 via interface {ifindex}")
                })?;
        }
    }
    for (addr, ifindex) in current.iter().filter(|(a, _)| !desired.contains_key(a)) {
        delete_route(handle, pod_route(*addr, *ifindex)).await?;
    }
    Ok(())
}

/// Removes every kernel route tortie added.
pub async fn delete_owned_routes(handle: &Handle) -> Result<()> {
    for route in owned_routes(handle).await? {
        delete_route(handle, route).await?;
    }
    Ok(())
}

async fn delete_route(handle: &Handle, route: RouteMessage) -> Result<()> {
    let what = route_target(&route);
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
