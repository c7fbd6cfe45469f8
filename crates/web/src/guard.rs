//! The route table: every route of the service, HTML and API, with the rule that says who may
//! call it. [`guard`] runs after routing on every request and refuses a route that has no rule
//! (deny by default), a caller without the session the rule needs, and a role the domain's
//! permission table does not allow. Which tenant's data a request touches is decided later, when
//! the data is loaded, by the app's one gate (`App::patient_for` / `App::order_for`), which
//! answers "not found" for another tenant's ids.
//!
//! The access-matrix test (`crates/cli/tests/access_matrix.rs`) is generated from [`ROUTES`]:
//! each route x each role x own/other tenant.
use crate::error::{ApiError, PageError};
use crate::session::ResolvedSession;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use repeatrx_app::auth::CurrentSession;
use repeatrx_app::AppError;
use repeatrx_domain::access::{role_permits, Action, OrgKind, Role};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone: sign-in, links from emails, static files, health, the API description.
    Open,
    /// A session half way through sign-in, or a full one (second-factor steps).
    SigningIn,
    /// Any fully signed-in account (its own account pages).
    SignedIn,
    /// A fully signed-in account whose role may take one of these actions.
    Role(&'static [Action]),
    /// The same, on one side of the service only (that side's dashboard).
    Side(OrgKind, &'static [Action]),
}

/// One route: method, path as the router matches it, and its rule.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    pub path: &'static str,
    pub rule: Rule,
}

const fn r(method: &'static str, path: &'static str, rule: Rule) -> RouteRule {
    RouteRule { method, path, rule }
}

use Action::*;
use OrgKind::{Patient as PatientSide, Pharmacy as PharmacySide, Platform as PlatformSide, Practice as PracticeSide};
use Rule::{Open, Role as Can, Side, SignedIn, SigningIn};

