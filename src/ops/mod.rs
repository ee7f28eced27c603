//! Operations: what a person or a monitor sees of a running consumer. The status file
//! ([`status`]), Prometheus metrics ([`metrics`]), the HTTP endpoint ([`http`]) and its live page
//! ([`page`]) each render the consumer's own view; none computes a rule of its own. They are
//! served by the bounded HTTP server ([`server`]), which the sidecar's metrics server shares.

pub mod http;
pub mod metrics;
pub mod page;
pub mod server;
pub mod status;
