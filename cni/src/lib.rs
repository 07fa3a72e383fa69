//! `tortie-cni`, the CNI plugin of tortie, in Calico's model.
//!
//! Called by the container runtime in the node's network namespace, it gives each pod a
//! `cali*` veth whose pod side holds the pod's address as a /32 with routes through the
//! link-local gateway `169.254.1.1`, allocates that address from the IP pools (tortie's IPAM,
//! Calico's datastore layout) and records the pod as a `WorkloadEndpoint` for the agent.
//!
//! Layers: [`config`] (what the runtime passed) → [`plugin`] (the commands, with an undo
//! stack for ADD) → [`link`]/[`netns`] (netlink) and [`store`] (the datastore); [`spec`]
//! holds the protocol's types and [`calico`] the resources read and written.
//!
//! Requires Linux 4.11 or later (`NS_GET_NSTYPE`) and `CAP_NET_ADMIN` + `CAP_SYS_ADMIN`.

pub mod calico;
pub mod config;
pub mod link;
pub mod logging;
pub mod netns;
pub mod plugin;
pub mod spec;
pub mod store;

use config::{Environment, Request};
use spec::CniError;

/// What the process prints and how it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// JSON for stdout, if any.
    pub stdout: Option<String>,
    /// Exit code: 0 on success.
    pub exit_code: i32,
}

impl Outcome {
    fn error(error: &CniError, version: &str) -> Outcome {
        Outcome {
            stdout: Some(error.to_json(version).to_string()),
            exit_code: 1,
        }
    }
}

/// Runs one invocation: validates, sets up logging, performs the command.
pub fn run(env: &Environment, stdin: &[u8]) -> Outcome {
    let error_version = config::error_version(stdin);
    let request = match config::parse(env, stdin) {
        Ok(request) => request,
        Err(error) => {
            logging::init_stderr();
            tracing::error!(%error, command = ?env.command, "invalid invocation");
            return Outcome::error(&error, &error_version);
        }
    };
    let Request::Network {
        command,
        conf,
        container,
    } = request
    else {
        return Outcome {
            stdout: Some(spec::version_info().to_string()),
            exit_code: 0,
        };
    };
    logging::init(&conf.log);
    let span = tracing::info_span!(
        "cni",
        command = ?command,
        container = container.as_ref().map(|c| c.id.as_str()).unwrap_or(""),
        pod = container
            .as_ref()
            .and_then(|c| c.pod.as_ref())
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .unwrap_or_default(),
        node = %conf.nodename,
    );
    let _entered = span.enter();
    tracing::debug!("started");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let error = CniError::new(spec::ErrorCode::IoFailure, "cannot start the async runtime")
                .details(e.to_string());
            return Outcome::error(&error, conf.version.as_str());
        }
    };
    let result = runtime.block_on(plugin::execute(command, &conf, container.as_ref()));
    match result {
        Ok(stdout) => {
            tracing::info!("done");
            Outcome {
                stdout: stdout.map(|v| v.to_string()),
                exit_code: 0,
            }
        }
        Err(error) => {
            tracing::error!(%error, "failed");
            Outcome::error(&error, conf.version.as_str())
        }
    }
}
