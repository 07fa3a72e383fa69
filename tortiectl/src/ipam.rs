//! `tortiectl ipam show | check | release`.

use std::{collections::BTreeSet, fmt::Write as _, net::Ipv4Addr};

use anyhow::Result;
use tortie_ipam::{check, workload_handle, CheckReport, Ipam, DEFAULT_NETWORK};
use tortie_resources::{Kind, Resource};

use crate::store::ResourceStore;

/// Pools with their usage, and every block with its node and usage.
pub async fn show(store: &ResourceStore) -> Result<String> {
    let ipam = Ipam::new(store.datastore());
    let blocks = ipam.blocks().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<20} {:>8} {:>8}",
        "POOL", "CIDR", "IN USE", "SIZE"
    );
    for resource in store.list(Kind::IpPool, None).await? {
        let Resource::IpPool(pool) = resource else {
            continue;
        };
        let Ok(cidr) = pool.spec.cidr.parse::<ipnet::Ipv4Net>() else {
            continue;
        };
        let used: usize = blocks
            .iter()
            .filter(|b| cidr.contains(&b.block.cidr))
            .map(|b| b.block.used())
            .sum();
        let size = 1u64 << (32 - cidr.prefix_len());
        let _ = writeln!(
            out,
            "{:<28} {:<20} {:>8} {:>8}",
            pool.metadata.name, cidr, used, size
        );
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:<20} {:>8} {:>8}",
        "BLOCK", "NODE", "IN USE", "SIZE"
    );
    for stored in &blocks {
        let b = &stored.block;
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:>8} {:>8}",
            b.cidr.to_string(),
            b.affine_node().unwrap_or("-"),
            b.used(),
            b.size()
        );
    }
    Ok(out)
}

/// Who holds `ip`.
pub async fn show_ip(store: &ResourceStore, ip: Ipv4Addr) -> Result<String> {
    let ipam = Ipam::new(store.datastore());
    for stored in ipam.blocks().await? {
        if stored.block.cidr.contains(&ip) {
            return Ok(match stored.block.handle_of(ip) {
                Some(handle) => format!(
                    "{ip} is in use by handle {handle} (block {})",
                    stored.block.cidr
                ),
                None => format!(
                    "{ip} is free (block {}, node {})",
                    stored.block.cidr,
                    stored.block.affine_node().unwrap_or("-")
                ),
            });
        }
    }
    Ok(format!("{ip} is not in any allocated block"))
}

/// Blocks and handles checked against each other and against the workload endpoints.
pub async fn run_check(store: &ResourceStore) -> Result<CheckReport> {
    let ipam = Ipam::new(store.datastore());
    let live: BTreeSet<String> = store
        .list(Kind::WorkloadEndpoint, None)
        .await?
        .iter()
        .filter_map(|r| match r {
            Resource::WorkloadEndpoint(wep) => wep
                .spec
                .container_id
                .as_deref()
                .map(|id| workload_handle(DEFAULT_NETWORK, id)),
            _ => None,
        })
        .collect();
    Ok(check(
        &ipam.blocks().await?,
        &ipam.handles().await?,
        Some(&live),
    ))
}

/// Renders a check report the way `tortiectl ipam check` prints it.
pub fn render_check(report: &CheckReport) -> String {
    let mut out = format!(
        "checked {} block(s), {} handle(s), {} allocated address(es)\n",
        report.blocks, report.handles, report.allocated
    );
    if report.is_clean() {
        out.push_str("no problems found\n");
    } else {
        let _ = writeln!(out, "{} problem(s):", report.problems.len());
        for problem in &report.problems {
            let _ = writeln!(out, "  {problem}");
        }
    }
    out
}
