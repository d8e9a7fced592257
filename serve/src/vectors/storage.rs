//! A collection on disk: `config.json`, `snapshot.bin` (every point as of operation N, written atomically:
//! a temporary file, fsync, rename, fsync of the folder) and `wal.log` (the operations after it).
//!
//! A write is validated, logged and applied under the collection's update lock (so the log and memory see
//! writes in the same order), then acknowledged once the log has it on disk. When the log passes
//! `snapshot_wal_mb`, a snapshot is written under the same lock and the log emptied. Opening replays the
//! snapshot and then the log records after it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::VectorError;
use super::codec::{self, Op};
use super::collection::{Collection, CollectionConfig};
use super::wal::{self, Durability, Wal};

const SNAPSHOT_MAGIC: &[u8; 8] = b"FSNAP001";

/// A collection with its log.
pub struct StoredCollection {
    pub collection: Collection,
    dir: PathBuf,
    wal: Wal,
    /// Held while a write is logged and applied, and while a snapshot is taken.
    update: Mutex<()>,
    /// Bytes logged since the last snapshot.
    logged: AtomicU64,
    snapshot_after: u64,
}

impl StoredCollection {
    /// Creates the collection's folder under `root` (atomically: built aside, then renamed).
    pub fn create(
        root: &Path,
        name: &str,
        config: CollectionConfig,
        durability: Durability,
        snapshot_wal_mb: u64,
    ) -> Result<Self, VectorError> {
        let dir = root.join(name);
        let building = root.join(format!("{name}.creating"));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).map_err(storage)?;
        let text = serde_json::to_vec_pretty(&config).map_err(|e| VectorError::Storage(e.to_string()))?;
        write_synced(&building.join("config.json"), &text).map_err(storage)?;
        std::fs::rename(&building, &dir).map_err(storage)?;
        sync_dir(root).map_err(storage)?;
        Self::open(&dir, durability, snapshot_wal_mb)
    }

    /// Opens a collection folder: its config, snapshot and log.
    pub fn open(dir: &Path, durability: Durability, snapshot_wal_mb: u64) -> Result<Self, VectorError> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let config: CollectionConfig =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).map_err(storage)?)
                .map_err(|e| VectorError::Storage(format!("{}: {e}", dir.join("config.json").display())))?;
        let collection = Collection::in_folder(&name, config, dir)?;
        let mut applied = 0;
        if let Some((points, version)) = read_snapshot(&dir.join("snapshot.bin"))? {
            collection.restore(points, version)?;
            applied = version;
        }
        let mut replayed = 0;
        for (seq, bytes) in wal::read(&dir.join("wal.log")).map_err(storage)? {
            if seq <= applied {
                continue;
            }
            let op =
                codec::decode(&bytes).map_err(|e| VectorError::Storage(format!("{name}: log record {seq}: {e}")))?;
            apply(&collection, op)?;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(collection = %name, replayed, "write-ahead log replayed");
        }
        let logged = std::fs::metadata(dir.join("wal.log")).map(|m| m.len()).unwrap_or(0);
        Ok(StoredCollection {
            collection,
            wal: Wal::open(&dir.join("wal.log"), durability).map_err(storage)?,
            dir: dir.to_path_buf(),
            update: Mutex::new(()),
            logged: AtomicU64::new(logged),
            snapshot_after: snapshot_wal_mb * 1024 * 1024,
        })
    }

    /// Validates, logs and applies `op`; returns the operation number once the log has it on disk.
    pub async fn write(&self, op: Op) -> Result<u64, VectorError> {
        if let Op::Upsert(points) = &op {
            self.collection.check_points(points)?;
        }
        let mut bytes = Vec::new();
        codec::encode(&op, &mut bytes);
        let (version, ack) = {
            let _update = self.update.lock().unwrap_or_else(|p| p.into_inner());
            let version = self.collection.version() + 1;
            let ack = self.wal.append(version, &bytes);
            let applied = apply(&self.collection, op)?;
            debug_assert_eq!(applied, version);
            (version, ack)
        };
        ack.await
            .map_err(|_| VectorError::Storage("the log writer stopped".into()))?
            .map_err(|e| VectorError::Storage(format!("writing the log of {:?}: {e}", self.collection.name)))?;
        let logged = self.logged.fetch_add(bytes.len() as u64 + 20, Ordering::Relaxed);
        if self.snapshot_after > 0 && logged > self.snapshot_after {
            self.snapshot().await?;
        }
        Ok(version)
    }

    /// Writes a snapshot of every point and empties the log.
    pub async fn snapshot(&self) -> Result<u64, VectorError> {
        let truncated = {
            let _update = self.update.lock().unwrap_or_else(|p| p.into_inner());
            let (points, version) = self.collection.dump()?;
            let mut bytes = SNAPSHOT_MAGIC.to_vec();
            bytes.extend_from_slice(&version.to_le_bytes());
            bytes.extend_from_slice(&(points.len() as u64).to_le_bytes());
            for (_, v) in &points {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            codec::encode(&Op::Upsert(points.into_iter().map(|(p, _)| p).collect()), &mut bytes);
            let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
            bytes.extend_from_slice(&sum.to_le_bytes());
            let tmp = self.dir.join("snapshot.tmp");
            write_synced(&tmp, &bytes).map_err(storage)?;
            std::fs::rename(&tmp, self.dir.join("snapshot.bin")).map_err(storage)?;
            sync_dir(&self.dir).map_err(storage)?;
            self.logged.store(0, Ordering::Relaxed);
            (self.wal.truncate(), version)
        };
        let (ack, version) = truncated;
        ack.await.map_err(|_| VectorError::Storage("the log writer stopped".into()))?.map_err(storage)?;
        tracing::info!(collection = %self.collection.name, version, "snapshot written, log emptied");
        Ok(version)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Applies a logged operation to memory; returns the collection's operation number after it.
fn apply(collection: &Collection, op: Op) -> Result<u64, VectorError> {
    Ok(match op {
        Op::Upsert(points) => collection.upsert(points)?,
        Op::Delete(ids) => collection.delete(&ids),
        Op::SetPayload { ids, payload, overwrite } => collection.set_payload(&ids, &payload, overwrite),
    })
}

/// A snapshot's points with their versions, and the operation number it reflects.
type Snapshot = (Vec<(super::collection::PointInput, u64)>, u64);

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, VectorError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(storage(e)),
    };
    let bad = |why: &str| VectorError::Storage(format!("{}: {why}", path.display()));
    if bytes.len() < 24 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(bad("not a snapshot"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
        return Err(bad("checksum mismatch"));
    }
    let word = |at: usize| -> Result<u64, VectorError> {
        let b = body.get(at..at + 8).ok_or_else(|| bad("short header"))?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| bad("short header"))?))
    };
    let (version, n) = (word(8)?, word(16)? as usize);
    let versions = (0..n).map(|i| word(24 + 8 * i)).collect::<Result<Vec<u64>, _>>()?;
    match codec::decode(&body[24 + 8 * n..]).map_err(|e| bad(&e))? {
        Op::Upsert(points) if points.len() == n => Ok(Some((points.into_iter().zip(versions).collect(), version))),
        _ => Err(bad("unexpected content")),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn storage(e: io::Error) -> VectorError {
    VectorError::Storage(e.to_string())
}