/// Every route the service answers. A route missing here is refused to everyone.
pub const ROUTES: &[RouteRule] = &[
    // Public pages, files and links from emails.
    r("GET", "/", Open),
    r("GET", "/healthz", Open),
    r("GET", "/static/app.css", Open),
    r("GET", "/static/app.js", Open),
    r("GET", "/favicon.ico", Open),
    r("GET", "/demo/outbox", Open),
    r("GET", "/sign-in", Open),
    r("POST", "/sign-in", Open),
    r("GET", "/unlock", Open),
    r("POST", "/unlock", Open),
    r("GET", "/unlock/{token}", Open),
    r("POST", "/unlock/{token}", Open),
    r("GET", "/forgot-password", Open),
    r("POST", "/forgot-password", Open),
    r("GET", "/reset-password/{token}", Open),
    r("POST", "/reset-password/{token}", Open),
    r("GET", "/email-change/{token}", Open),
    r("POST", "/email-change/{token}", Open),
    r("GET", "/invitation/{token}", Open),
    r("POST", "/invitation/{token}", Open),
    // Sign-in steps.
    r("GET", "/sign-in/code", SigningIn),
    r("POST", "/sign-in/code", SigningIn),
    r("GET", "/sign-in/enrol", SigningIn),
    r("POST", "/sign-in/enrol", SigningIn),
    r("POST", "/sign-out", SigningIn),
    // One's own account.
    r("GET", "/account", SignedIn),
    r("GET", "/account/totp", SignedIn),
    r("POST", "/account/totp", SignedIn),
    r("POST", "/account/totp/disable", SignedIn),
    r("POST", "/account/recovery-codes", SignedIn),
    r("POST", "/account/password", SignedIn),
    r("POST", "/account/email", SignedIn),
    r("POST", "/account/sessions/others", SignedIn),
    r("POST", "/account/sessions/all", SignedIn),
    r("POST", "/session/keepalive", SignedIn),
    // The patient's dashboard.
    r("GET", "/patient", Side(PatientSide, &[ViewPatient])),
    r("GET", "/patient/orders", Side(PatientSide, &[ViewPatient])),
    r("POST", "/patient/orders", Side(PatientSide, &[PlaceOrder])),
    r("GET", "/patient/orders/{id}", Side(PatientSide, &[ViewPatient])),
    r("POST", "/patient/orders/{id}/cancel", Side(PatientSide, &[CancelOrder])),
    r("GET", "/patient/access", Side(PatientSide, &[ViewPatient])),
    r("GET", "/patient/export", Side(PatientSide, &[ViewPatient])),
    r("GET", "/patient/export.json", Side(PatientSide, &[ViewPatient])),
    r("GET", "/patient/erase", Side(PatientSide, &[ErasePatient])),
    r("POST", "/patient/erase", Side(PatientSide, &[ErasePatient])),
    // The pharmacy dashboard.
    r("GET", "/pharmacy", Side(PharmacySide, &[ViewPharmacyQueue])),
    r("GET", "/pharmacy/orders/{id}", Side(PharmacySide, &[ViewPatient])),
    r("POST", "/pharmacy/orders/{id}/accept", Side(PharmacySide, &[ProcessOrder])),
    r("POST", "/pharmacy/orders/{id}/cancel", Side(PharmacySide, &[CancelOrder])),
    r("POST", "/pharmacy/orders/{id}/send", Side(PharmacySide, &[ProcessOrder])),
    r("POST", "/pharmacy/orders/{id}/items/{item}/decision", Side(PharmacySide, &[RecordPrescriberDecision])),
    r("POST", "/pharmacy/orders/{id}/items/{item}/step", Side(PharmacySide, &[ProcessOrder])),
    r("GET", "/pharmacy/patients", Side(PharmacySide, &[ViewPharmacyQueue])),
    r("POST", "/pharmacy/patients", Side(PharmacySide, &[RegisterPatient])),
    r("GET", "/pharmacy/patients/new", Side(PharmacySide, &[RegisterPatient])),
    r("GET", "/pharmacy/patients/{id}", Side(PharmacySide, &[ViewPatient])),
    r("POST", "/pharmacy/patients/{id}/repeat-items", Side(PharmacySide, &[EditRepeatList])),
    r("POST", "/pharmacy/patients/{id}/orders", Side(PharmacySide, &[PlaceOrder])),
    r("POST", "/pharmacy/patients/{id}/unlock", Side(PharmacySide, &[LiftIdentityLock])),
    r("POST", "/pharmacy/patients/{id}/erase", Side(PharmacySide, &[ErasePatient])),
    r("POST", "/pharmacy/repeat-items/{id}/stop", Side(PharmacySide, &[EditRepeatList])),
    r("GET", "/pharmacy/staff", Side(PharmacySide, &[ManageStaffAccounts])),
    r("POST", "/pharmacy/staff", Side(PharmacySide, &[ManageStaffAccounts])),
    r("POST", "/pharmacy/staff/accounts/{id}/unlock", Side(PharmacySide, &[ManageStaffAccounts])),
    r("POST", "/pharmacy/staff/accounts/{id}/role", Side(PharmacySide, &[ManageStaffAccounts])),
    r("POST", "/pharmacy/staff/accounts/{id}/suspend", Side(PharmacySide, &[ManageStaffAccounts])),
    r("POST", "/pharmacy/staff/accounts/{id}/reinstate", Side(PharmacySide, &[ManageStaffAccounts])),
    r("GET", "/pharmacy/audit", Side(PharmacySide, &[SearchAuditTrail])),
    // The practice dashboard.
    r("GET", "/practice", Side(PracticeSide, &[ViewPracticeRequests])),
    r("GET", "/practice/orders/{id}", Side(PracticeSide, &[ViewPatient])),
    r("POST", "/practice/orders/{id}/items/{item}/decision", Side(PracticeSide, &[AuthoriseMedication])),
    r("GET", "/practice/patients/{id}", Side(PracticeSide, &[ViewPatient])),
    r("POST", "/practice/patients/{id}/authorisations", Side(PracticeSide, &[AuthoriseMedication])),
    r("GET", "/practice/staff", Side(PracticeSide, &[ManageStaffAccounts])),
    r("POST", "/practice/staff", Side(PracticeSide, &[ManageStaffAccounts])),
    r("POST", "/practice/staff/accounts/{id}/unlock", Side(PracticeSide, &[ManageStaffAccounts])),
    r("POST", "/practice/staff/accounts/{id}/role", Side(PracticeSide, &[ManageStaffAccounts])),
    r("POST", "/practice/staff/accounts/{id}/suspend", Side(PracticeSide, &[ManageStaffAccounts])),
    r("POST", "/practice/staff/accounts/{id}/reinstate", Side(PracticeSide, &[ManageStaffAccounts])),
    r("GET", "/practice/audit", Side(PracticeSide, &[SearchAuditTrail])),
    // Platform administration.
    r("GET", "/admin", Side(PlatformSide, &[ManageOrganisations])),
    r("POST", "/admin/pharmacies", Side(PlatformSide, &[ManageOrganisations])),
    r("POST", "/admin/practices", Side(PlatformSide, &[ManageOrganisations])),
    r("POST", "/admin/departures", Side(PlatformSide, &[ManageOrganisations])),
    r("GET", "/admin/accounts", Side(PlatformSide, &[ManageStaffAccounts])),
    r("POST", "/admin/accounts", Side(PlatformSide, &[ManageStaffAccounts])),
    r("POST", "/admin/accounts/{id}/unlock", Side(PlatformSide, &[ManageStaffAccounts])),
    r("POST", "/admin/accounts/{id}/role", Side(PlatformSide, &[ManageStaffAccounts])),
    r("POST", "/admin/accounts/{id}/suspend", Side(PlatformSide, &[ManageStaffAccounts])),
    r("POST", "/admin/accounts/{id}/reinstate", Side(PlatformSide, &[ManageStaffAccounts])),
    r("GET", "/admin/audit", Side(PlatformSide, &[SearchAuditTrail])),
    // Live-data custodians' break-glass access (reads are checked against the grant by the app).
    r("GET", "/custody", Side(PlatformSide, &[BreakGlass])),
    r("POST", "/custody/grants", Side(PlatformSide, &[BreakGlass])),
    r("POST", "/custody/grants/{id}/end", Side(PlatformSide, &[BreakGlass])),
    r("GET", "/custody/patients/{id}", Side(PlatformSide, &[BreakGlass])),
    r("GET", "/custody/pharmacies/{id}", Side(PlatformSide, &[BreakGlass])),
    // The JSON API.
    r("GET", "/api/v1/openapi.json", Open),
    r("POST", "/api/v1/sessions", Open),
    r("DELETE", "/api/v1/sessions", SigningIn),
    r("POST", "/api/v1/sessions/second-factor", SigningIn),
    r("POST", "/api/v1/sessions/totp", SigningIn),
    r("POST", "/api/v1/sessions/totp/confirm", SigningIn),
    r("POST", "/api/v1/password-resets", Open),
    r("POST", "/api/v1/unlock-requests", Open),
    r("POST", "/api/v1/password-strength", Open),
    r("GET", "/api/v1/me", SignedIn),
    r("GET", "/api/v1/account/sessions", SignedIn),
    r("DELETE", "/api/v1/account/sessions", SignedIn),
    r("GET", "/api/v1/account/events", SignedIn),
    r("POST", "/api/v1/account/password", SignedIn),
    r("POST", "/api/v1/account/recovery-codes", SignedIn),
    r("POST", "/api/v1/account/email", SignedIn),
    r("GET", "/api/v1/patients/{id}", Can(&[ViewPatient])),
    r("GET", "/api/v1/patients/{id}/repeat-items", Can(&[ViewPatient])),
    r("POST", "/api/v1/patients/{id}/repeat-items", Can(&[EditRepeatList])),
    r("GET", "/api/v1/patients/{id}/orders", Can(&[ViewPatient])),
    r("POST", "/api/v1/patients/{id}/orders", Can(&[PlaceOrder])),
    r("GET", "/api/v1/patients/{id}/access-log", Side(PatientSide, &[ViewPatient])),
    r("GET", "/api/v1/patients/{id}/export", Can(&[ViewPatient])),
    r("POST", "/api/v1/patients/{id}/erasure", Can(&[ErasePatient])),
    r("GET", "/api/v1/orders/{id}", Can(&[ViewPatient])),
    r("POST", "/api/v1/orders/{id}/cancel", Can(&[CancelOrder])),
    r("POST", "/api/v1/orders/{id}/accept", Can(&[ProcessOrder])),
    r("POST", "/api/v1/orders/{id}/send-to-prescriber", Can(&[ProcessOrder])),
    r("POST", "/api/v1/orders/{id}/items/{item_id}/steps", Can(&[ProcessOrder])),
    r("POST", "/api/v1/orders/{id}/items/{item_id}/decision", Can(&[AuthoriseMedication, RecordPrescriberDecision])),
    r("POST", "/api/v1/repeat-items/{id}/stop", Can(&[EditRepeatList])),
    r("GET", "/api/v1/pharmacy/queue", Can(&[ViewPharmacyQueue])),
    r("GET", "/api/v1/pharmacy/patients", Can(&[ViewPharmacyQueue])),
    r("POST", "/api/v1/pharmacy/patients", Can(&[RegisterPatient])),
    r("GET", "/api/v1/catalogue", Can(&[SearchCatalogue])),
    r("GET", "/api/v1/practices", Can(&[RegisterPatient])),
    r("GET", "/api/v1/practice/requests", Can(&[ViewPracticeRequests])),
    r("GET", "/api/v1/staff", Can(&[ManageStaffAccounts])),
    r("POST", "/api/v1/staff", Can(&[ManageStaffAccounts])),
    r("PATCH", "/api/v1/staff/{id}", Can(&[ManageStaffAccounts])),
    r("POST", "/api/v1/staff/{id}/unlock", Can(&[ManageStaffAccounts])),
    r("GET", "/api/v1/custody/grants", Can(&[BreakGlass])),
    r("POST", "/api/v1/custody/grants", Can(&[BreakGlass])),
    r("POST", "/api/v1/custody/grants/{id}/end", Can(&[BreakGlass])),
    r("GET", "/api/v1/audit", Can(&[SearchAuditTrail])),
    r("GET", "/api/v1/admin/organisations", Can(&[ManageOrganisations])),
    r("POST", "/api/v1/admin/pharmacies", Can(&[ManageOrganisations])),
    r("POST", "/api/v1/admin/practices", Can(&[ManageOrganisations])),
    r("GET", "/api/v1/admin/departures", Can(&[ManageOrganisations])),
    r("POST", "/api/v1/admin/departures", Can(&[ManageOrganisations])),
];

