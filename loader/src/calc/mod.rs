//! Pure computation of the desired dataplane from the agent's inputs. No I/O here.

pub mod dataplane;
pub mod policy;

pub use dataplane::{
    desired_state, CalcInputs, DesiredState, HostInterface, KernelRoute, LearnedRoute,
};
