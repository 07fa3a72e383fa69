//! The node agent's event loop: inputs → calc → sync, driven by netlink link events, new
//! inputs from the datastore and a periodic resync.
//!
//! Inputs come from JSON files ([`InputConfig::Files`], re-read when they change) or from the
//! datastore ([`InputConfig::Etcd`], through [`crate::source::DatastoreSource`]). With the
//! datastore, nothing is programmed and the ready file is not written before the first
//! complete listing has arrived, however long etcd stays unreachable; after that, every
//! published change is applied at once, and an outage leaves the dataplane as it is.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use aya::Ebpf;
use futures::StreamExt;
use rtnetlink::Handle;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use tortie_policy::CompiledPolicy;

use crate::{
    calc::{
        self, desired_state,
        policy::{PolicyAllocators, PolicyTables},
        CalcInputs, HostInterface,
    },
    metrics::{self, MetricsSources, SharedHealth},
    model::{parse_cluster, parse_endpoints, ClusterConfig, LocalEndpoint, PolicyInputs},
    source::{ConnectionState, DatastoreSource, DatastoreSourceConfig, Inputs},
    sync::{
        attach::{self, IfaceRole},
        bird::{BirdSettings, BirdSupervisor, BirdSync},
        bpffs,
        conntrack_gc::{self, ConntrackGc, CtTimeouts},
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
    /// Where the endpoints, pools and nodes come from.
    pub inputs: InputConfig,
    /// File created once the dataplane first matches the inputs.
    pub ready_file: Option<PathBuf>,
    /// Map capacities.
    pub capacities: Capacities,
    /// How often inputs are re-read and the dataplane re-checked.
    pub resync_interval: Duration,
    /// BIRD, when this node speaks BGP (its configuration is rendered from the datastore).
    pub bird: Option<BirdSettings>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; not served when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `--datastore-type`: where the agent's inputs come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DatastoreType {
    /// No datastore: the `--endpoints-file` and `--cluster-file` JSON files.
    #[default]
    None,
    /// etcd v3, at `--etcd-endpoints`.
    Etcdv3,
}

/// Where the agent reads its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputConfig {
    /// JSON files, re-read when they change; a missing one means no endpoints or no
    /// cluster knowledge.
    Files {
        /// Local endpoints.
        endpoints_file: Option<PathBuf>,
        /// Pools and nodes.
        cluster_file: Option<PathBuf>,
    },
    /// The etcd v3 datastore.
    Etcd {
        /// Client URLs (`http://10.99.0.2:2379`).
        endpoints: Vec<String>,
    },
}

/// A combination of input flags that cannot work.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputConfigError {
    /// An input file was given together with a datastore.
    #[error(
        "{flag} cannot be used with --datastore-type etcdv3: the datastore provides the \
         agent's inputs; drop {flag} (and unset {env}) or use --datastore-type none"
    )]
    FileWithDatastore {
        /// The file flag.
        flag: &'static str,
        /// Its environment variable.
        env: &'static str,
    },
    /// The datastore was chosen without saying where it is.
    #[error(
        "--datastore-type etcdv3 needs --etcd-endpoints (or TORTIE_ETCD_ENDPOINTS), a \
         comma-separated list like http://10.99.0.2:2379"
    )]
    MissingEtcdEndpoints,
}

