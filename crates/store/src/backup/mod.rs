//! Continuous backup of the SQLite database (P3, P4): every change is journaled in the
//! transaction that makes it ([`journal`]), shipped every quarter second, sealed, to up to two
//! destinations (a folder, an S3-compatible bucket, through `object_store`), with periodic
//! snapshots (`VACUUM INTO`); [`restore`] rebuilds the database as it was at any second of the
//! kept history. Why this design rather than shipping SQLite's write-ahead log: see
//! docs/design/storage.md.
//!
//! Objects, under a destination:
//! - `GEN/snapshots/SEQ-TAKEN.rxs`: the whole database, holding every journaled change up to
//!   journal number SEQ, taken at TAKEN (unix microseconds);
//! - `GEN/journal/FROM-TO-AT.rxj`: journal rows FROM..=TO, the last stamped AT.
//!
//! A generation (GEN, `STARTED-RANDOM`) is one unbroken history: a new one starts when
//! journaling starts on a database that was not journaling (first backup, or a restored copy),
//! or after an upgrade changed the tables, so two histories never mix.
pub mod journal;
pub mod object;
pub mod restore;

use crate::sealing::Sealer;
pub(crate) use crate::sql::map_err;
use crate::sql::{Engine, SqlStore};
use crate::{StoreError, StoreResult};
use futures::TryStreamExt;
use jiff::{SignedDuration, Timestamp};
use object::{seal_object, ObjectOpener, ObjectSealer, CHUNK};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where backups go.
#[derive(Clone)]
pub enum Target {
    /// A folder, ideally on another disk or machine (a mounted network share).
    Folder(PathBuf),
    /// A bucket of an S3-compatible object store.
    S3(S3Target),
}

#[derive(Clone)]
pub struct S3Target {
    pub bucket: String,
    /// `https://...` of an S3-compatible service; none for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A folder inside the bucket.
    pub prefix: Option<String>,
    /// Plain HTTP, for a test server on this machine only (refused by production's config).
    pub allow_http: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.label())
    }
}

impl Target {
    /// How the target is named in messages (never with its secret).
    pub fn label(&self) -> String {
        match self {
            Target::Folder(p) => format!("folder {}", p.display()),
            Target::S3(s) => format!(
                "bucket s3://{}/{}{}",
                s.bucket,
                s.prefix.as_deref().unwrap_or(""),
                s.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default()
            ),
        }
    }
}

/// An opened [`Target`].
#[derive(Clone)]
pub struct Destination {
    label: String,
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

fn object_err(label: &str, e: object_store::Error) -> StoreError {
    StoreError::Unavailable(format!("backup {label}: {e}"))
}

impl Destination {
    pub fn open(target: &Target) -> StoreResult<Self> {
        let label = target.label();
        match target {
            Target::Folder(path) => {
                std::fs::create_dir_all(path)
                    .map_err(|e| StoreError::Unavailable(format!("backup {label}: cannot create it: {e}")))?;
                // Flushed to disk, file and folder, before a write returns (object_store's
                // default is not to): the shipper deletes the journal rows a segment holds once it
                // is written, so a segment lost in a power cut after that would be lost for good.
                let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| object_err(&label, e))?
                    .with_fsync(true);
                Ok(Destination { label, store: Arc::new(store), prefix: None })
            }
            Target::S3(s) => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s.bucket)
                    .with_region(&s.region)
                    .with_access_key_id(&s.access_key_id)
                    .with_secret_access_key(&s.secret_access_key)
                    .with_allow_http(s.allow_http);
                if let Some(endpoint) = &s.endpoint {
                    b = b.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                }
                let store = b.build().map_err(|e| object_err(&label, e))?;
                let prefix = s.prefix.as_deref().filter(|p| !p.trim_matches('/').is_empty()).map(ObjectPath::from);
                Ok(Destination { label, store: Arc::new(store), prefix })
            }
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn path(&self, name: &str) -> ObjectPath {
        match &self.prefix {
            Some(p) => ObjectPath::from(format!("{p}/{name}")),
            None => ObjectPath::from(name),
        }
    }

