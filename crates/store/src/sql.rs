//! The SQL adapter: one implementation of [`Store`] for SQLite (one database file, written in
//! WAL mode with `synchronous=FULL` so that an acknowledged write survives a crash or power cut)
//! and PostgreSQL, through sqlx's `Any` driver. Both engines run the same statements; what differs
//! is kept to three places: the migrations (`migrations/sqlite`, `migrations/postgres`), how the
//! write lock is taken (`write_tx`) and how errors are classified (`map_err`).
//!
//! The schema keeps to types both engines share: ids are hyphenated UUID text, timestamps unix
//! microseconds (BIGINT), civil dates ISO text, enums their `as_str` text, booleans 0/1 BIGINT.
//! Values therefore round-trip at microsecond precision.
//!
//! Every write that touches several tables runs in one transaction that takes the store's write
//! lock up front (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock), so concurrent writers,
//! from one server or several, wait instead of failing half-way or interleaving.
use crate::records::*;
use crate::sealing::{fold, name_words, open, open_opt, seal, seal_opt, Blind, Sealer, ACCOUNTS_KEY, OUTBOX_KEY};
use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use jiff::civil::Date;
use jiff::Timestamp;
use repeatrx_crypto::{DataKey, KeySource, WrappedKey};
use repeatrx_domain::access::Role;
use repeatrx_domain::audit::{AuditEntry, AuditRecord};
use repeatrx_domain::catalogue::ControlledSchedule;
use repeatrx_domain::custody::{Grant, GrantScope};
use repeatrx_domain::erasure::ErasureBy;
use repeatrx_domain::ids::*;
use repeatrx_domain::order::{Decision, ItemState, Order, OrderItem, OrderStage, Transition};
use repeatrx_domain::patient::{DateOfBirth, Fulfilment, NhsNumber, Patient};
use repeatrx_domain::repeat::{CycleDays, RepeatItem, RepeatTerms};
use repeatrx_domain::security::{LockState, SecurityEventKind, SessionStage};
use repeatrx_domain::text::{Email, PersonName};
use repeatrx_domain::DomainError;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyConnection;
use sqlx::{Any, AnyPool, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection before the store reports `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: u32 = 8;
/// Ids bound per `IN (...)` list ([`fetch_in`]).
const ID_CHUNK: usize = 500;
/// A PostgreSQL connection idle for this long is pinged before it is used again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine a store runs on: the SQL is shared, apart from the migrations, how the
/// write lock is taken and how errors are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The [`Store`] over SQL, on SQLite (one file, embedded) or PostgreSQL, through sqlx's `Any`
/// driver so that both engines run the very same statements and pass the same conformance suite.
/// Cheap to clone (it shares one pool).
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    crypt: Arc<Crypt>,
    /// New orders go to one writer that commits all that are waiting together (see
    /// [`commit_orders_in_groups`]); `None` in that writer's own copy, which writes them itself.
    new_orders: Option<tokio::sync::mpsc::Sender<NewOrderWrite>>,
    /// SQLite lets one connection write at a time. A connection that finds the write lock taken
    /// sleeps in SQLite's busy handler (1, 2, 5, 10, ... up to 100 ms a time) before it tries
    /// again, so under load writers slept long after the lock was free and overtook each other.
    /// This process's writers take turns here instead, first come first served, each woken as
    /// soon as the one before has committed; SQLite's lock still orders them against other
    /// processes. Every write takes its turn, through one of three doors:
    /// [`write_tx`](Self::write_tx), [`bookkeeping_tx`](Self::bookkeeping_tx) and
    /// [`write_conn`](Self::write_conn); a statement that writes on the pool itself would poll for
    /// SQLite's lock from the busy handler again. Unused on PostgreSQL (its advisory lock queues
    /// waiters itself).
    write_turn: Arc<tokio::sync::Mutex<()>>,
}

/// A connection with this process's turn to write while it lasts (see
/// [`SqlStore::write_turn`]). It derefs to the connection, as a `sqlx::Transaction` does.
pub(crate) struct InTurn<C> {
    conn: C,
    // Dropped after `conn`: a transaction given up has its rollback queued on its connection
    // first, and a pooled connection goes back to the pool first, so a next writer that still
    // finds SQLite's lock held waits in the busy handler.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// A write transaction in this process's turn to write.
pub(crate) type WriteTx = InTurn<sqlx::Transaction<'static, Any>>;

/// A pooled connection in this process's turn to write, for statements that write outside a
/// transaction.
pub(crate) type WriteConn = InTurn<sqlx::pool::PoolConnection<Any>>;

impl<C> std::ops::Deref for InTurn<C>
where
    C: std::ops::Deref<Target = AnyConnection>,
{
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl<C> std::ops::DerefMut for InTurn<C>
where
    C: std::ops::DerefMut<Target = AnyConnection>,
{
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl WriteTx {
    /// Commits a [`SqlStore::bookkeeping_tx`] (a [`SqlStore::write_tx`] ends with
    /// [`SqlStore::commit`], which marks the commit in the journal).
    pub(crate) async fn commit_bookkeeping(self) -> StoreResult<()> {
        self.conn.commit().await.map_err(map_err)
    }

    /// Undoes the transaction before its turn to write is given up, so that the next writer
    /// finds SQLite's lock free.
    async fn rollback(self) -> StoreResult<()> {
        self.conn.rollback().await.map_err(map_err)
    }
}

/// How [`SqlStore::write_order_group`] writes a group's admitted orders.
#[derive(Clone, Copy, Debug)]
enum GroupWrite {
    /// All in a few statements, as one: one that fails undoes the whole transaction.
    Together,
    /// Each order under a savepoint of its own, so that one that fails is refused alone.
    EachAlone,
}

/// An order waiting for the next group commit, and where its outcome goes.
#[derive(Debug)]
struct NewOrderWrite {
    order: Order,
    transitions: Vec<Transition>,
    emails: Vec<OutgoingEmail>,
    done: tokio::sync::oneshot::Sender<StoreResult<()>>,
}

/// At most this many orders share a commit.
const ORDER_GROUP: usize = 128;

/// Group commit for new orders, the write patients make most. Every order is still durable
/// before it is acknowledged, but the orders that arrived while the previous commit was being
/// made share one transaction and one flush to disk, instead of queueing one by one for the
/// write lock. One order that fails (its patient erased meanwhile, say) is refused alone and the
/// others still commit (see [`SqlStore::commit_order_group`]).
async fn commit_orders_in_groups(store: SqlStore, mut queue: tokio::sync::mpsc::Receiver<NewOrderWrite>) {
    let mut group = Vec::with_capacity(ORDER_GROUP);
    while queue.recv_many(&mut group, ORDER_GROUP).await > 0 {
        let outcomes = store.commit_order_group(&group).await;
        for (write, outcome) in group.drain(..).zip(outcomes) {
            // The caller may have gone (its request was dropped); the order stands regardless.
            let _ = write.done.send(outcome);
        }
    }
}

impl SqlStore {
    /// Writes a group of new orders in one transaction; one outcome per order, in order.
    ///
    /// First all of them together, in a few statements and without a savepoint: a savepoint
    /// keeps a copy of every page the group changes (SQLite's sub-journal, spilled to a temporary
    /// file past 64 KiB; a subtransaction on PostgreSQL), which only a failing order needs.
    /// Should one fail, the whole transaction is undone and the group written again, each order
    /// under a savepoint of its own, so that one that cannot be stored is refused alone.
    async fn commit_order_group(&self, group: &[NewOrderWrite]) -> Vec<StoreResult<()>> {
        let outcomes = match self.write_order_group(group, GroupWrite::Together).await {
            Ok(Some(outcomes)) => Ok(outcomes),
            Ok(None) => self.write_order_group(group, GroupWrite::EachAlone).await.and_then(|outcomes| {
                outcomes.ok_or_else(|| StoreError::Database("a group of orders was not written".into()))
            }),
            Err(e) => Err(e),
        };
        outcomes.unwrap_or_else(|e| group.iter().map(|_| Err(e.clone())).collect())
    }

    /// One try at [`commit_order_group`](Self::commit_order_group). The outer error loses the
    /// whole group; `None` is a group written [`GroupWrite::Together`] that failed, undone.
    async fn write_order_group(
        &self,
        group: &[NewOrderWrite],
        how: GroupWrite,
    ) -> StoreResult<Option<Vec<StoreResult<()>>>> {
        let mut tx = self.write_tx().await?;
        // Read under the write lock that marking a pharmacy as leaving takes too, so no order
        // reaches a pharmacy once it is marked; and that every order is written under, so a line
        // found free here is still free when the order naming it is written.
        let leaving = leaving_among_on(&mut tx, group.iter().map(|w| w.order.pharmacy_id)).await?;
        let mut on_order = lines_on_open_orders_on(&mut tx, group.iter().map(|w| &w.order)).await?;
        // In the group's order, so that of two orders naming one line the first is written.
        let refusals: Vec<Option<StoreError>> = group
            .iter()
            .map(|w| {
                if leaving.contains(&w.order.pharmacy_id) {
                    return Some(StoreError::PharmacyLeaving);
                }
                let open_lines = || w.order.items.iter().filter(|i| i.state.is_open()).map(|i| i.repeat_item_id);
                let taken: Vec<RepeatItemId> = open_lines().filter(|line| on_order.contains(line)).collect();
                if !taken.is_empty() {
                    return Some(StoreError::LinesOnOpenOrder(taken));
                }
                on_order.extend(open_lines());
                None
            })
            .collect();
        let admitted: Vec<&NewOrderWrite> =
            group.iter().zip(&refusals).filter(|(_, refused)| refused.is_none()).map(|(w, _)| w).collect();
        let mut written = match how {
            GroupWrite::Together if admitted.is_empty() => Vec::new().into_iter(),
            GroupWrite::Together => match insert_order_group_on(&mut tx, &self.crypt, &admitted).await {
                Ok(()) => admitted.iter().map(|_| Ok(())).collect::<Vec<_>>().into_iter(),
                Err(e) => {
                    // Should the undo fail too (SQLite ends the transaction itself on some
                    // errors, a full disk among them), the write's own error says more.
                    tx.rollback().await.map_err(|_| e)?;
                    return Ok(None);
                }
            },
            GroupWrite::EachAlone => {
                let mut outcomes = Vec::with_capacity(admitted.len());
                for write in &admitted {
                    let (order, transitions, emails) = (&write.order, &write.transitions, &write.emails);
                    outcomes.push(
                        self.write_in_savepoint(&mut tx, async |conn, c| {
                            insert_order_on(conn, c, order, transitions, emails).await
                        })
                        .await?,
                    );
                }
                outcomes.into_iter()
            }
        };
        let outcomes: Vec<StoreResult<()>> = refusals
            .into_iter()
            .map(|refused| match refused {
                Some(e) => Err(e),
                // One outcome per admitted order, so this is never missing.
                None => written.next().unwrap_or_else(|| Err(StoreError::Database("an order was not written".into()))),
            })
            .collect();
        // The open-stage counts change once for the group's written orders, not once per order.
        let written = group.iter().zip(&outcomes).filter(|(_, outcome)| outcome.is_ok());
        let counted = written.map(|(write, _)| (write.order.pharmacy_id.to_string(), write.order.stage, 1));
        adjust_open_counts_on(&mut tx, counted).await?;
        self.commit(tx).await?;
        Ok(Some(outcomes))
    }

    /// Runs `write` inside a savepoint of `tx`: kept if it succeeds, undone if it fails. The
    /// outer error is a savepoint that could not be made, kept or undone (the transaction is then
    /// lost); the inner one is what `write` returned.
    async fn write_in_savepoint<F>(&self, tx: &mut WriteTx, write: F) -> StoreResult<StoreResult<()>>
    where
        F: AsyncFnOnce(&mut AnyConnection, &Crypt) -> StoreResult<()>,
    {
        let mut savepoint = sqlx::Acquire::begin(&mut **tx).await.map_err(map_err)?;
        match write(&mut savepoint, &self.crypt).await {
            Ok(()) => savepoint.commit().await.map_err(map_err).map(Ok),
            Err(e) => savepoint.rollback().await.map_err(map_err).map(|()| Err(e)),
        }
    }
}

/// The sealer and the two service data keys, unwrapped once at open.
#[derive(Debug)]
struct Crypt {
    sealer: Sealer,
    accounts: DataKey,
    outbox: DataKey,
}

/// The WAL is folded into the database file by the commit that takes it past this many pages
/// (40 MB), should [`checkpoint_beside_the_writers`] not have done it first. SQLite's default, 1,000 pages, meant a checkpoint about every 75 ms under steady
/// orders, each flushing the database file inside a commit that waiting orders queue behind; ten
/// times fewer, each writing a page changed many times over once, gave more orders a second and a
/// lower paced p99, and the queue page read after them no slower (BENCHMARKS.md, 2026-12-07,
/// twelfth session).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// How often a task of its own folds the WAL into the database file (see
/// [`checkpoint_beside_the_writers`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Folds the WAL into the database file every [`CHECKPOINT_EVERY`], beside the writers: a
/// passive checkpoint takes no write lock and waits for nobody. Left to the commits, the one that
/// takes the WAL past [`WAL_AUTOCHECKPOINT_PAGES`] copies it all into the database file and flushes
/// that before it returns, and the group commits queued behind it wait as long (50 to 60 ms, seen
/// as gaps between commits in a trace of a paced order load). This task leaves that commit less to
/// copy, but under steady writes it does not replace it: the log starts again from its beginning
/// only when a write begins with all of it folded in, and a commit always comes between this
/// task's checkpoint and the next write. So the commit that passes the bound still folds in the
/// rest and flushes the database file (15–60 ms) while the next group waits: SQLite's paced order
/// tail (BENCHMARKS.md, fifteenth session). It ends with the store (`store_gone`) or its pool.
async fn checkpoint_beside_the_writers(pool: AnyPool, mut store_gone: tokio::sync::oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut store_gone => return,
            _ = tick.tick() => {}
        }
        if pool.is_closed() {
            return;
        }
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            Ok(_) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "the WAL could not be checkpointed beside the writers; commits fold it in");
                }
                failing = true;
            }
        }
    }
}

/// A number PostgreSQL's advisory lock knows the store's write lock by ("RxWr").
const PG_WRITE_LOCK: i64 = 0x5278_5772;

impl SqlStore {
    /// Opens (creating if missing) the SQLite database file at `path`, in WAL mode with
    /// `synchronous=FULL` so that an acknowledged write survives a crash or power cut.
    pub async fn open(path: &Path, keys: Arc<dyn KeySource>) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Unavailable(format!(
                    "cannot open the database {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
        }
        // `Url::from_file_path` would need an absolute path; spaces and the like are escaped here.
        let file: String = path
            .to_string_lossy()
            .chars()
            .map(|c| match c {
                '%' | '?' | '#' | ' ' => format!("%{:02X}", c as u32),
                c => c.to_string(),
            })
            .collect();
        let url = format!("sqlite://{file}?mode=rwc");
        Self::connect(&url, Engine::Sqlite, keys).await.map_err(|e| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("cannot open the database {}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// Creates the PostgreSQL database the URL names, unless it exists (the demo on PostgreSQL).
    pub async fn create_postgres_database(url: &str) -> StoreResult<()> {
        use sqlx::migrate::MigrateDatabase;
        if !sqlx::Postgres::database_exists(url).await.map_err(map_err)? {
            sqlx::Postgres::create_database(url).await.map_err(map_err)?;
        }
        Ok(())
    }

    /// Connects to a PostgreSQL database (`postgres://...`) and brings its schema up to date.
    pub async fn connect_postgres(url: &str, keys: Arc<dyn KeySource>) -> StoreResult<Self> {
        Self::connect(url, Engine::Postgres, keys).await
    }

    async fn connect(url: &str, engine: Engine, keys: Arc<dyn KeySource>) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        // One connection first, so an unreachable server or a file that is not a database is
        // reported at once, with its reason, instead of as a pool that never fills.
        let mut probe = <AnyConnection as sqlx::Connection>::connect(url).await.map_err(map_err)?;
        if engine == Engine::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&mut probe).await.map_err(map_err)?;
        }
        let _ = sqlx::Connection::close(probe).await;
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection as it goes back to the pool, so one handed out again
            // soon after is known to work; its `test_before_acquire` would ping it once more, a
            // round trip per query. A PostgreSQL connection idle for longer may have been cut by
            // a restart or failover meanwhile, so it is pinged first (on an error the pool drops
            // it and takes another). A SQLite connection is a file handle in this process, which
            // nothing cuts.
            .test_before_acquire(false)
            // A connection still in a transaction is never handed out. SQLite rolls a transaction
            // back by itself on some errors (a full disk among them); sqlx's own ROLLBACK then
            // fails and its transaction depth stays at one, so every later `BEGIN` on that
            // connection would be refused. Such a connection is closed instead (which ends
            // whatever is left of its transaction) and the pool opens a fresh one.
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if sqlx::Connection::is_in_transaction(&*conn) {
                        tracing::warn!("a database connection left in a failed transaction was closed");
                        return Ok(false);
                    }
                    if engine == Engine::Postgres && meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(&mut *conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // Foreign keys and the busy timeout are the driver's defaults; these are not.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
                        sqlx::query(&format!("PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}"))
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        sqlx::query(&format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis()))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(map_err)?;
        let migrator = match engine {
            Engine::Sqlite => &SQLITE_MIGRATOR,
            Engine::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&pool).await.map_err(map_migrate_err)?;
        if engine == Engine::Sqlite {
            crate::backup::journal::install_triggers(&pool).await?;
        }
        let sealer = Sealer::new(keys);
        refuse_unsealed_rows(&pool).await?;
        check_master_key(&pool, &sealer).await?;
        let accounts = service_key(&pool, &sealer, ACCOUNTS_KEY).await?;
        let outbox = service_key(&pool, &sealer, OUTBOX_KEY).await?;
        let writer = Self {
            pool,
            engine,
            crypt: Arc::new(Crypt { sealer, accounts, outbox }),
            new_orders: None,
            write_turn: Arc::new(tokio::sync::Mutex::new(())),
        };
        let (new_orders, queue) = tokio::sync::mpsc::channel(ORDER_GROUP * 8);
        // It ends when the last copy of the store (and so of the sender) is dropped, and the
        // checkpoints with it.
        let (group_commits_ended, store_gone) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn({
            let writer = writer.clone();
            async move {
                commit_orders_in_groups(writer, queue).await;
                drop(group_commits_ended);
            }
        });
        if engine == Engine::Sqlite {
            tokio::spawn(checkpoint_beside_the_writers(writer.pool.clone(), store_gone));
        }
        Ok(Self { new_orders: Some(new_orders), ..writer })
    }

    pub(crate) fn sealer(&self) -> &Sealer {
        &self.crypt.sealer
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    async fn conn(&self) -> StoreResult<sqlx::pool::PoolConnection<Any>> {
        self.pool.acquire().await.map_err(map_err)
    }

    /// This process's turn to write on SQLite (see [`SqlStore::write_turn`]), waited for no
    /// longer than SQLite's own busy timeout; `None` on PostgreSQL. Only the three doors every
    /// write goes through take it: [`write_tx`](Self::write_tx),
    /// [`bookkeeping_tx`](Self::bookkeeping_tx) and [`write_conn`](Self::write_conn).
    async fn turn_to_write(&self) -> StoreResult<Option<tokio::sync::OwnedMutexGuard<()>>> {
        if self.engine != Engine::Sqlite {
            return Ok(None);
        }
        match tokio::time::timeout(BUSY_TIMEOUT, self.write_turn.clone().lock_owned()).await {
            Ok(turn) => Ok(Some(turn)),
            Err(_) => Err(StoreError::Unavailable("the database is busy with other writes; try again".into())),
        }
    }

    /// A pooled connection in this process's turn to write (see [`SqlStore::write_turn`]), for a
    /// statement that writes outside a transaction. Without the turn, such a write found SQLite's
    /// lock held by the writers queued for it and polled from the busy handler, up to every
    /// 100 ms; under steady orders the lock is free only for moments between group commits, so
    /// it waited for seconds (holding a pooled connection), and when it did get in, the next group
    /// commit slept in the busy handler in turn.
    async fn write_conn(&self) -> StoreResult<WriteConn> {
        let turn = self.turn_to_write().await?;
        Ok(InTurn { conn: self.conn().await?, _turn: turn })
    }

    /// One statement that writes, outside a transaction, on a [`write_conn`](Self::write_conn).
    pub(crate) async fn write_alone(&self, query: AnyQuery<'_>) -> StoreResult<sqlx::any::AnyQueryResult> {
        query.execute(&mut *self.write_conn().await?).await.map_err(map_err)
    }

    /// A write transaction that holds the store's write lock from its start: SQLite's own
    /// (`BEGIN IMMEDIATE`, after this process's turn), or on PostgreSQL an advisory lock held to
    /// the end of the transaction, so that writers from several servers queue instead of
    /// interleaving. Its changes are journaled for the continuous backup; it ends with
    /// [`commit`](Self::commit).
    async fn write_tx(&self) -> StoreResult<WriteTx> {
        match self.engine {
            Engine::Sqlite => {
                let mut tx = self.bookkeeping_tx().await?;
                sqlx::query(crate::backup::journal::BEGIN_TXN).execute(&mut *tx).await.map_err(map_err)?;
                Ok(tx)
            }
            Engine::Postgres => {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Ok(InTurn { conn: tx, _turn: None })
            }
        }
    }

    /// A SQLite write transaction (`BEGIN IMMEDIATE`, in this process's turn) for the continuous
    /// backup's own bookkeeping, which is not journaled: it ends with
    /// [`WriteTx::commit_bookkeeping`].
    pub(crate) async fn bookkeeping_tx(&self) -> StoreResult<WriteTx> {
        let turn = self.turn_to_write().await?;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
        Ok(InTurn { conn: tx, _turn: turn })
    }

    /// Commits a [`write_tx`](Self::write_tx); on SQLite first marks the commit, with its time,
    /// in the backup journal (when journaling is on).
    async fn commit(&self, mut tx: WriteTx) -> StoreResult<()> {
        if self.engine == Engine::Sqlite {
            sqlx::query(crate::backup::journal::MARK_COMMIT)
                .bind(us(Timestamp::now()))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.conn.commit().await.map_err(map_err)
    }
}

// ---------------------------------------------------------------------------------------------
// Data keys
// ---------------------------------------------------------------------------------------------

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// Binds a patient's sealed columns and blind indexes, in the order of `insert_patient` and
/// `update_patient`: given, family, date of birth, NHS number, email, phone, address, then the
/// date-of-birth, NHS-number and email indexes (names are indexed word by word apart, in
/// `patient_name_words`).
trait BindPatient<'q> {
    fn bind_patient(self, sealer: &Sealer, key: &DataKey, p: &Patient) -> Self;
}

