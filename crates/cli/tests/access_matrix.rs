//! The authorisation matrix, generated from the route table (`repeatrx_web::guard::ROUTES`):
//! every route x every role (and no session) x data of the caller's own tenant and of another
//! tenant, against the real server over HTTPS. A route added to the router without a rule is
//! refused to everyone, and one added to the table is probed here, so none can be forgotten.
//!
//! Expectations come from the table and the domain's permission table (`guard::judge`):
//! - no session: open routes answer, others say "sign in" (401 for the API, the sign-in page);
//! - a role the rule refuses: 403 for every id;
//! - a role the rule lets through: its own tenant's ids are served (whatever the outcome, never
//!   401/403/404 or a 5xx); another tenant's ids are 404 (or 403), and the other tenant's data is
//!   exactly as before.
mod common;

use common::{TestApp, API};
use jiff::Timestamp;
use repeatrx_app::auth::{random_token, token_hash};
use repeatrx_app::orders::SubmitOrderInput;
use repeatrx_domain::access::{Actor, Membership, OrgKind, Role};
use repeatrx_domain::custody::{Grant, GrantScope};
use repeatrx_domain::ids::{GrantId, OrderId, PatientId, PharmacyId, RepeatItemId, UserId};
use repeatrx_domain::patient::Fulfilment;
use repeatrx_domain::security::SessionStage;
use repeatrx_store::{PatientQuery, SessionKind, SessionRecord, UserAccount};
use repeatrx_web::guard::{judge, Rule, Verdict, ROUTES};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

/// The ids a route's path can name, for one tenant.
#[derive(Debug, Clone)]
struct Ids {
    patient: PatientId,
    order: OrderId,
    order_item: String,
    repeat_item: RepeatItemId,
    /// A pharmacy (own: Riverside, where the custodian holds a grant; other: Hilltop).
    pharmacy: PharmacyId,
    /// A break-glass grant: own, a spare one of the custodian's; other, the other custodian's.
    grant: GrantId,
    /// Staff accounts by the side of the service of the caller: own, ones that side's manager
    /// (or an operator) looks after; other, one nobody in the matrix looks after. None of them
    /// makes calls in the matrix, so changing them disturbs no probe.
    accounts: HashMap<OrgKind, UserId>,
}

struct Fixture {
    app: TestApp,
    accounts: HashMap<Role, UserAccount>,
    own: Ids,
    other: Ids,
}

async fn user(app: &TestApp, email: &str) -> UserAccount {
    let email = repeatrx_domain::text::Email::parse(email).expect("email");
    app.server.app.store.user_by_email(&email).await.expect("store").expect("demo account")
}

