//! Objects as rows of a SQLite or PostgreSQL table (remote-store's `sql-blob` type), on
//! sqlx. Only this file imports it.
//!
//! The table is remote-store's own (`SQLBlobBackend`): `key` (primary key), `data`,
//! `size`, `modified_at` (seconds since the epoch, a float), `content_type`, `digest`,
//! `extra`, `user_metadata` (a JSON object of strings: our mode, uid, gid, mtime, ...).
//! So a database written by remote-store mounts, and one written here reads back there.
//!
//! - Directories are key prefixes, as on S3. remote-store has no directory rows (a row
//!   `dir/` would show there as a file `dir`), so a directory marker is not stored: an
//!   empty directory made through the mount lasts until its parent is listed again.
//! - An ETag is made of `size` and `modified_at`; a write under a condition checks it in
//!   the same transaction, so conditions are exact here.
//! - A multipart upload keeps its parts in local temporary files; completion writes the
//!   whole row in one statement (a BLOB value cannot be written in pieces), so the
//!   row appears whole or not at all. `max_blob_size` is enforced as parts arrive.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::{BackendError, CompletedPart, Condition, ListPage, ObjectMeta, ObjectStore, Result, UserMeta};
use crate::config::SqlOptions;

pub struct SqlStore {
    pool: AnyPool,
    /// The table name, quoted for SQL.
    table: String,
    /// Byte-wise key order (PostgreSQL's default collation is not).
    collate: &'static str,
    sqlite: bool,
    create_table: bool,
    /// sqlx's form of the URL (may hold a password), for the start check's own connection.
    url: crate::config::Secret,
    /// Whether the table has remote-store's optional columns (`size`, `modified_at`,
    /// `user_metadata`); remote-store also takes a table of only `key` and `data`, which
    /// then holds no modes or times. Known after `check`.
    full: std::sync::atomic::AtomicBool,
    max_blob_size: Option<u64>,
    uploads: Mutex<HashMap<String, Upload>>,
    shown: String,
}

/// A multipart upload in progress: its parts in temporary files, and the metadata.
struct Upload {
    user: UserMeta,
    parts: HashMap<i32, std::fs::File>,
    bytes: u64,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("url", &self.shown).field("table", &self.table).finish()
    }
}

/// SQLAlchemy's URL as sqlx takes it: `sqlite:///rel.db` → `sqlite:rel.db`,
/// `sqlite:////abs.db` → `sqlite:/abs.db`, `postgresql+psycopg://...` → `postgres://...`.
fn sqlx_url(url: &str) -> std::result::Result<(String, bool), String> {
    let (scheme, rest) = url.split_once("://").ok_or("url has no scheme")?;
    match scheme.split('+').next().unwrap_or_default() {
        "sqlite" => {
            // SQLAlchemy: `sqlite://` alone (or `sqlite:///:memory:`) is an in-memory database.
            let path = rest.strip_prefix('/').unwrap_or(rest);
            let path = if path.is_empty() { ":memory:" } else { path };
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            let mode = if query.is_empty() { "mode=rwc".to_string() } else { query.to_string() };
            Ok((format!("sqlite:{path}?{mode}"), true))
        }
        "postgresql" | "postgres" => Ok((format!("postgres://{rest}"), false)),
        other => Err(format!("the database '{other}' is not supported")),
    }
}

/// A sqlx error as a `BackendError`: a database that cannot be reached is transient,
/// the rest is named (without the URL, which may hold a password).
fn classify(e: sqlx::Error) -> BackendError {
    match e {
        sqlx::Error::RowNotFound => BackendError::NotFound,
        sqlx::Error::Io(e) => BackendError::Transient(format!("database unreachable: {e}")),
        sqlx::Error::PoolTimedOut => BackendError::Transient("database unreachable: timed out".into()),
        sqlx::Error::Tls(e) => BackendError::Transient(format!("database TLS: {e}")),
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                // PostgreSQL: invalid_password, invalid_authorization_specification.
                "28P01" | "28000" => BackendError::AccessDenied(d.message().to_string()),
                // PostgreSQL: undefined_table.
                "42P01" => BackendError::NoSuchBucket(d.message().to_string()),
                _ if d.message().contains("no such table") => BackendError::NoSuchBucket(d.message().to_string()),
                _ => BackendError::Other(format!("database error: {}", d.message())),
            }
        }
        other => BackendError::Other(format!("database error: {other}")),
    }
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn etag(size: i64, modified_at: f64) -> String {
    format!("\"{size}-{modified_at:.6}\"")
}

