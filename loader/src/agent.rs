//! The node agent's event loop: inputs → calc → sync, driven by netlink link events, the
//! endpoint source and a periodic resync.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use aya::Ebpf;
use futures::StreamExt;
use rtnetlink::Handle;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    calc::{desired_state, CalcInputs, HostInterface},
    model::{parse_cluster, parse_endpoints, ClusterConfig, LocalEndpoint},
    sync::{
        attach::{self, IfaceRole},
        bpffs,
        load::{self, Capacities},
        maps::DataplaneMaps,
        netlink::{self, LinkEvent},
    },
};

/// How the agent is configured (see `tortie-agent run --help`).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name.
    pub node_name: String,
    /// bpffs directory for maps and links.
    pub pin_root: PathBuf,
    /// The compiled eBPF object.
    pub bpf_object: PathBuf,
    /// The interface facing the fabric.
    pub uplink: Option<String>,
    /// Prefix of host-side workload interfaces.
    pub workload_prefix: String,
    /// JSON file of local endpoints (until a datastore feeds the agent).
    pub endpoints_file: Option<PathBuf>,
    /// JSON file of pools and nodes (until a datastore feeds the agent).
    pub cluster_file: Option<PathBuf>,
    /// File created once the dataplane first matches the inputs.
    pub ready_file: Option<PathBuf>,
    /// Map capacities.
    pub capacities: Capacities,
    /// How often inputs are re-read and the dataplane re-checked.
    pub resync_interval: Duration,
}

