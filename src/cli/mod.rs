//! The `barbridge` binary's subcommands and their rendering (a module of the binary, not the
//! library: nothing here is an API).

pub mod nats;
