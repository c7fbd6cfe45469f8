//! The audit trail (issue #4, promise P9): what is appended, and the check of its chain.
//! Sign-in events are appended as they happen; every pass of staff through the tenant gate
//! (`access.rs`: each read or change of a patient's record) and every administrative act too.
use crate::error::AppResult;
use crate::App;
use repeatrx_domain::access::{Actor, Membership};
use repeatrx_domain::audit::{check_link, AuditEntry, AuditRecord, ChainBreak};
use repeatrx_domain::ids::PatientId;
use repeatrx_store::{SecurityEvent, UserAccount};

/// The result of checking the whole trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries checked (up to the first broken one).
    pub checked: u64,
    /// The number of the last good entry (0 for an empty trail).
    pub head_seq: i64,
    /// The hash of the last good entry (the genesis hash for an empty trail).
    pub head: String,
    /// The first entry that does not fit, and why.
    pub first_broken: Option<(i64, ChainBreak)>,
    /// How the trail compares with the checkpoint given, if one was.
    pub checkpoint: Option<CheckpointOutcome>,
}

/// An entry's number and hash, kept outside the database (a ticket, a log, a printout): a
/// later check proves that the trail still holds that entry unchanged, so the newest entries
/// cannot be cut off or the trail rewritten from scratch without it showing. The chain alone
/// cannot show that: a shortened chain is still a valid chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "a checkpoint is written NUMBER:HASH, as `audit verify` prints it (got '{}')",
                s.chars().take(80).collect::<String>()
            )
        };
        let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        if seq < 1 || hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Checkpoint { seq, hash: hash.to_ascii_lowercase() })
    }
}

/// What a checkpoint says of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// The entry is there, unchanged.
    Holds,
    /// The trail ends before the entry: the newest entries were removed.
    Missing { last: i64 },
    /// The entry is there but is not the one recorded: the trail was rewritten.
    Differs,
}

/// How often a server writes the trail's head to its log, so that the log (kept elsewhere)
/// holds checkpoints.
pub const CHECKPOINT_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_mins(60);
pub const CHECKPOINT_JOB: &str = "audit-checkpoint";

/// Where an account belongs, as the trail names it.
pub fn organisation_of(user: &UserAccount) -> String {
    match (user.pharmacy_id, user.practice_id, user.role.kind()) {
        (_, _, repeatrx_domain::access::OrgKind::Patient) => "patient".into(),
        (Some(p), _, _) => format!("pharmacy:{p}"),
        (None, Some(p), _) => format!("practice:{p}"),
        _ => "platform".into(),
    }
}

/// Where an actor belongs, as the trail names it.
pub fn organisation_of_actor(actor: &Actor) -> String {
    match actor.membership {
        Membership::Patient { .. } => "patient".into(),
        Membership::Pharmacy(p) => format!("pharmacy:{p}"),
        Membership::Practice(p) => format!("practice:{p}"),
        Membership::Platform => "platform".into(),
    }
}

const PAGE: u32 = 1000;

/// One line of "who has seen my record", for the patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    pub at: jiff::Timestamp,
    /// The member of staff's name.
    pub who: String,
    pub role: &'static str,
    /// Their pharmacy or practice.
    pub organisation: String,
    /// What they did, in plain words.
    pub what: &'static str,
    /// The reason they gave, where one was required (break-glass access by a custodian).
    pub purpose: Option<String>,
}

/// Plain words for a gate action in the trail.
fn what_was_done(action: &str) -> &'static str {
    match action.strip_prefix("patient.").unwrap_or(action) {
        "view_patient" => "Looked at your record",
        "place_order" => "Placed an order for you",
        "cancel_order" => "Cancelled an order",
        "register_patient" => "Updated your details",
        "edit_repeat_list" => "Changed your repeat medicines",
        "process_order" => "Worked on your order",
        "record_prescriber_decision" => "Recorded the prescriber's decision",
        "authorise_medication" => "Decided on your medication",
        "lift_identity_lock" => "Unlocked your account after checking your identity",
        _ => "Used your record",
    }
}

impl App {
    /// Appends a record to the trail.
    pub async fn audit(&self, record: &AuditRecord) -> AppResult<AuditEntry> {
        Ok(self.store.append_audit(record).await?)
    }