/// Runs the agent until SIGTERM/SIGINT. Forwarding stays in place after it returns.
pub async fn run(config: AgentConfig) -> Result<()> {
    load::check_prerequisites()?;
    bpffs::ensure_pin_root(&config.pin_root)?;
    let mut ebpf = load::load_dataplane(&config.bpf_object, &config.pin_root, config.capacities)?;
    let maps = DataplaneMaps::take(&mut ebpf)?;
    let netlink = netlink::connect()?;
    // Subscribe before the first listing so no interface can appear unnoticed in between.
    let mut link_events = netlink::watch_links()?;
    let mut agent = Agent {
        endpoints: WatchedFile::new("endpoints", config.endpoints_file.clone(), |text| {
            Ok(parse_endpoints(text)?)
        }),
        cluster: WatchedFile::new("cluster", config.cluster_file.clone(), |text| {
            Ok(parse_cluster(text)?)
        }),
        config,
        ebpf,
        maps,
        netlink,
        attached: BTreeMap::new(),
    };

    agent.refresh_inputs();
    agent.attach_existing().await?;
    agent.sync().await.context("first sync of the dataplane")?;
    if let Some(ready) = &agent.config.ready_file {
        std::fs::write(ready, b"ready\n")
            .with_context(|| format!("writing ready file {}", ready.display()))?;
    }
    tracing::info!(node = %agent.config.node_name, pin_root = %agent.config.pin_root.display(), "dataplane ready");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(agent.config.resync_interval);
    loop {
        tokio::select! {
            Some(event) = link_events.next() => agent.on_link_event(event).await,
            _ = tick.tick() => {
                agent.refresh_inputs();
                agent.sync_logged().await;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping; programs, maps and routes stay in place");
    Ok(())
}

struct Agent {
    config: AgentConfig,
    ebpf: Ebpf,
    maps: DataplaneMaps,
    netlink: Handle,
    endpoints: WatchedFile<Vec<LocalEndpoint>>,
    cluster: WatchedFile<ClusterConfig>,
    /// Interfaces we attached to: index → name.
    attached: BTreeMap<u32, String>,
}

impl Agent {
    fn refresh_inputs(&mut self) {
        self.endpoints.refresh();
        self.cluster.refresh();
    }

    fn role_of(&self, iface: &HostInterface) -> Option<IfaceRole> {
        IfaceRole::of(
            &iface.name,
            self.config.uplink.as_deref(),
            &self.config.workload_prefix,
        )
    }

    async fn attach_existing(&mut self) -> Result<()> {
        let interfaces = netlink::list_interfaces(&self.netlink).await?;
        if let Some(uplink) = &self.config.uplink {
            if !interfaces.iter().any(|i| &i.name == uplink) {
                anyhow::bail!("uplink interface {uplink} does not exist; pass the interface facing the fabric with --uplink");
            }
        }
        for iface in &interfaces {
            self.attach(iface)?;
        }
        Ok(())
    }

    fn attach(&mut self, iface: &HostInterface) -> Result<()> {
        let Some(role) = self.role_of(iface) else {
            return Ok(());
        };
        if self.attached.get(&iface.index) == Some(&iface.name) {
            return Ok(());
        }
        attach::attach(&mut self.ebpf, iface, role)?;
        tracing::info!(iface = %iface.name, ifindex = iface.index, ?role, "programs attached");
        self.attached.insert(iface.index, iface.name.clone());
        Ok(())
    }

    async fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Added(iface) => {
                if let Err(error) = self.attach(&iface) {
                    tracing::error!(iface = %iface.name, "{error:#}");
                    return;
                }
            }
            LinkEvent::Removed(iface) => {
                // Filters go with their interface; only our bookkeeping needs updating.
                if self.attached.remove(&iface.index).is_some() {
                    tracing::info!(iface = %iface.name, "interface gone");
                }
            }
        }
        self.sync_logged().await;
    }

    async fn sync_logged(&mut self) {
        if let Err(error) = self.sync().await {
            // The next tick retries; the dataplane keeps its last good state meanwhile.
            tracing::error!("sync failed: {error:#}");
        }
    }

    /// Recomputes the desired state from scratch and applies the difference.
    async fn sync(&mut self) -> Result<()> {
        let interfaces = netlink::list_interfaces(&self.netlink).await?;
        let mut uplink_addrs = Vec::new();
        if let Some(uplink) = interfaces
            .iter()
            .find(|i| self.config.uplink.as_deref() == Some(i.name.as_str()))
        {
            uplink_addrs = netlink::interface_ipv4_addrs(&self.netlink, uplink.index).await?;
        }
        let routes = netlink::ipv4_routes(&self.netlink).await?;
        let default_gateway = netlink::default_gateway(&routes);
        let desired = desired_state(&CalcInputs {
            node_name: &self.config.node_name,
            endpoints: self.endpoints.current().map_or(&[], Vec::as_slice),
            interfaces: &interfaces,
            uplink: self.config.uplink.as_deref(),
            uplink_addrs: &uplink_addrs,
            default_gateway,
            cluster: self.cluster.current(),
        });
        for pod in &desired.missing_interfaces {
            tracing::debug!(%pod, "endpoint waits for its interface");
        }
        for warning in &desired.warnings {
            tracing::warn!("{warning}");
        }
        let stats = self.maps.apply(&desired)?;
        netlink::sync_kernel_routes(&self.netlink, &routes, &desired.kernel_routes).await?;
        if stats.written + stats.removed > 0 {
            tracing::info!(
                written = stats.written,
                removed = stats.removed,
                "maps updated"
            );
        }
        Ok(())
    }
}

/// An input file, re-read when it changes. A file that fails validation is rejected whole and
/// the last good contents stay in force.
struct WatchedFile<T> {
    what: &'static str,
    path: Option<PathBuf>,
    seen: Option<(SystemTime, u64)>,
    parse: fn(&str) -> Result<T>,
    current: Option<T>,
}

impl<T> WatchedFile<T> {
    fn new(what: &'static str, path: Option<PathBuf>, parse: fn(&str) -> Result<T>) -> Self {
        Self {
            what,
            path,
            seen: None,
            parse,
            current: None,
        }
    }

    fn current(&self) -> Option<&T> {
        self.current.as_ref()
    }

    fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        let stamp = (
            metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            metadata.len(),
        );
        if self.seen == Some(stamp) {
            return;
        }
        self.seen = Some(stamp);
        let parsed = std::fs::read_to_string(path)
            .with_context(|| format!("reading {} file {}", self.what, path.display()))
            .and_then(|text| (self.parse)(&text));
        match parsed {
            Ok(value) => {
                tracing::info!(file = %path.display(), "{} file loaded", self.what);
                self.current = Some(value);
            }
            Err(error) => tracing::error!(
                file = %path.display(),
                "{error:#}; keeping the previous {} input",
                self.what
            ),
        }
    }
}

/// Removes everything the agent created: detaches programs, deletes its kernel routes and
/// unpins its maps and links.
pub async fn cleanup(pin_root: &Path, workload_prefix: &str, uplink: Option<&str>) -> Result<()> {
    load::check_prerequisites()?;
    let netlink = netlink::connect()?;
    let interfaces: Vec<(HostInterface, IfaceRole)> = netlink::list_interfaces(&netlink)
        .await?
        .into_iter()
        .filter_map(|iface| {
            IfaceRole::of(&iface.name, uplink, workload_prefix).map(|role| (iface, role))
        })
        .collect();
    for (iface, role) in &interfaces {
        attach::detach(iface, *role);
    }
    netlink::delete_owned_routes(&netlink).await?;
    if pin_root.exists() {
        // Removing a file on bpffs unpins the object; the kernel frees it with its last user.
        std::fs::remove_dir_all(pin_root)
            .with_context(|| format!("removing pins under {}", pin_root.display()))?;
    }
    tracing::info!(pin_root = %pin_root.display(), "cleaned up");
    Ok(())
}