    async fn put(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()> {
        self.store.put(&self.path(name), PutPayload::from(bytes)).await.map_err(|e| object_err(&self.label, e))?;
        Ok(())
    }

    async fn get(&self, name: &str) -> StoreResult<Vec<u8>> {
        let got = self.store.get(&self.path(name)).await.map_err(|e| object_err(&self.label, e))?;
        Ok(got.bytes().await.map_err(|e| object_err(&self.label, e))?.to_vec())
    }

    /// Streams the object called `name` into the file `into`, opening it on the way, so a
    /// snapshot of any size needs only a few megabytes of memory.
    async fn get_opened_into(&self, sealer: &Sealer, name: &str, into: &Path) -> StoreResult<()> {
        use tokio::io::AsyncWriteExt;
        let fail = |e: std::io::Error| StoreError::Unavailable(format!("writing {}: {e}", into.display()));
        let got = self.store.get(&self.path(name)).await.map_err(|e| object_err(&self.label, e))?;
        let mut stream = got.into_stream();
        let mut opener = ObjectOpener::new(sealer, name);
        let mut file = tokio::fs::File::create_new(into).await.map_err(fail)?;
        while let Some(bytes) = stream.try_next().await.map_err(|e| object_err(&self.label, e))? {
            file.write_all(&opener.push(&bytes)?).await.map_err(fail)?;
        }
        file.write_all(&opener.finish()?).await.map_err(fail)?;
        file.sync_all().await.map_err(fail)?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> StoreResult<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_err(&self.label, e)),
        }
    }

    /// Everything this destination holds, parsed; objects RepeatRx did not write are ignored.
    pub async fn catalogue(&self) -> StoreResult<Catalogue> {
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(self.prefix.as_ref()).try_collect().await.map_err(|e| object_err(&self.label, e))?;
        let mut cat = Catalogue::default();
        for meta in metas {
            let full = meta.location.to_string();
            let name = match &self.prefix {
                Some(p) => full.strip_prefix(&format!("{p}/")).unwrap_or(&full).to_string(),
                None => full,
            };
            if let Some(object) = BackupObject::parse(&name) {
                cat.generations.entry(object.generation().to_string()).or_default().add(object);
            }
        }
        for g in cat.generations.values_mut() {
            g.snapshots.sort_by_key(|s| s.seq);
            g.segments.sort_by_key(|s| (s.from, std::cmp::Reverse(s.to)));
        }
        Ok(cat)
    }
}

/// A snapshot object, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotObject {
    pub generation: String,
    pub seq: i64,
    pub taken: Timestamp,
}

/// A journal segment, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentObject {
    pub generation: String,
    pub from: i64,
    pub to: i64,
    pub last_at: Timestamp,
}

enum BackupObject {
    Snapshot(SnapshotObject),
    Segment(SegmentObject),
}

impl SnapshotObject {
    pub fn name(&self) -> String {
        format!("{}/snapshots/{:020}-{:020}.rxs", self.generation, self.seq, self.taken.as_microsecond())
    }
}

impl SegmentObject {
    pub fn name(&self) -> String {
        format!(
            "{}/journal/{:020}-{:020}-{:020}.rxj",
            self.generation,
            self.from,
            self.to,
            self.last_at.as_microsecond()
        )
    }
}

impl BackupObject {
    fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split('/');
        let (generation, kind, file) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let number = |s: &str| s.parse::<i64>().ok();
        let time = |s: &str| number(s).and_then(|us| Timestamp::from_microsecond(us).ok());
        let generation = generation.to_string();
        match kind {
            "snapshots" => {
                let (seq, taken) = file.strip_suffix(".rxs")?.split_once('-')?;
                Some(BackupObject::Snapshot(SnapshotObject { generation, seq: number(seq)?, taken: time(taken)? }))
            }
            "journal" => {
                let mut f = file.strip_suffix(".rxj")?.split('-');
                let (from, to, at) = (number(f.next()?)?, number(f.next()?)?, time(f.next()?)?);
                Some(BackupObject::Segment(SegmentObject { generation, from, to, last_at: at }))
            }
            _ => None,
        }
    }

    fn generation(&self) -> &str {
        match self {
            BackupObject::Snapshot(s) => &s.generation,
            BackupObject::Segment(s) => &s.generation,
        }
    }
}

/// What one destination holds.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// By generation name, which sorts by when the generation started.
    pub generations: BTreeMap<String, Generation>,
}

#[derive(Debug, Default)]
pub struct Generation {
    pub snapshots: Vec<SnapshotObject>,
    /// By `from`, then longest first (a segment shipped again after a failure may overlap).
    pub segments: Vec<SegmentObject>,
}

