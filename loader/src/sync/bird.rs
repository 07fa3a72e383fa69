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
