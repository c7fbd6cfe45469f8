//! Sign-in and sessions. Passwords are hashed with argon2id (OWASP minimum m=19 MiB, t=2, p=1) on
//! the blocking pool; sessions are random 256-bit tokens of which only the SHA-256 is stored; each
//! session carries its own CSRF token. Lockout counters live in the database; staff (and patients
//! who opt in) finish signing in with a TOTP or recovery code, after which the session gets a new id.
use crate::error::{AppError, AppResult};
use crate::App;
use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use repeatrx_domain::access::{Actor, Membership, Role};
use repeatrx_domain::ids::UserId;
use repeatrx_domain::patient::Password;
use repeatrx_domain::security::{
    self, SecurityEventKind, SessionStage, ADDRESS_FAILURE_LIMIT, ADDRESS_WINDOW, MAX_FAILED_SIGN_INS, RECOVERY_CODES,
    SECOND_FACTOR_WINDOW,
};
use repeatrx_domain::text::Email;
use repeatrx_store::{AccountSecurity, SecurityEvent, SessionKind, SessionRecord, UserAccount};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub patient_idle: SignedDuration,
    pub staff_idle: SignedDuration,
    pub absolute: SignedDuration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            patient_idle: SignedDuration::from_mins(30),
            staff_idle: SignedDuration::from_mins(15),
            absolute: SignedDuration::from_hours(12),
        }
    }
}

impl SessionPolicy {
    pub fn idle_for(&self, role: Role) -> SignedDuration {
        if role.is_staff() {
            self.staff_idle
        } else {
            self.patient_idle
        }
    }
}

fn argon2() -> Argon2<'static> {
    // m = 19 MiB, t = 2, p = 1: OWASP's minimum for argon2id. Fixed values, so `new` cannot fail.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password on the blocking pool (argon2id is deliberately slow).
pub async fn hash_password(password: &Password) -> AppResult<String> {
    hash_secret(SecretString::from(password.expose().to_string())).await
}

/// Hashes a password already in use as it is (when its hash is upgraded at sign-in).
async fn hash_secret(pw: SecretString) -> AppResult<String> {
    on_hashing_thread(move |memory| hash_now(memory, pw.expose_secret().as_bytes())).await?
}

/// argon2id's working memory (`m` KiB: 19 MiB), kept from one hash to the next.
///
/// Why not the crate's `hash_password`: it allocates and fills the 19 MiB afresh for every hash,
/// and glibc then keeps the freed block in the arena of whichever blocking thread ran it (its
/// mmap threshold rises past such a block once one is freed), so each thread that ever hashed
/// held 19 MiB more: 342 MB peak resident in the sign-in benchmark. The hashing and checking
/// below are still the crate's (`hash_password_into_with_memory`, its PHC types and its
/// constant-time `Output` comparison); only where the memory comes from is ours.
#[derive(Default)]
pub struct HashMemory(Vec<Block>);

impl HashMemory {
    /// Runs `argon` on this memory, grown first if its parameters need more.
    fn hash_into(&mut self, argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
        let blocks = argon.params().block_count();
        if self.0.len() < blocks {
            self.0.resize(blocks, Block::default());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut self.0[..])
    }
}

/// One argon2id hash with the service's parameters, in PHC form, on the calling thread (the
/// service hashes through [`hash_password`]; the benchmark measures the machine with this).
pub fn hash_now(memory: &mut HashMemory, password: &[u8]) -> AppResult<String> {
    let failed = |e: argon2::password_hash::Error| AppError::Internal(format!("password hashing failed: {e}"));
    let argon = argon2();
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut decoded = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut decoded).map_err(failed)?;
    let hash =
        Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| Ok(memory.hash_into(&argon, password, salt_bytes, out)?))
            .map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    };
    Ok(phc.to_string())
}

/// Whether `candidate` is the password of the PHC string `phc`, with the parameters, salt and
/// version it names (as the crate's `PasswordVerifier` decides it).
fn matches_now(memory: &mut HashMemory, phc: &str, candidate: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else { return false };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut decoded = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut decoded) else { return false };
    Output::init_with(expected.len(), |out| Ok(memory.hash_into(&argon, candidate, salt, out)?))
        .is_ok_and(|computed| computed == expected)
}