    /// Appends what an actor did (to a patient's data, when `patient` is given).
    pub async fn audit_act(
        &self,
        actor: &Actor,
        action: &str,
        patient: Option<PatientId>,
        detail: impl Into<String>,
    ) -> AppResult<()> {
        self.audit_act_for(actor, action, patient, detail, None).await
    }

    /// The same, with the purpose the actor stated (a custodian's break-glass reason).
    pub async fn audit_act_for(
        &self,
        actor: &Actor,
        action: &str,
        patient: Option<PatientId>,
        detail: impl Into<String>,
        purpose: Option<String>,
    ) -> AppResult<()> {
        let record = AuditRecord {
            at: self.clock.now(),
            actor: Some(actor.user_id),
            actor_role: Some(actor.role),
            organisation: organisation_of_actor(actor),
            action: action.to_string(),
            patient,
            address: actor.address.map(|a| a.to_string()).unwrap_or_else(|| "console".into()),
            purpose,
            detail: detail.into(),
        };
        self.audit(&record).await.map(|_| ())
    }

    /// A sign-in event as a trail record: the actor is whoever acted (a manager unlocking an
    /// account), else the account itself.
    pub(crate) async fn security_audit_record(&self, event: &SecurityEvent) -> AppResult<AuditRecord> {
        let actor_id = event.actor_id.or(event.user_id);
        let actor = match actor_id {
            Some(id) => self.store.user(id).await?,
            None => None,
        };
        let subject = match (event.user_id, event.actor_id) {
            (Some(user), Some(actor)) if user != actor => format!("account {user}"),
            _ => String::new(),
        };
        let detail = [subject, event.detail.clone()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let record = AuditRecord {
            at: event.at,
            actor: actor_id,
            actor_role: actor.as_ref().map(|u| u.role),
            organisation: actor.as_ref().map(organisation_of).unwrap_or_else(|| "unknown".into()),
            action: format!("sign_in.{}", event.kind.as_str()),
            patient: actor.as_ref().filter(|_| event.actor_id.is_none()).and_then(|u| u.patient_id),
            address: event.address.clone(),
            purpose: None,
            detail: detail.join("; "),
        };
        Ok(record)
    }

    /// Who among staff has reached a patient's record, newest first (the last 100 times): the
    /// patient sees it on their dashboard; their pharmacy may look too (and is recorded doing so).
    pub async fn patient_access_log(&self, actor: &Actor, patient: PatientId) -> AppResult<Vec<AccessLine>> {
        let p = self.patient_for(actor, repeatrx_domain::access::Action::ViewPatient, patient).await?;
        self.access_lines(p.id).await
    }

    /// The log of a patient the caller has already loaded through the tenant gate.
    pub(crate) async fn access_lines(&self, patient: PatientId) -> AppResult<Vec<AccessLine>> {
        let entries = self.store.audit_entries_for_patient(patient, 200).await?;
        let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let mut people: std::collections::HashMap<repeatrx_domain::ids::UserId, String> =
            std::collections::HashMap::new();
        let mut out = Vec::new();
        for e in entries {
            let r = &e.record;
            let (Some(who), Some(role)) = (r.actor, r.actor_role) else { continue };
            if !role.is_staff() || !r.action.starts_with("patient.") {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = people.entry(who) {
                let name = self.store.user(who).await?.map(|u| u.display_name);
                slot.insert(name.unwrap_or_else(|| "A former member of staff".into()));
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(r.organisation.clone()) {
                slot.insert(self.organisation_name(&r.organisation).await?);
            }
            out.push(AccessLine {
                at: r.at,
                who: people.get(&who).cloned().unwrap_or_default(),
                role: role.label(),
                organisation: names.get(&r.organisation).cloned().unwrap_or_default(),
                what: what_was_done(&r.action),
                purpose: r.purpose.clone(),
            });
            if out.len() == 100 {
                break;
            }
        }
        Ok(out)
    }

    async fn organisation_name(&self, organisation: &str) -> AppResult<String> {
        let name = match organisation.split_once(':') {
            Some(("pharmacy", id)) => match id.parse() {
                Ok(id) => self.store.pharmacy(id).await?.map(|p| p.name),
                Err(_) => None,
            },
            Some(("practice", id)) => match id.parse() {
                Ok(id) => self.store.practice(id).await?.map(|p| p.name),
                Err(_) => None,
            },
            _ => None,
        };
        Ok(name.unwrap_or_else(|| "RepeatRx".into()))
    }

    /// Checks every entry of the trail in order; `progress` hears the count so far.
    pub async fn verify_audit(&self, progress: impl FnMut(u64)) -> AppResult<AuditReport> {
        self.verify_audit_against(None, progress).await
    }

    /// [`App::verify_audit`], also comparing the trail with a checkpoint kept outside it.
    pub async fn verify_audit_against(
        &self,
        checkpoint: Option<&Checkpoint>,
        mut progress: impl FnMut(u64),
    ) -> AppResult<AuditReport> {
        let mut previous: Option<AuditEntry> = None;
        let mut checked = 0u64;
        let mut outcome = None;
        let mut first_broken = None;
        'pages: loop {
            let after = previous.as_ref().map(|e| e.seq).unwrap_or(0);
            let page = self.store.audit_entries(after, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for entry in page {
                if let Err(why) = check_link(previous.as_ref(), &entry) {
                    first_broken = Some((entry.seq, why));
                    break 'pages;
                }
                if let Some(cp) = checkpoint.filter(|cp| cp.seq == entry.seq) {
                    outcome =
                        Some(if cp.hash == entry.hash { CheckpointOutcome::Holds } else { CheckpointOutcome::Differs });
                }
                checked += 1;
                previous = Some(entry);
            }
            progress(checked);
        }
        let head_seq = previous.as_ref().map(|p| p.seq).unwrap_or(0);
        if checkpoint.is_some() && outcome.is_none() && first_broken.is_none() {
            outcome = Some(CheckpointOutcome::Missing { last: head_seq });
        }
        Ok(AuditReport {
            checked,
            head_seq,
            head: previous.map(|p| p.hash).unwrap_or_else(|| repeatrx_domain::audit::GENESIS.into()),
            first_broken,
            checkpoint: outcome,
        })
    }

    /// The trail's newest entry as a checkpoint (none while the trail is empty).
    pub async fn audit_checkpoint(&self) -> AppResult<Option<Checkpoint>> {
        Ok(self.store.audit_head().await?.map(|e| Checkpoint { seq: e.seq, hash: e.hash }))
    }
}

/// A manager's search of the organisation's trail: every field optional, as typed in a form.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TrailQuery {
    /// A member of staff's account id.
    #[serde(default)]
    pub actor: Option<String>,
    /// A patient's RepeatRx id.
    #[serde(default)]
    pub patient: Option<String>,
    /// What kind of entry: `patient` (reads and changes of records), `sign_in`, `account`
    /// (invitations, roles, suspensions), `custody` (break-glass) or `admin`.
    #[serde(default)]
    pub kind: Option<String>,
    /// First day, `YYYY-MM-DD` or `DD/MM/YYYY` (London time).
    #[serde(default)]
    pub from: Option<String>,
    /// Last day, inclusive.
    #[serde(default)]
    pub to: Option<String>,
    /// Only entries older than this one (the next page).
    #[serde(default)]
    pub before: Option<i64>,
}

/// The kinds of entry a search can be narrowed to, with their labels.
pub const TRAIL_KINDS: [(&str, &str); 6] = [
    ("patient", "Patient records read or changed"),
    ("sign_in", "Sign-in events"),
    ("account", "Staff accounts (invitations, roles, suspensions)"),
    ("custody", "Break-glass access"),
    ("admin", "Organisations"),
    ("audit", "Searches of this trail"),
];

/// One entry as a manager sees it: the record, with its actor's name and organisation's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailLine {
    pub seq: i64,
    pub record: AuditRecord,
    pub who: String,
    pub organisation: String,
}

/// A page of results; `older` continues the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailPage {
    pub lines: Vec<TrailLine>,
    pub older: Option<i64>,
}