impl InputConfig {
    /// The inputs the command-line flags select. `etcd_endpoints` entries may each hold a
    /// comma-separated list; blanks are dropped. With [`DatastoreType::None`] the endpoints
    /// are not used (the caller may warn about them).
    pub fn from_flags(
        datastore_type: DatastoreType,
        etcd_endpoints: &[String],
        endpoints_file: Option<PathBuf>,
        cluster_file: Option<PathBuf>,
    ) -> Result<InputConfig, InputConfigError> {
        match datastore_type {
            DatastoreType::None => Ok(InputConfig::Files {
                endpoints_file,
                cluster_file,
            }),
            DatastoreType::Etcdv3 => {
                if endpoints_file.is_some() {
                    return Err(InputConfigError::FileWithDatastore {
                        flag: "--endpoints-file",
                        env: "TORTIE_ENDPOINTS_FILE",
                    });
                }
                if cluster_file.is_some() {
                    return Err(InputConfigError::FileWithDatastore {
                        flag: "--cluster-file",
                        env: "TORTIE_CLUSTER_FILE",
                    });
                }
                let endpoints: Vec<String> = etcd_endpoints
                    .iter()
                    .flat_map(|list| list.split(','))
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_string)
                    .collect();
                if endpoints.is_empty() {
                    return Err(InputConfigError::MissingEtcdEndpoints);
                }
                Ok(InputConfig::Etcd { endpoints })
            }
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT. Forwarding stays in place after it returns.
pub async fn run(config: AgentConfig) -> Result<()> {
    // Started first, so that connecting and listing overlap loading the programs.
    let inputs = match &config.inputs {
        InputConfig::Files {
            endpoints_file,
            cluster_file,
        } => InputSource::Files {
            endpoints: WatchedFile::new("endpoints", endpoints_file.clone(), |text| {
                Ok(parse_endpoints(text)?)
            }),
            cluster: WatchedFile::new("cluster", cluster_file.clone(), |text| {
                Ok(parse_cluster(text)?)
            }),
        },
        InputConfig::Etcd { endpoints } => InputSource::datastore(DatastoreSource::spawn(
            DatastoreSourceConfig::new(endpoints.clone(), config.node_name.clone()),
        )),
    };
    load::check_prerequisites()?;
    bpffs::ensure_pin_root(&config.pin_root)?;
    let mut ebpf = load::load_dataplane(&config.bpf_object, &config.pin_root, config.capacities)?;
    let maps = DataplaneMaps::take(&mut ebpf)?;
    let netlink = netlink::connect()?;
    // Subscribe before listing the interfaces so none can appear unnoticed in between.
    let mut link_events = netlink::watch_links()?;
    let mut bgp_route_events = netlink::watch_bgp_routes()?;
    let bird = config
        .bird
        .clone()
        .map(|settings| BirdSync::new(&config.node_name, settings));
    let health: SharedHealth = Arc::default();
    if let Some(addr) = config.metrics_addr {
        let datastore = match &inputs {
            InputSource::Datastore { source, .. } => Some(source.state()),
            InputSource::Files { .. } => None,
        };
        metrics::serve(
            addr,
            MetricsSources {
                health: Arc::clone(&health),
                maps_dir: load::maps_dir(&config.pin_root),
                datastore,
                bird_socket: config.bird.as_ref().map(|bird| bird.socket_path.clone()),
                // Three missed resyncs, and never less than ten seconds.
                stale_after: (config.resync_interval * 3).max(Duration::from_secs(10)),
            },
        )
        .await?;
    }
    let mut agent = Agent {
        inputs,
        config,
        ebpf,
        maps,
        netlink,
        attached: BTreeMap::new(),
        policy_allocators: PolicyAllocators::default(),
        compiled: None,
        bird,
        health: Arc::clone(&health),
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    // Until the datastore has been listed once the agent knows nothing, and programming from
    // nothing would wipe what a previous run left in the pinned maps: leave them alone.
    let stopped = tokio::select! {
        first = agent.inputs.first_inputs() => {
            first?;
            false
        }
        _ = terminate.recv() => true,
        _ = interrupt.recv() => true,
    };
    if stopped {
        tracing::info!("stopping before the first sync; the dataplane was not touched");
        return Ok(());
    }
    agent.refresh_inputs();
    agent.attach_existing().await?;
    agent.sync().await.context("first sync of the dataplane")?;
    {
        let mut health = agent.health.lock().unwrap_or_else(|p| p.into_inner());
        health.syncs += 1;
        health.in_sync = true;
        health.last_loop = std::time::Instant::now();
    }
    if let Some(ready) = &agent.config.ready_file {
        std::fs::write(ready, b"ready\n")
            .with_context(|| format!("writing ready file {}", ready.display()))?;
    }
    tracing::info!(node = %agent.config.node_name, pin_root = %agent.config.pin_root.display(), "dataplane ready");
    spawn_conntrack_gc(&agent.config.pin_root, Arc::clone(&health))?;

    let mut bird_supervisor = match agent.config.bird.clone().filter(|s| s.supervise) {
        Some(settings) => {
            let routes = netlink::ipv4_routes(&agent.netlink).await?;
            let earlier_routes = !netlink::bgp_routes(&routes).is_empty();
            Some(BirdSupervisor::new(settings, earlier_routes))
        }
        None => None,
    };
    // A BIRD that exits is noticed within this interval.
    let mut bird_check = tokio::time::interval(Duration::from_millis(250));
    let mut tick = tokio::time::interval(agent.config.resync_interval);
    loop {
        tokio::select! {
            Some(event) = link_events.next() => agent.on_link_event(event).await,
            // BIRD installs and withdraws routes in bursts (a session coming up brings every
            // prefix at once): one sync for the burst.
            Some(()) = bgp_route_events.next() => {
                let burst_end = tokio::time::Instant::now() + ROUTE_BURST;
                while let Ok(Some(())) =
                    tokio::time::timeout_at(burst_end, bgp_route_events.next()).await
                {}
                agent.sync_logged().await;
            }
            // New datastore inputs apply at once: a pod the CNI plugin just wired is
            // reachable when its endpoint is published, not at the next tick.
            changed = agent.inputs.changed() => {
                changed?;
                agent.refresh_inputs();
                agent.sync_logged().await;
            }
            _ = tick.tick() => {
                agent.refresh_inputs();
                agent.sync_logged().await;
            }
            _ = bird_check.tick(), if bird_supervisor.is_some() => {
                if let Some(supervisor) = &mut bird_supervisor {
                    supervisor.tend();
                    supervisor.settle();
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping; programs, maps and routes stay in place");
    Ok(())
}

/// Expires idle conntrack and natOutgoing entries every [`conntrack_gc::INTERVAL`], on the
/// blocking pool (a sweep walks whole maps), for as long as the agent runs.
fn spawn_conntrack_gc(pin_root: &Path, health: SharedHealth) -> Result<()> {
    let mut gc = ConntrackGc::open_pinned(&load::maps_dir(pin_root), CtTimeouts::default())
        .context("opening the conntrack maps for expiry")?;
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + conntrack_gc::INTERVAL;
        let mut interval = tokio::time::interval_at(first, conntrack_gc::INTERVAL);
        loop {
            interval.tick().await;
            // The collector goes to the blocking pool and comes back with its result.
            let swept = tokio::task::spawn_blocking(move || {
                let stats = gc.collect_now();
                (gc, stats)
            })
            .await;
            let (returned, stats) = match swept {
                Ok(swept) => swept,
                Err(error) => {
                    tracing::error!("conntrack expiry stopped: {error}");
                    break;
                }
            };
            gc = returned;
            if let Ok(stats) = &stats {
                if let Ok(mut health) = health.lock() {
                    health.conntrack_entries =
                        Some(stats.conntrack_seen - stats.conntrack_removed.total());
                    health.nat_entries = Some(stats.nat_seen - stats.nat_removed.total());
                }
            }
            match stats {
                Ok(stats) if stats.conntrack_removed.total() + stats.nat_removed.total() > 0 => {
                    tracing::info!("conntrack expiry: {stats}")
                }
                Ok(stats) => tracing::debug!("conntrack expiry: {stats}"),
                Err(error) => tracing::warn!("conntrack expiry failed: {error:#}"),
            }
        }
    });
    Ok(())
}

/// How long BGP route changes are gathered before one sync applies them.
const ROUTE_BURST: Duration = Duration::from_millis(50);

/// How often the agent says it is still waiting for the datastore at start-up.
const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The agent's inputs, from files or from the datastore.
enum InputSource {
    Files {
        endpoints: WatchedFile<Vec<LocalEndpoint>>,
        cluster: WatchedFile<ClusterConfig>,
    },
    Datastore {
        /// Kept so the task lives as long as the agent.
        source: DatastoreSource,
        inputs: watch::Receiver<Option<Arc<Inputs>>>,
        /// The inputs the last sync used.
        current: Option<Arc<Inputs>>,
    },
}

impl InputSource {
    fn datastore(source: DatastoreSource) -> Self {
        InputSource::Datastore {
            inputs: source.inputs(),
            source,
            current: None,
        }
    }

    fn refresh(&mut self) {
        match self {
            InputSource::Files { endpoints, cluster } => {
                endpoints.refresh();
                cluster.refresh();
            }
            InputSource::Datastore {
                inputs, current, ..
            } => *current = inputs.borrow_and_update().clone(),
        }
    }

    fn endpoints(&self) -> &[LocalEndpoint] {
        match self {
            InputSource::Files { endpoints, .. } => endpoints.current().map_or(&[], Vec::as_slice),
            InputSource::Datastore { current, .. } => current
                .as_ref()
                .map_or(&[], |inputs| inputs.endpoints.as_slice()),
        }
    }

    /// The inputs policy is compiled from, `None` for files (which carry no policy).
    /// Datastore inputs are shared and replaced whole, so the same `Arc` means the same
    /// policy.
    fn policy(&self) -> Option<&Arc<Inputs>> {
        match self {
            InputSource::Files { .. } => None,
            InputSource::Datastore { current, .. } => current.as_ref(),
        }
    }

    fn cluster(&self) -> Option<&ClusterConfig> {
        match self {
            InputSource::Files { cluster, .. } => cluster.current(),
            InputSource::Datastore { current, .. } => {
                current.as_ref().map(|inputs| &inputs.cluster)
            }
        }
    }

    /// Waits until the source has inputs worth a first sync: at once for files, after the
    /// first complete listing for the datastore. Fails only if the source stopped for good.
    async fn first_inputs(&mut self) -> Result<()> {
        let InputSource::Datastore { source, inputs, .. } = self else {
            return Ok(());
        };
        let mut state = source.state();
        tracing::info!("waiting for the first complete listing from the datastore");
        let mut reminder = tokio::time::interval(WAITING_LOG_INTERVAL);
        reminder.tick().await;
        loop {
            tokio::select! {
                ready = inputs.wait_for(Option::is_some) => {
                    return match ready {
                        Ok(_) => Ok(()),
                        Err(_) => Err(stopped_source(&state)),
                    };
                }
                _ = reminder.tick() => {
                    tracing::info!(
                        "still waiting for the datastore ({}); nothing is programmed and the \
                         ready file is not written until it answers",
                        *state.borrow_and_update()
                    );
                }
            }
        }
    }

    /// Resolves when the datastore has published new inputs; never for files, whose
    /// changes the periodic tick picks up.
    async fn changed(&mut self) -> Result<()> {
        match self {
            InputSource::Files { .. } => std::future::pending().await,
            InputSource::Datastore { source, inputs, .. } => inputs
                .changed()
                .await
                .map_err(|_| stopped_source(&source.state())),
        }
    }
}

fn stopped_source(state: &watch::Receiver<ConnectionState>) -> anyhow::Error {
    anyhow::anyhow!("the datastore source stopped ({})", *state.borrow())
}

struct Agent {
    config: AgentConfig,
    ebpf: Ebpf,
    maps: DataplaneMaps,
    netlink: Handle,
    inputs: InputSource,
    /// Interfaces we attached to: index → name.
    attached: BTreeMap<u32, String>,
    /// Identity and rule numbering, stable across compilations.
    policy_allocators: PolicyAllocators,
    /// The last compilation and what it was made from (inputs token, local interfaces).
    compiled: Option<LastCompilation>,
    /// BIRD's configuration, when this node speaks BGP.
    bird: Option<BirdSync>,
    /// What the endpoints of `--metrics-addr` report.
    health: SharedHealth,
}

impl Agent {
    fn refresh_inputs(&mut self) {
        self.inputs.refresh();
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
        let started = std::time::Instant::now();
        let result = self.sync().await;
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.syncs += 1;
        health.in_sync = result.is_ok();
        health.last_sync = Some((started.elapsed(), result.is_ok()));
        health.last_loop = std::time::Instant::now();
        if let Err(error) = result {
            health.sync_errors += 1;
            // The next tick retries; the dataplane keeps its last good state meanwhile.
            tracing::error!("sync failed: {error:#}");
        }
    }

    /// Notes how many entries each map holds now, for `/metrics`.
    fn record_entries(&self, desired: &calc::DesiredState) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let tables = &desired.policy;
        health.map_entries = std::collections::BTreeMap::from([
            (bpf_maps::map_names::ROUTES, desired.routes.len()),
            (bpf_maps::map_names::IFACES, desired.ifaces.len()),
            (bpf_maps::map_names::IPCACHE, tables.ipcache.len()),
            (bpf_maps::map_names::POLICY, tables.entries.len()),
            (bpf_maps::map_names::RULE_NAMES, tables.rule_names.len()),
        ]);
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
        let learned_routes = netlink::bgp_routes(&routes);
        let calc_inputs = CalcInputs {
            node_name: &self.config.node_name,
            endpoints: self.inputs.endpoints(),
            interfaces: &interfaces,
            uplink: self.config.uplink.as_deref(),
            uplink_addrs: &uplink_addrs,
            default_gateway,
            cluster: self.inputs.cluster(),
            learned_routes: &learned_routes,
        };
        let mut desired = desired_state(&calc_inputs);
        // Compiling is the expensive step: only when the inputs or the local interfaces
        // (which policy entries are keyed by) changed.
        let policy_inputs = self.inputs.policy();
        let local_interfaces: BTreeMap<String, u32> = interfaces
            .iter()
            .filter(|iface| iface.name.starts_with(&self.config.workload_prefix))
            .map(|iface| (iface.name.clone(), iface.index))
            .collect();
        let fresh = self.compiled.as_ref().is_some_and(|last| {
            let same_inputs = match (&last.inputs, policy_inputs) {
                (Some(last), Some(now)) => Arc::ptr_eq(last, now),
                (None, None) => true,
                _ => false,
            };
            same_inputs && last.local_interfaces == local_interfaces
        });
        if !fresh {
            let started = std::time::Instant::now();
            let empty = PolicyInputs::default();
            let compiled = calc::policy::compile_for_node(
                policy_inputs.map_or(&empty, |inputs| &inputs.policy),
                &calc_inputs,
                &mut self.policy_allocators,
            );
            for error in &compiled.errors {
                tracing::error!("policy not applied: {error}");
            }
            for warning in &compiled.warnings {
                tracing::warn!("policy: {warning}");
            }
            tracing::debug!(
                entries = compiled.entries.len(),
                identities = compiled.ipcache.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "policy compiled"
            );
            self.compiled = Some(LastCompilation {
                inputs: policy_inputs.cloned(),
                local_interfaces,
                tables: PolicyTables::of(&compiled),
                compiled,
            });
            release_freed_memory();
        }
        if let Some(last) = &self.compiled {
            calc::policy::add_to_desired(&mut desired, &last.compiled, &last.tables);
        }
        for pod in &desired.missing_interfaces {
            tracing::debug!(%pod, "endpoint waits for its interface");
        }
        for warning in &desired.warnings {
            tracing::warn!("{warning}");
        }
        let stats = self.maps.apply(&desired)?;
        self.record_entries(&desired);
        netlink::sync_kernel_routes(&self.netlink, &routes, &desired.kernel_routes).await?;
        if let (Some(bird), Some(inputs)) = (&mut self.bird, self.inputs.policy()) {
            // BGP trouble must not hold up the dataplane: logged, retried on the next sync.
            if let Err(error) = bird.sync(inputs) {
                tracing::error!("BGP configuration not applied: {error:#}");
            }
        }
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

/// Hands memory freed by a compilation back to the system. A compilation allocates far more
/// while it works than it keeps, and glibc's allocator holds on to freed pages it cannot
/// trim from the top of its heap: without this, the agent's resident size would stay at the
/// compilation's peak.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages to the kernel; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// A policy compilation and what it was made from.
struct LastCompilation {
    /// The inputs it compiled (see `InputSource::policy`); held, so that new inputs can
    /// never be taken for these ones by reusing their address.
    inputs: Option<Arc<Inputs>>,
    /// The local workload interfaces then: name → index.
    local_interfaces: BTreeMap<String, u32>,
    compiled: CompiledPolicy,
    /// Its map contents, shared with every desired state built from it.
    tables: Arc<PolicyTables>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_the_default_source() {
        let inputs = InputConfig::from_flags(
            DatastoreType::None,
            &[],
            Some("e.json".into()),
            Some("c.json".into()),
        );
        assert_eq!(
            inputs,
            Ok(InputConfig::Files {
                endpoints_file: Some("e.json".into()),
                cluster_file: Some("c.json".into()),
            })
        );
    }

    #[test]
    fn etcd_takes_comma_separated_endpoints() {
        let inputs = InputConfig::from_flags(
            DatastoreType::Etcdv3,
            &["http://10.99.0.2:2379, http://10.99.0.3:2379,".into()],
            None,
            None,
        );
        assert_eq!(
            inputs,
            Ok(InputConfig::Etcd {
                endpoints: vec![
                    "http://10.99.0.2:2379".into(),
                    "http://10.99.0.3:2379".into()
                ],
            })
        );
    }

    #[test]
    fn etcd_refuses_files_and_needs_endpoints() {
        let endpoints = ["http://10.99.0.2:2379".to_string()];
        let error = InputConfig::from_flags(
            DatastoreType::Etcdv3,
            &endpoints,
            Some("e.json".into()),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("--endpoints-file cannot be used with --datastore-type etcdv3"),
            "{error}"
        );
        assert!(error.contains("TORTIE_ENDPOINTS_FILE"), "{error}");
        let error = InputConfig::from_flags(
            DatastoreType::Etcdv3,
            &endpoints,
            None,
            Some("c.json".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("--cluster-file cannot"), "{error}");
        let error = InputConfig::from_flags(DatastoreType::Etcdv3, &[" ,".into()], None, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("needs --etcd-endpoints (or TORTIE_ETCD_ENDPOINTS)"),
            "{error}"
        );
    }
}