/// How many argon2id computations run at once: every core but one (at least one). A sign-in is
/// tens of milliseconds of one core's work; without a limit, a burst of sign-ins takes every core
/// and everything else (orders, pages) waits behind it. Sign-ins beyond the limit queue, in turn.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).saturating_sub(1).max(1)
}

static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(hashing_threads()));

/// The [`HashMemory`] of hashes not running: at most one per hashing permit.
static IDLE_MEMORY: std::sync::Mutex<Vec<HashMemory>> = std::sync::Mutex::new(Vec::new());

/// Runs argon2id work on the blocking pool once one of the [`hashing_threads`] is free, with that
/// permit's working memory.
async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
) -> AppResult<T> {
    let _permit = HASHING.acquire().await.map_err(|e| AppError::Internal(format!("hashing queue closed: {e}")))?;
    // A poisoned lock only means a hash panicked: its memory is simply not reused.
    let mut memory = IDLE_MEMORY.lock().ok().and_then(|mut idle| idle.pop()).unwrap_or_default();
    let (out, memory) = tokio::task::spawn_blocking(move || (work(&mut memory), memory))
        .await
        .map_err(|e| AppError::Internal(format!("hashing task failed: {e}")))?;
    if let Ok(mut idle) = IDLE_MEMORY.lock() {
        idle.push(memory);
    }
    Ok(out)
}

