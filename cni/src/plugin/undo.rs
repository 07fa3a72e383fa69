//! The undo stack of ADD: every step that leaves something behind records how to take it
//! back, so a failed ADD leaves nothing (no address held, no interface, no endpoint).
//!
//! On an error ADD unwinds the stack explicitly, with the connections it already has. If the
//! stack is dropped with actions left (a panic, a cancelled future), `Drop` still performs
//! them, on a fresh thread with its own runtime and connections.

use tortie_datastore::Datastore;
use tortie_ipam::Ipam;

use crate::{link, store};

/// One thing to take back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UndoAction {
    /// Release every address the IPAM handle holds (idempotent).
    ReleaseAddresses {
        /// `<network>.<containerID>`.
        handle: String,
    },
    /// Delete a host-side interface (a veth takes its peer, wherever it is, with it).
    DeleteHostLink {
        /// Interface name in the host namespace.
        name: String,
    },
    /// Delete the WorkloadEndpoint at `key` if it is this container's.
    DeleteEndpoint {
        /// etcd key.
        key: String,
        /// The container that would own it.
        container_id: String,
    },
}

impl UndoAction {
    async fn perform(
        &self,
        store: Option<&dyn Datastore>,
        host: Option<&rtnetlink::Handle>,
    ) -> Result<(), String> {
        match self {
            UndoAction::ReleaseAddresses { handle } => {
                let store = store.ok_or("no datastore connection")?;
                let released = Ipam::new(store)
                    .release_by_handle(handle)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(%handle, ?released, "undo: released addresses");
                Ok(())
            }
            UndoAction::DeleteHostLink { name } => {
                let host = host.ok_or("no netlink connection")?;
                let deleted = link::delete_link(host, name, "the host netns")
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(iface = %name, deleted, "undo: deleted host interface");
                Ok(())
            }
            UndoAction::DeleteEndpoint { key, container_id } => {
                let store = store.ok_or("no datastore connection")?;
                let deleted = store::delete_workload_endpoint(store, key, container_id)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(%key, deleted, "undo: WorkloadEndpoint");
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            UndoAction::ReleaseAddresses { handle } => format!("release IPAM handle {handle}"),
            UndoAction::DeleteHostLink { name } => format!("delete interface {name}"),
            UndoAction::DeleteEndpoint { key, .. } => format!("delete WorkloadEndpoint {key}"),
        }
    }
}

/// Actions to take back, newest last.
#[derive(Debug)]
pub struct Undo {
    actions: Vec<UndoAction>,
    etcd_endpoints: Vec<String>,
}

impl Undo {
    /// An empty stack; `etcd_endpoints` serve the fallback in `Drop`.
    pub fn new(etcd_endpoints: Vec<String>) -> Self {
        Undo {
            actions: Vec::new(),
            etcd_endpoints,
        }
    }

    /// Records an action; push it *before* a step whose outcome may be ambiguous.
    pub fn push(&mut self, action: UndoAction) {
        self.actions.push(action);
    }

    /// The recorded actions, oldest first.
    pub fn actions(&self) -> &[UndoAction] {
        &self.actions
    }

    /// ADD succeeded: keep everything.
    pub fn commit(mut self) {
        self.actions.clear();
    }

    /// Takes everything back, newest first; returns what could not be undone.
    pub async fn unwind(&mut self, store: &dyn Datastore, host: &rtnetlink::Handle) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some(action) = self.actions.pop() {
            if let Err(reason) = action.perform(Some(store), Some(host)).await {
                tracing::error!(action = %action.describe(), %reason, "undo failed");
                failures.push(format!("{}: {reason}", action.describe()));
            }
        }
        failures
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.actions.is_empty() {
            return;
        }
        let actions = std::mem::take(&mut self.actions);
        let endpoints = std::mem::take(&mut self.etcd_endpoints);
        tracing::warn!(
            count = actions.len(),
            "ADD stopped half-way; undoing its steps"
        );
        // A fresh thread: this may run while a runtime is unwinding, where blocking on a
        // future is not allowed.
        let worker = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a runtime to undo ADD");
                    return;
                }
            };
            runtime.block_on(async move {
                let host = link::connect().ok();
                let store = store::connect(&endpoints).await.ok();
                for action in actions.iter().rev() {
                    let store = store.as_ref().map(|s| s as &dyn Datastore);
                    if let Err(reason) = action.perform(store, host.as_ref()).await {
                        tracing::error!(action = %action.describe(), %reason, "undo failed");
                    }
                }
            });
        });
        let _ = worker.join();
    }
}