/// The least string above every string starting with `prefix` (the end of a prefix
/// range); `None` when there is none.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        if let Some(next) = char::from_u32(c as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl SqlStore {
    /// A pool of connections (4; 1 for an in-memory SQLite database), opened on first
    /// use: `check` connects and checks or creates the table. Errors: a URL sqlx cannot
    /// take.
    pub fn new(o: &SqlOptions) -> std::result::Result<Self, String> {
        sqlx::any::install_default_drivers();
        let (url, sqlite) = sqlx_url(o.url.expose())?;
        // An in-memory SQLite database lives in one connection: a second would be empty.
        let memory = sqlite && url.contains(":memory:");
        let pool = AnyPoolOptions::new()
            .max_connections(if memory { 1 } else { 4 })
            .acquire_timeout(Duration::from_secs(8))
            .connect_lazy(&url)
            .map_err(|e| format!("url: {}", classify(e)))?;
        Ok(Self {
            pool,
            table: format!("\"{}\"", o.table_name.replace('"', "\"\"")),
            sqlite,
            create_table: o.create_table,
            url: crate::config::Secret::new(url.clone()),
            full: std::sync::atomic::AtomicBool::new(true),
            collate: if sqlite { "" } else { " COLLATE \"C\"" },
            max_blob_size: o.max_blob_size,
            uploads: Mutex::new(HashMap::new()),
            shown: o.shown_url(),
        })
    }

    fn meta(&self, row: &AnyRow) -> Result<ObjectMeta> {
        let get = |e: sqlx::Error| BackendError::Other(format!("unexpected row: {e}"));
        let key: String = row.try_get("key").map_err(get)?;
        let size: i64 = row.try_get("size").map_err(get)?;
        let modified_at: f64 = row.try_get("modified_at").map_err(get)?;
        let user: Option<String> = row.try_get("user_metadata").map_err(get)?;
        let user: UserMeta = user.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default();
        Ok(ObjectMeta {
            key,
            size: size.max(0) as u64,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(modified_at.max(0.0)),
            etag: Some(etag(size, modified_at)),
            user: Some(user),
        })
    }

    /// The columns a listing or HEAD reads (never `data`).
    fn full(&self) -> bool {
        self.full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Size and time as columns named `size` and `modified_at` (computed on a table of
    /// only `key` and `data`).
    fn size_time_columns(&self) -> &'static str {
        match self.full() {
            true => "CAST(size AS BIGINT) AS size, CAST(modified_at AS DOUBLE PRECISION) AS modified_at",
            false => "CAST(LENGTH(data) AS BIGINT) AS size, CAST(0 AS DOUBLE PRECISION) AS modified_at",
        }
    }

    fn info_columns(&self) -> String {
        let meta = if self.full() { "user_metadata" } else { "CAST(NULL AS TEXT) AS user_metadata" };
        format!("key, {}, {meta}", self.size_time_columns())
    }

    fn too_large(&self, size: u64) -> Option<BackendError> {
        let max = self.max_blob_size?;
        (size > max).then(|| BackendError::TooLarge(format!("{size} bytes is over the store's max_blob_size of {max}")))
    }

    /// Writes the whole row for `key` if `cond` holds, in one transaction.
    async fn write_row(&self, key: &str, body: Vec<u8>, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        if let Some(e) = self.too_large(body.len() as u64) {
            return Err(e);
        }
        let size = body.len() as i64;
        // Distinct from any earlier write's time, so that the ETag changes (a table
        // without `modified_at` has only the size to tell versions apart).
        let now = if self.full() { seconds(SystemTime::now()) } else { 0.0 };
        let meta = (!user.is_empty()).then(|| serde_json::to_string(user).expect("strings serialize"));
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let q = format!("SELECT {} FROM {} WHERE key = $1", self.info_columns(), self.table);
        let current = sqlx::query(&q).bind(key).fetch_optional(&mut *tx).await.map_err(classify)?;
        let current = current.map(|r| self.meta(&r)).transpose()?;
        if !cond.holds(current.as_ref()) {
            return Err(BackendError::PreconditionFailed);
        }
        let update = current.is_some();
        let q = match (update, self.full()) {
            (true, true) => format!(
                "UPDATE {} SET data = $2, size = $3, modified_at = $4, user_metadata = $5 WHERE key = $1",
                self.table
            ),
            (false, true) => format!(
                "INSERT INTO {} (key, data, size, modified_at, user_metadata) VALUES ($1, $2, $3, $4, $5)",
                self.table
            ),
            (true, false) => format!("UPDATE {} SET data = $2 WHERE key = $1", self.table),
            (false, false) => format!("INSERT INTO {} (key, data) VALUES ($1, $2)", self.table),
        };
        let mut query = sqlx::query(&q).bind(key).bind(body);
        if self.full() {
            query = query.bind(size).bind(now).bind(meta);
        }
        query.execute(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(ObjectMeta {
            key: key.into(),
            size: size as u64,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(now),
            etag: Some(etag(size, now)),
            user: Some(user.clone()),
        })
    }
}

#[async_trait]
impl ObjectStore for SqlStore {
    /// Connects; creates the table (remote-store's schema) when it is missing and
    /// `create_table` is set; then proves the table has `key` and `data` columns.
    async fn check(&self) -> Result<()> {
        // One connection of its own first: the pool retries a refused connection until
        // its acquire timeout, and a bad start must fail fast with the cause.
        use sqlx::Connection;
        let conn = sqlx::AnyConnection::connect(self.url.expose()).await.map_err(classify)?;
        let _ = conn.close().await;
        if self.sqlite {
            // As remote-store sets them on SQLite connections.
            for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"] {
                sqlx::query(pragma).execute(&self.pool).await.map_err(classify)?;
            }
        }
        if self.create_table {
            let (blob, float) = if self.sqlite { ("BLOB", "FLOAT") } else { ("BYTEA", "DOUBLE PRECISION") };
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} (key TEXT NOT NULL, data {blob} NOT NULL, size INTEGER NOT NULL, \
                 modified_at {float} NOT NULL, content_type TEXT, digest TEXT, extra TEXT, user_metadata TEXT, \
                 PRIMARY KEY (key))",
                self.table
            );
            sqlx::query(&ddl).execute(&self.pool).await.map_err(classify)?;
        }
        let q = format!("SELECT key, data FROM {} WHERE 1 = 0", self.table);
        sqlx::query(&q).fetch_optional(&self.pool).await.map_err(classify)?;
        let q = format!("SELECT size, modified_at, user_metadata FROM {} WHERE 1 = 0", self.table);
        if sqlx::query(&q).fetch_optional(&self.pool).await.is_err() {
            tracing::warn!(table = %self.table, "the table has only key and data: modes, owners and times are not stored");
            self.full.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        if key.ends_with('/') {
            // No directory rows (see above): a directory exists while keys lie under it.
            return super::implied_dir(self, key).await;
        }
        let q = format!("SELECT {} FROM {} WHERE key = $1", self.info_columns(), self.table);
        let row = sqlx::query(&q).bind(key).fetch_optional(&self.pool).await.map_err(classify)?;
        self.meta(&row.ok_or(BackendError::NotFound)?)
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<Bytes> {
        // SUBSTR on a BLOB / SUBSTRING on a BYTEA counts bytes from 1.
        let len = range.end.saturating_sub(range.start) as i64;
        let q = format!(
            "SELECT {}, SUBSTR(data, CAST($2 AS INTEGER), CAST($3 AS INTEGER)) AS part FROM {} WHERE key = $1",
            self.size_time_columns(),
            self.table
        );
        let row = sqlx::query(&q)
            .bind(key)
            .bind(range.start as i64 + 1)
            .bind(len)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .ok_or(BackendError::NotFound)?;
        let get = |e: sqlx::Error| BackendError::Other(format!("unexpected row: {e}"));
        if let Some(want) = if_match {
            let (size, at): (i64, f64) = (row.try_get("size").map_err(get)?, row.try_get("modified_at").map_err(get)?);
            if etag(size, at) != want {
                return Err(BackendError::PreconditionFailed);
            }
        }
        let part: Vec<u8> = row.try_get("part").map_err(get)?;
        Ok(Bytes::from(part))
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let max = max_keys.filter(|n| *n > 0).unwrap_or(1000) as usize;
        let end = prefix_end(prefix);
        let mut page = ListPage::default();
        // The token is where the next page starts: after a key (`k:`), or at a key (`s:`,
        // past the keys of a common prefix already given).
        let mut from = token.unwrap_or_else(|| format!("s:{prefix}"));
        loop {
            let (op, at) = from.split_at(2);
            let cmp = if op == "k:" { ">" } else { ">=" };
            let upper = if end.is_some() { format!(" AND key{c} < $2{c}", c = self.collate) } else { String::new() };
            let q = format!(
                "SELECT {} FROM {} WHERE key{c} {cmp} $1{c}{upper} ORDER BY key{c} LIMIT {}",
                self.info_columns(),
                self.table,
                max + 1,
                c = self.collate
            );
            let mut query = sqlx::query(&q).bind(at.to_string());
            if let Some(e) = &end {
                query = query.bind(e.clone());
            }
            let rows = query.fetch_all(&self.pool).await.map_err(classify)?;
            let fetched = rows.len();
            let mut jumped = false;
            for row in rows {
                let m = self.meta(&row)?;
                if page.objects.len() + page.prefixes.len() == max {
                    page.next_token = Some(from);
                    return Ok(page);
                }
                let rest = &m.key[prefix.len()..];
                match delimiter.and_then(|d| rest.find(d).map(|i| i + d.len())) {
                    Some(cut) => {
                        let common = m.key[..prefix.len() + cut].to_string();
                        // Skip every other key of this prefix with one new query.
                        from = format!("s:{}", prefix_end(&common).unwrap_or_default());
                        page.prefixes.push(common);
                        jumped = true;
                        break;
                    }
                    None => {
                        from = format!("k:{}", m.key);
                        page.objects.push(m);
                    }
                }
            }
            if !jumped && fetched <= max {
                return Ok(page);
            }
            if page.objects.len() + page.prefixes.len() == max {
                page.next_token = Some(from);
                return Ok(page);
            }
        }
    }

    async fn put_if(&self, key: &str, body: Bytes, user: &UserMeta, cond: &Condition) -> Result<ObjectMeta> {
        if key.ends_with('/') {
            // A directory marker: not stored (see above).
            return Ok(ObjectMeta::unstored_marker(key, SystemTime::now(), Some(user.clone())));
        }
        self.write_row(key, body.to_vec(), user, cond).await
    }

    async fn create_multipart_with(&self, _key: &str, user: &UserMeta) -> Result<String> {
        let id = super::random_hex(8);
        let upload = Upload { user: user.clone(), parts: HashMap::new(), bytes: 0 };
        self.uploads.lock().expect("poisoned").insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_part(&self, _key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<CompletedPart> {
        let mut file =
            tempfile::tempfile().map_err(|e| BackendError::Other(format!("temporary file for a part: {e}")))?;
        file.write_all(&body).map_err(|e| BackendError::Other(format!("temporary file for a part: {e}")))?;
        let mut uploads = self.uploads.lock().expect("poisoned");
        let up = uploads.get_mut(upload_id).ok_or(BackendError::NotFound)?;
        up.bytes += body.len() as u64;
        if let Some(e) = self.too_large(up.bytes) {
            return Err(e);
        }
        up.parts.insert(number, file);
        Ok(CompletedPart { number, etag: format!("{upload_id}-{number}") })
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        cond: &Condition,
    ) -> Result<ObjectMeta> {
        let (user, body) = {
            let mut uploads = self.uploads.lock().expect("poisoned");
            let up = uploads.get_mut(upload_id).ok_or(BackendError::NotFound)?;
            let mut body = Vec::with_capacity(up.bytes as usize);
            for p in &parts {
                let f = up
                    .parts
                    .get_mut(&p.number)
                    .ok_or_else(|| BackendError::InvalidInput(format!("no part {}", p.number)))?;
                let read = f.rewind().and_then(|_| f.read_to_end(&mut body));
                read.map_err(|e| BackendError::Other(format!("temporary file of a part: {e}")))?;
            }
            (up.user.clone(), body)
        };
        let m = self.write_row(key, body, &user, cond).await?;
        self.uploads.lock().expect("poisoned").remove(upload_id);
        Ok(m)
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        self.uploads.lock().expect("poisoned").remove(upload_id);
        Ok(())
    }

    async fn copy(&self, src: &str, dst: &str) -> Result<Option<String>> {
        if src.ends_with('/') {
            return Ok(None);
        }
        // One statement on the server: the bytes never leave the database.
        let now = seconds(SystemTime::now());
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let del = format!("DELETE FROM {} WHERE key = $1", self.table);
        sqlx::query(&del).bind(dst).execute(&mut *tx).await.map_err(classify)?;
        let q = match self.full() {
            true => format!(
                "INSERT INTO {t} (key, data, size, modified_at, content_type, digest, extra, user_metadata) \
                 SELECT $1, data, size, $3, content_type, digest, extra, user_metadata FROM {t} WHERE key = $2",
                t = self.table
            ),
            false => format!("INSERT INTO {t} (key, data) SELECT $1, data FROM {t} WHERE key = $2", t = self.table),
        };
        let mut query = sqlx::query(&q).bind(dst).bind(src);
        if self.full() {
            query = query.bind(now);
        }
        let done = query.execute(&mut *tx).await.map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(BackendError::NotFound);
        }
        tx.commit().await.map_err(classify)?;
        Ok(self.head(dst).await?.etag)
    }

    async fn set_user_meta(&self, key: &str, user: &UserMeta) -> Result<ObjectMeta> {
        if key.ends_with('/') {
            return Err(BackendError::NotFound);
        }
        if !self.full() {
            return Err(BackendError::Unsupported("the table has no user_metadata column".into()));
        }
        let meta = (!user.is_empty()).then(|| serde_json::to_string(user).expect("strings serialize"));
        let q = format!("UPDATE {} SET user_metadata = $2, modified_at = $3 WHERE key = $1", self.table);
        let done = sqlx::query(&q)
            .bind(key)
            .bind(meta)
            .bind(seconds(SystemTime::now()))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(BackendError::NotFound);
        }
        self.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if key.ends_with('/') {
            return Ok(());
        }
        let q = format!("DELETE FROM {} WHERE key = $1", self.table);
        sqlx::query(&q).bind(key).execute(&self.pool).await.map_err(classify)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_sqlx_urls() {
        assert_eq!(sqlx_url("sqlite:///rel.db").unwrap().0, "sqlite:rel.db?mode=rwc");
        assert_eq!(sqlx_url("sqlite:////abs/x.db").unwrap().0, "sqlite:/abs/x.db?mode=rwc");
        assert_eq!(sqlx_url("sqlite://").unwrap().0, "sqlite::memory:?mode=rwc");
        assert_eq!(sqlx_url("postgresql+psycopg://u:p@h:5/d").unwrap().0, "postgres://u:p@h:5/d");
        assert_eq!(prefix_end("a/"), Some("a0".into()));
        assert_eq!(prefix_end(""), None);
    }
}