impl<'q> BindPatient<'q> for AnyQuery<'q> {
    fn bind_patient(self, sealer: &Sealer, key: &DataKey, p: &Patient) -> Self {
        let id = p.id.to_string();
        let sealed = |column: &str, plain: &str| seal(key, "patients", column, &id, plain);
        let dob = p.date_of_birth.date().to_string();
        self.bind(sealed("given_name", p.given_name.as_str()))
            .bind(sealed("family_name", p.family_name.as_str()))
            .bind(sealed("date_of_birth", &dob))
            .bind(sealed("nhs_number", p.nhs_number.as_str()))
            .bind(p.email.as_ref().map(|e| sealed("email", e.as_str())))
            .bind(p.phone.as_deref().map(|v| sealed("phone", v)))
            .bind(p.address.as_deref().map(|v| sealed("address", v)))
            .bind(sealer.index(Blind::DateOfBirth, &dob))
            .bind(sealer.index(Blind::NhsNumber, p.nhs_number.as_str()))
            .bind(p.email.as_ref().map(|e| sealer.index(Blind::Email, e.as_str())))
    }
}

/// The joined `data_keys` columns that let a row mapper open the row's sealed columns.
const KEY_COLS: &str = "k.key_owner, k.key_master, k.key_wrapped";

/// A database written before encryption at rest holds patient rows without blind indexes; this
/// build does not read plaintext columns, so it says so instead of failing on every read.
async fn refuse_unsealed_rows(pool: &AnyPool) -> StoreResult<()> {
    let unsealed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients WHERE nhs_index = ''")
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    if unsealed > 0 {
        return Err(StoreError::Unavailable(format!(
            "this database holds {unsealed} patient records written before encryption at rest, which this \
             version cannot read; start from a new database (a demo folder can simply be deleted)"
        )));
    }
    Ok(())
}

const MASTER_KEY_META: &str = "master_key";

/// A database records the id of the master key it was last told is current. A key file that has
/// never held it is the wrong key file (or one from before a rotation that has not reached this
/// server): said at start rather than on the first read.
async fn check_master_key(pool: &AnyPool, sealer: &Sealer) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    let recorded: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(MASTER_KEY_META)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    match recorded {
        None => {
            sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(MASTER_KEY_META)
                .bind(sealer.current_master_id())
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
            Ok(())
        }
        Some(id) => knows_master_after_reload(sealer, &id),
    }
}

/// Whether the key file holds the master key the database records, reading the file again once
/// if not (another process rotated it).
fn knows_master_after_reload(sealer: &Sealer, recorded: &str) -> StoreResult<()> {
    if sealer.knows_master(recorded) {
        return Ok(());
    }
    sealer.reload()?;
    if !sealer.knows_master(recorded) {
        return Err(StoreError::Unavailable(format!(
            "the key file does not hold master key {recorded}, which this database's data keys are wrapped with; \
             use the key file this database was made with (after a rotation, the rotated one)"
        )));
    }
    Ok(())
}

/// Before wrapping a new data key: the master key recorded as current, under the write lock.
async fn ensure_current_master_on(conn: &mut AnyConnection, sealer: &Sealer) -> StoreResult<()> {
    let recorded: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(MASTER_KEY_META)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    match recorded {
        Some(id) if id != sealer.current_master_id() => {
            sealer.reload()?;
            if sealer.current_master_id() != id {
                return Err(StoreError::Unavailable(format!(
                    "master key {id} is now current, but this server's key file has not been updated to it; \
                     copy the rotated key file here"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Loads (making it on first use) a data key the service itself owns.
async fn service_key(pool: &AnyPool, sealer: &Sealer, owner: &str) -> StoreResult<DataKey> {
    // Read first: opening a store on a database in use (`repeatrx backup status` beside a
    // running server) then needs no write, so it never waits on, or is refused by, the write lock.
    let mut conn = pool.acquire().await.map_err(map_err)?;
    if let Some(key) = stored_data_key_on(&mut conn, sealer, owner).await? {
        return Ok(key);
    }
    drop(conn);
    let (_, wrapped) = sealer.new_data_key(owner);
    // Two servers opening a new database at once both try; the first insert wins, both read it.
    sqlx::query(
        "INSERT INTO data_keys (key_owner, key_master, key_wrapped, key_created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key_owner) DO NOTHING",
    )
    .bind(owner)
    .bind(&wrapped.master_id)
    .bind(&wrapped.sealed)
    .bind(us(Timestamp::now()))
    .execute(pool)
    .await
    .map_err(map_err)?;
    let mut conn = pool.acquire().await.map_err(map_err)?;
    data_key_on(&mut conn, sealer, owner).await
}

/// Replaces the blind indexes of the words of a patient's names.
async fn index_name_words_on(conn: &mut AnyConnection, sealer: &Sealer, patient: &Patient) -> StoreResult<()> {
    let id = patient.id.to_string();
    sqlx::query("DELETE FROM patient_name_words WHERE patient_id = $1")
        .bind(&id)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut words = name_words(patient.given_name.as_str());
    words.extend(name_words(patient.family_name.as_str()));
    words.sort();
    words.dedup();
    for word in words {
        sqlx::query("INSERT INTO patient_name_words (patient_id, word_index) VALUES ($1, $2)")
            .bind(&id)
            .bind(sealer.index(Blind::Name, &word))
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_data_key_on(conn: &mut AnyConnection, owner: &str, wrapped: &WrappedKey) -> StoreResult<()> {
    sqlx::query("INSERT INTO data_keys (key_owner, key_master, key_wrapped, key_created_at) VALUES ($1, $2, $3, $4)")
        .bind(owner)
        .bind(&wrapped.master_id)
        .bind(&wrapped.sealed)
        .bind(us(Timestamp::now()))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// The data key of `owner`, unwrapped; a missing key means the owner's data was erased.
async fn data_key_on(conn: &mut AnyConnection, sealer: &Sealer, owner: &str) -> StoreResult<DataKey> {
    stored_data_key_on(conn, sealer, owner)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("there is no data key for {owner}")))
}

/// The owner's data key, unwrapped, if one is stored.
async fn stored_data_key_on(conn: &mut AnyConnection, sealer: &Sealer, owner: &str) -> StoreResult<Option<DataKey>> {
    let Some(row) = sqlx::query("SELECT key_master, key_wrapped FROM data_keys WHERE key_owner = $1")
        .bind(owner)
        .fetch_optional(conn)
        .await
        .map_err(map_err)?
    else {
        return Ok(None);
    };
    let wrapped = WrappedKey { master_id: col(&row, "key_master")?, sealed: col(&row, "key_wrapped")? };
    sealer.unwrap(owner, &wrapped).map(Some)
}

/// The data key joined onto a row (see [`KEY_COLS`]), if the row has one.
fn opt_row_key(sealer: &Sealer, row: &AnyRow) -> StoreResult<Option<DataKey>> {
    let owner: Option<String> = col(row, "key_owner")?;
    let Some(owner) = owner else { return Ok(None) };
    let wrapped = WrappedKey { master_id: col(row, "key_master")?, sealed: col(row, "key_wrapped")? };
    sealer.unwrap(&owner, &wrapped).map(Some)
}

fn row_key(sealer: &Sealer, row: &AnyRow, what: &str) -> StoreResult<DataKey> {
    opt_row_key(sealer, row)?.ok_or_else(|| StoreError::Corrupt(format!("{what} has no data key")))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// The one place where database errors become [`StoreError`]s.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(conflict_sentence(db.message()));
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // PostgreSQL answers with SQLSTATE codes, whose first two characters are the class.
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                return match code.get(..2).unwrap_or("") {
                    // Connection exceptions, insufficient resources (disk full), operator intervention.
                    "08" | "53" | "57" => StoreError::Unavailable(db.message().to_string()),
                    "XX" => StoreError::Corrupt(format!("the database reports damage: {}", db.message())),
                    _ => StoreError::Database(db.message().to_string()),
                };
            }
            let primary = code.parse::<i32>().ok().map(|c| c & 0xff);
            match primary {
                Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN) => {
                    StoreError::Unavailable(db.message().to_string())
                }
                Some(SQLITE_CORRUPT | SQLITE_NOTADB) => {
                    StoreError::Corrupt(format!("the database file is damaged: {}", db.message()))
                }
                _ => StoreError::Database(db.message().to_string()),
            }
        }
        sqlx::Error::PoolTimedOut => StoreError::Unavailable("no database connection became free in time".into()),
        sqlx::Error::PoolClosed => StoreError::Unavailable("the database connection pool is closed".into()),
        sqlx::Error::WorkerCrashed => StoreError::Unavailable("the database worker stopped".into()),
        sqlx::Error::Io(io) => StoreError::Unavailable(format!("input/output error: {io}")),
        // A connection cut under TLS shows as a TLS error: the database is just as unreachable.
        sqlx::Error::Tls(e) => StoreError::Unavailable(format!("the encrypted connection to the database failed: {e}")),
        // Garbage where the server's answer should be: a connection cut half-way (a handshake that
        // read nothing shows so too). Not the caller's fault and worth a retry: unavailable.
        sqlx::Error::Protocol(m) => StoreError::Unavailable(format!("the database connection broke: {m}")),
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

fn map_migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => match map_err(inner) {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Database(format!("the database schema could not be updated: {other}")),
        },
        other => StoreError::Database(format!("the database schema could not be updated: {other}")),
    }
}

/// A sentence for a unique-constraint failure, without echoing the offending value.
fn conflict_sentence(message: &str) -> String {
    let m = message.to_lowercase();
    if m.contains("users.email") || m.contains("users_email") {
        "that email address already has an account".into()
    } else if m.contains("users.patient_id") || m.contains("users_patient_id") {
        "that patient already has an account".into()
    } else {
        "a record with the same identifier already exists".into()
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Value conversions
// ---------------------------------------------------------------------------------------------

fn us(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

fn opt_us(ts: Option<Timestamp>) -> Option<i64> {
    ts.map(us)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn col<'r, T>(row: &'r AnyRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(name).map_err(map_err)
}

fn ts_col(row: &AnyRow, name: &str) -> StoreResult<Timestamp> {
    let v: i64 = col(row, name)?;
    Timestamp::from_microsecond(v).map_err(|e| corrupt(name, e))
}

fn opt_ts_col(row: &AnyRow, name: &str) -> StoreResult<Option<Timestamp>> {
    let v: Option<i64> = col(row, name)?;
    v.map(|v| Timestamp::from_microsecond(v).map_err(|e| corrupt(name, e))).transpose()
}

fn parse_date(name: &str, s: &str) -> StoreResult<Date> {
    s.parse::<Date>().map_err(|e| corrupt(name, e))
}

fn date_col(row: &AnyRow, name: &str) -> StoreResult<Date> {
    let s: String = col(row, name)?;
    parse_date(name, &s)
}

fn opt_date_col(row: &AnyRow, name: &str) -> StoreResult<Option<Date>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| parse_date(name, &s)).transpose()
}

fn bool_col(row: &AnyRow, name: &str) -> StoreResult<bool> {
    match col::<i64>(row, name)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(corrupt(name, format!("{v} is not 0 or 1"))),
    }
}

fn u32_col(row: &AnyRow, name: &str) -> StoreResult<u32> {
    let v: i64 = col(row, name)?;
    u32::try_from(v).map_err(|e| corrupt(name, e))
}

fn id_col<T: FromStr<Err = DomainError>>(row: &AnyRow, name: &str) -> StoreResult<T> {
    let s: String = col(row, name)?;
    s.parse().map_err(|e| corrupt(name, e))
}

fn opt_id_col<T: FromStr<Err = DomainError>>(row: &AnyRow, name: &str) -> StoreResult<Option<T>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| s.parse().map_err(|e| corrupt(name, e))).transpose()
}

fn opt_email_col(row: &AnyRow, name: &str) -> StoreResult<Option<Email>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| Email::parse(&s).map_err(|e| corrupt(name, e))).transpose()
}

fn role_col(row: &AnyRow, name: &str) -> StoreResult<Role> {
    let s: String = col(row, name)?;
    Role::parse(&s).map_err(|e| corrupt(name, e))
}

fn session_kind(s: &str) -> StoreResult<SessionKind> {
    [SessionKind::Browser, SessionKind::Api]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| corrupt("kind", format!("'{s}' is not a session kind")))
}

fn email_status(s: &str) -> StoreResult<EmailStatus> {
    [EmailStatus::Pending, EmailStatus::Sent, EmailStatus::Failed]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| corrupt("status", format!("'{s}' is not an email status")))
}

/// A `LIKE` pattern matching values that start with `prefix`, with the user's `%`, `_` and `\`
/// taken literally (used with `ESCAPE '\'`).
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The open order stages as a condition written out rather than bound: the partial indexes
/// `orders_pharmacy_open` and `orders_practice_open` hold only open orders, and a database uses
/// such an index only for a query that repeats its condition word for word. Without them a queue
/// page walked past every finished order of the pharmacy, of which there are ever more.
const OPEN_STAGES: &str = "stage IN ('submitted', 'in_review', 'with_prescriber', 'preparing', 'ready')";
/// The finished order stages, the only ones retention may delete.
const FINISHED_STAGES: &str = "stage IN ('completed', 'closed', 'cancelled')";

/// Active repeat lines with a due date whose reminder is not yet recorded: word for word the
/// condition of the partial index `repeat_items_awaiting_reminder`, which the database uses only
/// if the query states it so.
const AWAITING_REMINDER: &str =
    "active = 1 AND next_due IS NOT NULL AND (reminded_for IS NULL OR reminded_for <> next_due)";

/// The reminder job's scan: lines awaiting a reminder, due on or before $1, the first $2 of them.
fn reminder_scan_sql() -> String {
    format!(
        "SELECT {REPEAT_COLS} FROM {REPEATS_KEYED} \
         WHERE {AWAITING_REMINDER} AND next_due <= $1 ORDER BY next_due, created_at, id LIMIT $2"
    )
}

/// `$from, $from+1, ...` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// The rows of `select(list)` for `ids`, where `list` is the placeholders to put in its
/// `IN (...)`: [`ID_CHUNK`] ids to a statement, well under both engines' limits on bound values.
/// Each statement binds `leading` first, as `$1, $2, ...`, and its ids after them; no ids, no
/// statement.
async fn fetch_in(
    conn: &mut AnyConnection,
    leading: &[String],
    ids: &[String],
    select: impl Fn(&str) -> String,
) -> StoreResult<Vec<AnyRow>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let sql = select(&placeholders(leading.len() + 1, chunk.len()));
        rows.extend(fetch_bound(conn, &sql, leading.iter().chain(chunk)).await?);
    }
    Ok(rows)
}

/// The rows of `sql` with `values` bound in turn as `$1, $2, ...`.
async fn fetch_bound(
    conn: &mut AnyConnection,
    sql: &str,
    values: impl IntoIterator<Item = &String>,
) -> StoreResult<Vec<AnyRow>> {
    let mut query = sqlx::query(sql);
    for value in values {
        query = query.bind(value.as_str());
    }
    query.fetch_all(conn).await.map_err(map_err)
}

// ---------------------------------------------------------------------------------------------
// Row mapping
// ---------------------------------------------------------------------------------------------