/// Verifies a password against a stored PHC string on the blocking pool. A stored value that is
/// no hash (an invited account that has not chosen its password) never matches, after the same
/// work as a real check, so timing does not tell such accounts apart.
pub async fn verify_password(hash: String, candidate: SecretString) -> bool {
    on_hashing_thread(move |memory| {
        let candidate = candidate.expose_secret().as_bytes();
        if PasswordHash::new(&hash).is_ok() {
            matches_now(memory, &hash, candidate)
        } else {
            let _ = matches_now(memory, dummy_hash(), candidate);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the account does not exist so that
/// unknown and known accounts take the same time to refuse.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2().hash_password(b"no such account, never matches", &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison for tokens.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Where a request comes from: kept with sessions and sign-in events.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub address: String,
    pub user_agent: String,
}

impl Client {
    pub fn new(address: impl Into<String>, user_agent: &str) -> Self {
        Self { address: address.into(), user_agent: user_agent.chars().take(200).collect() }
    }
}

/// A freshly issued session: the token goes to the client once and is never stored.
#[derive(Debug)]
pub struct NewSession {
    pub token: SecretString,
    pub csrf_token: String,
    pub actor: Actor,
    pub expires_at: Timestamp,
    /// `Full`, or the sign-in step still to do.
    pub stage: SessionStage,
}

/// A request's verified session (of any stage; the web extractors insist on `Full` for
/// everything but the sign-in steps).
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub actor: Actor,
    pub user: UserAccount,
    pub session: SessionRecord,
    /// The idle timeout that applies to this account.
    pub idle: SignedDuration,
    /// How long until this session ends if nothing else happens (idle timeout or absolute
    /// lifetime, whichever is sooner), as of this request.
    pub ends_in: SignedDuration,
}

impl CurrentSession {
    pub fn is_full(&self) -> bool {
        self.session.stage == SessionStage::Full
    }
}

/// The outcome of a confirmed TOTP enrolment.
pub struct TotpConfirmed {
    /// Shown once; only their hashes are stored.
    pub recovery_codes: Vec<String>,
    /// The full session that replaces a sign-in that was waiting for enrolment.
    pub session: Option<NewSession>,
}

/// What an authenticator app needs to be set up.
pub struct TotpSetup {
    pub secret: String,
    pub secret_grouped: String,
    pub url: String,
    pub qr_svg: String,
}

/// Whether a stored hash was made with other parameters than today's (then it is redone at the
/// next successful sign-in).
pub fn needs_rehash(hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return true };
    let current = argon2();
    let p = current.params();
    parsed.algorithm.as_str() != "argon2id"
        || parsed.params.get_decimal("m") != Some(p.m_cost())
        || parsed.params.get_decimal("t") != Some(p.t_cost())
        || parsed.params.get_decimal("p") != Some(p.p_cost())
}

/// A recovery code: 10 characters from an unambiguous alphabet (about 50 bits), shown as
/// `xxxxx-xxxxx`.
fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let chars: String = (0..10).map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// Recovery codes are compared by the SHA-256 of the account id and the normalised code.
fn recovery_hash(user: repeatrx_domain::ids::UserId, code: &str) -> String {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    token_hash(&format!("{user}:{normal}"))
}

fn looks_like_totp(code: &str) -> bool {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == crate::totp::DIGITS && digits.chars().all(|c| c.is_ascii_digit())
}

/// The actor a user account acts as, given (for a patient's account) where its patient belongs.
fn actor_for(
    user: &UserAccount,
    patient_orgs: Option<(repeatrx_domain::ids::PharmacyId, repeatrx_domain::ids::PracticeId)>,
) -> AppResult<Actor> {
    let membership = match user.role.kind() {
        repeatrx_domain::access::OrgKind::Patient => {
            let patient =
                user.patient_id.ok_or_else(|| AppError::Internal("patient account without patient".into()))?;
            let (pharmacy, practice) =
                patient_orgs.ok_or_else(|| AppError::Internal("patient record missing".into()))?;
            Membership::Patient { patient, pharmacy, practice }
        }
        repeatrx_domain::access::OrgKind::Pharmacy => Membership::Pharmacy(
            user.pharmacy_id.ok_or_else(|| AppError::Internal("pharmacy account without pharmacy".into()))?,
        ),
        repeatrx_domain::access::OrgKind::Practice => Membership::Practice(
            user.practice_id.ok_or_else(|| AppError::Internal("practice account without practice".into()))?,
        ),
        repeatrx_domain::access::OrgKind::Platform => Membership::Platform,
    };
    Ok(Actor { user_id: user.id, role: user.role, membership, address: None })
}

impl App {
    /// The actor a user account acts as.
    pub async fn actor_of(&self, user: &UserAccount) -> AppResult<Actor> {
        let patient_orgs = match (user.role.kind(), user.patient_id) {
            (repeatrx_domain::access::OrgKind::Patient, Some(pid)) => {
                let p = self
                    .store
                    .patient(pid)
                    .await?
                    .ok_or_else(|| AppError::Internal("patient record missing".into()))?;
                Some((p.pharmacy_id, p.practice_id))
            }
            _ => None,
        };
        actor_for(user, patient_orgs)
    }

    /// Records a sign-in event for the audit trail.
    pub async fn record_event(&self, event: SecurityEvent) -> AppResult<()> {
        tracing::info!(kind = event.kind.as_str(), user = ?event.user_id, "security event");
        let record = self.security_audit_record(&event).await?;
        self.store.insert_security_event(&event, &record).await?;
        Ok(())
    }

    fn event(&self, kind: SecurityEventKind, user: Option<UserId>, client: &Client) -> SecurityEvent {
        SecurityEvent::new(kind, user, &client.address, self.clock.now())
    }

    fn minute(&self) -> i64 {
        self.clock.now().as_second().div_euclid(60)
    }

    /// Refuses sign-in attempts from an address that has failed too often lately.
    async fn check_address(&self, client: &Client) -> AppResult<()> {
        let since = self.minute() - ADDRESS_WINDOW.as_mins();
        if self.store.address_failures_since(&client.address, since).await? >= ADDRESS_FAILURE_LIMIT {
            return Err(AppError::TooManyAttempts);
        }
        Ok(())
    }

    async fn count_address_failure(&self, client: &Client) -> AppResult<()> {
        let window = ADDRESS_WINDOW.as_mins();
        let now = self.minute();
        let total = self.store.record_address_failure(&client.address, now, now - window, now - 2 * window).await?;
        if total == ADDRESS_FAILURE_LIMIT {
            self.record_event(self.event(SecurityEventKind::AddressThrottled, None, client)).await?;
        }
        Ok(())
    }

    /// Counts a failed attempt against an account (wrong password or wrong code) and locks it
    /// on the sixth in a row. Returns whether the account is now locked.
    pub(crate) async fn count_failure(
        &self,
        user: UserId,
        kind: SecurityEventKind,
        client: &Client,
    ) -> AppResult<bool> {
        let now = self.clock.now();
        let mut became_locked = false;
        let updated = self
            .store
            .update_account_security(user, &mut |s| {
                s.failed_sign_ins = s.failed_sign_ins.saturating_add(1);
                let next = security::after_failed_sign_in(s.lock_state, s.failed_sign_ins);
                became_locked = next != s.lock_state;
                if became_locked {
                    s.lock_state = next;
                    s.locked_at = Some(now);
                }
                true
            })
            .await?;
        self.record_event(self.event(kind, Some(user), client)).await?;
        if became_locked {
            self.record_event(
                self.event(SecurityEventKind::Locked, Some(user), client)
                    .detail(format!("{MAX_FAILED_SIGN_INS} failed attempts in a row")),
            )
            .await?;
            // A locked account is used by nobody until it is unlocked: its sessions end too.
            self.store.delete_sessions_of_user(user).await?;
        }
        self.count_address_failure(client).await?;
        Ok(updated.is_some_and(|(s, _)| s.lock_state.is_locked()))
    }

    async fn security_of(&self, user: UserId) -> AppResult<AccountSecurity> {
        self.store.account_security(user).await?.ok_or(AppError::Unauthenticated)
    }

    async fn open_session(
        &self,
        user: &UserAccount,
        kind: SessionKind,
        stage: SessionStage,
        client: &Client,
        replacing: Option<&str>,
    ) -> AppResult<NewSession> {
        let actor = self.actor_of(user).await?;
        let now = self.clock.now();
        let token = random_token();
        let csrf_token = random_token();
        let lifetime = if stage == SessionStage::Full { self.settings.sessions.absolute } else { SECOND_FACTOR_WINDOW };
        let expires_at = now + lifetime;
        let record = SessionRecord {
            token_hash: token_hash(&token),
            user_id: user.id,
            kind,
            csrf_token: csrf_token.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at,
            user_agent: client.user_agent.clone(),
            stage,
            address: client.address.chars().take(64).collect(),
        };
        match replacing {
            Some(old) => self.store.rotate_session(old, &record).await?,
            None => self.store.insert_session(&record).await?,
        }
        Ok(NewSession { token: SecretString::from(token), csrf_token, actor, expires_at, stage })
    }

    /// Signs in with email and password. Every refusal (unknown account, wrong password, locked
    /// or suspended account) is the same [`AppError::BadCredentials`] and costs the same argon2id
    /// verification, so accounts cannot be probed. Accounts that need a second factor get a
    /// session that can only finish signing in.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
        kind: SessionKind,
        client: &Client,
    ) -> AppResult<NewSession> {
        self.check_address(client).await?;
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| dummy_hash().to_string());
        let matches = verify_password(hash, password.clone()).await;
        let Some(user) = user else {
            self.record_event(self.event(SecurityEventKind::SignInFailed, None, client)).await?;
            self.count_address_failure(client).await?;
            return Err(AppError::BadCredentials);
        };
        if !matches {
            self.count_failure(user.id, SecurityEventKind::SignInFailed, client).await?;
            return Err(AppError::BadCredentials);
        }
        let security = self.security_of(user.id).await?;
        if security.lock_state.is_locked() || !user.active {
            let why = if user.active { "account locked" } else { "account suspended" };
            self.record_event(self.event(SecurityEventKind::SignInFailed, Some(user.id), client).detail(why)).await?;
            return Err(AppError::BadCredentials);
        }
        if needs_rehash(&user.password_hash) {
            self.store.set_password_hash(user.id, &hash_secret(password).await?).await?;
            self.record_event(self.event(SecurityEventKind::PasswordRehashed, Some(user.id), client)).await?;
        }
        let stage = if security.totp_secret.is_some() {
            SessionStage::SecondFactor
        } else if security::second_factor_required(user.role) {
            SessionStage::Enrol
        } else {
            SessionStage::Full
        };
        if stage == SessionStage::Full {
            // The count was read just above: most sign-ins have no failures to forget, and then
            // take no write lock for it.
            self.signed_in(&user, client, security.failed_sign_ins > 0).await?;
        }
        self.open_session(&user, kind, stage, client, None).await
    }

    /// Sign-in is complete: the failure count starts again (`had_failures`: unless it was
    /// seen to be zero already).
    async fn signed_in(&self, user: &UserAccount, client: &Client, had_failures: bool) -> AppResult<()> {
        if had_failures {
            self.store
                .update_account_security(user.id, &mut |s| {
                    let changed = s.failed_sign_ins != 0;
                    s.failed_sign_ins = 0;
                    changed
                })
                .await?;
        }
        tracing::info!(user = %user.id, role = user.role.as_str(), "signed in");
        self.record_event(self.event(SecurityEventKind::SignedIn, Some(user.id), client)).await
    }

    /// Checks a TOTP code against the account's secret and accepts it only if its step is newer
    /// than the last accepted one (atomically, so two servers cannot both accept it).
    async fn accept_totp(&self, user: UserId, code: &str) -> AppResult<bool> {
        let security = self.security_of(user).await?;
        let Some(secret) = security.totp_secret.clone() else { return Ok(false) };
        let Some(step) = crate::totp::matching_step(&secret, code, self.clock.now().as_second())? else {
            return Ok(false);
        };
        let updated = self
            .store
            .update_account_security(user, &mut |s| {
                if s.totp_secret.as_deref() == Some(secret.as_str()) && step > s.totp_last_step {
                    s.totp_last_step = step;
                    true
                } else {
                    false
                }
            })
            .await?;
        Ok(updated.is_some_and(|(_, written)| written))
    }

    /// Finishes a sign-in waiting for its second factor with a TOTP code or a recovery code.
    /// The half-finished session is replaced by a new full one (a new id on privilege change).
    pub async fn complete_second_factor(
        &self,
        current: &CurrentSession,
        code: &str,
        client: &Client,
    ) -> AppResult<NewSession> {
        if current.session.stage != SessionStage::SecondFactor {
            return Err(AppError::Unauthenticated);
        }
        let user = &current.user;
        let security = self.security_of(user.id).await?;
        if security.lock_state.is_locked() {
            self.store.delete_session(&current.session.token_hash).await?;
            return Err(AppError::BadCredentials);
        }
        let accepted = if looks_like_totp(code) {
            self.accept_totp(user.id, code).await?
        } else {
            let used = self.store.use_recovery_code(user.id, &recovery_hash(user.id, code), self.clock.now()).await?;
            if used {
                self.record_event(self.event(SecurityEventKind::RecoveryCodeUsed, Some(user.id), client)).await?;
            }
            used
        };
        if !accepted {
            if self.count_failure(user.id, SecurityEventKind::SecondFactorFailed, client).await? {
                return Err(AppError::BadCredentials);
            }
            return Err(AppError::WrongCode);
        }
        self.signed_in(user, client, true).await?;
        self.open_session(user, current.session.kind, SessionStage::Full, client, Some(&current.session.token_hash))
            .await
    }

    /// Asks a signed-in prescriber (or anyone with TOTP) for a fresh code before a signing act.
    /// A wrong code counts towards the lockout like a wrong password.
    pub async fn verify_fresh_code(&self, actor: &Actor, code: &str, client: &Client) -> AppResult<()> {
        if self.accept_totp(actor.user_id, code).await? {
            return Ok(());
        }
        if self.count_failure(actor.user_id, SecurityEventKind::SecondFactorFailed, client).await? {
            return Err(AppError::Unauthenticated);
        }
        Err(AppError::InvalidFields(vec![
            "code: that security code is not right or has been used already; enter the next code from your app".into(),
        ]))
    }

    /// Starts (or shows again) setting up an authenticator app: during a sign-in that must enrol,
    /// or for a signed-in patient who opts in.
    pub async fn totp_setup(&self, current: &CurrentSession) -> AppResult<TotpSetup> {
        if current.session.stage == SessionStage::SecondFactor {
            return Err(AppError::Conflict(
                "this account has an authenticator app already: enter its code to finish signing in".into(),
            ));
        }
        let fresh = crate::totp::new_secret();
        let mut secret = String::new();
        self.store
            .update_account_security(current.user.id, &mut |s| {
                if s.totp_secret.is_some() {
                    return false;
                }
                match &s.totp_pending_secret {
                    Some(p) => {
                        secret = p.clone();
                        false
                    }
                    None => {
                        s.totp_pending_secret = Some(fresh.clone());
                        secret = fresh.clone();
                        true
                    }
                }
            })
            .await?;
        if secret.is_empty() {
            return Err(AppError::Conflict("an authenticator app is already set up for this account".into()));
        }
        let url = crate::totp::provisioning_url(&secret, current.user.email.as_str())?;
        Ok(TotpSetup { secret_grouped: crate::totp::grouped(&secret), qr_svg: crate::totp::qr_svg(&url)?, url, secret })
    }

    /// Confirms the authenticator app with its first code; issues recovery codes. A sign-in that
    /// was waiting for enrolment becomes a full session under a new id.
    pub async fn confirm_totp(
        &self,
        current: &CurrentSession,
        code: &str,
        client: &Client,
    ) -> AppResult<TotpConfirmed> {
        if current.session.stage == SessionStage::SecondFactor {
            return Err(AppError::Unauthenticated);
        }
        let security = self.security_of(current.user.id).await?;
        let Some(pending) = security.totp_pending_secret.clone() else {
            return Err(AppError::Conflict("start setting up the authenticator app again".into()));
        };
        let Some(step) = crate::totp::matching_step(&pending, code, self.clock.now().as_second())? else {
            return Err(AppError::InvalidFields(vec![
                "code: that code is not right; check the app shows RepeatRx and the clock of your phone is correct"
                    .into(),
            ]));
        };
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(current.user.id, c)).collect();
        self.store.enable_totp(current.user.id, &pending, step, &hashes, self.clock.now()).await?;
        self.record_event(self.event(SecurityEventKind::TotpEnrolled, Some(current.user.id), client)).await?;
        let session = if current.session.stage == SessionStage::Enrol {
            self.signed_in(&current.user, client, true).await?;
            Some(
                self.open_session(
                    &current.user,
                    current.session.kind,
                    SessionStage::Full,
                    client,
                    Some(&current.session.token_hash),
                )
                .await?,
            )
        } else {
            None
        };
        Ok(TotpConfirmed { recovery_codes: codes, session })
    }

    /// Ten new recovery codes (the old ones stop working), after a current code.
    pub async fn renew_recovery_codes(
        &self,
        current: &CurrentSession,
        code: &str,
        client: &Client,
    ) -> AppResult<Vec<String>> {
        self.verify_fresh_code(&current.actor, code, client).await?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(current.user.id, c)).collect();
        self.store.replace_recovery_codes(current.user.id, &hashes).await?;
        self.record_event(self.event(SecurityEventKind::RecoveryCodesRenewed, Some(current.user.id), client)).await?;
        Ok(codes)
    }

    /// A patient turns their optional second factor off (staff cannot: it is mandatory).
    pub async fn disable_totp(&self, current: &CurrentSession, code: &str, client: &Client) -> AppResult<()> {
        if security::second_factor_required(current.user.role) {
            return Err(AppError::Invalid(
                "the security code is required for staff accounts and cannot be turned off".into(),
            ));
        }
        self.verify_fresh_code(&current.actor, code, client).await?;
        self.store
            .update_account_security(current.user.id, &mut |s| {
                s.totp_secret = None;
                s.totp_pending_secret = None;
                s.totp_enrolled_at = None;
                true
            })
            .await?;
        self.store.replace_recovery_codes(current.user.id, &[]).await?;
        self.record_event(self.event(SecurityEventKind::TotpDisabled, Some(current.user.id), client)).await
    }

    /// The account's second factor and recovery code count, for the account page.
    pub async fn account_security_of(&self, current: &CurrentSession) -> AppResult<AccountSecurity> {
        self.security_of(current.user.id).await
    }

    /// Resolves a session token, enforcing the idle and absolute timeouts.
    pub async fn session(&self, token: &str) -> AppResult<CurrentSession> {
        self.session_from(token, None).await
    }

    /// [`App::session`] for a request from `address`, which the actor then carries into the
    /// audit trail.
    pub async fn session_from(&self, token: &str, address: Option<std::net::IpAddr>) -> AppResult<CurrentSession> {
        let hash = token_hash(token);
        let found = self.store.session_account(&hash).await?.ok_or(AppError::Unauthenticated)?;
        let (session, user) = (found.session, found.user);
        let now = self.clock.now();
        let idle = self.settings.sessions.idle_for(user.role);
        if !user.active || now >= session.expires_at || now.duration_since(session.last_seen_at) > idle {
            self.store.delete_session(&hash).await?;
            if user.active && session.stage == SessionStage::Full {
                let event = SecurityEvent::new(SecurityEventKind::SessionExpired, Some(user.id), &session.address, now);
                self.record_event(event).await?;
            }
            return Err(AppError::Unauthenticated);
        }
        // Touch at most once a minute: idle timeouts need no finer grain, and it spares writes.
        let mut session = session;
        if now.duration_since(session.last_seen_at) > SignedDuration::from_mins(1) {
            self.store.touch_session(&hash, now).await?;
            session.last_seen_at = now;
        }
        let ends_in = (session.last_seen_at + idle).min(session.expires_at).duration_since(now);
        let actor = Actor { address, ..actor_for(&user, found.patient_orgs)? };
        Ok(CurrentSession { actor, user, session, idle, ends_in })
    }

    /// "Stay signed in": restarts the idle timer now (the absolute lifetime still applies).
    pub async fn keep_alive(&self, current: &CurrentSession) -> AppResult<Timestamp> {
        let now = self.clock.now();
        self.store.touch_session(&current.session.token_hash, now).await?;
        Ok(now + self.settings.sessions.idle_for(current.user.role))
    }

    pub async fn sign_out(&self, token: &str) -> AppResult<()> {
        let hash = token_hash(token);
        if let Some(s) = self.store.session(&hash).await? {
            self.store.delete_session(&hash).await?;
            let event = SecurityEvent::new(SecurityEventKind::SignedOut, Some(s.user_id), &s.address, self.clock.now());
            self.record_event(event).await?;
        }
        Ok(())
    }

    /// Ends the account's sessions: all of them, or all but the current one.
    pub async fn sign_out_everywhere(
        &self,
        current: &CurrentSession,
        keep_this: bool,
        client: &Client,
    ) -> AppResult<u64> {
        let ended = if keep_this {
            self.store.delete_other_sessions(current.user.id, &current.session.token_hash).await?
        } else {
            self.store.delete_sessions_of_user(current.user.id).await?
        };
        self.record_event(
            self.event(SecurityEventKind::SignedOutEverywhere, Some(current.user.id), client)
                .detail(format!("{ended} sessions ended")),
        )
        .await?;
        Ok(ended)
    }

    /// The account's open sessions, newest first.
    pub async fn sessions_of(&self, current: &CurrentSession) -> AppResult<Vec<SessionRecord>> {
        Ok(self.store.sessions_of_user(current.user.id, self.clock.now()).await?)
    }

    /// The account's recent sign-in events, newest first.
    pub async fn events_of(&self, current: &CurrentSession) -> AppResult<Vec<SecurityEvent>> {
        Ok(self.store.security_events_of_user(current.user.id, 50).await?)
    }

    /// Changes the password of the signed-in account after checking the current one; every other
    /// session of the account ends.
    pub async fn change_password(
        &self,
        current: &CurrentSession,
        old: SecretString,
        new: &str,
        client: &Client,
    ) -> AppResult<()> {
        if !verify_password(current.user.password_hash.clone(), old).await {
            if self.count_failure(current.user.id, SecurityEventKind::SignInFailed, client).await? {
                return Err(AppError::Unauthenticated);
            }
            return Err(AppError::InvalidFields(vec!["current password: that is not your current password".into()]));
        }
        let password = self.password_for_user(&current.user, new).await?;
        self.store.set_password_hash(current.user.id, &hash_password(&password).await?).await?;
        self.store.delete_other_sessions(current.user.id, &current.session.token_hash).await?;
        self.record_event(self.event(SecurityEventKind::PasswordChanged, Some(current.user.id), client)).await?;
        self.notify_password_changed(&current.user).await
    }

    /// Validates a new password for an existing account (its name and email may not be in it).
    pub async fn password_for_user(&self, user: &UserAccount, candidate: &str) -> AppResult<Password> {
        let mut personal = vec![user.display_name.clone(), user.email.as_str().to_string()];
        if let Some(pid) = user.patient_id {
            if let Some(p) = self.store.patient(pid).await? {
                personal.push(p.full_name());
            }
        }
        let refs: Vec<&str> = personal.iter().map(String::as_str).collect();
        self.password_for(candidate, user.role, &refs)
    }

    /// Validates a new password against the policy for the account's owner.
    pub fn password_for(&self, candidate: &str, role: Role, personal: &[&str]) -> AppResult<Password> {
        let owner = if role.is_staff() {
            repeatrx_domain::patient::PasswordOwner::Staff
        } else {
            repeatrx_domain::patient::PasswordOwner::Patient
        };
        Ok(Password::new(candidate, owner, personal)?)
    }
}

