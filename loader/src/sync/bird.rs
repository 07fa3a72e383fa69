//! Keeping BIRD's configuration in step with the datastore: the node's BGP plan (sessions,
//! advertised blocks) rendered and handed to BIRD whenever the inputs change.
//!
//! The plan and the text are the `tortie-bgp` crate's; this module only decides when to
//! redo them and reports what happened. Rendering the same inputs again gives the same
//! bytes, which `BirdConfig::apply` recognises, so BIRD is only reloaded on a real change.

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use tortie_bgp::{ApplyOutcome, BgpInputs, BirdConfig, SecretsDir};

use crate::{model::BgpResources, source::Inputs};

/// Where BIRD is and where session passwords come from (`tortie-agent run --bird-config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdSettings {
    /// BIRD's configuration file, written by the agent.
    pub config_path: PathBuf,
    /// BIRD's control socket.
    pub socket_path: PathBuf,
    /// The `bird` binary that validates a configuration before it is installed.
    pub bird_binary: PathBuf,
    /// Mounted secrets (`<dir>/<secret>/<key>`) holding BGP passwords.
    pub secrets_dir: Option<PathBuf>,
    /// Whether the agent runs BIRD itself ([`BirdSupervisor`]) rather than finding it
    /// running.
    pub supervise: bool,
}

/// Renders and applies BIRD's configuration for one node.
pub struct BirdSync {
    node_name: String,
    settings: BirdSettings,
    bird: BirdConfig,
    /// The inputs last rendered, so a resync without a change costs nothing.
    rendered: Option<Arc<Inputs>>,
    /// The warnings last logged, so they are not repeated every sync.
    reported: Vec<String>,
}

impl BirdSync {
    /// A sync for `node_name` with BIRD as `settings` say.
    pub fn new(node_name: &str, settings: BirdSettings) -> Self {
        let mut bird = BirdConfig::new(&settings.config_path, &settings.socket_path);
        bird.bird_binary = settings.bird_binary.clone();
        Self {
            node_name: node_name.to_string(),
            settings,
            bird,
            rendered: None,
            reported: Vec::new(),
        }
    }

    /// Brings BIRD's configuration up to `inputs`; nothing to do when they are the ones
    /// last rendered. On failure the old configuration stays in force and the next call
    /// tries again.
    pub fn sync(&mut self, inputs: &Arc<Inputs>) -> Result<()> {
        if self
            .rendered
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, inputs))
        {
            return Ok(());
        }
        let bgp_inputs = self.bgp_inputs(&inputs.bgp);
        let plan = tortie_bgp::plan(&bgp_inputs)
            .with_context(|| format!("planning BGP for node {}", self.node_name))?;
        if plan.warnings != self.reported {
            for warning in &plan.warnings {
                tracing::warn!("BGP: {warning}");
            }
            self.reported = plan.warnings.clone();
        }
        let text = tortie_bgp::render(&plan);
        let outcome = self.bird.apply(&text)?;
        match outcome {
            ApplyOutcome::Unchanged => {}
            ApplyOutcome::Written { reloaded } => tracing::info!(
                config = %self.settings.config_path.display(),
                sessions = plan.sessions.len(),
                reloaded,
                "BIRD configuration written{}",
                if reloaded {
                    ""
                } else {
                    " (BIRD is not running; it reads the file when it starts)"
                }
            ),
        }
        self.rendered = Some(Arc::clone(inputs));
        Ok(())
    }

    fn bgp_inputs(&self, resources: &BgpResources) -> BgpInputs {
        let mut inputs = BgpInputs::new(&self.node_name);
        inputs.nodes = resources.nodes.clone();
        inputs.configurations = resources.configurations.clone();
        inputs.peers = resources.peers.clone();
        inputs.pools = resources.pools.clone();
        inputs.local_blocks = resources.local_blocks.clone();
        if let Some(dir) = &self.settings.secrets_dir {
            inputs.secrets = Box::new(SecretsDir::new(dir));
        }
        inputs
    }
}

/// Keeps a BIRD running for this node (`tortie-agent run --run-bird`): the deployment where
/// the agent's container is also BIRD's. BIRD starts once its configuration exists, with
/// graceful restart recovery (`-R`) whenever an earlier BIRD's routes may still be in the
/// kernel (a restart, or an agent that finds such routes when it starts), and is started
/// again (after a pause that grows up to [`MAX_BACKOFF`]) whenever it exits. It is stopped
/// with the agent: a dead agent must not leave a BIRD nobody reconfigures.
pub struct BirdSupervisor {
    settings: BirdSettings,
    child: Option<tokio::process::Child>,
    /// Whether the next start recovers (`-R`).
    recover: bool,
    next_start: tokio::time::Instant,
    backoff: std::time::Duration,
}

/// Longest pause between two restarts of a BIRD that keeps exiting.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

impl BirdSupervisor {
    /// A supervisor for the BIRD `settings` describe; nothing runs until [`Self::tend`].
    /// `earlier_routes`: the kernel holds routes an earlier BIRD installed, so even the first
    /// start recovers them rather than pruning them before the sessions are back.
    pub fn new(settings: BirdSettings, earlier_routes: bool) -> Self {
        Self {
            settings,
            child: None,
            recover: earlier_routes,
            next_start: tokio::time::Instant::now(),
            backoff: FIRST_BACKOFF,
        }
    }

    /// Starts BIRD if it is not running and may be (re)started now; notes an exit.
    pub fn tend(&mut self) {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => {
                    tracing::warn!(%status, "BIRD exited; starting it again in {:?}", self.backoff);
                    self.next_start = tokio::time::Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.child = None;
                }
                Err(error) => {
                    tracing::warn!("cannot check on BIRD: {error}");
                    return;
                }
            }
        }
        if tokio::time::Instant::now() < self.next_start || !self.settings.config_path.exists() {
            return;
        }
        let mut command = tokio::process::Command::new(&self.settings.bird_binary);
        command
            .arg("-f")
            .arg("-c")
            .arg(&self.settings.config_path)
            .arg("-s")
            .arg(&self.settings.socket_path)
            .kill_on_drop(true);
        if self.recover {
            command.arg("-R");
        }
        match command.spawn() {
            Ok(child) => {
                tracing::info!(pid = child.id(), recovering = self.recover, "BIRD started");
                self.recover = true;
                self.child = Some(child);
            }
            Err(error) => {
                tracing::error!(
                    binary = %self.settings.bird_binary.display(),
                    "cannot start BIRD: {error}; is bird2 installed?"
                );
                self.next_start = tokio::time::Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Whether BIRD has stayed up long enough that the next exit starts the pauses afresh.
    pub fn settle(&mut self) {
        if self.child.is_some() && tokio::time::Instant::now() > self.next_start + MAX_BACKOFF {
            self.backoff = FIRST_BACKOFF;
        }
    }
}