async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let store = &app.server.app.store;
    let mut accounts = HashMap::new();
    for (role, email) in [
        (Role::Patient, "patient@demo.example"),
        (Role::PharmacyManager, "manager@demo.example"),
        (Role::Pharmacist, "pharmacist@demo.example"),
        (Role::Dispenser, "dispenser@demo.example"),
        (Role::CounterAssistant, "counter@demo.example"),
        (Role::Prescriber, "prescriber@demo.example"),
        (Role::PracticeManager, "practice.manager@demo.example"),
        (Role::Receptionist, "receptionist@demo.example"),
        (Role::Operator, "operator@demo.example"),
    ] {
        accounts.insert(role, user(&app, email).await);
    }
    accounts.insert(Role::Custodian, user(&app, "custodian@demo.example").await);
    assert_eq!(accounts.len(), Role::ALL.len(), "every role has an account in the matrix");

    // Own tenant: Ann Jones (Riverside Pharmacy, Riverside Surgery) and her finished order.
    let ann = accounts[&Role::Patient].patient_id.expect("Ann's record");
    let ann_order = store.orders_of_patient(ann).await.expect("orders").into_iter().next().expect("Ann has an order");
    // Accounts to manage: a dispenser of Riverside Pharmacy, a receptionist of Riverside Surgery,
    // and a manager of Riverside Pharmacy (which operators look after).
    let mut targets = HashMap::new();
    for (kind, role, email, like) in [
        (OrgKind::Pharmacy, Role::Dispenser, "matrix.dispenser@demo.example", Role::Dispenser),
        (OrgKind::Practice, Role::Receptionist, "matrix.receptionist@demo.example", Role::Receptionist),
        (OrgKind::Platform, Role::PharmacyManager, "matrix.manager@demo.example", Role::PharmacyManager),
    ] {
        let target = UserAccount {
            id: UserId::new(),
            email: repeatrx_domain::text::Email::parse(email).expect("email"),
            display_name: format!("Matrix {}", role.label()),
            role,
            ..accounts[&like].clone()
        };
        store.insert_user(&target).await.expect("a target account");
        targets.insert(kind, target.id);
    }
    targets.insert(OrgKind::Patient, targets[&OrgKind::Pharmacy]);
    // The custodian holds live grants over Ann and over Riverside Pharmacy, and a spare one to end;
    // the other custodian holds one of their own.
    let riverside = accounts[&Role::PharmacyManager].pharmacy_id.expect("a pharmacy");
    let grant = |custodian: UserId, scope| Grant {
        id: GrantId::new(),
        custodian,
        scope,
        reason: "access matrix: every route is probed".into(),
        created_at: Timestamp::now(),
        expires_at: Timestamp::now() + jiff::SignedDuration::from_hours(2),
        ended_at: None,
    };
    let casey = accounts[&Role::Custodian].id;
    let robin = user(&app, "custodian2@demo.example").await.id;
    let spare = grant(casey, GrantScope::Patient(ann));
    let robins = grant(robin, GrantScope::Patient(ann));
    for g in [
        grant(casey, GrantScope::Patient(ann)),
        grant(casey, GrantScope::Pharmacy(riverside)),
        spare.clone(),
        robins.clone(),
    ] {
        store.insert_grant(&g, &[]).await.expect("a grant");
    }
    let own = Ids {
        pharmacy: riverside,
        grant: spare.id,
        patient: ann,
        order: ann_order.id,
        order_item: ann_order.items[0].id.to_string(),
        repeat_item: store.repeat_items(ann).await.expect("items")[0].id,
        accounts: targets,
    };

    // Other tenant: a patient of Hilltop Chemist (and Hilltop Medical Centre), with an order.
    let hill_manager = user(&app, "hilltop.manager@demo.example").await;
    let hilltop = hill_manager.pharmacy_id.expect("a pharmacy");
    let patients = store.search_patients(hilltop, &PatientQuery::default(), 50).await.expect("search");
    let x = patients.first().expect("Hilltop has patients").clone();
    assert_ne!(x.practice_id, ann_order.practice_id, "the other patient is another practice's too");
    let x_items = store.repeat_items(x.id).await.expect("items");
    let hill_actor = Actor {
        user_id: hill_manager.id,
        role: Role::PharmacyManager,
        membership: Membership::Pharmacy(hilltop),
        address: None,
    };
    let x_order = app
        .server
        .app
        .submit_order(
            &hill_actor,
            x.id,
            &SubmitOrderInput { items: vec![x_items[0].id], fulfilment: Fulfilment::Collection, note: String::new() },
        )
        .await
        .expect("an order at Hilltop");
    let hill_prescriber = user(&app, "hilltop.prescriber@demo.example").await.id;
    let other = Ids {
        pharmacy: hilltop,
        grant: robins.id,
        patient: x.id,
        order: x_order.id,
        order_item: x_order.items[0].id.to_string(),
        repeat_item: x_items[0].id,
        accounts: [OrgKind::Patient, OrgKind::Pharmacy, OrgKind::Practice, OrgKind::Platform]
            .into_iter()
            .map(|k| (k, hill_prescriber))
            .collect(),
    };
    Fixture { app, accounts, own, other }
}

impl Fixture {
    /// A fresh full API session for the account: each probe gets its own, so routes that end
    /// sessions cannot disturb the next probe.
    async fn token(&self, role: Role, stage: SessionStage) -> String {
        let token = random_token();
        let now = Timestamp::now();
        let session = SessionRecord {
            token_hash: token_hash(&token),
            user_id: self.accounts[&role].id,
            kind: SessionKind::Api,
            csrf_token: random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + jiff::SignedDuration::from_hours(1),
            user_agent: "access-matrix".into(),
            stage,
            address: "127.0.0.1".into(),
        };
        self.app.server.app.store.insert_session(&session).await.expect("session");
        token
    }