const PHARMACY_COLS: &str = "id, name, ods_code, address, email, created_at";
const PRACTICE_COLS: &str = "id, name, ods_code, address, email, on_repeatrx, created_at";
const USER_COLS: &str = "users.id, users.email, users.display_name, users.role, users.pharmacy_id, \
     users.practice_id, users.patient_id, users.password_hash, users.active, users.created_at, \
     k.key_owner, k.key_master, k.key_wrapped";
/// Users with their patient's data key (staff have none).
const USERS_KEYED: &str = "users LEFT JOIN data_keys k ON k.key_owner = users.patient_id";
const SESSION_COLS: &str =
    "token_hash, user_id, kind, csrf_token, created_at, last_seen_at, expires_at, user_agent, stage, address";
/// A session's columns named `s_*`, beside its user's [`USER_COLS`] and its patient's
/// organisations, for [`Store::session_account`].
const SESSION_ACCOUNT_COLS: &str = "s.token_hash AS s_token_hash, s.user_id AS s_user_id, s.kind AS s_kind, \
     s.csrf_token AS s_csrf_token, s.created_at AS s_created_at, s.last_seen_at AS s_last_seen_at, \
     s.expires_at AS s_expires_at, s.user_agent AS s_user_agent, s.stage AS s_stage, s.address AS s_address, \
     p.pharmacy_id AS patient_pharmacy_id, p.practice_id AS patient_practice_id";
const SESSION_ACCOUNT_FROM: &str = "sessions s JOIN users ON users.id = s.user_id \
     LEFT JOIN data_keys k ON k.key_owner = users.patient_id LEFT JOIN patients p ON p.id = users.patient_id";
const SECURITY_COLS: &str = "users.id AS user_id, failed_sign_ins, lock_state, locked_at, dob_failures, totp_secret, \
     totp_pending_secret, totp_enrolled_at, totp_last_step, \
     (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = users.id AND r.used_at IS NULL) AS recovery_codes_left";
const TOKEN_COLS: &str = "token_hash, user_id, purpose, payload, grouping, created_at, expires_at, used_at";
const AUDIT_COLS: &str = "seq, at, actor_user_id, actor_role, organisation, action, patient_id, address, purpose, \
     detail, prev_hash, hash";
const EVENT_COLS: &str = "id, at, user_id, actor_id, kind, address, detail";
const PATIENT_COLS: &str = "id, pharmacy_id, practice_id, given_name, family_name, date_of_birth, nhs_number, \
     email, phone, address, k.key_owner, k.key_master, k.key_wrapped";
const PATIENTS_KEYED: &str = "patients LEFT JOIN data_keys k ON k.key_owner = patients.id";
const REPEAT_COLS: &str =
    "id, patient_id, medicine_code, drug_name, strength, form, quantity, directions, cycle_days, \
     issues_authorised, review_date, schedule, issues_remaining, next_due, active, k.key_owner, k.key_master, \
     k.key_wrapped";
const REPEATS_KEYED: &str = "repeat_items LEFT JOIN data_keys k ON k.key_owner = repeat_items.patient_id";
/// A patient (their ids named as in [`PATIENT_LISTED_IDS`]) and one of their repeat lines, both
/// sealed under the one data key; the line's columns are [`REPEAT_COLS`]' names, its
/// `patient_id` the patient's id. With [`PATIENT_LINES_FROM`] a patient without lines (or
/// without the chosen ones) is one row whose line columns are all null.
const PATIENT_LINE_COLS: &str = "patients.id AS patient_id, patients.pharmacy_id AS patient_pharmacy_id, \
     patients.practice_id AS patient_practice_id, given_name, family_name, date_of_birth, nhs_number, email, phone, \
     address, k.key_owner, k.key_master, k.key_wrapped, repeat_items.id, medicine_code, drug_name, strength, form, \
     quantity, directions, cycle_days, issues_authorised, review_date, schedule, issues_remaining, next_due, active";
/// A condition on which lines follows it, inside the join, so that the patient's row stays.
const PATIENT_LINES_FROM: &str = "patients LEFT JOIN data_keys k ON k.key_owner = patients.id \
     LEFT JOIN repeat_items ON repeat_items.patient_id = patients.id";
/// The order a repeat list is shown in: the order its lines were added.
const REPEAT_LIST_ORDER: &str = "ORDER BY repeat_items.created_seq, repeat_items.created_at, repeat_items.id";
const ORDER_COLS: &str = "id, patient_id, pharmacy_id, practice_id, fulfilment, note, placed_by, on_behalf, accepted, \
     stage, created_at, stage_entered_at, version";
const ORDERS_KEYED: &str = "orders LEFT JOIN data_keys k ON k.key_owner = orders.patient_id";
const ITEM_COLS: &str = "id, order_id, position, repeat_item_id, description, state, decision";
/// An order and its patient in one row (a queue's row): the patient's ids are renamed where the
/// order has columns of the same names (see [`PATIENT_LISTED_IDS`]); its id is the order's
/// `patient_id`. Queries on [`LISTED_FROM`] name `orders.` where both tables have the column.
const LISTED_COLS: &str = "orders.id, orders.patient_id, orders.pharmacy_id, orders.practice_id, fulfilment, note, \
     placed_by, on_behalf, accepted, stage, orders.created_at, stage_entered_at, version, \
     patients.pharmacy_id AS patient_pharmacy_id, patients.practice_id AS patient_practice_id, given_name, \
     family_name, date_of_birth, nhs_number, email, phone, address, k.key_owner, k.key_master, k.key_wrapped";
const LISTED_FROM: &str = "orders JOIN patients ON patients.id = orders.patient_id \
     LEFT JOIN data_keys k ON k.key_owner = orders.patient_id";
const TRANSITION_COLS: &str = "order_id, item_id, from_state, to_state, actor_user_id, actor_role, at, reason";
const TRANSITIONS_KEYED: &str = "order_transitions t JOIN orders o ON o.id = t.order_id \
     LEFT JOIN data_keys k ON k.key_owner = o.patient_id";
const EMAIL_COLS: &str = "id, to_address, subject, body, status, attempts, last_error, created_at, not_before, sent_at";

const DEPARTURE_COLS: &str = "pharmacy_id, marked_at, marked_by, delete_after, deleted_at";

fn departure_from(r: &AnyRow) -> StoreResult<PharmacyDeparture> {
    Ok(PharmacyDeparture {
        pharmacy_id: id_col(r, "pharmacy_id")?,
        marked_at: ts_col(r, "marked_at")?,
        marked_by: id_col(r, "marked_by")?,
        delete_after: ts_col(r, "delete_after")?,
        deleted_at: opt_ts_col(r, "deleted_at")?,
    })
}

fn pharmacy_from(row: &AnyRow) -> StoreResult<Pharmacy> {
    Ok(Pharmacy {
        id: id_col(row, "id")?,
        name: col(row, "name")?,
        ods_code: col(row, "ods_code")?,
        address: col(row, "address")?,
        email: opt_email_col(row, "email")?,
        created_at: ts_col(row, "created_at")?,
    })
}

fn practice_from(row: &AnyRow) -> StoreResult<Practice> {
    Ok(Practice {
        id: id_col(row, "id")?,
        name: col(row, "name")?,
        ods_code: col(row, "ods_code")?,
        address: col(row, "address")?,
        email: opt_email_col(row, "email")?,
        on_repeatrx: bool_col(row, "on_repeatrx")?,
        created_at: ts_col(row, "created_at")?,
    })
}

/// A patient's account keeps its email and name sealed under the patient's key; staff accounts
/// (not patient data) keep theirs in the clear, so operators can list them.
fn user_from(c: &Crypt, row: &AnyRow) -> StoreResult<UserAccount> {
    let id: String = col(row, "id")?;
    let (email, display_name) = match opt_row_key(&c.sealer, row)? {
        Some(key) => (
            open(&key, "users", "email", &id, &col::<String>(row, "email")?)?,
            open(&key, "users", "display_name", &id, &col::<String>(row, "display_name")?)?,
        ),
        None => (col(row, "email")?, col(row, "display_name")?),
    };
    Ok(UserAccount {
        id: id.parse().map_err(|e| corrupt("id", e))?,
        email: Email::parse(&email).map_err(|e| corrupt("email", e))?,
        display_name,
        role: role_col(row, "role")?,
        pharmacy_id: opt_id_col(row, "pharmacy_id")?,
        practice_id: opt_id_col(row, "practice_id")?,
        patient_id: opt_id_col(row, "patient_id")?,
        password_hash: col(row, "password_hash")?,
        active: bool_col(row, "active")?,
        created_at: ts_col(row, "created_at")?,
    })
}

fn session_from(row: &AnyRow) -> StoreResult<SessionRecord> {
    session_from_named(row, "")
}

/// A session from columns whose names start with `prefix`.
fn session_from_named(row: &AnyRow, prefix: &str) -> StoreResult<SessionRecord> {
    let name = |column: &str| format!("{prefix}{column}");
    let kind: String = col(row, &name("kind"))?;
    Ok(SessionRecord {
        token_hash: col(row, &name("token_hash"))?,
        user_id: id_col(row, &name("user_id"))?,
        kind: session_kind(&kind)?,
        csrf_token: col(row, &name("csrf_token"))?,
        created_at: ts_col(row, &name("created_at"))?,
        last_seen_at: ts_col(row, &name("last_seen_at"))?,
        expires_at: ts_col(row, &name("expires_at"))?,
        user_agent: col(row, &name("user_agent"))?,
        stage: SessionStage::parse(&col::<String>(row, &name("stage"))?).map_err(|e| corrupt("stage", e))?,
        address: col(row, &name("address"))?,
    })
}

fn session_account_from(c: &Crypt, row: &AnyRow) -> StoreResult<SessionAccount> {
    let pharmacy = opt_id_col(row, "patient_pharmacy_id")?;
    let practice = opt_id_col(row, "patient_practice_id")?;
    Ok(SessionAccount {
        session: session_from_named(row, "s_")?,
        user: user_from(c, row)?,
        patient_orgs: pharmacy.zip(practice),
    })
}

fn security_from(c: &Crypt, row: &AnyRow) -> StoreResult<AccountSecurity> {
    let user: String = col(row, "user_id")?;
    let secret = |column: &str| -> StoreResult<Option<String>> {
        open_opt(&c.accounts, "users", column, &user, col::<Option<String>>(row, column)?.as_deref())
    };
    Ok(AccountSecurity {
        user_id: user.parse().map_err(|e| corrupt("user_id", e))?,
        failed_sign_ins: u32_col(row, "failed_sign_ins")?,
        lock_state: LockState::parse(&col::<String>(row, "lock_state")?).map_err(|e| corrupt("lock_state", e))?,
        locked_at: opt_ts_col(row, "locked_at")?,
        dob_failures: u32_col(row, "dob_failures")?,
        totp_secret: secret("totp_secret")?,
        totp_pending_secret: secret("totp_pending_secret")?,
        totp_enrolled_at: opt_ts_col(row, "totp_enrolled_at")?,
        totp_last_step: col(row, "totp_last_step")?,
        recovery_codes_left: u32_col(row, "recovery_codes_left")?,
    })
}

fn token_from(c: &Crypt, row: &AnyRow) -> StoreResult<AccountToken> {
    let purpose: String = col(row, "purpose")?;
    let token_hash: String = col(row, "token_hash")?;
    let payload = open_opt(
        &c.accounts,
        "account_tokens",
        "payload",
        &token_hash,
        col::<Option<String>>(row, "payload")?.as_deref(),
    )?;
    Ok(AccountToken {
        token_hash,
        user_id: id_col(row, "user_id")?,
        purpose: TokenPurpose::parse(&purpose)
            .ok_or_else(|| corrupt("purpose", format!("'{purpose}' is not a link purpose")))?,
        payload,
        grouping: col(row, "grouping")?,
        created_at: ts_col(row, "created_at")?,
        expires_at: ts_col(row, "expires_at")?,
        used_at: opt_ts_col(row, "used_at")?,
    })
}

const GRANT_COLS: &str =
    "id, custodian_id, scope_kind, patient_id, pharmacy_id, reason, created_at, expires_at, ended_at";

fn grant_from(row: &AnyRow) -> StoreResult<Grant> {
    let kind: String = col(row, "scope_kind")?;
    let scope = match kind.as_str() {
        "patient" => GrantScope::Patient(
            opt_id_col(row, "patient_id")?.ok_or_else(|| corrupt("patient_id", "a patient grant names no patient"))?,
        ),
        "pharmacy" => GrantScope::Pharmacy(
            opt_id_col(row, "pharmacy_id")?
                .ok_or_else(|| corrupt("pharmacy_id", "a pharmacy grant names no pharmacy"))?,
        ),
        other => return Err(corrupt("scope_kind", format!("'{other}' is not a grant scope"))),
    };
    Ok(Grant {
        id: id_col(row, "id")?,
        custodian: id_col(row, "custodian_id")?,
        scope,
        reason: col(row, "reason")?,
        created_at: ts_col(row, "created_at")?,
        expires_at: ts_col(row, "expires_at")?,
        ended_at: opt_ts_col(row, "ended_at")?,
    })
}

