//! RepeatRx domain core: the types that validate on construction, the repeat-ordering rules,
//! the order state machine and the access rules. No I/O, no async, no database: everything here
//! is a pure function of its inputs (time arrives through [`clock::Clock`]).
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod catalogue;
pub mod clock;
pub mod custody;
pub mod departure;
pub mod erasure;
pub mod error;
pub mod ids;
pub mod order;
pub mod patient;
pub mod repeat;
pub mod retention;
pub mod security;
pub mod text;
pub mod timefmt;

pub use error::DomainError;