impl Generation {
    fn add(&mut self, o: BackupObject) {
        match o {
            BackupObject::Snapshot(s) => self.snapshots.push(s),
            BackupObject::Segment(s) => self.segments.push(s),
        }
    }
}

/// How often to ship, snapshot, and how much history to keep.
#[derive(Debug, Clone, Copy)]
pub struct BackupPolicy {
    pub ship_every: Duration,
    pub snapshot_every: SignedDuration,
    pub history: SignedDuration,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            ship_every: Duration::from_millis(250),
            snapshot_every: SignedDuration::from_hours(6),
            history: SignedDuration::from_hours(24),
        }
    }
}

/// One journal row as shipped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalRow {
    pub seq: i64,
    pub txn: i64,
    /// Unix microseconds: the commit time of a `commit` row, the statement's time of a `row`.
    pub at: i64,
    pub op: String,
    pub stmt: Option<String>,
}

/// Journal rows per segment at most.
const SEGMENT_ROWS: i64 = 20_000;

/// Ships a SQLite database's journal to its destinations and takes its snapshots.
pub struct Shipper {
    store: SqlStore,
    work_dir: PathBuf,
    destinations: Vec<Destination>,
    policy: BackupPolicy,
    generation: String,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("destinations", &self.destinations)
            .field("generation", &self.generation)
            .finish()
    }
}

fn now_us() -> i64 {
    Timestamp::now().as_microsecond()
}

fn from_us(us: i64) -> StoreResult<Timestamp> {
    Timestamp::from_microsecond(us).map_err(|e| StoreError::Corrupt(format!("a backup time: {e}")))
}

/// The database's backup bookkeeping (`backup_state`).
#[derive(Debug, Clone)]
pub struct BackupState {
    pub enabled: bool,
    pub generation: String,
    pub shipped_seq: i64,
    pub shipped_change_at: Option<Timestamp>,
    pub shipped_at: Option<Timestamp>,
    pub snapshot_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Journal rows not shipped yet, and the time of the oldest.
    pub pending: i64,
    pub oldest_pending_at: Option<Timestamp>,
}

pub async fn backup_state(store: &SqlStore) -> StoreResult<BackupState> {
    require_sqlite(store)?;
    let row = sqlx::query(
        "SELECT enabled, generation, shipped_seq, shipped_change_at, shipped_at, snapshot_at, last_error, \
         (SELECT COUNT(*) FROM backup_journal) AS pending, (SELECT MIN(at) FROM backup_journal) AS oldest \
         FROM backup_state WHERE id = 1",
    )
    .fetch_one(store.pool())
    .await
    .map_err(map_err)?;
    let time = |c: &str| -> StoreResult<Option<Timestamp>> {
        row.try_get::<Option<i64>, _>(c).map_err(map_err)?.map(from_us).transpose()
    };
    Ok(BackupState {
        enabled: row.try_get::<i64, _>("enabled").map_err(map_err)? == 1,
        generation: row.try_get("generation").map_err(map_err)?,
        shipped_seq: row.try_get("shipped_seq").map_err(map_err)?,
        shipped_change_at: time("shipped_change_at")?,
        shipped_at: time("shipped_at")?,
        snapshot_at: time("snapshot_at")?,
        last_error: row.try_get("last_error").map_err(map_err)?,
        pending: row.try_get("pending").map_err(map_err)?,
        oldest_pending_at: time("oldest")?,
    })
}

fn require_sqlite(store: &SqlStore) -> StoreResult<()> {
    if store.engine() != Engine::Sqlite {
        return Err(StoreError::Database(
            "continuous backup is built in for SQLite only; PostgreSQL is backed up by its own WAL archive (deploy/postgres)"
                .into(),
        ));
    }
    Ok(())
}

/// Stops journaling on a database that is no longer backed up (its journal would only grow).
pub async fn disable(store: &SqlStore) -> StoreResult<()> {
    if store.engine() != Engine::Sqlite {
        return Ok(());
    }
    let mut tx = store.bookkeeping_tx().await?;
    let enabled: i64 = sqlx::query_scalar("SELECT enabled FROM backup_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    if enabled == 1 {
        tracing::warn!("continuous backup is no longer configured: journaling stops");
        sqlx::query("UPDATE backup_state SET enabled = 0, generation = '', snapshot_at = NULL WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM backup_journal").execute(&mut *tx).await.map_err(map_err)?;
    }
    tx.commit_bookkeeping().await
}