/// The platform team's pages and endpoints: organisations, platform accounts, break-glass access.
/// When an admin listener is configured, the public listener answers "not found" for these (C4).
pub fn admin_only(path: &str) -> bool {
    ["/admin", "/api/v1/admin", "/custody", "/api/v1/custody"]
        .iter()
        .any(|prefix| path == *prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
}

/// The rule of a route, if it has one. HEAD is answered by GET handlers, so it follows GET's rule.
pub fn rule_for(method: &Method, path: &str) -> Option<Rule> {
    // Every request asks, so the table is indexed once rather than scanned each time.
    static INDEX: std::sync::OnceLock<std::collections::HashMap<(&'static str, &'static str), Rule>> =
        std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| ROUTES.iter().map(|r| ((r.method, r.path), r.rule)).collect());
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    index.get(&(method, path)).copied()
}

/// What the route table says of a caller (`None`: no session at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Sign in first (401, or the sign-in page).
    SignIn,
    /// Signed in, but this role may not call the route (403).
    Refuse,
}

/// The rule applied to a caller: `full` says whether the session finished sign-in.
pub fn judge(rule: Rule, caller: Option<(Role, bool)>) -> Verdict {
    let allowed = |role: Role, side: Option<OrgKind>, actions: &[Action]| {
        side.is_none_or(|s| role.kind() == s) && actions.iter().any(|a| role_permits(role, *a))
    };
    match (rule, caller) {
        (Rule::Open, _) => Verdict::Pass,
        (Rule::SigningIn, Some(_)) => Verdict::Pass,
        (_, None) => Verdict::SignIn,
        (_, Some((_, false))) => Verdict::SignIn,
        (Rule::SignedIn, Some(_)) => Verdict::Pass,
        (Rule::Role(actions), Some((role, true))) => {
            if allowed(role, None, actions) {
                Verdict::Pass
            } else {
                Verdict::Refuse
            }
        }
        (Rule::Side(side, actions), Some((role, true))) => {
            if allowed(role, Some(side), actions) {
                Verdict::Pass
            } else {
                Verdict::Refuse
            }
        }
    }
}

