//! BGP for tortie nodes, with BIRD 2 as the BGP daemon, in the Calico model.
//!
//! - [`model`]: what the plan is made from ([`BgpInputs`]: Nodes, BGPConfigurations,
//!   BGPPeers, IPPools, the node's IPAM blocks) and where passwords come from
//!   ([`SecretSource`], [`SecretsDir`]).
//! - [`calc`]: [`plan`] computes, with Calico's semantics, the node's sessions (the
//!   node-to-node mesh, BGPPeers, route reflection) and the routes it advertises. Pure.
//! - [`render`](mod@render): [`render()`] writes the plan as a BIRD 2 configuration.
//! - [`apply`]: [`BirdConfig::apply`] validates the configuration with `bird -p`, swaps it in
//!   atomically and has the running BIRD load it.
//! - [`birdc`]: [`BirdClient`], a client for BIRD's control socket.
//! - [`status`]: [`sessions`] reads each session's state from BIRD.
//!
//! ```no_run
//! use tortie_bgp::{plan, render, BgpInputs, BirdClient, BirdConfig, SecretsDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut inputs = BgpInputs::new("node-a");
//! inputs.secrets = Box::new(SecretsDir::new("/etc/tortie/bgp-secrets"));
//! // ... fill inputs.nodes, configurations, peers, pools and local_blocks ...
//! let plan = plan(&inputs)?;
//! for warning in &plan.warnings {
//!     eprintln!("warning: {warning}");
//! }
//! let bird = BirdConfig::new("/etc/bird/bird.conf", "/run/bird/bird.ctl");
//! bird.apply(&render(&plan))?;
//! for session in tortie_bgp::sessions(&mut BirdClient::connect(&bird.socket_path)?)? {
//!     println!("{} {} {}", session.name, session.bgp_state, session.routes_received);
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apply;
pub mod birdc;
pub mod calc;
pub mod model;
pub mod render;
pub mod status;

pub use apply::{ApplyError, ApplyOutcome, BirdConfig};
pub use birdc::{BirdClient, BirdcError, ReplyLine};
pub use calc::{plan, BgpPlan, Password, PlanError, Session, SessionKind, SessionOrigin};
pub use model::{BgpInputs, NoSecrets, SecretSource, SecretsDir};
pub use render::render;
pub use status::{sessions, BgpState, SessionStatus};