fn audit_from(row: &AnyRow) -> StoreResult<AuditEntry> {
    let role: Option<String> = col(row, "actor_role")?;
    Ok(AuditEntry {
        seq: col(row, "seq")?,
        record: AuditRecord {
            at: ts_col(row, "at")?,
            actor: opt_id_col(row, "actor_user_id")?,
            actor_role: role.map(|r| Role::parse(&r).map_err(|e| corrupt("actor_role", e))).transpose()?,
            organisation: col(row, "organisation")?,
            action: col(row, "action")?,
            patient: opt_id_col(row, "patient_id")?,
            address: col(row, "address")?,
            purpose: col(row, "purpose")?,
            detail: col(row, "detail")?,
        },
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

fn event_from(row: &AnyRow) -> StoreResult<SecurityEvent> {
    Ok(SecurityEvent {
        id: id_col(row, "id")?,
        at: ts_col(row, "at")?,
        user_id: opt_id_col(row, "user_id")?,
        actor_id: opt_id_col(row, "actor_id")?,
        kind: SecurityEventKind::parse(&col::<String>(row, "kind")?).map_err(|e| corrupt("kind", e))?,
        address: col(row, "address")?,
        detail: col(row, "detail")?,
    })
}

fn patient_from(c: &Crypt, row: &AnyRow) -> StoreResult<Patient> {
    patient_keyed(&row_key(&c.sealer, row, "a patient")?, row, &PATIENT_OWN_IDS)
}

/// The columns a patient's own ids are read from: the `patients` table's own names, or, where a
/// row also holds an order ([`LISTED_COLS`]) or a repeat line ([`PATIENT_LINE_COLS`]), names that
/// keep them apart from its.
struct PatientIdColumns {
    id: &'static str,
    pharmacy: &'static str,
    practice: &'static str,
}

const PATIENT_OWN_IDS: PatientIdColumns =
    PatientIdColumns { id: "id", pharmacy: "pharmacy_id", practice: "practice_id" };
const PATIENT_LISTED_IDS: PatientIdColumns =
    PatientIdColumns { id: "patient_id", pharmacy: "patient_pharmacy_id", practice: "patient_practice_id" };

/// A patient, whose fields are sealed under `key` (their data key).
fn patient_keyed(key: &DataKey, row: &AnyRow, ids: &PatientIdColumns) -> StoreResult<Patient> {
    let id: String = col(row, ids.id)?;
    let field =
        |column: &str| -> StoreResult<String> { open(key, "patients", column, &id, &col::<String>(row, column)?) };
    let opt_field = |column: &str| -> StoreResult<Option<String>> {
        open_opt(key, "patients", column, &id, col::<Option<String>>(row, column)?.as_deref())
    };
    let name = |column: &'static str| -> StoreResult<PersonName> {
        PersonName::parse(column, &field(column)?).map_err(|e| corrupt(column, e))
    };
    Ok(Patient {
        id: id.parse().map_err(|e| corrupt("id", e))?,
        pharmacy_id: id_col(row, ids.pharmacy)?,
        practice_id: id_col(row, ids.practice)?,
        given_name: name("given_name")?,
        family_name: name("family_name")?,
        date_of_birth: DateOfBirth::from_stored(parse_date("date_of_birth", &field("date_of_birth")?)?),
        nhs_number: NhsNumber::parse(&field("nhs_number")?).map_err(|e| corrupt("nhs_number", e))?,
        email: opt_field("email")?.map(|e| Email::parse(&e).map_err(|e| corrupt("email", e))).transpose()?,
        phone: opt_field("phone")?,
        address: opt_field("address")?,
    })
}

fn repeat_item_from(c: &Crypt, row: &AnyRow) -> StoreResult<RepeatItem> {
    repeat_item_keyed(&row_key(&c.sealer, row, "a repeat item")?, row)
}

/// A repeat line, whose fields are sealed under `key` (its patient's data key).
fn repeat_item_keyed(key: &DataKey, row: &AnyRow) -> StoreResult<RepeatItem> {
    let id: String = col(row, "id")?;
    let field =
        |column: &str| -> StoreResult<String> { open(key, "repeat_items", column, &id, &col::<String>(row, column)?) };
    let cycle: i64 = col(row, "cycle_days")?;
    let schedule: i64 = col(row, "schedule")?;
    let schedule = u8::try_from(schedule)
        .ok()
        .and_then(ControlledSchedule::from_number)
        .ok_or_else(|| corrupt("schedule", format!("{schedule} is not a controlled-drug schedule")))?;
    Ok(RepeatItem {
        id: id.parse().map_err(|e| corrupt("id", e))?,
        patient_id: id_col(row, "patient_id")?,
        terms: RepeatTerms {
            medicine_code: open_opt(
                key,
                "repeat_items",
                "medicine_code",
                &id,
                col::<Option<String>>(row, "medicine_code")?.as_deref(),
            )?,
            drug_name: field("drug_name")?,
            strength: field("strength")?,
            form: field("form")?,
            quantity: u32_col(row, "quantity")?,
            directions: field("directions")?,
            cycle_days: CycleDays::new(cycle).map_err(|e| corrupt("cycle_days", e))?,
            issues_authorised: u32_col(row, "issues_authorised")?,
            review_date: date_col(row, "review_date")?,
            schedule,
        },
        issues_remaining: u32_col(row, "issues_remaining")?,
        next_due: opt_date_col(row, "next_due")?,
        active: bool_col(row, "active")?,
    })
}

/// An order row without its items, and its version; `key` is its patient's data key, which
/// the row carries ([`KEY_COLS`]).
fn order_from(key: Option<&DataKey>, row: &AnyRow) -> StoreResult<(Order, i64)> {
    let fulfilment: String = col(row, "fulfilment")?;
    let stage: String = col(row, "stage")?;
    let id: String = col(row, "id")?;
    let note = match col::<Option<String>>(row, "note")? {
        Some(sealed) => {
            let key = key.ok_or_else(|| StoreError::Corrupt("an order has no data key".into()))?;
            Some(open(key, "orders", "note", &id, &sealed)?)
        }
        None => None,
    };
    let order = Order {
        id: id.parse().map_err(|e| corrupt("id", e))?,
        patient_id: id_col(row, "patient_id")?,
        pharmacy_id: id_col(row, "pharmacy_id")?,
        practice_id: id_col(row, "practice_id")?,
        fulfilment: Fulfilment::parse(&fulfilment).map_err(|e| corrupt("fulfilment", e))?,
        note,
        placed_by: id_col(row, "placed_by")?,
        on_behalf: bool_col(row, "on_behalf")?,
        accepted: bool_col(row, "accepted")?,
        stage: OrderStage::parse(&stage).map_err(|e| corrupt("stage", e))?,
        created_at: ts_col(row, "created_at")?,
        stage_entered_at: ts_col(row, "stage_entered_at")?,
        items: Vec::new(),
    };
    Ok((order, col(row, "version")?))
}

/// An item, sealed under its patient's data key (its order's key).
fn item_from(key: &DataKey, row: &AnyRow) -> StoreResult<OrderItem> {
    let state: String = col(row, "state")?;
    let id: String = col(row, "id")?;
    let decision = open_opt(key, "order_items", "decision", &id, col::<Option<String>>(row, "decision")?.as_deref())?;
    let decision =
        decision.map(|d| serde_json::from_str::<Decision>(&d).map_err(|e| corrupt("decision", e))).transpose()?;
    let item = OrderItem {
        id: id.parse().map_err(|e| corrupt("id", e))?,
        repeat_item_id: id_col(row, "repeat_item_id")?,
        description: open(key, "order_items", "description", &id, &col::<String>(row, "description")?)?,
        state: ItemState::parse(&state).map_err(|e| corrupt("state", e))?,
        decision,
    };
    Ok(item)
}

/// A transition's reason is bound to its order (its own number is given by the database only
/// when it is inserted).
fn transition_from(c: &Crypt, row: &AnyRow) -> StoreResult<Transition> {
    let order: String = col(row, "order_id")?;
    let reason = match col::<Option<String>>(row, "reason")? {
        Some(sealed) => Some(open(
            &row_key(&c.sealer, row, "an order's transition")?,
            "order_transitions",
            "reason",
            &order,
            &sealed,
        )?),
        None => None,
    };
    Ok(Transition {
        order_id: order.parse().map_err(|e| corrupt("order_id", e))?,
        item_id: opt_id_col(row, "item_id")?,
        from: col(row, "from_state")?,
        to: col(row, "to_state")?,
        actor: id_col(row, "actor_user_id")?,
        actor_role: role_col(row, "actor_role")?,
        at: ts_col(row, "at")?,
        reason,
    })
}

fn email_from(c: &Crypt, row: &AnyRow) -> StoreResult<OutgoingEmail> {
    let status: String = col(row, "status")?;
    let id: String = col(row, "id")?;
    let field = |column: &str| -> StoreResult<String> {
        open(&c.outbox, "outbox_emails", column, &id, &col::<String>(row, column)?)
    };
    Ok(OutgoingEmail {
        id: id.parse().map_err(|e| corrupt("id", e))?,
        to: Email::parse(&field("to_address")?).map_err(|e| corrupt("to_address", e))?,
        subject: field("subject")?,
        body: field("body")?,
        status: email_status(&status)?,
        attempts: u32_col(row, "attempts")?,
        last_error: col(row, "last_error")?,
        created_at: ts_col(row, "created_at")?,
        not_before: ts_col(row, "not_before")?,
        sent_at: opt_ts_col(row, "sent_at")?,
    })
}

fn decision_json(d: &Option<Decision>) -> StoreResult<Option<String>> {
    d.as_ref()
        .map(|d| serde_json::to_string(d).map_err(|e| StoreError::Database(format!("cannot encode a decision: {e}"))))
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Statements shared by several methods (all run on a connection or transaction)
// ---------------------------------------------------------------------------------------------

/// A patient's account is sealed under the patient's key, which must exist already.
async fn insert_user_on(conn: &mut AnyConnection, c: &Crypt, u: &UserAccount) -> StoreResult<()> {
    let id = u.id.to_string();
    let (email, display_name) = match u.patient_id {
        Some(patient) => {
            let key = data_key_on(conn, &c.sealer, &patient.to_string()).await?;
            (
                seal(&key, "users", "email", &id, u.email.as_str()),
                seal(&key, "users", "display_name", &id, &u.display_name),
            )
        }
        None => (u.email.as_str().to_string(), u.display_name.clone()),
    };
    sqlx::query(
        "INSERT INTO users (id, email, display_name, role, pharmacy_id, practice_id, patient_id, password_hash, \
         active, created_at, email_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(email)
    .bind(display_name)
    .bind(u.role.as_str())
    .bind(u.pharmacy_id.map(|i| i.to_string()))
    .bind(u.practice_id.map(|i| i.to_string()))
    .bind(u.patient_id.map(|i| i.to_string()))
    .bind(&u.password_hash)
    .bind(flag(u.active))
    .bind(us(u.created_at))
    .bind(c.sealer.index(Blind::Email, u.email.as_str()))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_token_on(conn: &mut AnyConnection, c: &Crypt, token: &AccountToken) -> StoreResult<()> {
    sqlx::query(&format!("INSERT INTO account_tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
        .bind(&token.token_hash)
        .bind(token.user_id.to_string())
        .bind(token.purpose.as_str())
        .bind(seal_opt(&c.accounts, "account_tokens", "payload", &token.token_hash, token.payload.as_deref()))
        .bind(&token.grouping)
        .bind(us(token.created_at))
        .bind(us(token.expires_at))
        .bind(opt_us(token.used_at))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

async fn users_with_role_on(conn: &mut AnyConnection, role: Role) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
        .bind(role.as_str())
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

async fn insert_session_on(conn: &mut AnyConnection, session: &SessionRecord) -> StoreResult<()> {
    sqlx::query(&format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
        .bind(&session.token_hash)
        .bind(session.user_id.to_string())
        .bind(session.kind.as_str())
        .bind(&session.csrf_token)
        .bind(us(session.created_at))
        .bind(us(session.last_seen_at))
        .bind(us(session.expires_at))
        .bind(&session.user_agent)
        .bind(session.stage.as_str())
        .bind(&session.address)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

async fn replace_recovery_codes_on(conn: &mut AnyConnection, user: UserId, hashes: &[String]) -> StoreResult<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    for h in hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)")
            .bind(user.to_string())
            .bind(h)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_emails_on(conn: &mut AnyConnection, c: &Crypt, emails: &[OutgoingEmail]) -> StoreResult<()> {
    for e in emails {
        let id = e.id.to_string();
        let sealed = |column: &str, plain: &str| seal(&c.outbox, "outbox_emails", column, &id, plain);
        sqlx::query(
            "INSERT INTO outbox_emails (id, to_address, subject, body, status, attempts, last_error, created_at, \
             not_before, lease_until, sent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10)",
        )
        .bind(&id)
        .bind(sealed("to_address", e.to.as_str()))
        .bind(sealed("subject", &e.subject))
        .bind(sealed("body", &e.body))
        .bind(e.status.as_str())
        .bind(i64::from(e.attempts))
        .bind(e.last_error.as_deref())
        .bind(us(e.created_at))
        .bind(us(e.not_before))
        .bind(opt_us(e.sent_at))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_patient_on(
    conn: &mut AnyConnection,
    c: &Crypt,
    patient: &Patient,
    account: Option<&UserAccount>,
) -> StoreResult<DataKey> {
    let id = patient.id.to_string();
    ensure_current_master_on(conn, &c.sealer).await?;
    let (key, wrapped) = c.sealer.new_data_key(&id);
    insert_data_key_on(conn, &id, &wrapped).await?;
    sqlx::query(
        "INSERT INTO patients (id, pharmacy_id, practice_id, given_name, family_name, date_of_birth, nhs_number, \
         email, phone, address, dob_index, nhs_index, email_index) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&id)
    .bind(patient.pharmacy_id.to_string())
    .bind(patient.practice_id.to_string())
    .bind_patient(&c.sealer, &key, patient)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    index_name_words_on(conn, &c.sealer, patient).await?;
    if let Some(account) = account {
        insert_user_on(conn, c, account).await?;
    }
    Ok(key)
}

async fn insert_repeat_item_on(conn: &mut AnyConnection, c: &Crypt, item: &RepeatItem) -> StoreResult<()> {
    let key = data_key_on(conn, &c.sealer, &item.patient_id.to_string()).await?;
    insert_repeat_item_keyed_on(conn, &key, item).await
}

/// [`insert_repeat_item_on`] with the patient's data key already at hand.
async fn insert_repeat_item_keyed_on(conn: &mut AnyConnection, key: &DataKey, item: &RepeatItem) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO repeat_items ({REPEAT_ITEM_WRITTEN_COLS}, reminded_for, created_at, created_seq) \
         VALUES ({}, NULL, $16, (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM repeat_items WHERE patient_id = $2))",
        placeholders(1, 15)
    ))
    .bind_repeat_item(key, item)
    .bind(us(Timestamp::now()))
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// A new patient's repeat lines, each with the due date it was last reminded of, in one
/// multi-row statement (per [`ROWS_PER_INSERT`]): they are numbered 1, 2, ... in the order given,
/// as the patient has no lines before them.
async fn insert_new_patient_lines_on(
    conn: &mut AnyConnection,
    key: &DataKey,
    lines: &[(RepeatItem, Option<Date>)],
) -> StoreResult<()> {
    let now = us(Timestamp::now());
    for (chunk, first) in lines.chunks(ROWS_PER_INSERT).zip((1_i64..).step_by(ROWS_PER_INSERT)) {
        let sql = format!(
            "INSERT INTO repeat_items ({REPEAT_ITEM_WRITTEN_COLS}, reminded_for, created_at, created_seq) VALUES {}",
            value_rows(18, chunk.len())
        );
        let mut insert = sqlx::query(&sql);
        for ((line, reminded_for), seq) in chunk.iter().zip(first..) {
            insert = insert.bind_repeat_item(key, line).bind(reminded_for.map(|d| d.to_string())).bind(now).bind(seq);
        }
        insert.execute(&mut *conn).await.map_err(map_err)?;
    }
    Ok(())
}

/// The columns [`BindRepeatItem`] binds, in its order.
const REPEAT_ITEM_WRITTEN_COLS: &str = "id, patient_id, medicine_code, drug_name, strength, form, quantity, \
     directions, cycle_days, issues_authorised, review_date, schedule, issues_remaining, next_due, active";

/// Binds a repeat line's [`REPEAT_ITEM_WRITTEN_COLS`], its terms sealed (to insert or update it).
trait BindRepeatItem<'q> {
    fn bind_repeat_item(self, key: &DataKey, item: &RepeatItem) -> Self;
}

impl<'q> BindRepeatItem<'q> for AnyQuery<'q> {
    fn bind_repeat_item(self, key: &DataKey, item: &RepeatItem) -> Self {
        let t = &item.terms;
        let id = item.id.to_string();
        let sealed = |column: &str, plain: &str| seal(key, "repeat_items", column, &id, plain);
        self.bind(id.clone())
            .bind(item.patient_id.to_string())
            .bind(t.medicine_code.as_deref().map(|m| sealed("medicine_code", m)))
            .bind(sealed("drug_name", &t.drug_name))
            .bind(sealed("strength", &t.strength))
            .bind(sealed("form", &t.form))
            .bind(i64::from(t.quantity))
            .bind(sealed("directions", &t.directions))
            .bind(t.cycle_days.get())
            .bind(i64::from(t.issues_authorised))
            .bind(t.review_date.to_string())
            .bind(i64::from(t.schedule.number()))
            .bind(i64::from(item.issues_remaining))
            .bind(item.next_due.map(|d| d.to_string()))
            .bind(flag(item.active))
    }
}

async fn insert_order_on(
    conn: &mut AnyConnection,
    c: &Crypt,
    order: &Order,
    transitions: &[Transition],
    emails: &[OutgoingEmail],
) -> StoreResult<()> {
    let key = data_key_on(conn, &c.sealer, &order.patient_id.to_string()).await?;
    insert_orders_keyed_on(conn, c, &[OrderRows { key: &key, order, transitions, emails }]).await
}

/// Which of `pharmacies` are leaving RepeatRx or have left (`pharmacy_departures`): they take no
/// new orders.
async fn leaving_among_on(
    conn: &mut AnyConnection,
    pharmacies: impl IntoIterator<Item = PharmacyId>,
) -> StoreResult<HashSet<PharmacyId>> {
    let mut ids: Vec<String> = pharmacies.into_iter().map(|p| p.to_string()).collect();
    ids.sort_unstable();
    ids.dedup();
    let select = |list: &str| format!("SELECT pharmacy_id FROM pharmacy_departures WHERE pharmacy_id IN ({list})");
    fetch_in(conn, &[], &ids, select).await?.iter().map(|row| id_col(row, "pharmacy_id")).collect()
}

/// The states in which an order's item holds its repeat line, to bind in an `IN (...)`.
fn open_item_states() -> Vec<String> {
    ItemState::ALL.into_iter().filter(|s| s.is_open()).map(|s| s.as_str().to_string()).collect()
}

/// Which of these orders' repeat lines are on an open order already stored.
async fn lines_on_open_orders_on<'a>(
    conn: &mut AnyConnection,
    orders: impl IntoIterator<Item = &'a Order>,
) -> StoreResult<HashSet<RepeatItemId>> {
    let mut lines: Vec<String> =
        orders.into_iter().flat_map(|o| o.items.iter().map(|i| i.repeat_item_id.to_string())).collect();
    lines.sort_unstable();
    lines.dedup();
    let open = open_item_states();
    let select = |list: &str| {
        format!(
            "SELECT DISTINCT repeat_item_id FROM order_items WHERE state IN ({}) AND repeat_item_id IN ({list})",
            placeholders(1, open.len())
        )
    };
    fetch_in(conn, &open, &lines, select).await?.iter().map(|row| id_col(row, "repeat_item_id")).collect()
}

/// A group's new orders, each with its patient's data key read in one statement for them all.
async fn insert_order_group_on(conn: &mut AnyConnection, c: &Crypt, group: &[&NewOrderWrite]) -> StoreResult<()> {
    let mut owners: Vec<String> = group.iter().map(|w| w.order.patient_id.to_string()).collect();
    owners.sort_unstable();
    owners.dedup();
    let keys = data_keys_on(conn, &c.sealer, &owners).await?;
    let rows = group
        .iter()
        .map(|w| {
            let owner = w.order.patient_id.to_string();
            let key =
                keys.get(&owner).ok_or_else(|| StoreError::Corrupt(format!("there is no data key for {owner}")))?;
            Ok(OrderRows { key, order: &w.order, transitions: &w.transitions, emails: &w.emails })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    insert_orders_keyed_on(conn, c, &rows).await
}

/// The data keys stored for these owners, unwrapped (an owner without one is left out).
async fn data_keys_on(
    conn: &mut AnyConnection,
    sealer: &Sealer,
    owners: &[String],
) -> StoreResult<HashMap<String, DataKey>> {
    let mut keys = HashMap::with_capacity(owners.len());
    let select =
        |list: &str| format!("SELECT key_owner, key_master, key_wrapped FROM data_keys WHERE key_owner IN ({list})");
    for row in fetch_in(conn, &[], owners, select).await? {
        if let Some(key) = opt_row_key(sealer, &row)? {
            keys.insert(col::<String>(&row, "key_owner")?, key);
        }
    }
    Ok(keys)
}

/// A new order, what is written with it, and its patient's data key.
struct OrderRows<'a> {
    key: &'a DataKey,
    order: &'a Order,
    transitions: &'a [Transition],
    emails: &'a [OutgoingEmail],
}

/// New orders with their items, transitions and emails, in one multi-row statement per table
/// (per [`ROWS_PER_INSERT`] rows) for all of them: each statement is a round trip to the driver's
/// thread (SQLite) or the server (PostgreSQL), and a group commit writes up to [`ORDER_GROUP`]
/// orders. Leaves the open-stage counts to its caller (a group commit adds up its orders' first).
async fn insert_orders_keyed_on(conn: &mut AnyConnection, c: &Crypt, orders: &[OrderRows<'_>]) -> StoreResult<()> {
    for chunk in orders.chunks(ROWS_PER_INSERT) {
        let sql = format!("INSERT INTO orders ({ORDER_COLS}) VALUES {}", value_rows(13, chunk.len()));
        let mut insert = sqlx::query(&sql);
        for OrderRows { key, order, .. } in chunk {
            let id = order.id.to_string();
            let note = seal_opt(key, "orders", "note", &id, order.note.as_deref());
            insert = insert
                .bind(id)
                .bind(order.patient_id.to_string())
                .bind(order.pharmacy_id.to_string())
                .bind(order.practice_id.to_string())
                .bind(order.fulfilment.as_str())
                .bind(note)
                .bind(order.placed_by.to_string())
                .bind(flag(order.on_behalf))
                .bind(flag(order.accepted))
                .bind(order.stage.as_str())
                .bind(us(order.created_at))
                .bind(us(order.stage_entered_at))
                .bind(1_i64);
        }
        insert.execute(&mut *conn).await.map_err(map_err)?;
    }
    let items: Vec<(&DataKey, &Order, i64, &OrderItem)> = orders
        .iter()
        .flat_map(|o| o.order.items.iter().zip(0_i64..).map(move |(item, position)| (o.key, o.order, position, item)))
        .collect();
    for chunk in items.chunks(ROWS_PER_INSERT) {
        let sql = format!("INSERT INTO order_items ({ITEM_COLS}) VALUES {}", value_rows(7, chunk.len()));
        let mut insert = sqlx::query(&sql);
        for (key, order, position, item) in chunk {
            let item_id = item.id.to_string();
            let description = seal(key, "order_items", "description", &item_id, &item.description);
            let decision =
                seal_opt(key, "order_items", "decision", &item_id, decision_json(&item.decision)?.as_deref());
            insert = insert
                .bind(item_id)
                .bind(order.id.to_string())
                .bind(*position)
                .bind(item.repeat_item_id.to_string())
                .bind(description)
                .bind(item.state.as_str())
                .bind(decision);
        }
        insert.execute(&mut *conn).await.map_err(map_err)?;
    }
    let transitions: Vec<(&DataKey, &Transition)> =
        orders.iter().flat_map(|o| o.transitions.iter().map(move |t| (o.key, t))).collect();
    insert_transitions_on(conn, &transitions).await?;
    for o in orders {
        insert_emails_on(conn, c, o.emails).await?;
    }
    let patients: Vec<PatientId> = orders.iter().map(|o| o.order.patient_id).collect();
    mark_retention_due_on(conn, &patients).await
}

/// Adds each `(pharmacy, stage, delta)` to the pharmacy's count of orders in that stage
/// (`open_order_counts`, read by the queue), inside the transaction that changes those orders.
/// One statement for all of them: a group commit's orders span many pharmacies, and on
/// PostgreSQL each statement is a round trip made while the write lock is held.
/// Finished stages are not counted.
async fn adjust_open_counts_on(
    conn: &mut AnyConnection,
    changes: impl IntoIterator<Item = (String, OrderStage, i64)>,
) -> StoreResult<()> {
    // Each row once (PostgreSQL refuses an upsert that changes a row twice), in one order.
    let mut summed: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
    for (pharmacy, stage, delta) in changes {
        if stage.is_open() {
            *summed.entry((pharmacy, stage.as_str())).or_default() += delta;
        }
    }
    summed.retain(|_, delta| *delta != 0);
    let rows: Vec<((String, &str), i64)> = summed.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO open_order_counts (pharmacy_id, stage, n) VALUES {} \
             ON CONFLICT (pharmacy_id, stage) DO UPDATE SET n = open_order_counts.n + excluded.n",
            value_rows(3, chunk.len())
        );
        let mut adjust = sqlx::query(&sql);
        for ((pharmacy, stage), delta) in chunk {
            adjust = adjust.bind(pharmacy.as_str()).bind(*stage).bind(*delta);
        }
        adjust.execute(&mut *conn).await.map_err(map_err)?;
    }
    Ok(())
}

/// Marks patients due for the order-retention job (see `Store::patients_due_for_retention`), in
/// the transaction of the write that may have made one of their orders purgeable.
async fn mark_retention_due_on(conn: &mut AnyConnection, patients: &[PatientId]) -> StoreResult<()> {
    let mut ids: Vec<String> = patients.iter().map(ToString::to_string).collect();
    // Sorted, so that concurrent writers lock the rows in one order; once each, which
    // PostgreSQL requires of the rows one upsert changes.
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = (1..=chunk.len()).map(|n| format!("(${n}, 0, 1)")).collect();
        let sql = format!(
            "INSERT INTO retention_due (patient_id, due_at, marks) VALUES {} ON CONFLICT (patient_id) \
             DO UPDATE SET due_at = 0, marks = retention_due.marks + 1",
            rows.join(", ")
        );
        let mut mark = sqlx::query(&sql);
        for id in chunk {
            mark = mark.bind(id);
        }
        mark.execute(&mut *conn).await.map_err(map_err)?;
    }
    Ok(())
}

/// A page of the patients due for the retention job: `$1` now, `($2, $3)` the due time and
/// patient of the last row of the page before, `$4` the page size. The row value compared lets
/// both engines start their index range at that row instead of reading past every patient
/// already looked at (a whole first pass after upgrade, on a large installation, is a million).
const RETENTION_DUE_PAGE: &str = "SELECT patient_id, due_at, marks FROM retention_due WHERE due_at <= $1 \
                                  AND (due_at, patient_id) > ($2, $3) ORDER BY due_at, patient_id LIMIT $4";

/// Transitions, each with its order's patient's data key.
async fn insert_transitions_on(conn: &mut AnyConnection, transitions: &[(&DataKey, &Transition)]) -> StoreResult<()> {
    for chunk in transitions.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO order_transitions (order_id, item_id, from_state, to_state, actor_user_id, actor_role, at, \
             reason) VALUES {}",
            value_rows(8, chunk.len())
        );
        let mut insert = sqlx::query(&sql);
        for (key, t) in chunk {
            let order = t.order_id.to_string();
            let reason = seal_opt(key, "order_transitions", "reason", &order, t.reason.as_deref());
            insert = insert
                .bind(order)
                .bind(t.item_id.map(|i| i.to_string()))
                .bind(t.from.clone())
                .bind(t.to.clone())
                .bind(t.actor.to_string())
                .bind(t.actor_role.as_str())
                .bind(us(t.at))
                .bind(reason);
        }
        insert.execute(&mut *conn).await.map_err(map_err)?;
    }
    Ok(())
}

/// Rows per multi-row `INSERT`: well under both engines' limits on bound values.
const ROWS_PER_INSERT: usize = 64;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values each.
fn value_rows(columns: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Updates a repeat line's terms and progress; `reminded_for` is kept (a new `next_due` re-arms
/// the reminder by itself). Returns whether the line exists.
async fn update_repeat_item_on(conn: &mut AnyConnection, key: &DataKey, item: &RepeatItem) -> StoreResult<bool> {
    // Numbered as [`BindRepeatItem`] binds: $1 the id, $2 the patient, then the terms and progress.
    let done = sqlx::query(
        "UPDATE repeat_items SET medicine_code = $3, drug_name = $4, strength = $5, form = $6, quantity = $7, \
         directions = $8, cycle_days = $9, issues_authorised = $10, review_date = $11, schedule = $12, \
         issues_remaining = $13, next_due = $14, active = $15 WHERE id = $1 AND patient_id = $2",
    )
    .bind_repeat_item(key, item)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

fn not_found(what: &str) -> StoreError {
    StoreError::Database(format!("{what} to update was not found"))
}

async fn patient_on(conn: &mut AnyConnection, c: &Crypt, id: PatientId) -> StoreResult<Option<Patient>> {
    let row = sqlx::query(&format!("SELECT {PATIENT_COLS} FROM {PATIENTS_KEYED} WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(map_err)?;
    row.as_ref().map(|r| patient_from(c, r)).transpose()
}

/// Reads the items of `orders`, each list in its original order; `keys` are the orders' data
/// keys, in the same order. An item is sealed under its patient's data key, which its order's
/// row already carries: the items are read alone, not joined again to their orders and keys (a
/// queue page's items took six b-tree searches each so, and unwrapped the same key once per item).
async fn attach_items(conn: &mut AnyConnection, orders: &mut [Order], keys: &[Option<DataKey>]) -> StoreResult<()> {
    let keys: HashMap<OrderId, &DataKey> =
        orders.iter().zip(keys).filter_map(|(order, key)| Some((order.id, key.as_ref()?))).collect();
    let mut by_order: HashMap<OrderId, Vec<OrderItem>> = HashMap::new();
    let ids: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
    // Each order's items come in one slice, so `position` orders them.
    let select = |list: &str| {
        format!("SELECT {ITEM_COLS} FROM order_items WHERE order_id IN ({list}) ORDER BY order_id, position")
    };
    for row in fetch_in(conn, &[], &ids, select).await? {
        let order_id: OrderId = id_col(&row, "order_id")?;
        let key = keys.get(&order_id).ok_or_else(|| StoreError::Corrupt("an order item has no data key".into()))?;
        by_order.entry(order_id).or_default().push(item_from(key, &row)?);
    }
    for order in orders.iter_mut() {
        order.items = by_order.remove(&order.id).unwrap_or_default();
        if order.items.is_empty() {
            return Err(StoreError::Corrupt(format!("order {} has no items", order.id)));
        }
    }
    Ok(())
}

/// Appends an audit record at the end of the chain, inside a write transaction (whose lock
/// makes the number and the previous hash this writer's alone).
async fn append_audit_on(tx: &mut WriteTx, record: &AuditRecord) -> StoreResult<AuditEntry> {
    let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, repeatrx_domain::audit::GENESIS.to_string()),
    };
    let hash = repeatrx_domain::audit::chain_hash(&prev_hash, seq, record);
    sqlx::query(&format!(
        "INSERT INTO audit_log ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(seq)
    .bind(us(record.at))
    .bind(record.actor.map(|u| u.to_string()))
    .bind(record.actor_role.map(|r| r.as_str()))
    .bind(&record.organisation)
    .bind(&record.action)
    .bind(record.patient.map(|p| p.to_string()))
    .bind(&record.address)
    .bind(&record.purpose)
    .bind(&record.detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(AuditEntry { seq, record: record.clone(), prev_hash, hash })
}

/// Orders from rows that carry their patient's wrapped data key ([`KEY_COLS`]), with their items;
/// and each row's key, unwrapped once, for whatever else the rows hold under it.
async fn orders_keyed(
    conn: &mut AnyConnection,
    c: &Crypt,
    rows: &[AnyRow],
) -> StoreResult<(Vec<Order>, Vec<Option<DataKey>>)> {
    let keys = rows.iter().map(|r| opt_row_key(&c.sealer, r)).collect::<StoreResult<Vec<_>>>()?;
    let mut orders = rows
        .iter()
        .zip(&keys)
        .map(|(r, k)| order_from(k.as_ref(), r).map(|(o, _)| o))
        .collect::<StoreResult<Vec<_>>>()?;
    attach_items(conn, &mut orders, &keys).await?;
    Ok((orders, keys))
}

enum OrgColumn {
    Pharmacy,
    Practice,
}

/// The statement listing an organisation's orders with their patients ([`LISTED_COLS`]), and its
/// text parameters; the limit and offset follow them as the last two.
fn listing_sql(org: OrgColumn, org_id: String, filter: &OrderFilter) -> (String, Vec<String>) {
    let column = match org {
        OrgColumn::Pharmacy => "orders.pharmacy_id",
        OrgColumn::Practice => "orders.practice_id",
    };
    let mut binds: Vec<String> = vec![org_id];
    let mut sql = format!("SELECT {LISTED_COLS} FROM {LISTED_FROM} WHERE {column} = $1");
    let only_open = !filter.stages.is_empty() && filter.stages.iter().all(|s| s.is_open());
    if only_open {
        sql.push_str(&format!(" AND {OPEN_STAGES}"));
    }
    let every_open = only_open && OrderStage::ALL.iter().filter(|s| s.is_open()).all(|s| filter.stages.contains(s));
    if !filter.stages.is_empty() && !every_open {
        sql.push_str(&format!(" AND stage IN ({})", placeholders(binds.len() + 1, filter.stages.len())));
        binds.extend(filter.stages.iter().map(|s| s.as_str().to_string()));
    }
    if let Some(patients) = &filter.patients {
        sql.push_str(&format!(" AND orders.patient_id IN ({})", placeholders(binds.len() + 1, patients.len())));
        binds.extend(patients.iter().map(|p| p.to_string()));
    }
    let n = binds.len();
    sql.push_str(&format!(" ORDER BY orders.created_at ASC, orders.id ASC LIMIT ${} OFFSET ${}", n + 1, n + 2));
    (sql, binds)
}

impl SqlStore {
    /// The shared body of `pharmacy_orders` and `practice_orders`: oldest first, each order with
    /// its patient, read in one statement and opened with one unwrap of the patient's key.
    async fn org_orders(&self, org: OrgColumn, org_id: String, filter: &OrderFilter) -> StoreResult<Vec<ListedOrder>> {
        if matches!(&filter.patients, Some(p) if p.is_empty()) {
            return Ok(Vec::new());
        }
        let (sql, binds) = listing_sql(org, org_id, filter);
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        q = q.bind(i64::from(filter.limit)).bind(i64::from(filter.offset));
        let mut conn = self.conn().await?;
        let rows = q.fetch_all(&mut *conn).await.map_err(map_err)?;
        let (orders, keys) = orders_keyed(&mut conn, &self.crypt, &rows).await?;
        orders
            .into_iter()
            .zip(rows.iter().zip(&keys))
            .map(|(order, (row, key))| {
                let key = key.as_ref().ok_or_else(|| StoreError::Corrupt("a patient has no data key".into()))?;
                Ok(ListedOrder { order, patient: patient_keyed(key, row, &PATIENT_LISTED_IDS)? })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Loading many new records at once
// ---------------------------------------------------------------------------------------------

impl SqlStore {
    /// Refreshes PostgreSQL's planner statistics, after a bulk load: until autovacuum gets to a
    /// database that grew by a whole data set at once, PostgreSQL plans it as if it were nearly
    /// empty and scans whole tables (the benchmark measured 24 repeat lists a second so, against
    /// hundreds with statistics). SQLite plans from its indexes alone and is left as it is.
    pub async fn refresh_statistics(&self) -> StoreResult<()> {
        if self.engine == Engine::Postgres {
            sqlx::query("ANALYZE").execute(&self.pool).await.map_err(map_err)?;
        }
        Ok(())
    }
}

/// Writes many new records through the same statements and sealing as the [`Store`] methods,
/// `batch` records to a transaction instead of one (see [`SqlStore::bulk_load`]).
pub struct BulkLoad {
    store: SqlStore,
    tx: Option<WriteTx>,
    in_tx: usize,
    batch: usize,
    page_cache_kib: Option<u64>,
    /// The data key of the patient written last: a loader writes a patient's records together,
    /// and reading the key back for each of them was a quarter of a data set's statements.
    last_key: Option<(PatientId, DataKey)>,
    /// Orders not written yet, each with its patient's key: written [`ORDERS_AT_ONCE`] at a time
    /// (a few multi-row statements instead of three statements an order).
    orders: Vec<(DataKey, Order, Vec<Transition>)>,
}

/// Orders a [`BulkLoad`] holds before writing them together.
const ORDERS_AT_ONCE: usize = 256;

impl SqlStore {
    /// A loader for a whole data set of new records (the benchmark's data generator): each
    /// record is sealed and written as `insert_patient`, `insert_repeat_item`, `insert_order` and
    /// `insert_session` write it, but `batch` of them share a transaction, so a million patients
    /// do not cost a million commits, and orders and a patient's lines are written many rows to a
    /// statement. On PostgreSQL the store's write lock is not taken, so that loaders can run side
    /// by side: they must only insert records of their own (no two loaders write the same
    /// patient), and open orders of different pharmacies (each such order changes its pharmacy's
    /// row of `open_order_counts`, which stays locked until the batch commits). On SQLite loaders
    /// take turns, as every writer does. Nothing is visible to others until
    /// [`BulkLoad::finish`] or a batch commits.
    pub fn bulk_load(&self, batch: usize) -> BulkLoad {
        BulkLoad {
            store: self.clone(),
            tx: None,
            in_tx: 0,
            batch: batch.max(1),
            page_cache_kib: None,
            last_key: None,
            orders: Vec::with_capacity(ORDERS_AT_ONCE),
        }
    }
}

impl BulkLoad {
    /// On SQLite, gives the loading connection a page cache of `mib` MiB instead of SQLite's
    /// 2 MiB: pages that do not stay cached are read back from the file and written to the log
    /// again at every commit. (PostgreSQL's cache is its server's `shared_buffers`.)
    pub fn with_page_cache(mut self, mib: u64) -> BulkLoad {
        self.page_cache_kib = Some(mib.saturating_mul(1024));
        self
    }

    /// A new patient, their sign-in account, and their repeat lines, each with the due date whose
    /// reminder was last sent (as `record_reminder` records it, without an email). The lines are
    /// numbered in the order given.
    pub async fn patient(
        &mut self,
        patient: &Patient,
        account: Option<&UserAccount>,
        lines: &[(RepeatItem, Option<Date>)],
    ) -> StoreResult<()> {
        if let Some((line, _)) = lines.iter().find(|(line, _)| line.patient_id != patient.id) {
            return Err(StoreError::Conflict(format!("the repeat line {} is not {}'s", line.id, patient.id)));
        }
        let crypt = self.store.crypt.clone();
        let conn = self.tx().await?;
        let key = insert_patient_on(conn, &crypt, patient, account).await?;
        insert_new_patient_lines_on(conn, &key, lines).await?;
        self.last_key = Some((patient.id, key));
        self.written(1 + lines.len()).await
    }

    /// A new order with its transitions (written with the next [`ORDERS_AT_ONCE`], or when the
    /// batch commits).
    pub async fn order(&mut self, order: Order, transitions: Vec<Transition>) -> StoreResult<()> {
        let key = self.key_of(order.patient_id).await?;
        self.orders.push((key, order, transitions));
        if self.orders.len() >= ORDERS_AT_ONCE {
            self.write_orders().await?;
        }
        self.written(1).await
    }

    async fn write_orders(&mut self) -> StoreResult<()> {
        if self.orders.is_empty() {
            return Ok(());
        }
        let orders = std::mem::take(&mut self.orders);
        let crypt = self.store.crypt.clone();
        let rows: Vec<OrderRows> =
            orders.iter().map(|(key, order, transitions)| OrderRows { key, order, transitions, emails: &[] }).collect();
        let conn = self.tx().await?;
        insert_orders_keyed_on(conn, &crypt, &rows).await?;
        adjust_open_counts_on(conn, orders.iter().map(|(_, order, _)| (order.pharmacy_id.to_string(), order.stage, 1)))
            .await
    }

    async fn key_of(&mut self, patient: PatientId) -> StoreResult<DataKey> {
        if let Some((_, key)) = self.last_key.as_ref().filter(|(id, _)| *id == patient) {
            return Ok(key.clone());
        }
        let crypt = self.store.crypt.clone();
        let key = data_key_on(self.tx().await?, &crypt.sealer, &patient.to_string()).await?;
        self.last_key = Some((patient, key.clone()));
        Ok(key)
    }

    pub async fn session(&mut self, session: &SessionRecord) -> StoreResult<()> {
        insert_session_on(self.tx().await?, session).await?;
        self.written(1).await
    }

    /// Writes and commits what is not committed yet.
    pub async fn finish(mut self) -> StoreResult<()> {
        self.commit().await
    }

    async fn tx(&mut self) -> StoreResult<&mut AnyConnection> {
        if self.tx.is_none() {
            let tx = match self.store.engine {
                Engine::Sqlite => {
                    let mut tx = self.store.write_tx().await?;
                    if let Some(kib) = self.page_cache_kib {
                        // A negative size is in KiB rather than pages.
                        sqlx::query(&format!("PRAGMA cache_size = -{kib}")).execute(&mut *tx).await.map_err(map_err)?;
                    }
                    tx
                }
                Engine::Postgres => InTurn { conn: self.store.pool.begin().await.map_err(map_err)?, _turn: None },
            };
            self.tx = Some(tx);
        }
        match self.tx.as_mut() {
            Some(tx) => Ok(&mut *tx),
            None => Err(StoreError::Database("the bulk load has no transaction".into())),
        }
    }

    async fn written(&mut self, records: usize) -> StoreResult<()> {
        self.in_tx += records;
        if self.in_tx >= self.batch {
            self.commit().await?;
        }
        Ok(())
    }

    async fn commit(&mut self) -> StoreResult<()> {
        self.write_orders().await?;
        self.in_tx = 0;
        match self.tx.take() {
            Some(tx) => self.store.commit(tx).await,
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The Store implementation
// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Store for SqlStore {
    async fn health(&self) -> StoreResult<()> {
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await.map_err(map_err)?;
        if one == 1 {
            Ok(())
        } else {
            Err(StoreError::Database("the health query gave an unexpected answer".into()))
        }
    }

    // --- deployment metadata ---

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.write_alone(
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value),
        )
        .await?;
        Ok(())
    }

    // --- organisations ---

    async fn insert_pharmacy(&self, pharmacy: &Pharmacy, first_manager: &UserAccount) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO pharmacies ({PHARMACY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(pharmacy.id.to_string())
            .bind(&pharmacy.name)
            .bind(&pharmacy.ods_code)
            .bind(&pharmacy.address)
            .bind(pharmacy.email.as_ref().map(Email::as_str))
            .bind(us(pharmacy.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_user_on(&mut tx, &self.crypt, first_manager).await?;
        self.commit(tx).await
    }

    async fn pharmacy(&self, id: PharmacyId) -> StoreResult<Option<Pharmacy>> {
        let row = sqlx::query(&format!("SELECT {PHARMACY_COLS} FROM pharmacies WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(pharmacy_from).transpose()
    }

    async fn list_pharmacies(&self) -> StoreResult<Vec<Pharmacy>> {
        let rows = sqlx::query(&format!("SELECT {PHARMACY_COLS} FROM pharmacies ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(pharmacy_from).collect()
    }

    async fn insert_practice(&self, practice: &Practice, first_manager: Option<&UserAccount>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO practices ({PRACTICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(practice.id.to_string())
            .bind(&practice.name)
            .bind(&practice.ods_code)
            .bind(&practice.address)
            .bind(practice.email.as_ref().map(Email::as_str))
            .bind(flag(practice.on_repeatrx))
            .bind(us(practice.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if let Some(manager) = first_manager {
            insert_user_on(&mut tx, &self.crypt, manager).await?;
        }
        self.commit(tx).await
    }

    async fn practice(&self, id: PracticeId) -> StoreResult<Option<Practice>> {
        let row = sqlx::query(&format!("SELECT {PRACTICE_COLS} FROM practices WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(practice_from).transpose()
    }

    async fn list_practices(&self) -> StoreResult<Vec<Practice>> {
        let rows = sqlx::query(&format!("SELECT {PRACTICE_COLS} FROM practices ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(practice_from).collect()
    }

    // --- accounts and sessions ---

    async fn insert_user(&self, user: &UserAccount) -> StoreResult<()> {
        let mut conn = self.write_conn().await?;
        insert_user_on(&mut conn, &self.crypt, user).await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<UserAccount>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM {USERS_KEYED} WHERE users.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| user_from(&self.crypt, r)).transpose()
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<UserAccount>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM {USERS_KEYED} WHERE users.email_index = $1"))
            .bind(self.sealer().index(Blind::Email, email.as_str()))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| user_from(&self.crypt, r)).transpose()
    }

    async fn user_for_patient(&self, patient: PatientId) -> StoreResult<Option<UserAccount>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM {USERS_KEYED} WHERE users.patient_id = $1"))
            .bind(patient.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| user_from(&self.crypt, r)).transpose()
    }

    async fn set_password_hash(&self, user: UserId, hash: &str) -> StoreResult<()> {
        let done = self
            .write_alone(
                sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1").bind(user.to_string()).bind(hash),
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        Ok(())
    }

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        let mut conn = self.write_conn().await?;
        insert_session_on(&mut conn, session).await
    }

    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(session_from).transpose()
    }

    async fn session_account(&self, token_hash: &str) -> StoreResult<Option<SessionAccount>> {
        let sql =
            format!("SELECT {SESSION_ACCOUNT_COLS}, {USER_COLS} FROM {SESSION_ACCOUNT_FROM} WHERE s.token_hash = $1");
        let row = sqlx::query(&sql).bind(token_hash).fetch_optional(&self.pool).await.map_err(map_err)?;
        row.as_ref().map(|r| session_account_from(&self.crypt, r)).transpose()
    }

    async fn touch_session(&self, token_hash: &str, last_seen_at: Timestamp) -> StoreResult<()> {
        self.write_alone(
            sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1")
                .bind(token_hash)
                .bind(us(last_seen_at)),
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        self.write_alone(sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash)).await?;
        Ok(())
    }

    async fn count_users_with_role(&self, role: Role) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        users_with_role_on(&mut conn, role).await
    }

    async fn invite_user(
        &self,
        user: &UserAccount,
        link: &AccountToken,
        emails: &[OutgoingEmail],
        cap: Option<u32>,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if let Some(cap) = cap {
            if users_with_role_on(&mut tx, user.role).await? >= u64::from(cap) {
                return Ok(false);
            }
        }
        insert_user_on(&mut tx, &self.crypt, user).await?;
        insert_token_on(&mut tx, &self.crypt, link).await?;
        insert_emails_on(&mut tx, &self.crypt, emails).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn set_user_role(&self, user: UserId, role: Role, cap: Option<u32>) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if let Some(cap) = cap {
            if users_with_role_on(&mut tx, role).await? >= u64::from(cap) {
                return Ok(false);
            }
        }
        let done = sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(user.to_string())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        self.commit(tx).await?;
        Ok(true)
    }

    async fn set_user_active(&self, user: UserId, active: bool) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET active = $2 WHERE id = $1")
            .bind(user.to_string())
            .bind(flag(active))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the account"));
        }
        if !active {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        self.commit(tx).await
    }

    async fn count_users_with_email_domain(&self, domain: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email LIKE '%@' || $1")
            .bind(domain.to_lowercase())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn users_with_role(&self, role: Role) -> StoreResult<Vec<UserAccount>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM {USERS_KEYED} WHERE users.role = $1 ORDER BY users.created_at, users.id"
        ))
        .bind(role.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(|r| user_from(&self.crypt, r)).collect()
    }

    async fn mark_pharmacy_leaving(
        &self,
        departure: &PharmacyDeparture,
        emails: &[OutgoingEmail],
    ) -> StoreResult<bool> {
        let id = departure.pharmacy_id.to_string();
        let mut tx = self.write_tx().await?;
        let added = sqlx::query(
            "INSERT INTO pharmacy_departures (pharmacy_id, marked_at, marked_by, delete_after, deleted_at) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (pharmacy_id) DO NOTHING",
        )
        .bind(&id)
        .bind(us(departure.marked_at))
        .bind(departure.marked_by.to_string())
        .bind(us(departure.delete_after))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if added == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET active = 0 WHERE pharmacy_id = $1 AND patient_id IS NULL")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE pharmacy_id = $1 AND patient_id IS NULL)")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_emails_on(&mut tx, &self.crypt, emails).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn pharmacy_departure(&self, pharmacy: PharmacyId) -> StoreResult<Option<PharmacyDeparture>> {
        let row = sqlx::query(&format!("SELECT {DEPARTURE_COLS} FROM pharmacy_departures WHERE pharmacy_id = $1"))
            .bind(pharmacy.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(departure_from).transpose()
    }

    async fn pharmacy_departures(&self) -> StoreResult<Vec<PharmacyDeparture>> {
        let rows =
            sqlx::query(&format!("SELECT {DEPARTURE_COLS} FROM pharmacy_departures ORDER BY marked_at, pharmacy_id"))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter().map(departure_from).collect()
    }

    async fn finish_pharmacy_departure(&self, pharmacy: PharmacyId, at: Timestamp) -> StoreResult<u64> {
        let id = pharmacy.to_string();
        let mut tx = self.write_tx().await?;
        let staff = "SELECT id FROM users WHERE pharmacy_id = $1 AND patient_id IS NULL";
        sqlx::query(&format!("DELETE FROM security_events WHERE user_id IN ({staff}) OR actor_id IN ({staff})"))
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let deleted = sqlx::query("DELETE FROM users WHERE pharmacy_id = $1 AND patient_id IS NULL")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        sqlx::query("UPDATE pharmacy_departures SET deleted_at = $2 WHERE pharmacy_id = $1 AND deleted_at IS NULL")
            .bind(&id)
            .bind(us(at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn insert_grant(&self, grant: &Grant, emails: &[OutgoingEmail]) -> StoreResult<()> {
        let (patient, pharmacy) = match grant.scope {
            GrantScope::Patient(p) => (Some(p.to_string()), None),
            GrantScope::Pharmacy(p) => (None, Some(p.to_string())),
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO custody_grants ({GRANT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
            .bind(grant.id.to_string())
            .bind(grant.custodian.to_string())
            .bind(grant.scope.kind())
            .bind(patient)
            .bind(pharmacy)
            .bind(&grant.reason)
            .bind(us(grant.created_at))
            .bind(us(grant.expires_at))
            .bind(opt_us(grant.ended_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_emails_on(&mut tx, &self.crypt, emails).await?;
        self.commit(tx).await
    }

    async fn grants_of(&self, custodian: UserId, limit: u32) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLS} FROM custody_grants WHERE custodian_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(custodian.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(grant_from).collect()
    }

    async fn live_grants(&self, custodian: UserId, now: Timestamp) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLS} FROM custody_grants WHERE custodian_id = $1 AND ended_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id"
        ))
        .bind(custodian.to_string())
        .bind(us(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(grant_from).collect()
    }

    async fn end_grant(&self, id: GrantId, custodian: UserId, now: Timestamp) -> StoreResult<bool> {
        let done = self
            .write_alone(
                sqlx::query(
                    "UPDATE custody_grants SET ended_at = $3 WHERE id = $1 AND custodian_id = $2 AND ended_at IS NULL \
             AND expires_at > $3",
                )
                .bind(id.to_string())
                .bind(custodian.to_string())
                .bind(us(now)),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_sessions_of_user(&self, user: UserId) -> StoreResult<u64> {
        let done =
            self.write_alone(sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user.to_string())).await?;
        Ok(done.rows_affected())
    }

    async fn sessions_of_user(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, token_hash"
        ))
        .bind(user.to_string())
        .bind(us(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(session_from).collect()
    }

    async fn delete_other_sessions(&self, user: UserId, keep: &str) -> StoreResult<u64> {
        let done = self
            .write_alone(
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
                    .bind(user.to_string())
                    .bind(keep),
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn rotate_session(&self, old_token_hash: &str, new: &SessionRecord) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(old_token_hash)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if gone.rows_affected() == 0 {
            return Err(not_found("the session"));
        }
        insert_session_on(&mut tx, new).await?;
        self.commit(tx).await
    }

    async fn set_user_email(&self, user: UserId, email: &Email) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let id = user.to_string();
        let patient: Option<Option<String>> = sqlx::query_scalar("SELECT patient_id FROM users WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let stored = match patient.ok_or_else(|| not_found("the account"))? {
            Some(patient) => {
                seal(&data_key_on(&mut tx, self.sealer(), &patient).await?, "users", "email", &id, email.as_str())
            }
            None => email.as_str().to_string(),
        };
        sqlx::query("UPDATE users SET email = $2, email_index = $3 WHERE id = $1")
            .bind(&id)
            .bind(stored)
            .bind(self.sealer().index(Blind::Email, email.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        self.commit(tx).await
    }

    async fn list_accounts(&self, scope: AccountScope) -> StoreResult<Vec<(UserAccount, AccountSecurity)>> {
        let (condition, bound) = match scope {
            AccountScope::Pharmacy(id) => ("users.pharmacy_id = $1", Some(id.to_string())),
            AccountScope::Practice(id) => ("users.practice_id = $1", Some(id.to_string())),
            AccountScope::ManagersAndPlatform => {
                ("users.role IN ('pharmacy_manager', 'practice_manager', 'operator', 'custodian')", None)
            }
        };
        let sql = format!("SELECT {USER_COLS}, {SECURITY_COLS} FROM {USERS_KEYED} WHERE {condition} LIMIT 1000");
        let mut q = sqlx::query(&sql);
        if let Some(b) = bound {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        let mut accounts = rows
            .iter()
            .map(|r| Ok((user_from(&self.crypt, r)?, security_from(&self.crypt, r)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        // Sorted here: a patient account's name is sealed, so the database cannot order by it.
        accounts.sort_by(|(a, _), (b, _)| {
            (a.display_name.as_str(), a.email.as_str()).cmp(&(b.display_name.as_str(), b.email.as_str()))
        });
        Ok(accounts)
    }

    // --- account security ---

    async fn account_security(&self, user: UserId) -> StoreResult<Option<AccountSecurity>> {
        let row = sqlx::query(&format!("SELECT {SECURITY_COLS} FROM users WHERE id = $1"))
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| security_from(&self.crypt, r)).transpose()
    }

    async fn update_account_security(
        &self,
        user: UserId,
        change: &mut (dyn for<'s> FnMut(&'s mut AccountSecurity) -> bool + Send),
    ) -> StoreResult<Option<(AccountSecurity, bool)>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(&format!("SELECT {SECURITY_COLS} FROM users WHERE id = $1"))
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(mut state) = row.as_ref().map(|r| security_from(&self.crypt, r)).transpose()? else {
            return Ok(None);
        };
        if !change(&mut state) {
            return Ok(Some((state, false)));
        }
        sqlx::query(
            "UPDATE users SET failed_sign_ins = $2, lock_state = $3, locked_at = $4, dob_failures = $5, \
             totp_secret = $6, totp_pending_secret = $7, totp_enrolled_at = $8, totp_last_step = $9 WHERE id = $1",
        )
        .bind(user.to_string())
        .bind(i64::from(state.failed_sign_ins))
        .bind(state.lock_state.as_str())
        .bind(opt_us(state.locked_at))
        .bind(i64::from(state.dob_failures))
        .bind(seal_opt(&self.crypt.accounts, "users", "totp_secret", &user.to_string(), state.totp_secret.as_deref()))
        .bind(seal_opt(
            &self.crypt.accounts,
            "users",
            "totp_pending_secret",
            &user.to_string(),
            state.totp_pending_secret.as_deref(),
        ))
        .bind(opt_us(state.totp_enrolled_at))
        .bind(state.totp_last_step)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(Some((state, true)))
    }

    async fn enable_totp(
        &self,
        user: UserId,
        secret: &str,
        step: i64,
        recovery_hashes: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let id = user.to_string();
        let pending: Option<Option<String>> = sqlx::query_scalar("SELECT totp_pending_secret FROM users WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let pending =
            open_opt(&self.crypt.accounts, "users", "totp_pending_secret", &id, pending.flatten().as_deref())?;
        // Compared after opening: the sealed values differ even for the same secret.
        if pending.as_deref() != Some(secret) {
            return Err(StoreError::Conflict("the set-up of the authenticator app has changed; start again".into()));
        }
        sqlx::query(
            "UPDATE users SET totp_secret = $2, totp_pending_secret = NULL, totp_enrolled_at = $3, \
             totp_last_step = $4 WHERE id = $1",
        )
        .bind(&id)
        .bind(seal(&self.crypt.accounts, "users", "totp_secret", &id, secret))
        .bind(us(now))
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        replace_recovery_codes_on(&mut tx, user, recovery_hashes).await?;
        self.commit(tx).await
    }

    async fn replace_recovery_codes(&self, user: UserId, recovery_hashes: &[String]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        replace_recovery_codes_on(&mut tx, user, recovery_hashes).await?;
        self.commit(tx).await
    }

    async fn use_recovery_code(&self, user: UserId, code_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let done = self
            .write_alone(
                sqlx::query(
                    "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                )
                .bind(user.to_string())
                .bind(code_hash)
                .bind(us(now)),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_account_token(&self, token: &AccountToken, emails: &[OutgoingEmail]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_token_on(&mut tx, &self.crypt, token).await?;
        insert_emails_on(&mut tx, &self.crypt, emails).await?;
        self.commit(tx).await
    }

    async fn account_token(&self, token_hash: &str) -> StoreResult<Option<AccountToken>> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM account_tokens WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| token_from(&self.crypt, r)).transpose()
    }

    async fn use_account_token(&self, token_hash: &str, now: Timestamp) -> StoreResult<bool> {
        let used = "UPDATE account_tokens SET used_at = $2 \
                    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
        let done = self.write_alone(sqlx::query(used).bind(token_hash).bind(us(now))).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn grouped_tokens(&self, grouping: &str) -> StoreResult<Vec<AccountToken>> {
        let rows =
            sqlx::query(&format!("SELECT {TOKEN_COLS} FROM account_tokens WHERE grouping = $1 ORDER BY purpose"))
                .bind(grouping)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter().map(|r| token_from(&self.crypt, r)).collect()
    }

    async fn latest_account_token_at(&self, user: UserId, purpose: TokenPurpose) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM account_tokens WHERE user_id = $1 AND purpose = $2")
                .bind(user.to_string())
                .bind(purpose.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
        at.map(|v| Timestamp::from_microsecond(v).map_err(|e| corrupt("created_at", e))).transpose()
    }

    async fn void_account_tokens(&self, user: UserId, purpose: TokenPurpose, now: Timestamp) -> StoreResult<u64> {
        let done = self
            .write_alone(
                sqlx::query(
                    "UPDATE account_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                )
                .bind(user.to_string())
                .bind(purpose.as_str())
                .bind(us(now)),
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn record_address_failure(
        &self,
        address: &str,
        bucket: i64,
        since: i64,
        forget_before: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO address_failures (address, bucket, failures) VALUES ($1, $2, 1) \
             ON CONFLICT (address, bucket) DO UPDATE SET failures = address_failures.failures + 1",
        )
        .bind(address)
        .bind(bucket)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM address_failures WHERE bucket < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(failures), 0) AS BIGINT) FROM address_failures WHERE address = $1 AND bucket >= $2",
        )
        .bind(address)
        .bind(since)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn address_failures_since(&self, address: &str, since: i64) -> StoreResult<u64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(failures), 0) AS BIGINT) FROM address_failures WHERE address = $1 AND bucket >= $2",
        )
        .bind(address)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn insert_security_event(&self, event: &SecurityEvent, audit: &AuditRecord) -> StoreResult<AuditEntry> {
        let mut tx = self.write_tx().await?;
        sqlx::query(&format!("INSERT INTO security_events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(event.id.to_string())
            .bind(us(event.at))
            .bind(event.user_id.map(|u| u.to_string()))
            .bind(event.actor_id.map(|u| u.to_string()))
            .bind(event.kind.as_str())
            .bind(&event.address)
            .bind(&event.detail)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let entry = append_audit_on(&mut tx, audit).await?;
        self.commit(tx).await?;
        Ok(entry)
    }

    async fn security_events_of_user(&self, user: UserId, limit: u32) -> StoreResult<Vec<SecurityEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM security_events WHERE user_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(user.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(event_from).collect()
    }

    // --- patients and repeat lists ---

    async fn insert_patient(&self, patient: &Patient, account: Option<&UserAccount>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Under the write lock every registration takes, so no other can come between.
        let registered: Option<String> =
            sqlx::query_scalar("SELECT id FROM patients WHERE pharmacy_id = $1 AND nhs_index = $2 LIMIT 1")
                .bind(patient.pharmacy_id.to_string())
                .bind(self.sealer().index(Blind::NhsNumber, patient.nhs_number.as_str()))
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        if registered.is_some() {
            return Err(StoreError::NhsNumberRegistered);
        }
        insert_patient_on(&mut tx, &self.crypt, patient, account).await?;
        self.commit(tx).await
    }

    async fn update_patient(&self, patient: &Patient) -> StoreResult<()> {
        let id = patient.id.to_string();
        let mut tx = self.write_tx().await?;
        let key = match data_key_on(&mut tx, self.sealer(), &id).await {
            Err(StoreError::Corrupt(_)) => return Err(not_found("the patient")),
            other => other?,
        };
        let done = sqlx::query(
            "UPDATE patients SET pharmacy_id = $2, practice_id = $3, given_name = $4, family_name = $5, \
             date_of_birth = $6, nhs_number = $7, email = $8, phone = $9, address = $10, dob_index = $11, \
             nhs_index = $12, email_index = $13 WHERE id = $1",
        )
        .bind(&id)
        .bind(patient.pharmacy_id.to_string())
        .bind(patient.practice_id.to_string())
        .bind_patient(self.sealer(), &key, patient)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found("the patient"));
        }
        index_name_words_on(&mut tx, self.sealer(), patient).await?;
        self.commit(tx).await
    }

    async fn erase_patient(
        &self,
        patient: PatientId,
        by: ErasureBy,
        at: Timestamp,
        addresses: &[Email],
    ) -> StoreResult<bool> {
        let id = patient.to_string();
        let mut tx = self.write_tx().await?;
        let orders = "SELECT id FROM orders WHERE patient_id = $1";
        let user = "SELECT id FROM users WHERE patient_id = $1";
        let open_orders: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "SELECT pharmacy_id, stage, COUNT(*) FROM orders WHERE patient_id = $1 AND {OPEN_STAGES} \
             GROUP BY pharmacy_id, stage"
        ))
        .bind(&id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let closed = open_orders
            .into_iter()
            .map(|(pharmacy, stage, n)| Ok((pharmacy, OrderStage::parse(&stage).map_err(|e| corrupt("stage", e))?, -n)))
            .collect::<StoreResult<Vec<_>>>()?;
        adjust_open_counts_on(&mut tx, closed).await?;
        let mut deleted = 0;
        for sql in [
            format!("DELETE FROM order_transitions WHERE order_id IN ({orders})"),
            format!("DELETE FROM order_items WHERE order_id IN ({orders})"),
            "DELETE FROM orders WHERE patient_id = $1".to_string(),
            "DELETE FROM repeat_items WHERE patient_id = $1".to_string(),
            "DELETE FROM custody_grants WHERE patient_id = $1".to_string(),
            "DELETE FROM patient_name_words WHERE patient_id = $1".to_string(),
            "DELETE FROM retention_due WHERE patient_id = $1".to_string(),
            format!("DELETE FROM security_events WHERE user_id IN ({user}) OR actor_id IN ({user})"),
            // Sessions, links and recovery codes go with the account (ON DELETE CASCADE).
            "DELETE FROM users WHERE patient_id = $1".to_string(),
            "DELETE FROM patients WHERE id = $1".to_string(),
            "DELETE FROM data_keys WHERE key_owner = $1".to_string(),
        ] {
            deleted += sqlx::query(&sql).bind(&id).execute(&mut *tx).await.map_err(map_err)?.rows_affected();
        }
        if !addresses.is_empty() {
            // The addresses are sealed, so each queued email is opened to compare.
            let rows =
                sqlx::query("SELECT id, to_address FROM outbox_emails").fetch_all(&mut *tx).await.map_err(map_err)?;
            for row in &rows {
                let email_id: String = col(row, "id")?;
                let to = open(
                    &self.crypt.outbox,
                    "outbox_emails",
                    "to_address",
                    &email_id,
                    &col::<String>(row, "to_address")?,
                )?;
                if addresses.iter().any(|a| a.as_str() == to) {
                    sqlx::query("DELETE FROM outbox_emails WHERE id = $1")
                        .bind(&email_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
            }
        }
        sqlx::query(
            "INSERT INTO erasures (patient_id, erased_at, requested_by) VALUES ($1, $2, $3) \
             ON CONFLICT (patient_id) DO NOTHING",
        )
        .bind(&id)
        .bind(us(at))
        .bind(by.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await?;
        Ok(deleted > 0)
    }

    async fn erased_at(&self, patient: PatientId) -> StoreResult<Option<Timestamp>> {
        let at: Option<i64> = sqlx::query_scalar("SELECT erased_at FROM erasures WHERE patient_id = $1")
            .bind(patient.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        at.map(|us| Timestamp::from_microsecond(us).map_err(|e| corrupt("erased_at", e))).transpose()
    }

    async fn patient(&self, id: PatientId) -> StoreResult<Option<Patient>> {
        patient_on(&mut *self.conn().await?, &self.crypt, id).await
    }

    async fn search_patients(
        &self,
        pharmacy: PharmacyId,
        query: &PatientQuery,
        limit: u32,
    ) -> StoreResult<Vec<Patient>> {
        let mut binds: Vec<String> = vec![pharmacy.to_string()];
        let mut sql = format!("SELECT {PATIENT_COLS} FROM {PATIENTS_KEYED} WHERE pharmacy_id = $1");
        // Each word typed ("ann jones", "jones ann", "dyke") must be a whole word of the given
        // or family name: the names are sealed, so only blind indexes of their words compare.
        for word in name_words(query.name.as_deref().unwrap_or("")).iter().take(4) {
            let p = binds.len() + 1;
            sql.push_str(&format!(" AND id IN (SELECT patient_id FROM patient_name_words WHERE word_index = ${p})"));
            binds.push(self.sealer().index(Blind::Name, word));
        }
        if let Some(dob) = query.date_of_birth {
            sql.push_str(&format!(" AND dob_index = ${}", binds.len() + 1));
            binds.push(self.sealer().index(Blind::DateOfBirth, &dob.to_string()));
        }
        if let Some(nhs) = query.nhs_number.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            sql.push_str(&format!(" AND nhs_index = ${}", binds.len() + 1));
            binds.push(self.sealer().index(Blind::NhsNumber, nhs));
        }
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        let mut found = rows.iter().map(|r| patient_from(&self.crypt, r)).collect::<StoreResult<Vec<_>>>()?;
        // Sorted after opening, as the database sees only ciphertext.
        found.sort_by_cached_key(|p| (fold(p.family_name.as_str()), fold(p.given_name.as_str()), p.id));
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(found)
    }

    async fn insert_repeat_item(&self, item: &RepeatItem) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_repeat_item_on(&mut tx, &self.crypt, item).await?;
        self.commit(tx).await
    }

    async fn update_repeat_item(&self, item: &RepeatItem) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let key = data_key_on(&mut tx, self.sealer(), &item.patient_id.to_string()).await?;
        if !update_repeat_item_on(&mut tx, &key, item).await? {
            return Err(not_found("the repeat item"));
        }
        // A changed cycle changes when the line's orders may go.
        mark_retention_due_on(&mut tx, &[item.patient_id]).await?;
        self.commit(tx).await
    }

    async fn stop_repeat_item(&self, id: RepeatItemId) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let stopped: Option<String> = sqlx::query_scalar(
            "UPDATE repeat_items SET active = $2 WHERE id = $1 AND active = $3 RETURNING patient_id",
        )
        .bind(id.to_string())
        .bind(flag(false))
        .bind(flag(true))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(patient) = stopped else {
            return Ok(false);
        };
        // As for any changed line: it may change which of the patient's orders can go.
        mark_retention_due_on(&mut tx, &[patient.parse().map_err(|e| corrupt("patient_id", e))?]).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn repeat_item(&self, id: RepeatItemId) -> StoreResult<Option<RepeatItem>> {
        let row = sqlx::query(&format!("SELECT {REPEAT_COLS} FROM {REPEATS_KEYED} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| repeat_item_from(&self.crypt, r)).transpose()
    }

    async fn repeat_items(&self, patient: PatientId) -> StoreResult<Vec<RepeatItem>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPEAT_COLS} FROM {REPEATS_KEYED} WHERE patient_id = $1 {REPEAT_LIST_ORDER}"
        ))
        .bind(patient.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        // Every line is the one patient's, under their data key: it is unwrapped once.
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let key = row_key(&self.crypt.sealer, first, "a repeat item")?;
        rows.iter().map(|r| repeat_item_keyed(&key, r)).collect()
    }

    async fn patient_with_lines_held(
        &self,
        id: PatientId,
        which: WhichLines<'_>,
    ) -> StoreResult<Option<(Patient, Vec<(RepeatItem, bool)>)>> {
        // The patient, their id as $1, then the open states a line may be held by.
        let leading: Vec<String> = std::iter::once(id.to_string()).chain(open_item_states()).collect();
        // One statement for the patient with their whole list, or with up to ID_CHUNK chosen lines
        // (a statement for each ID_CHUNK more): every round trip to PostgreSQL wakes its backend.
        // The line condition sits inside the join, so the patient's row comes back without lines.
        let select = |only: &str| {
            format!(
                "SELECT {PATIENT_LINE_COLS}, CASE WHEN EXISTS (SELECT 1 FROM order_items i \
                 WHERE i.repeat_item_id = repeat_items.id AND i.state IN ({})) \
                 THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END AS held \
                 FROM {PATIENT_LINES_FROM} {only} WHERE patients.id = $1 {REPEAT_LIST_ORDER}",
                placeholders(2, leading.len() - 1)
            )
        };
        let mut conn = self.conn().await?;
        let rows = match which {
            WhichLines::All => fetch_bound(&mut conn, &select(""), &leading).await?,
            WhichLines::Only([]) => fetch_bound(&mut conn, &select("AND 1 = 0"), &leading).await?,
            WhichLines::Only(chosen) => {
                let chosen: Vec<String> = chosen.iter().map(ToString::to_string).collect();
                fetch_in(&mut conn, &leading, &chosen, |list| select(&format!("AND repeat_items.id IN ({list})")))
                    .await?
            }
        };
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        // Every row is the patient's, with their data key: it is unwrapped once.
        let key = row_key(&self.crypt.sealer, first, "a patient")?;
        let patient = patient_keyed(&key, first, &PATIENT_LISTED_IDS)?;
        let mut lines = Vec::with_capacity(rows.len());
        for r in &rows {
            if col::<Option<String>>(r, "id")?.is_some() {
                lines.push((repeat_item_keyed(&key, r)?, bool_col(r, "held")?));
            }
        }
        Ok(Some((patient, lines)))
    }

    // --- orders ---

    async fn insert_order(
        &self,
        order: &Order,
        transitions: &[Transition],
        emails: &[OutgoingEmail],
    ) -> StoreResult<()> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let write =
            NewOrderWrite { order: order.clone(), transitions: transitions.to_vec(), emails: emails.to_vec(), done };
        let Some(queue) = &self.new_orders else {
            // The order writer's own copy: a group of one, written the same way.
            let written = self.commit_order_group(std::slice::from_ref(&write)).await.into_iter().next();
            return written.unwrap_or_else(|| Err(StoreError::Database("the order was not written".into())));
        };
        let stopped = || StoreError::Unavailable("the order writer has stopped".into());
        queue.send(write).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn order(&self, id: OrderId) -> StoreResult<Option<StoredOrder>> {
        let mut conn = self.conn().await?;
        let Some(row) = sqlx::query(&format!("SELECT {ORDER_COLS}, {KEY_COLS} FROM {ORDERS_KEYED} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let key = opt_row_key(&self.crypt.sealer, &row)?;
        let (order, version) = order_from(key.as_ref(), &row)?;
        let mut orders = [order];
        attach_items(&mut conn, &mut orders, &[key]).await?;
        let [order] = orders;
        Ok(Some(StoredOrder { order, version }))
    }

    async fn save_order(
        &self,
        order: &Order,
        expected_version: i64,
        transitions: &[Transition],
        issued: &[RepeatItem],
        emails: &[OutgoingEmail],
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let id = order.id.to_string();
        let key = data_key_on(&mut tx, self.sealer(), &order.patient_id.to_string()).await?;
        let stale = || {
            StoreError::Conflict(
                "this order was changed by someone else in the meantime; reload it and try again".into(),
            )
        };
        // The stage it leaves, for the open-stage counts; read under the write lock.
        let before: Option<(String, String)> =
            sqlx::query_as("SELECT stage, pharmacy_id FROM orders WHERE id = $1 AND version = $2")
                .bind(&id)
                .bind(expected_version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
        let Some((before, pharmacy)) = before else {
            return Err(stale());
        };
        let before = OrderStage::parse(&before).map_err(|e| corrupt("stage", e))?;
        let done = sqlx::query(
            "UPDATE orders SET fulfilment = $3, note = $4, accepted = $5, stage = $6, stage_entered_at = $7, \
             version = version + 1 WHERE id = $1 AND version = $2",
        )
        .bind(&id)
        .bind(expected_version)
        .bind(order.fulfilment.as_str())
        .bind(seal_opt(&key, "orders", "note", &id, order.note.as_deref()))
        .bind(flag(order.accepted))
        .bind(order.stage.as_str())
        .bind(us(order.stage_entered_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            // Dropping the transaction rolls it back.
            return Err(stale());
        }
        if before != order.stage {
            adjust_open_counts_on(&mut tx, [(pharmacy.clone(), before, -1), (pharmacy, order.stage, 1)]).await?;
        }
        for item in &order.items {
            let item_id = item.id.to_string();
            let done = sqlx::query("UPDATE order_items SET state = $3, decision = $4 WHERE id = $1 AND order_id = $2")
                .bind(&item_id)
                .bind(&id)
                .bind(item.state.as_str())
                .bind(seal_opt(&key, "order_items", "decision", &item_id, decision_json(&item.decision)?.as_deref()))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Err(not_found("an item of the order"));
            }
        }
        let keyed: Vec<(&DataKey, &Transition)> = transitions.iter().map(|t| (&key, t)).collect();
        insert_transitions_on(&mut tx, &keyed).await?;
        for item in issued {
            if item.patient_id != order.patient_id {
                return Err(StoreError::Database(
                    "a repeat item of another patient cannot change with this order".into(),
                ));
            }
            let done = sqlx::query(
                "UPDATE repeat_items SET issues_remaining = $3, next_due = $4 WHERE id = $1 AND patient_id = $2",
            )
            .bind(item.id.to_string())
            .bind(item.patient_id.to_string())
            .bind(i64::from(item.issues_remaining))
            .bind(item.next_due.map(|d| d.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            if done.rows_affected() != 1 {
                return Err(not_found("a repeat item of the order"));
            }
        }
        if repeatrx_domain::retention::save_can_make_orders_purgeable(order, !issued.is_empty()) {
            mark_retention_due_on(&mut tx, &[order.patient_id]).await?;
        }
        insert_emails_on(&mut tx, &self.crypt, emails).await?;
        self.commit(tx).await
    }

    async fn orders_of_patient(&self, patient: PatientId) -> StoreResult<Vec<Order>> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLS}, {KEY_COLS} FROM {ORDERS_KEYED} WHERE patient_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(patient.to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
        Ok(orders_keyed(&mut conn, &self.crypt, &rows).await?.0)
    }

    async fn order_transitions(&self, order: OrderId) -> StoreResult<Vec<Transition>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRANSITION_COLS}, {KEY_COLS} FROM {TRANSITIONS_KEYED} WHERE t.order_id = $1 ORDER BY t.seq"
        ))
        .bind(order.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(|r| transition_from(&self.crypt, r)).collect()
    }

    async fn pharmacy_orders(&self, pharmacy: PharmacyId, filter: &OrderFilter) -> StoreResult<Vec<ListedOrder>> {
        self.org_orders(OrgColumn::Pharmacy, pharmacy.to_string(), filter).await
    }

    async fn pharmacy_open_stage_counts(&self, pharmacy: PharmacyId) -> StoreResult<Vec<(OrderStage, i64)>> {
        let rows = sqlx::query("SELECT stage, n FROM open_order_counts WHERE pharmacy_id = $1")
            .bind(pharmacy.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let mut counts: HashMap<OrderStage, i64> = HashMap::new();
        for row in &rows {
            let stage: String = col(row, "stage")?;
            let stage = OrderStage::parse(&stage).map_err(|e| corrupt("stage", e))?;
            counts.insert(stage, col(row, "n")?);
        }
        Ok(OrderStage::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .map(|s| (s, counts.get(&s).copied().unwrap_or(0)))
            .collect())
    }

    async fn practice_orders(&self, practice: PracticeId, filter: &OrderFilter) -> StoreResult<Vec<ListedOrder>> {
        self.org_orders(OrgColumn::Practice, practice.to_string(), filter).await
    }

    // --- email outbox ---

    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry> {
        let mut tx = self.write_tx().await?;
        let entry = append_audit_on(&mut tx, record).await?;
        self.commit(tx).await?;
        Ok(entry)
    }

    async fn audit_entries(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn patients_due_for_retention(
        &self,
        now: Timestamp,
        after: Option<&RetentionDue>,
        limit: u32,
    ) -> StoreResult<Vec<RetentionDue>> {
        let rows = sqlx::query(RETENTION_DUE_PAGE)
            .bind(us(now))
            .bind(after.map_or(i64::MIN, |a| us(a.due)))
            .bind(after.map(|a| a.patient.to_string()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok(RetentionDue {
                    patient: col::<String>(row, "patient_id")?.parse().map_err(|e| corrupt("patient_id", e))?,
                    due: ts_col(row, "due_at")?,
                    marks: col(row, "marks")?,
                })
            })
            .collect()
    }

    async fn settle_retention(&self, settled: &[RetentionSettled]) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let named: Vec<String> = settled.iter().flat_map(|s| s.purge.iter().map(ToString::to_string)).collect();
        let finished = fetch_in(&mut tx, &[], &named, |list| {
            format!("SELECT id FROM orders WHERE id IN ({list}) AND {FINISHED_STAGES}")
        })
        .await?
        .iter()
        .map(|row| col::<String>(row, "id"))
        .collect::<StoreResult<Vec<_>>>()?;
        for chunk in finished.chunks(ID_CHUNK) {
            let list = placeholders(1, chunk.len());
            for sql in [
                format!("DELETE FROM order_transitions WHERE order_id IN ({list})"),
                format!("DELETE FROM order_items WHERE order_id IN ({list})"),
                format!("DELETE FROM orders WHERE id IN ({list})"),
            ] {
                let mut delete = sqlx::query(&sql);
                for id in chunk {
                    delete = delete.bind(id);
                }
                delete.execute(&mut *tx).await.map_err(map_err)?;
            }
        }
        // A patient's row changes only if `marks` is unchanged: no write has marked them since
        // the job read them. A few statements for the whole batch, not one per patient, so that
        // the write lock is held briefly. (`column1`... name a VALUES list's columns in both
        // engines.)
        let again: Vec<(&RetentionDue, Timestamp)> =
            settled.iter().filter_map(|s| s.next.map(|next| (&s.due, next))).collect();
        for chunk in again.chunks(ID_CHUNK) {
            let sql = format!(
                "UPDATE retention_due SET due_at = v.column3 FROM (VALUES {}) AS v \
                 WHERE retention_due.patient_id = v.column1 AND retention_due.marks = v.column2",
                value_rows(3, chunk.len())
            );
            let mut update = sqlx::query(&sql);
            for (due, next) in chunk {
                update = update.bind(due.patient.to_string()).bind(due.marks).bind(us(*next));
            }
            update.execute(&mut *tx).await.map_err(map_err)?;
        }
        let done: Vec<&RetentionDue> = settled.iter().filter(|s| s.next.is_none()).map(|s| &s.due).collect();
        for chunk in done.chunks(ID_CHUNK) {
            let sql = format!(
                "DELETE FROM retention_due WHERE (patient_id, marks) IN (VALUES {})",
                value_rows(2, chunk.len())
            );
            let mut delete = sqlx::query(&sql);
            for due in chunk {
                delete = delete.bind(due.patient.to_string()).bind(due.marks);
            }
            delete.execute(&mut *tx).await.map_err(map_err)?;
        }
        self.commit(tx).await?;
        Ok(finished.len() as u64)
    }

    async fn audit_head(&self) -> StoreResult<Option<AuditEntry>> {
        let row = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_log ORDER BY seq DESC LIMIT 1"))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(audit_from).transpose()
    }

    async fn search_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        // Built from fixed fragments; every value is bound.
        let mut binds: Vec<String> = vec![filter.organisation.clone()];
        let mut scope = vec!["organisation = $1".to_string()];
        if let Some(p) = filter.patients_of_pharmacy {
            binds.push(p.to_string());
            scope.push(format!("patient_id IN (SELECT id FROM patients WHERE pharmacy_id = ${})", binds.len()));
        }
        if let Some(p) = filter.patients_of_practice {
            binds.push(p.to_string());
            scope.push(format!("patient_id IN (SELECT id FROM patients WHERE practice_id = ${})", binds.len()));
        }
        let mut sql = format!("SELECT {AUDIT_COLS} FROM audit_log WHERE ({})", scope.join(" OR "));
        let mut ints: Vec<i64> = Vec::new();
        if let Some(a) = filter.actor {
            binds.push(a.to_string());
            sql.push_str(&format!(" AND actor_user_id = ${}", binds.len()));
        }
        if let Some(p) = filter.patient {
            binds.push(p.to_string());
            sql.push_str(&format!(" AND patient_id = ${}", binds.len()));
        }
        if let Some(prefix) = &filter.action_prefix {
            binds.push(like_prefix(prefix));
            sql.push_str(&format!(" AND action LIKE ${} ESCAPE '\\'", binds.len()));
        }
        let mut n = binds.len();
        for (column, op, value) in
            [("at", ">=", filter.from.map(us)), ("at", "<", filter.until.map(us)), ("seq", "<", filter.before_seq)]
        {
            if let Some(v) = value {
                n += 1;
                ints.push(v);
                sql.push_str(&format!(" AND {column} {op} ${n}"));
            }
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", n + 1));
        // Text binds come first ($1..), then the numbers in order, then the limit.
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        for v in &ints {
            query = query.bind(*v);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_entries_for_patient(&self, patient: PatientId, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLS} FROM audit_log WHERE patient_id = $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(patient.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(audit_from).collect()
    }

    async fn enqueue_emails(&self, emails: &[OutgoingEmail]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_emails_on(&mut tx, &self.crypt, emails).await?;
        self.commit(tx).await
    }

    async fn claim_emails(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutgoingEmail>> {
        // One statement, so SQLite's write lock makes the claim atomic: two servers can never
        // lease the same email.
        let rows = sqlx::query(&format!(
            "UPDATE outbox_emails SET lease_until = $2 WHERE id IN ( \
                 SELECT id FROM outbox_emails \
                 WHERE status = 'pending' AND not_before <= $1 AND (lease_until IS NULL OR lease_until < $1) \
                 ORDER BY not_before, created_at, id LIMIT $3) \
             RETURNING {EMAIL_COLS}"
        ))
        .bind(us(now))
        .bind(us(lease_until))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.write_conn().await?)
        .await
        .map_err(map_err)?;
        let mut emails = rows.iter().map(|r| email_from(&self.crypt, r)).collect::<StoreResult<Vec<_>>>()?;
        emails.sort_by_key(|e| (e.not_before, e.created_at, e.id));
        Ok(emails)
    }

    async fn mark_email_sent(&self, id: EmailId, at: Timestamp) -> StoreResult<()> {
        self.write_alone(
            sqlx::query("UPDATE outbox_emails SET status = 'sent', sent_at = $2, lease_until = NULL WHERE id = $1")
                .bind(id.to_string())
                .bind(us(at)),
        )
        .await?;
        Ok(())
    }

    async fn mark_email_failed(&self, id: EmailId, error: &str, retry_at: Option<Timestamp>) -> StoreResult<()> {
        let q = match retry_at {
            Some(retry_at) => sqlx::query(
                "UPDATE outbox_emails SET attempts = attempts + 1, last_error = $2, not_before = $3, \
                 lease_until = NULL WHERE id = $1",
            )
            .bind(id.to_string())
            .bind(error)
            .bind(us(retry_at)),
            None => sqlx::query(
                "UPDATE outbox_emails SET attempts = attempts + 1, last_error = $2, status = 'failed', \
                 lease_until = NULL WHERE id = $1",
            )
            .bind(id.to_string())
            .bind(error),
        };
        self.write_alone(q).await?;
        Ok(())
    }

    async fn purge_finished_emails(&self, before: Timestamp) -> StoreResult<u64> {
        let done = self
            .write_alone(
                sqlx::query("DELETE FROM outbox_emails WHERE status IN ('sent', 'failed') AND created_at < $1")
                    .bind(us(before)),
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn recent_emails(&self, limit: u32) -> StoreResult<Vec<OutgoingEmail>> {
        let rows =
            sqlx::query(&format!("SELECT {EMAIL_COLS} FROM outbox_emails ORDER BY created_at DESC, id DESC LIMIT $1"))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter().map(|r| email_from(&self.crypt, r)).collect()
    }

    // --- encryption keys ---

    async fn data_keys_to_rewrap(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_keys WHERE key_master <> $1")
            .bind(self.sealer().current_master_id())
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn adopt_current_master_key(&self) -> StoreResult<()> {
        self.set_meta(MASTER_KEY_META, &self.sealer().current_master_id()).await
    }

    async fn rewrap_data_keys(&self, limit: u32) -> StoreResult<u64> {
        let current = self.sealer().current_master_id();
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "SELECT key_owner, key_master, key_wrapped FROM data_keys WHERE key_master <> $1 ORDER BY key_owner LIMIT $2",
        )
        .bind(&current)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut done = 0;
        for row in &rows {
            let owner: String = col(row, "key_owner")?;
            let wrapped = WrappedKey { master_id: col(row, "key_master")?, sealed: col(row, "key_wrapped")? };
            let rewrapped = self.sealer().rewrap(&owner, &wrapped)?;
            done += sqlx::query("UPDATE data_keys SET key_master = $2, key_wrapped = $3 WHERE key_owner = $1")
                .bind(&owner)
                .bind(&rewrapped.master_id)
                .bind(&rewrapped.sealed)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
        }
        self.commit(tx).await?;
        Ok(done)
    }

    // --- background jobs ---

    async fn claim_job(&self, job: &str, owner: &str, now: Timestamp, lease_until: Timestamp) -> StoreResult<bool> {
        let row = sqlx::query(
            "INSERT INTO jobs (name, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE jobs.lease_until < $4 OR jobs.owner = excluded.owner \
             RETURNING owner",
        )
        .bind(job)
        .bind(owner)
        .bind(us(lease_until))
        .bind(us(now))
        .fetch_optional(&mut *self.write_conn().await?)
        .await
        .map_err(map_err)?;
        match row {
            Some(row) => Ok(col::<String>(&row, "owner")? == owner),
            None => Ok(false),
        }
    }

    async fn repeat_items_needing_reminder(&self, due_on_or_before: Date, limit: u32) -> StoreResult<Vec<RepeatItem>> {
        let rows = sqlx::query(&reminder_scan_sql())
            .bind(due_on_or_before.to_string())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(|r| repeat_item_from(&self.crypt, r)).collect()
    }

    /// Idempotent: when the reminder for `due` is already recorded, nothing changes and the email
    /// is not queued a second time.
    async fn record_reminder(&self, item: RepeatItemId, due: Date, email: Option<&OutgoingEmail>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let due = due.to_string();
        let done = sqlx::query(
            "UPDATE repeat_items SET reminded_for = $2 WHERE id = $1 AND (reminded_for IS NULL OR reminded_for <> $2)",
        )
        .bind(item.to_string())
        .bind(&due)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 1 {
            if let Some(email) = email {
                insert_emails_on(&mut tx, &self.crypt, std::slice::from_ref(email)).await?;
            }
        }
        self.commit(tx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_prefix("o'b"), "o'b%");
        assert_eq!(like_prefix("50%_x\\"), "50\\%\\_x\\\\%");
    }

    #[test]
    fn the_open_and_finished_stage_conditions_list_every_stage_as_the_domain_and_partial_indexes_do() {
        let listed = |open: bool| -> String {
            let stages: Vec<String> = OrderStage::ALL
                .into_iter()
                .filter(|s| s.is_open() == open)
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            format!("stage IN ({})", stages.join(", "))
        };
        assert_eq!(OPEN_STAGES, listed(true));
        assert_eq!(FINISHED_STAGES, listed(false));
        for migration in [
            include_str!("../migrations/sqlite/0014_open_order_indexes.sql"),
            include_str!("../migrations/postgres/0003_open_order_indexes.sql"),
        ] {
            assert_eq!(migration.matches(&format!("WHERE {OPEN_STAGES};")).count(), 2, "{migration}");
        }
    }

    #[test]
    fn the_reminder_scan_states_the_condition_of_its_partial_index() {
        for migration in [
            include_str!("../migrations/sqlite/0016_reminder_index.sql"),
            include_str!("../migrations/postgres/0005_reminder_index.sql"),
        ] {
            assert!(migration.contains(&format!("WHERE {AWAITING_REMINDER};")), "{migration}");
        }
    }

    /// The steps of the plan `explain` gives for `sql` with `bind`'s values, from column `column`.
    async fn plan_of(
        conn: &mut AnyConnection,
        explain: &str,
        column: usize,
        sql: &str,
        bind: impl for<'q> FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
    ) -> Vec<String> {
        use sqlx::Row;
        let sql = format!("{explain} {sql}");
        let rows = bind(sqlx::query(&sql)).fetch_all(conn).await.unwrap();
        rows.iter().map(|row| row.try_get::<String, _>(column).unwrap()).collect()
    }

    fn reminder_scan(q: AnyQuery<'_>) -> AnyQuery<'_> {
        q.bind("2026-12-06").bind(200_i64)
    }

    fn retention_page(q: AnyQuery<'_>) -> AnyQuery<'_> {
        q.bind(1_800_000_000_000_000_i64).bind(0_i64).bind("0190c3e1-0000-4000-8000-000000000000").bind(200_i64)
    }

    /// A SQLite store and a PostgreSQL store, each on a fresh database.
    async fn both_engines() -> (tempfile::TempDir, SqlStore, SqlStore) {
        use repeatrx_crypto::{FixedKeys, Keys};
        let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqlStore::open(&dir.path().join("plan.db"), keys.clone()).await.unwrap();
        let url = crate::testdb::fresh_postgres_database().await.unwrap();
        let postgres = SqlStore::connect_postgres(&url, keys).await.unwrap();
        (dir, sqlite, postgres)
    }

    /// A pharmacy's queue: every open stage, oldest first; its parameters are [`queue_page`]'s.
    fn queue_listing_sql() -> String {
        let open = OrderStage::ALL.into_iter().filter(|s| s.is_open()).collect();
        let filter = OrderFilter { stages: open, patients: None, limit: 50, offset: 0 };
        let (sql, binds) = listing_sql(OrgColumn::Pharmacy, "a pharmacy".into(), &filter);
        assert_eq!(binds.len(), 1, "only the pharmacy: the open stages are written out, as the index states them");
        sql
    }

    fn queue_page(q: AnyQuery<'_>) -> AnyQuery<'_> {
        q.bind("0190c3e1-0000-4000-8000-000000000000").bind(50_i64).bind(0_i64)
    }

    /// Both engines answer the reminder scan from its partial index, a queue page of orders with
    /// their patients from the open orders' partial index (in queue order, so without sorting),
    /// and start a page of the patients due for retention at the cursor in `retention_due_at`
    /// (PostgreSQL told to avoid whole-table scans and sorts, which on an empty table would
    /// otherwise be as cheap).
    #[tokio::test]
    async fn the_reminder_scan_the_queue_and_the_retention_pages_read_their_indexes_on_both_engines() {
        let (_dir, sqlite, postgres) = both_engines().await;
        let mut conn = sqlite.pool().acquire().await.unwrap();
        let plan = plan_of(&mut conn, "EXPLAIN QUERY PLAN", 3, &queue_listing_sql(), queue_page).await;
        assert!(plan.first().is_some_and(|s| s.contains("USING INDEX orders_pharmacy_open")), "SQLite: {plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "SQLite sorts nothing: {plan:?}");
        let plan = plan_of(&mut conn, "EXPLAIN QUERY PLAN", 3, &reminder_scan_sql(), reminder_scan).await;
        assert!(plan.iter().any(|step| step.contains("repeat_items_awaiting_reminder")), "SQLite: {plan:?}");
        let plan = plan_of(&mut conn, "EXPLAIN QUERY PLAN", 3, RETENTION_DUE_PAGE, retention_page).await;
        let from_cursor = "USING INDEX retention_due_at ((due_at,patient_id)>(?,?) AND due_at<?)";
        assert!(plan.iter().any(|step| step.contains(from_cursor)), "SQLite: {plan:?}");

        let mut conn = postgres.pool().acquire().await.unwrap();
        sqlx::raw_sql("SET enable_seqscan = off; SET enable_sort = off").execute(&mut *conn).await.unwrap();
        let plan = plan_of(&mut conn, "EXPLAIN", 0, &queue_listing_sql(), queue_page).await;
        assert!(plan.iter().any(|step| step.contains("using orders_pharmacy_open")), "PostgreSQL: {plan:?}");
        assert!(!plan.iter().any(|step| step.contains("Sort")), "PostgreSQL sorts nothing: {plan:?}");
        let plan = plan_of(&mut conn, "EXPLAIN", 0, &reminder_scan_sql(), reminder_scan).await;
        assert!(plan.iter().any(|step| step.contains("repeat_items_awaiting_reminder")), "PostgreSQL: {plan:?}");
        let plan = plan_of(&mut conn, "EXPLAIN", 0, RETENTION_DUE_PAGE, retention_page).await;
        assert!(plan.iter().any(|step| step.contains("Index Scan using retention_due_at")), "PostgreSQL: {plan:?}");
        let cond = plan.iter().find(|step| step.contains("Index Cond")).map(String::as_str).unwrap_or_default();
        assert!(cond.contains("ROW(due_at, patient_id) > ROW("), "the cursor bounds the index scan: {plan:?}");
    }

    /// Undoes the retention-due migration (the last of each engine), as if the database had not
    /// been upgraded yet.
    async fn before_retention_marks(store: &SqlStore) {
        let last: i64 =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(store.pool()).await.unwrap();
        let expected = if store.engine() == Engine::Sqlite { 17 } else { 6 };
        assert_eq!(last, expected, "the retention-due migration is the latest");
        sqlx::query("DROP TABLE retention_due").execute(store.pool()).await.unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1").bind(last).execute(store.pool()).await.unwrap();
    }

    /// Upgrading marks every patient with a finished order due at the retention job's first run,
    /// and nobody else.
    #[tokio::test]
    async fn upgrading_marks_each_patient_with_finished_orders_due_on_both_engines() {
        use repeatrx_crypto::{FixedKeys, Keys};
        let keys: Arc<dyn KeySource> = Arc::new(FixedKeys::new(Keys::generate()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.db");
        let url = crate::testdb::fresh_postgres_database().await.unwrap();
        for engine in [Engine::Sqlite, Engine::Postgres] {
            let open = async || match engine {
                Engine::Sqlite => SqlStore::open(&path, keys.clone()).await.unwrap(),
                Engine::Postgres => SqlStore::connect_postgres(&url, keys.clone()).await.unwrap(),
            };
            let store = open().await;
            let (finished, open_only) = crate::conformance::a_finished_and_an_open_patient(&store).await;
            before_retention_marks(&store).await;
            store.pool().close().await;
            let store = open().await;
            let now = crate::conformance::now();
            let due = crate::conformance::retention_due_of(&store, finished, now).await;
            assert_eq!(due.map(|d| (d.due, d.marks)), Some((Timestamp::UNIX_EPOCH, 0)), "{engine:?}");
            assert_eq!(crate::conformance::retention_due_of(&store, open_only, now).await, None, "{engine:?}");
        }
    }

    /// The server ends every connection of the pool (as a restart or failover does): once they
    /// have been idle for [`PING_AFTER_IDLE`], the next reads find them cut before using them
    /// and are answered on fresh ones.
    #[tokio::test]
    async fn connections_the_server_cut_while_idle_are_replaced_before_use() {
        use repeatrx_crypto::{FixedKeys, Keys};
        let url = crate::testdb::fresh_postgres_database().await.unwrap();
        let store = SqlStore::connect_postgres(&url, Arc::new(FixedKeys::new(Keys::generate()))).await.unwrap();
        let reads = || async { futures::future::join_all((0..4).map(|_| store.list_pharmacies())).await };
        assert!(reads().await.iter().all(Result::is_ok));
        let mut other = <AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut other)
        .await
        .unwrap();
        assert!(!cut.is_empty() && cut.iter().all(|c| *c), "{cut:?}");
        tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
        for read in reads().await {
            assert!(read.is_ok(), "{read:?}");
        }
    }

    /// How many of 40 back-to-back write transactions of 25 ms each, the first already begun,
    /// commit before `write` is done.
    async fn transactions_committed_before(store: &SqlStore, write: impl std::future::Future<Output = ()>) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let committed = Arc::new(AtomicUsize::new(0));
        let (first, first_committed) = tokio::sync::oneshot::channel();
        let stream = tokio::spawn({
            let (store, committed) = (store.clone(), committed.clone());
            async move {
                let mut first = Some(first);
                for _ in 0..40 {
                    let tx = store.write_tx().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    store.commit(tx).await.unwrap();
                    committed.fetch_add(1, Ordering::SeqCst);
                    if let Some(first) = first.take() {
                        let _ = first.send(());
                    }
                }
            }
        });
        first_committed.await.unwrap();
        write.await;
        let before = committed.load(Ordering::SeqCst);
        stream.await.unwrap();
        before
    }

    /// SQLite: a write outside a transaction, and the backup shipping what those transactions
    /// journaled, wait their turn behind the write transactions queued before them. Polling for
    /// SQLite's lock from the busy handler instead, they found it free only in the moments between
    /// one transaction's commit and the next one's `BEGIN`, so they waited until a stream of them
    /// ended.
    #[tokio::test]
    async fn writes_outside_a_transaction_get_their_turn_between_back_to_back_transactions() {
        use crate::backup::{BackupPolicy, Shipper, Target};
        use repeatrx_crypto::{FixedKeys, Keys};
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqlStore::open(&dir.path().join("turns.db"), Arc::new(FixedKeys::new(Keys::generate()))).await.unwrap();
        let single = transactions_committed_before(&store, async {
            store.set_meta("turns", "taken").await.unwrap();
        })
        .await;
        assert!(single <= 3, "a single statement waited for {single} of 40 transactions");

        let folder = [Target::Folder(dir.path().join("backup"))];
        let shipper = Shipper::start(&store, dir.path(), &folder, BackupPolicy::default()).await.unwrap();
        let shipping = transactions_committed_before(&store, async {
            assert!(shipper.ship_once().await.unwrap() > 0, "the first transaction's journal was shipped");
        })
        .await;
        assert!(shipping <= 3, "shipping waited for {shipping} of 40 transactions");
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn conflicts_never_echo_values() {
        let s = conflict_sentence("UNIQUE constraint failed: users.email");
        assert_eq!(s, "that email address already has an account");
    }
}
