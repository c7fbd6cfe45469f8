//! Sign-in and sessions. Passwords are hashed with argon2id (OWASP minimum m=19 MiB, t=2, p=1) on
//! the blocking pool; sessions are random 256-bit tokens of which only the SHA-256 is stored; each
//! session carries its own CSRF token. Lockout, unlock, TOTP and reset slot in here (issue #3).
use crate::error::{AppError, AppResult};
use crate::App;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use repeatrx_domain::access::{Actor, Membership, Role};
use repeatrx_domain::patient::Password;
use repeatrx_domain::text::Email;
use repeatrx_store::{SessionKind, SessionRecord, UserAccount};
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
    let pw = SecretString::from(password.expose().to_string());
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        argon2()
            .hash_password(pw.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| AppError::Internal(format!("hashing task failed: {e}")))?
}

/// Verifies a password against a stored PHC string on the blocking pool.
pub async fn verify_password(hash: String, candidate: SecretString) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| argon2().verify_password(candidate.expose_secret().as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
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

/// A freshly issued session: the token goes to the client once and is never stored.
pub struct NewSession {
    pub token: SecretString,
    pub csrf_token: String,
    pub actor: Actor,
    pub expires_at: Timestamp,
}

/// A request's verified session.
#[derive(Debug, Clone)]
pub struct CurrentSession {
    pub actor: Actor,
    pub user: UserAccount,
    pub session: SessionRecord,
}

impl App {
    /// The actor a user account acts as.
    pub async fn actor_of(&self, user: &UserAccount) -> AppResult<Actor> {
        let membership = match user.role.kind() {
            repeatrx_domain::access::OrgKind::Patient => {
                let pid =
                    user.patient_id.ok_or_else(|| AppError::Internal("patient account without patient".into()))?;
                let p = self
                    .store
                    .patient(pid)
                    .await?
                    .ok_or_else(|| AppError::Internal("patient record missing".into()))?;
                Membership::Patient { patient: p.id, pharmacy: p.pharmacy_id, practice: p.practice_id }
            }
            repeatrx_domain::access::OrgKind::Pharmacy => Membership::Pharmacy(
                user.pharmacy_id.ok_or_else(|| AppError::Internal("pharmacy account without pharmacy".into()))?,
            ),
            repeatrx_domain::access::OrgKind::Practice => Membership::Practice(
                user.practice_id.ok_or_else(|| AppError::Internal("practice account without practice".into()))?,
            ),
            repeatrx_domain::access::OrgKind::Platform => Membership::Platform,
        };
        Ok(Actor { user_id: user.id, role: user.role, membership })
    }

    /// Signs in with email and password. Every refusal is the same [`AppError::BadCredentials`]
    /// and takes the same time, whether or not the account exists.
    pub async fn sign_in(
        &self,
        email: &str,
        password: SecretString,
        kind: SessionKind,
        user_agent: &str,
    ) -> AppResult<NewSession> {
        let user = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| dummy_hash().to_string());
        let matches = verify_password(hash, password).await;
        let user = match user {
            Some(u) if matches && u.active => u,
            _ => return Err(AppError::BadCredentials),
        };
        let actor = self.actor_of(&user).await?;
        let now = self.clock.now();
        let token = random_token();
        let csrf_token = random_token();
        let expires_at = now + self.settings.sessions.absolute;
        self.store
            .insert_session(&SessionRecord {
                token_hash: token_hash(&token),
                user_id: user.id,
                kind,
                csrf_token: csrf_token.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at,
                user_agent: user_agent.chars().take(200).collect(),
            })
            .await?;
        tracing::info!(user = %user.id, role = user.role.as_str(), "signed in");
        Ok(NewSession { token: SecretString::from(token), csrf_token, actor, expires_at })
    }

    /// Resolves a session token to its actor, enforcing the idle and absolute timeouts.
    pub async fn session(&self, token: &str) -> AppResult<CurrentSession> {
        let hash = token_hash(token);
        let session = self.store.session(&hash).await?.ok_or(AppError::Unauthenticated)?;
        let user = self.store.user(session.user_id).await?.ok_or(AppError::Unauthenticated)?;
        let now = self.clock.now();
        let idle = self.settings.sessions.idle_for(user.role);
        if !user.active || now >= session.expires_at || now.duration_since(session.last_seen_at) > idle {
            self.store.delete_session(&hash).await?;
            return Err(AppError::Unauthenticated);
        }
        // Touch at most once a minute: idle timeouts need no finer grain, and it spares writes.
        if now.duration_since(session.last_seen_at) > SignedDuration::from_mins(1) {
            self.store.touch_session(&hash, now).await?;
        }
        let actor = self.actor_of(&user).await?;
        Ok(CurrentSession { actor, user, session })
    }

    pub async fn sign_out(&self, token: &str) -> AppResult<()> {
        self.store.delete_session(&token_hash(token)).await?;
        Ok(())
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
