//! Which environment a database belongs to (P8). A database is marked `demo` or `production` the
//! first time either opens it, and keeps that mark: the demo refuses a production database (so
//! live data never reaches a development machine through it), and production refuses a demo
//! database, or any database with demo data in it (the demo's seed marker, or accounts on the
//! demo's reserved email domain), even if its mark was removed.
use crate::error::{AppError, AppResult};
use crate::App;

/// The meta key that holds the mark.
pub const ENVIRONMENT_KEY: &str = "environment";
/// The email domain of every synthetic account the demo makes.
pub const DEMO_EMAIL_DOMAIN: &str = "demo.example";

/// The two environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Demo,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Demo => "demo",
            Environment::Production => "production",
        }
    }
}

impl App {
    /// Claims the database for `wanted`: marks an unmarked database, refuses one marked for the
    /// other environment, and (for production) one that holds demo data.
    pub async fn claim_environment(&self, wanted: Environment) -> AppResult<()> {
        let refuse = |why: String| Err(AppError::Conflict(why));
        match self.store.get_meta(ENVIRONMENT_KEY).await?.as_deref() {
            Some(mark) if mark == wanted.as_str() => {}
            Some(mark) => {
                return refuse(match wanted {
                    Environment::Demo => format!(
                        "this is a {mark} database; the demo only opens demo databases, so live data never \
                         reaches a development machine"
                    ),
                    Environment::Production => format!("this is a {mark} database; production refuses to run on it"),
                })
            }
            None => {}
        }
        if wanted == Environment::Production {
            if self.store.get_meta(crate::demo::SEEDED_KEY).await?.is_some() {
                return refuse("this database holds demo data; production refuses to run on it".into());
            }
            let synthetic = self.store.count_users_with_email_domain(DEMO_EMAIL_DOMAIN).await?;
            if synthetic > 0 {
                return refuse(format!(
                    "this database holds {synthetic} demo accounts (@{DEMO_EMAIL_DOMAIN}); production refuses to run \
                     on demo data"
                ));
            }
        }
        if self.store.get_meta(ENVIRONMENT_KEY).await?.is_none() {
            self.store.set_meta(ENVIRONMENT_KEY, wanted.as_str()).await?;
        }
        Ok(())
    }
}