impl Shipper {
    /// Turns journaling on (starting a new generation if it was off) and opens the destinations.
    /// `work_dir` holds a snapshot briefly while it is sealed: the database's own folder.
    pub async fn start(
        store: &SqlStore,
        work_dir: &Path,
        targets: &[Target],
        policy: BackupPolicy,
    ) -> StoreResult<Shipper> {
        require_sqlite(store)?;
        if targets.is_empty() || targets.len() > 2 {
            return Err(StoreError::Database("continuous backup needs one or two destinations".into()));
        }
        let destinations = targets.iter().map(Destination::open).collect::<StoreResult<Vec<_>>>()?;
        // A snapshot cut short by a crash leaves its copy behind: it holds the whole database.
        if let Ok(entries) = std::fs::read_dir(work_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".repeatrx-snapshot-") && name.ends_with(".db") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let schema: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .map_err(map_err)?;
        let (enabled, generation, journaled_schema): (i64, String, i64) =
            sqlx::query_as("SELECT enabled, generation, schema_version FROM backup_state WHERE id = 1")
                .fetch_one(store.pool())
                .await
                .map_err(map_err)?;
        let mut shipper =
            Shipper { store: store.clone(), work_dir: work_dir.to_path_buf(), destinations, policy, generation };
        if enabled == 1 && !shipper.generation.is_empty() {
            if journaled_schema == schema {
                return Ok(shipper);
            }
            // The tables changed (an upgrade migrated them): what the journal holds from before
            // goes to the history it belongs to, and a new history starts from a new snapshot,
            // since older snapshots cannot take statements written for the new tables.
            while shipper.ship_once().await? > 0 {}
            tracing::info!(from = journaled_schema, to = schema, "continuous backup: the schema changed");
        }
        let mut tx = store.bookkeeping_tx().await?;
        let generation = format!("{:020}-{}", now_us(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        sqlx::query("DELETE FROM backup_journal").execute(&mut *tx).await.map_err(map_err)?;
        sqlx::query(
            "UPDATE backup_state SET enabled = 1, generation = $1, schema_version = $2, snapshot_at = NULL, \
             last_error = NULL, shipped_seq = COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'backup_journal'), 0) \
             WHERE id = 1",
        )
        .bind(&generation)
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit_bookkeeping().await?;
        tracing::info!(generation, "continuous backup: a new history starts");
        shipper.generation = generation;
        Ok(shipper)
    }

    pub fn generation(&self) -> &str {
        &self.generation
    }

    async fn put_everywhere(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()> {
        let mut problems = Vec::new();
        for d in &self.destinations {
            if let Err(e) = d.put(name, bytes.clone()).await {
                problems.push(e.to_string());
            }
        }
        self.outcome(problems).await
    }

    /// Ok when no destination failed; otherwise the failures, also noted for the status page.
    async fn outcome(&self, problems: Vec<String>) -> StoreResult<()> {
        if problems.is_empty() {
            return Ok(());
        }
        let message = problems.join("; ");
        let record = sqlx::query("UPDATE backup_state SET last_error = $1 WHERE id = 1").bind(&message);
        let _ = self.store.write_alone(record).await;
        Err(StoreError::Unavailable(message))
    }

    /// Seals the file `plain` as the object `name` and writes it to every destination, a chunk
    /// at a time: memory stays at a few multipart parts per destination whatever the file's size.
    async fn put_file_everywhere(&self, name: &str, plain: &Path) -> StoreResult<u64> {
        use tokio::io::AsyncReadExt;
        let read_err = |e: std::io::Error| StoreError::Unavailable(format!("reading {}: {e}", plain.display()));
        let mut file = tokio::fs::File::open(plain).await.map_err(read_err)?;
        let size = file.metadata().await.map_err(read_err)?.len();
        let mut uploads = Vec::new();
        let mut problems = Vec::new();
        for d in &self.destinations {
            match d.store.put_multipart(&d.path(name)).await {
                Ok(upload) => uploads.push((d, Some(WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART)))),
                Err(e) => problems.push(object_err(&d.label, e).to_string()),
            }
        }
        let (mut object, header) = ObjectSealer::begin(self.store.sealer(), name);
        for (_, upload) in &mut uploads {
            if let Some(u) = upload {
                u.write(&header);
            }
        }
        let chunks = size.div_ceil(CHUNK as u64).max(1);
        let mut buf = vec![0; CHUNK];
        for i in 0..chunks {
            let len = (size - i * CHUNK as u64).min(CHUNK as u64) as usize;
            if let Err(e) = file.read_exact(&mut buf[..len]).await {
                // No destination keeps half an object, nor (on S3) the parts sent so far.
                for u in uploads.into_iter().filter_map(|(_, u)| u) {
                    let _ = u.abort().await;
                }
                return Err(read_err(e));
            }
            let sealed = object.chunk(&buf[..len], i + 1 == chunks);
            for (d, upload) in &mut uploads {
                let Some(u) = upload else { continue };
                u.write(&sealed);
                if let Err(e) = u.wait_for_capacity(UPLOADS_IN_FLIGHT).await {
                    problems.push(object_err(&d.label, e).to_string());
                    if let Some(u) = upload.take() {
                        let _ = u.abort().await;
                    }
                }
            }
        }
        for (d, upload) in uploads {
            if let Some(u) = upload {
                if let Err(e) = u.finish().await {
                    problems.push(object_err(&d.label, e).to_string());
                }
            }
        }
        self.outcome(problems).await.map(|()| size)
    }

    /// Ships what the journal holds (up to one segment); returns how many rows went.
    pub async fn ship_once(&self) -> StoreResult<usize> {
        let pool = self.store.pool();
        let rows: Vec<JournalRow> =
            sqlx::query("SELECT seq, txn, at, op, stmt FROM backup_journal ORDER BY seq LIMIT $1")
                .bind(SEGMENT_ROWS)
                .fetch_all(pool)
                .await
                .map_err(map_err)?
                .iter()
                .map(|r| {
                    Ok(JournalRow {
                        seq: r.try_get("seq").map_err(map_err)?,
                        txn: r.try_get("txn").map_err(map_err)?,
                        at: r.try_get("at").map_err(map_err)?,
                        op: r.try_get("op").map_err(map_err)?,
                        stmt: r.try_get("stmt").map_err(map_err)?,
                    })
                })
                .collect::<StoreResult<_>>()?;
        let Some(last) = rows.last() else { return Ok(0) };
        let shipped: i64 = sqlx::query_scalar("SELECT shipped_seq FROM backup_state WHERE id = 1")
            .fetch_one(pool)
            .await
            .map_err(map_err)?;
        let segment = SegmentObject {
            generation: self.generation.clone(),
            from: shipped + 1,
            to: last.seq,
            last_at: from_us(last.at)?,
        };
        let name = segment.name();
        let body = serde_json::to_vec(&rows).map_err(|e| StoreError::Database(e.to_string()))?;
        self.put_everywhere(&name, seal_object(self.store.sealer(), &name, &body)).await?;
        // In the store's turn, like every write: polling for SQLite's lock from the busy handler,
        // this lost to the group commits for seconds at a time under steady orders.
        let mut tx = self.store.bookkeeping_tx().await?;
        sqlx::query("DELETE FROM backup_journal WHERE seq <= $1")
            .bind(last.seq)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "UPDATE backup_state SET shipped_seq = $1, shipped_change_at = $2, shipped_at = $3, last_error = NULL WHERE id = 1",
        )
        .bind(last.seq)
        .bind(last.at)
        .bind(now_us())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit_bookkeeping().await?;
        Ok(rows.len())
    }

    /// Takes a snapshot (`VACUUM INTO` a file beside the database, sealed, then removed) and
    /// ships it, then drops what the history no longer needs.
    pub async fn snapshot(&self) -> StoreResult<SnapshotObject> {
        let tmp = self.work_dir.join(format!(".repeatrx-snapshot-{}.db", uuid::Uuid::new_v4().simple()));
        let result = self.snapshot_via(&tmp).await;
        let _ = std::fs::remove_file(&tmp);
        let snapshot = result?;
        let mark =
            sqlx::query("UPDATE backup_state SET snapshot_at = $1 WHERE id = 1").bind(snapshot.taken.as_microsecond());
        self.store.write_alone(mark).await?;
        self.prune(Timestamp::now()).await?;
        Ok(snapshot)
    }

    async fn snapshot_via(&self, tmp: &Path) -> StoreResult<SnapshotObject> {
        let target = tmp.to_str().ok_or_else(|| StoreError::Database("the data folder's path is not text".into()))?;
        sqlx::query("VACUUM INTO $1").bind(target).execute(self.store.pool()).await.map_err(map_err)?;
        // At the precision its object's name keeps, so the name says exactly this time.
        let taken = from_us(now_us())?;
        let seq = restore::seal_off_copy(tmp).await?;
        let snapshot = SnapshotObject { generation: self.generation.clone(), seq, taken };
        let name = snapshot.name();
        let bytes = self.put_file_everywhere(&name, tmp).await?;
        tracing::info!(snapshot = %name, bytes, "continuous backup: snapshot shipped");
        Ok(snapshot)
    }

    /// Keeps, per destination, the newest snapshot at least `history` old and everything after it;
    /// older generations go once a newer one reaches back over the whole history.
    pub async fn prune(&self, now: Timestamp) -> StoreResult<()> {
        let cutoff = now - self.policy.history;
        for d in &self.destinations {
            let cat = d.catalogue().await?;
            let covering = cat
                .generations
                .iter()
                .rev()
                .find(|(_, g)| g.snapshots.iter().any(|s| s.taken <= cutoff))
                .map(|(name, _)| name.clone());
            for (name, g) in &cat.generations {
                let older = covering.as_ref().is_some_and(|c| name < c);
                if older {
                    for s in &g.snapshots {
                        d.delete(&s.name()).await?;
                    }
                    for s in &g.segments {
                        d.delete(&s.name()).await?;
                    }
                    continue;
                }
                let Some(base) = g.snapshots.iter().filter(|s| s.taken <= cutoff).max_by_key(|s| s.seq) else {
                    continue;
                };
                for s in g.snapshots.iter().filter(|s| s.seq < base.seq) {
                    d.delete(&s.name()).await?;
                }
                for s in g.segments.iter().filter(|s| s.to <= base.seq) {
                    d.delete(&s.name()).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs for as long as the server: ships every `ship_every`, and beside it (so shipping never
    /// waits on a snapshot of a large database) takes a snapshot when this generation has none
    /// and every `snapshot_every`. Failures are logged once and retried; nothing leaves the
    /// journal before every destination has it.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let this = Arc::new(self);
        tokio::spawn(async move {
            // Aborting the returned task drops this guard, which stops the snapshots too.
            let _snapshots = AbortOnDrop(tokio::spawn(Arc::clone(&this).snapshot_loop()));
            this.ship_loop().await;
        })
    }

    async fn ship_loop(&self) {
        let mut tick = tokio::time::interval(self.policy.ship_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = Failing::new("shipping");
        loop {
            tick.tick().await;
            let result = async {
                while self.ship_once().await? == SEGMENT_ROWS as usize {}
                Ok::<_, StoreError>(())
            }
            .await;
            failing.report(result);
        }
    }

    async fn snapshot_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SNAPSHOT_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = Failing::new("snapshots");
        loop {
            tick.tick().await;
            let due = match backup_state(&self.store).await {
                Ok(s) => s.snapshot_at.is_none_or(|at| Timestamp::now() - self.policy.snapshot_every >= at),
                Err(e) => {
                    failing.report(Err(e));
                    continue;
                }
            };
            if due {
                failing.report(self.snapshot().await.map(|_| ()));
            }
        }
    }
}

/// A snapshot's multipart upload: parts of 8 MiB (S3 wants at least 5), at most two in flight
/// per destination.
const UPLOAD_PART: usize = 8 << 20;
const UPLOADS_IN_FLIGHT: usize = 2;

/// How often the snapshot task looks whether a snapshot is due.
const SNAPSHOT_CHECK_EVERY: Duration = Duration::from_secs(15);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Logs a run of failures once, and the recovery.
struct Failing {
    what: &'static str,
    now: bool,
}

impl Failing {
    fn new(what: &'static str) -> Self {
        Failing { what, now: false }
    }

    fn report(&mut self, result: StoreResult<()>) {
        match result {
            Ok(()) if self.now => {
                tracing::info!(task = self.what, "continuous backup: working again");
                self.now = false;
            }
            Ok(()) => {}
            Err(e) if !self.now => {
                tracing::error!(task = self.what, error = %e, "continuous backup: failing; changes are kept until it works");
                self.now = true;
            }
            Err(_) => {}
        }
    }
}