    /// A new live grant of the custodian's (over Ann), for a probe that ends one.
    async fn spare_grant(&self) -> GrantId {
        let grant = Grant {
            id: GrantId::new(),
            custodian: self.accounts[&Role::Custodian].id,
            scope: GrantScope::Patient(self.own.patient),
            reason: "access matrix: a grant to end".into(),
            created_at: Timestamp::now(),
            expires_at: Timestamp::now() + jiff::SignedDuration::from_hours(2),
            ended_at: None,
        };
        self.app.server.app.store.insert_grant(&grant, &[]).await.expect("a grant");
        grant.id
    }

    /// Everything of the other tenant that a probe could change.
    async fn other_snapshot(&self) -> String {
        let store = &self.app.server.app.store;
        let o = &self.other;
        let mut out = String::new();
        out += &format!("{:?}\n", store.patient(o.patient).await.expect("patient"));
        out += &format!("{:?}\n", store.orders_of_patient(o.patient).await.expect("orders"));
        out += &format!("{:?}\n", store.order_transitions(o.order).await.expect("transitions"));
        out += &format!("{:?}\n", store.repeat_items(o.patient).await.expect("items"));
        let id = o.accounts[&OrgKind::Pharmacy];
        let account = store.user(id).await.expect("user").expect("account");
        out += &format!("{} {} {}\n", account.role.as_str(), account.active, account.password_hash);
        out += &format!("{:?}\n", store.account_security(id).await.expect("security"));
        out
    }
}

