//! Typed inputs of the agent.

pub mod endpoint;
pub mod mac;

pub use endpoint::{parse_endpoints, EndpointsError, LocalEndpoint};
pub use mac::MacAddr;