const TRAIL_PAGE: u32 = 100;

fn trail_day(field: &str, raw: &str) -> Result<jiff::civil::Date, String> {
    let t = raw.trim();
    let parsed = match t.split('/').collect::<Vec<_>>().as_slice() {
        [d, m, y] => format!("{y}-{m:0>2}-{d:0>2}").parse(),
        _ => t.parse(),
    };
    parsed.map_err(|_| format!("{field}: must be a date like 23/11/2026"))
}

impl App {
    /// Searches the actor's organisation's trail (and, for a pharmacy or practice, every entry
    /// about its patients, whoever made it). The search is itself recorded.
    pub async fn search_trail(&self, actor: &Actor, query: &TrailQuery) -> AppResult<TrailPage> {
        use repeatrx_domain::access::{role_permits, Action};
        if !role_permits(actor.role, Action::SearchAuditTrail) {
            return Err(crate::AppError::Forbidden);
        }
        let mut filter = repeatrx_store::AuditFilter {
            organisation: organisation_of_actor(actor),
            before_seq: query.before,
            ..Default::default()
        };
        match actor.membership {
            Membership::Pharmacy(p) => filter.patients_of_pharmacy = Some(p),
            Membership::Practice(p) => filter.patients_of_practice = Some(p),
            Membership::Platform => {}
            Membership::Patient { .. } => return Err(crate::AppError::Forbidden),
        }
        let mut problems = Vec::new();
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(a) = given(&query.actor) {
            match a.parse() {
                Ok(id) => filter.actor = Some(id),
                Err(_) => problems.push("actor: not an account id".to_string()),
            }
        }
        if let Some(p) = given(&query.patient) {
            match p.parse() {
                Ok(id) => filter.patient = Some(id),
                Err(_) => problems.push("patient: not a RepeatRx patient id".to_string()),
            }
        }
        if let Some(k) = given(&query.kind) {
            match TRAIL_KINDS.iter().find(|(key, _)| *key == k) {
                Some((key, _)) => filter.action_prefix = Some(format!("{key}.")),
                None => problems.push("kind: choose one of the listed kinds".to_string()),
            }
        }
        let from = given(&query.from).map(|d| trail_day("from", &d));
        let to = given(&query.to).map(|d| trail_day("to", &d));
        match from {
            Some(Ok(d)) => filter.from = Some(repeatrx_domain::timefmt::london_day_start(d)),
            Some(Err(e)) => problems.push(e),
            None => {}
        }
        match to {
            Some(Ok(d)) => filter.until = Some(repeatrx_domain::timefmt::london_day_start(d.tomorrow().unwrap_or(d))),
            Some(Err(e)) => problems.push(e),
            None => {}
        }
        if let (Some(f), Some(u)) = (filter.from, filter.until) {
            if u <= f {
                problems.push("to: must not be before the first day".to_string());
            }
        }
        if !problems.is_empty() {
            return Err(crate::AppError::InvalidFields(problems));
        }
        let entries = self.store.search_audit(&filter, TRAIL_PAGE + 1).await?;
        let older = (entries.len() > TRAIL_PAGE as usize).then(|| entries[TRAIL_PAGE as usize - 1].seq);
        let mut names: std::collections::HashMap<repeatrx_domain::ids::UserId, String> = Default::default();
        let mut orgs: std::collections::HashMap<String, String> = Default::default();
        let mut lines = Vec::new();
        for e in entries.into_iter().take(TRAIL_PAGE as usize) {
            let who = match e.record.actor {
                Some(id) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(id) {
                        let name = self.store.user(id).await?.map(|u| u.display_name);
                        slot.insert(name.unwrap_or_else(|| "The console".into()));
                    }
                    names.get(&id).cloned().unwrap_or_default()
                }
                None => "Unknown".into(),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = orgs.entry(e.record.organisation.clone()) {
                slot.insert(self.organisation_name(&e.record.organisation).await?);
            }
            let organisation = orgs.get(&e.record.organisation).cloned().unwrap_or_default();
            lines.push(TrailLine { seq: e.seq, record: e.record, who, organisation });
        }
        let detail = format!("{query:?}");
        self.audit_act(actor, "audit.search", filter.patient, detail).await?;
        Ok(TrailPage { lines, older })
    }
}
