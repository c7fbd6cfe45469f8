//! The Pharmacy Dashboard queue and the prescriber's list of requests.
use crate::error::AppResult;
use crate::patients::PatientSearch;
use crate::App;
use repeatrx_domain::access::{Action, Actor, Membership};
use repeatrx_domain::ids::PatientId;
use repeatrx_domain::order::{Order, OrderStage};
use repeatrx_domain::patient::Patient;
use repeatrx_store::{ListedOrder, OrderFilter};

/// One row of a queue: the order, its patient and whether it has sat too long in its stage.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub order: Order,
    pub patient: Patient,
    pub overdue: bool,
}

#[derive(Debug, Clone)]
pub struct QueueView {
    pub rows: Vec<QueueRow>,
    /// Orders per open stage, in workflow order (zero counts included).
    pub counts: Vec<(OrderStage, i64)>,
    pub overdue: usize,
}

/// Which orders to show.
#[derive(Debug, Clone, Default)]
pub struct QueueQuery {
    /// One stage, or every open stage when `None`.
    pub stage: Option<OrderStage>,
    pub search: PatientSearch,
    pub page: u32,
}

pub const QUEUE_PAGE: u32 = 50;

impl App {
    fn rows(&self, listed: Vec<ListedOrder>) -> Vec<QueueRow> {
        let now = self.clock.now();
        listed
            .into_iter()
            .map(|ListedOrder { order, patient }| {
                let overdue = self.settings.stage_targets.is_overdue(order.stage, order.stage_entered_at, now);
                QueueRow { order, patient, overdue }
            })
            .collect()
    }

    fn filter(&self, query: &QueueQuery, patients: Option<Vec<PatientId>>) -> OrderFilter {
        OrderFilter {
            stages: match query.stage {
                Some(s) => vec![s],
                None => OrderStage::ALL.into_iter().filter(|s| s.is_open()).collect(),
            },
            patients,
            limit: QUEUE_PAGE,
            offset: query.page.saturating_mul(QUEUE_PAGE),
        }
    }

    /// The pharmacy's queue: oldest first, filtered by stage and patient search.
    pub async fn pharmacy_queue(&self, actor: &Actor, query: &QueueQuery) -> AppResult<QueueView> {
        let pharmacy = self.my_pharmacy(actor, Action::ViewPharmacyQueue)?;
        let patients = if query.search.is_empty() {
            None
        } else {
            let found = self.store.search_patients(pharmacy, &query.search.to_query()?, 500).await?;
            Some(found.into_iter().map(|p| p.id).collect())
        };
        let rows = self.rows(self.store.pharmacy_orders(pharmacy, &self.filter(query, patients)).await?);
        let counts = self.store.pharmacy_open_stage_counts(pharmacy).await?;
        let overdue = rows.iter().filter(|r| r.overdue).count();
        Ok(QueueView { rows, counts, overdue })
    }

    /// Requests waiting for the practice's prescribers (or, with a stage, that stage's orders).
    pub async fn practice_requests(&self, actor: &Actor, stage: Option<OrderStage>) -> AppResult<Vec<QueueRow>> {
        let practice = match actor.membership {
            Membership::Practice(p)
                if repeatrx_domain::access::role_permits(actor.role, Action::ViewPracticeRequests) =>
            {
                p
            }
            _ => return Err(crate::AppError::Forbidden),
        };
        let filter = OrderFilter {
            stages: vec![stage.unwrap_or(OrderStage::WithPrescriber)],
            patients: None,
            limit: 200,
            offset: 0,
        };
        Ok(self.rows(self.store.practice_orders(practice, &filter).await?))
    }
}
