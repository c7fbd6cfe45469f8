//! RepeatRx application services: one method per use case, each of which authorises the actor
//! against the data's tenant (through [`access`]), applies domain rules, and stores the outcome
//! in one atomic store call. The web layer calls these and nothing else.
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod custody;
pub mod demo;
pub mod departure;
pub mod environment;
pub mod erasure;
pub mod error;
pub mod export;
pub mod jobs;
pub mod mail;
pub mod notify;
pub mod orders;
pub mod patients;
pub mod practice;
pub mod queue;
pub mod recovery;
pub mod staff;
pub mod totp;

use repeatrx_domain::clock::Clock;
use repeatrx_domain::order::StageTargets;
use repeatrx_domain::repeat::OrderingPolicy;
use repeatrx_store::DynStore;
use std::sync::Arc;

pub use error::{AppError, AppResult};

/// Settings the services need; the CLI fills them from validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ordering: OrderingPolicy,
    pub stage_targets: StageTargets,
    pub sessions: auth::SessionPolicy,
    /// The address patients use, for links in emails ("https://repeats.example.org").
    pub public_url: String,
    /// Demo deployments show the outbox page and seed synthetic data.
    pub demo: bool,
    /// Where erasures are recorded outside the database (P13); re-applied at every start.
    pub erasure_ledger: Option<repeatrx_store::ledger::ErasureLedger>,
}

impl Settings {
    /// The default policies, for a deployment patients reach at `public_url`: not a demo, and
    /// without an erasure ledger (for tools that run the services' jobs, and for tests).
    pub fn defaults_for(public_url: impl Into<String>) -> Self {
        Self {
            ordering: OrderingPolicy::default(),
            stage_targets: StageTargets::default(),
            sessions: auth::SessionPolicy::default(),
            public_url: public_url.into(),
            demo: false,
            erasure_ledger: None,
        }
    }
}

/// The application: storage, time and settings, shared by every request.
#[derive(Clone)]
pub struct App {
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
}

impl App {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self { store, clock, settings: Arc::new(settings) }
    }

    /// Whether the database answers (the `/healthz` probe).
    pub async fn health(&self) -> AppResult<()> {
        Ok(self.store.health().await?)
    }
}