/// The path with its parameters filled from `ids`, or `None` when it has none.
fn fill(path: &str, ids: &Ids, caller: OrgKind) -> Option<String> {
    if !path.contains('{') {
        return None;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (n, seg) in segments.iter().enumerate() {
        let filled = match *seg {
            "{token}" => random_token(),
            "{item}" | "{item_id}" => ids.order_item.clone(),
            "{id}" => match segments[n - 1] {
                "orders" => ids.order.to_string(),
                "patients" => ids.patient.to_string(),
                "repeat-items" => ids.repeat_item.to_string(),
                "accounts" | "staff" => ids.accounts[&caller].to_string(),
                "pharmacies" => ids.pharmacy.to_string(),
                "grants" => ids.grant.to_string(),
                other => panic!("the matrix does not know what {{id}} after '{other}' names in {path}"),
            },
            s if s.starts_with('{') => panic!("the matrix does not know the parameter {s} in {path}"),
            s => s.to_string(),
        };
        out.push(filled);
    }
    Some(out.join("/"))
}

/// A body with every field any endpoint reads, valid for the tenant `ids` belongs to, so the
/// tenant check is what decides (not a missing field). No passwords or codes: a wrong one
/// would count towards the caller's lockout.
fn json_body(ids: &Ids) -> Value {
    let review = jiff::Zoned::now().date().saturating_add(jiff::ToSpan::days(180)).to_string();
    json!({
        "items": [ids.repeat_item.to_string()],
        "fulfilment": "collection",
        "note": "",
        "step": "ready_to_collect",
        "decision": "reject",
        "reason": "medication_review_needed",
        "drug_name": "Matrixamine",
        "strength": "10mg",
        "form": "tablets",
        "quantity": 28,
        "directions": "One daily",
        "cycle_days": 28,
        "issues": 6,
        "review_date": review,
        "role": "pharmacist",
        "active": false,
    })
}

fn form_body(ids: &Ids) -> String {
    let review = jiff::Zoned::now().date().saturating_add(jiff::ToSpan::days(180)).to_string();
    let fields = [
        ("items", ids.repeat_item.to_string()),
        ("fulfilment", "collection".into()),
        ("decision", "reject".into()),
        ("reason", "medication_review_needed".into()),
        ("event", "ready_to_collect".into()),
        ("step", "ready_to_collect".into()),
        ("drug_name", "Matrixamine".into()),
        ("strength", "10mg".into()),
        ("form", "tablets".into()),
        ("quantity", "28".into()),
        ("directions", "One daily".into()),
        ("cycle_days", "28".into()),
        ("issues", "6".into()),
        ("review_date", review),
        ("role", "pharmacist".into()),
    ];
    fields.iter().map(|(k, v)| format!("{k}={}", v.replace(' ', "+"))).collect::<Vec<_>>().join("&")
}

/// The status, and whether the answer is the "sign in first" refusal (401 for the API, a
/// redirect to the sign-in page for pages) rather than a step of sign-in refusing a code.
async fn probe(f: &Fixture, method: &str, path: &str, token: Option<&str>, ids: &Ids) -> (StatusCode, bool) {
    let url = f.app.url(path);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = f.app.client.request(method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if method != reqwest::Method::GET {
        req = if path.starts_with("/api/") {
            req.json(&json_body(ids))
        } else {
            req.header("content-type", "application/x-www-form-urlencoded").body(form_body(ids))
        };
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.text().await.unwrap_or_default();
    let sign_in_first = if path.starts_with("/api/") {
        status == StatusCode::UNAUTHORIZED && body.contains(&repeatrx_app::AppError::Unauthenticated.to_string())
    } else {
        status == StatusCode::SEE_OTHER && location == "/sign-in"
    };
    (status, sign_in_first)
}

#[tokio::test]
async fn every_route_every_role_own_and_other_tenant() {
    let f = fixture().await;
    let before = f.other_snapshot().await;
    let mut failures = Vec::new();
    let mut probes = 0;
    for route in ROUTES {
        let plain = fill(route.path, &f.own, OrgKind::Pharmacy).unwrap_or_else(|| route.path.to_string());

        // No session at all.
        let (status, sign_in_first) = probe(&f, route.method, &plain, None, &f.own).await;
        probes += 1;
        let ok = match judge(route.rule, None) {
            // Open routes may send a visitor on (the start page goes to sign-in), never refuse.
            Verdict::Pass if route.rule == Rule::Open => status != StatusCode::FORBIDDEN && status.as_u16() < 500,
            Verdict::Pass => !sign_in_first && status != StatusCode::FORBIDDEN && status.as_u16() < 500,
            _ => sign_in_first,
        };
        if !ok {
            failures.push(format!("{} {} without a session: {status}", route.method, route.path));
        }
        if route.rule == Rule::Open {
            continue;
        }

        for role in Role::ALL {
            // Sign-in steps are probed with the session they are for: one half way through.
            let stage = if route.rule == Rule::SigningIn { SessionStage::SecondFactor } else { SessionStage::Full };
            let verdict = judge(route.rule, Some((role, stage == SessionStage::Full)));
            let mut own_path = fill(route.path, &f.own, role.kind());
            if route.path.contains("/grants/{id}") {
                // Ending a grant uses it up: each probe ends a fresh one.
                let fresh = f.spare_grant().await.to_string();
                own_path = own_path.map(|p| p.replace(&f.own.grant.to_string(), &fresh));
            }
            let other_path = fill(route.path, &f.other, role.kind());
            let plain = own_path.unwrap_or_else(|| route.path.to_string());
            let token = f.token(role, stage).await;
            let (status, sign_in_first) = probe(&f, route.method, &plain, Some(&token), &f.own).await;
            probes += 1;
            let ok = match verdict {
                Verdict::Refuse => status == StatusCode::FORBIDDEN,
                Verdict::SignIn => sign_in_first,
                Verdict::Pass => {
                    !sign_in_first
                        && !matches!(
                            status,
                            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                        )
                        && status.as_u16() < 500
                }
            };
            if !ok {
                failures
                    .push(format!("{} {} as {role:?} (own tenant, {verdict:?}): {status}", route.method, route.path));
            }
            let Some(other_path) = &other_path else { continue };
            if route.path.contains("{token}") {
                continue;
            }
            let token = f.token(role, stage).await;
            let (status, _) = probe(&f, route.method, other_path, Some(&token), &f.other).await;
            probes += 1;
            let ok = match verdict {
                Verdict::Refuse => status == StatusCode::FORBIDDEN,
                _ => matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            };
            if !ok {
                failures.push(format!("{} {} as {role:?} (other tenant): {status}", route.method, route.path));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {probes} probes broke the matrix:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(f.other_snapshot().await, before, "another tenant's data changed");
    assert!(probes > 1000, "the matrix ran ({probes} probes)");
}

/// The API part of the table and the OpenAPI document describe the same routes.
#[tokio::test]
async fn the_route_table_and_the_api_description_agree() {
    let app = TestApp::spawn().await;
    let doc = app.get_anon(&format!("{API}/openapi.json")).await.expect(StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("methods").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|r| r.path.starts_with("/api/") && r.path != "/api/v1/openapi.json")
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let undocumented: Vec<_> = listed.difference(&documented).collect();
    let unlisted: Vec<_> = documented.difference(&listed).collect();
    assert!(undocumented.is_empty(), "in the route table but not in the OpenAPI document: {undocumented:?}");
    assert!(unlisted.is_empty(), "in the OpenAPI document but not in the route table: {unlisted:?}");
}