fn caller(req: &Request) -> Option<(Role, bool)> {
    req.extensions().get::<ResolvedSession>().map(|s| {
        let s: &CurrentSession = &s.0;
        (s.actor.role, s.is_full())
    })
}

/// Applied with `route_layer`, so it sees the route the request matched.
pub async fn guard(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()) else {
        return next.run(req).await;
    };
    let verdict = match rule_for(req.method(), &path) {
        Some(rule) => judge(rule, caller(&req)),
        None => {
            tracing::error!(method = %req.method(), %path, "route has no access rule; refused");
            Verdict::Refuse
        }
    };
    let error = match verdict {
        Verdict::Pass => return next.run(req).await,
        Verdict::SignIn => AppError::Unauthenticated,
        Verdict::Refuse => AppError::Forbidden,
    };
    if api {
        ApiError(error).into_response()
    } else {
        PageError(error).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(seen.insert((route.method, route.path)), "{} {} listed twice", route.method, route.path);
        }
    }

    #[test]
    fn admin_routes_are_known_by_their_prefix() {
        for path in
            ["/admin", "/admin/accounts/x/unlock", "/api/v1/admin/organisations", "/custody", "/custody/patients/x"]
        {
            assert!(admin_only(path), "{path}");
        }
        for path in ["/administrator", "/api/v1/staff", "/pharmacy/staff", "/", "/custodyx"] {
            assert!(!admin_only(path), "{path}");
        }
        let listed = ROUTES.iter().filter(|r| admin_only(r.path)).count();
        assert!(listed >= 15, "the admin routes are in the table ({listed})");
    }

    #[test]
    fn unknown_routes_have_no_rule() {
        assert_eq!(rule_for(&Method::GET, "/nowhere"), None);
        assert_eq!(rule_for(&Method::HEAD, "/pharmacy"), rule_for(&Method::GET, "/pharmacy"));
    }

    #[test]
    fn half_signed_in_sessions_reach_only_sign_in_steps() {
        for route in ROUTES {
            let verdict = judge(route.rule, Some((Role::Pharmacist, false)));
            let expected =
                if matches!(route.rule, Rule::Open | Rule::SigningIn) { Verdict::Pass } else { Verdict::SignIn };
            assert_eq!(verdict, expected, "{} {}", route.method, route.path);
        }
    }

    /// Deny by default: a route the table does not list is refused, session or not.
    #[tokio::test]
    async fn a_route_without_a_rule_is_refused() {
        use axum::routing::get;
        let router = axum::Router::new()
            .route("/unlisted", get(|| async { "secret" }))
            .route("/healthz", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(guard));
        let call = |uri: &'static str| {
            let router = router.clone();
            async move {
                let req = axum::http::Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
                tower::ServiceExt::oneshot(router, req).await.unwrap().status()
            }
        };
        assert_eq!(call("/unlisted").await, axum::http::StatusCode::FORBIDDEN);
        assert_eq!(call("/healthz").await, axum::http::StatusCode::OK);
    }

    #[test]
    fn dashboards_belong_to_their_side() {
        let rule = rule_for(&Method::GET, "/pharmacy/patients/{id}").expect("a rule");
        assert_eq!(judge(rule, Some((Role::Prescriber, true))), Verdict::Refuse);
        assert_eq!(judge(rule, Some((Role::CounterAssistant, true))), Verdict::Pass);
        let staff = rule_for(&Method::GET, "/practice/staff").expect("a rule");
        assert_eq!(judge(staff, Some((Role::PharmacyManager, true))), Verdict::Refuse);
        assert_eq!(judge(staff, Some((Role::PracticeManager, true))), Verdict::Pass);
        assert_eq!(judge(staff, None), Verdict::SignIn);
    }
}