/// A readable one-time password for a new account, handed over by the person who created it.
pub fn initial_password() -> String {
    const WORDS: &[&str] = &[
        "amber", "basil", "cedar", "delta", "ember", "fjord", "gecko", "harbor", "indigo", "juniper", "kestrel",
        "lagoon", "meadow", "nectar", "orchid", "pebble", "quartz", "raven", "saffron", "thistle", "umber", "violet",
        "willow", "yarrow",
    ];
    let mut rng = rand::rngs::OsRng;
    let mut pick = || WORDS[(rng.next_u32() as usize) % WORDS.len()];
    format!("{}-{}-{}-{}-{}", pick(), pick(), pick(), pick(), rng.next_u32() % 90 + 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2id_hashes_verify_and_use_owasp_parameters() {
        let pw = Password::new("correct horse battery", repeatrx_domain::patient::PasswordOwner::Patient, &[]).unwrap();
        let hash = hash_password(&pw).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password(hash.clone(), SecretString::from("correct horse battery")).await);
        assert!(!verify_password(hash, SecretString::from("wrong horse battery")).await);
        assert!(!verify_password("not a hash".into(), SecretString::from("x")).await);
        let invited = crate::staff::INVITED.to_string();
        assert!(!verify_password(invited.clone(), SecretString::from(invited)).await, "the marker is no password");
    }

    #[test]
    fn hashes_on_kept_memory_are_the_crates_own() {
        use argon2::password_hash::PasswordVerifier;
        let mut memory = HashMemory::default();
        let ours = hash_now(&mut memory, b"correct horse battery").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        let salt = parsed.salt.unwrap();
        let theirs = argon2().hash_password(b"correct horse battery", salt).unwrap().to_string();
        assert_eq!(ours, theirs, "the same salt gives the crate's own PHC string");
        assert!(argon2().verify_password(b"correct horse battery", &parsed).is_ok());
        // Hashes made by the crate, with today's parameters or older, smaller ones, check out on
        // memory that already held a bigger hash, and only with their own password.
        let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 3, 1, None).unwrap());
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        for phc in [theirs, older.hash_password(b"an older password", &salt).unwrap().to_string()] {
            let password: &[u8] = if phc.contains("m=4096") { b"an older password" } else { b"correct horse battery" };
            assert!(matches_now(&mut memory, &phc, password), "{phc}");
            assert!(!matches_now(&mut memory, &phc, b"wrong horse battery"), "{phc}");
        }
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, Params::new(4096, 3, 1, None).unwrap());
        let phc = argon2i.hash_password(b"another", &salt).unwrap().to_string();
        assert!(matches_now(&mut memory, &phc, b"another"), "algorithm and version come from the hash");
        assert!(!matches_now(&mut memory, &phc.replace("argon2i$", "argon2id$"), b"another"));
        for broken in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!matches_now(&mut memory, broken, b""), "{broken}");
        }
    }

    #[test]
    fn tokens_are_random_and_compared_in_constant_time() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert!(a.len() >= 43);
        assert!(tokens_equal(&a, &a.clone()));
        assert!(!tokens_equal(&a, &b));
        assert!(!tokens_equal(&a, "short"));
        assert_eq!(token_hash(&a).len(), 64);
    }

    #[test]
    fn initial_passwords_meet_the_staff_policy() {
        let p = initial_password();
        assert!(Password::new(&p, repeatrx_domain::patient::PasswordOwner::Staff, &[]).is_ok(), "{p}");
    }
}
