//! The `repeatrx` binary's library half: configuration, the demo certificate, and [`startup`],
//! which assembles store, services, mail and web server. The integration tests start the real
//! server through the same functions the binary uses.
#![forbid(unsafe_code)]

pub mod config;
pub mod demo_cert;
pub mod recovery;
pub mod startup;
