//! The write-ahead log of one collection: framed records (`length`, `xxh3` checksum, `sequence`, operation)
//! appended by one writer thread. Writes that arrive together share one `fsync` (group commit): each caller
//! is answered once its record is on disk. With `Durability::Interval` callers are answered once the record
//! is written, and the file is synced on an interval (faster, loses at most that interval on a power cut;
//! a killed process loses nothing the OS received).
//!
//! Reading stops at the first record that is cut short or fails its checksum (a write torn by a crash):
//! the file is truncated there, and everything before it is replayed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Durability {
    /// Before the write is acknowledged (one fsync per group of concurrent writes).
    Fsync,
    /// Within `ms` after it is acknowledged.
    Interval { ms: u64 },
}

const HEADER: usize = 4 + 8 + 8;

enum Msg {
    Append(Vec<u8>, oneshot::Sender<io::Result<()>>),
    Truncate(oneshot::Sender<io::Result<()>>),
}

/// The append side; the writer thread stops when it is dropped.
pub struct Wal {
    tx: Sender<Msg>,
}

impl Wal {
    /// Opens `path` for appending (after [`read`] has checked it) and starts the writer thread.
    pub fn open(path: &Path, durability: Durability) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = channel();
        let name =
            path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::thread::Builder::new().name(format!("wal-{name}")).spawn(move || writer(file, rx, durability))?;
        Ok(Wal { tx })
    }

    /// Queues record `seq` with `op` (encoded); the receiver answers once it is durable (see the module doc).
    /// Records are written in the order this is called.
    pub fn append(&self, seq: u64, op: &[u8]) -> oneshot::Receiver<io::Result<()>> {
        let mut record = Vec::with_capacity(HEADER + op.len());
        record.extend_from_slice(&((8 + op.len()) as u32).to_le_bytes());
        let mut body = Vec::with_capacity(8 + op.len());
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(op);
        record.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        record.extend_from_slice(&body);
        let (ack, rx) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError(Msg::Append(_, ack))) = self.tx.send(Msg::Append(record, ack)) {
            let _ = ack.send(Err(io::Error::other("the log writer stopped")));
        }
        rx
    }

    /// Empties the log (after a snapshot holds everything in it); answers once done.
    pub fn truncate(&self) -> oneshot::Receiver<io::Result<()>> {
        let (ack, rx) = oneshot::channel();
        if let Err(std::sync::mpsc::SendError(Msg::Truncate(ack))) = self.tx.send(Msg::Truncate(ack)) {
            let _ = ack.send(Err(io::Error::other("the log writer stopped")));
        }
        rx
    }
}

fn writer(file: File, rx: Receiver<Msg>, durability: Durability) {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let interval = match durability {
        Durability::Fsync => None,
        Durability::Interval { ms } => Some(Duration::from_millis(ms.max(1))),
    };
    let mut unsynced = false;
    loop {
        let first = match interval {
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
            Some(every) => match rx.recv_timeout(every) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if unsynced && out.get_ref().sync_data().is_ok() {
                        unsynced = false;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = out.flush().and_then(|_| out.get_ref().sync_data());
                    return;
                }
            },
        };
        // Everything queued now goes in this group.
        let mut group = vec![first];
        group.extend(rx.try_iter());
        let mut acks = Vec::new();
        let mut result = Ok(());
        for msg in group {
            match msg {
                Msg::Append(record, ack) => {
                    if result.is_ok() {
                        result = out.write_all(&record);
                    }
                    acks.push(ack);
                }
                Msg::Truncate(ack) => {
                    let done =
                        out.flush().and_then(|_| out.get_ref().set_len(0)).and_then(|_| out.get_ref().sync_all());
                    let _ = ack.send(done);
                }
            }
        }
        if result.is_ok() {
            result = out.flush();
        }
        if result.is_ok() {
            match interval {
                None => result = out.get_ref().sync_data(),
                Some(_) => unsynced = true,
            }
        }
        for ack in acks {
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(|e| io::Error::new(e.kind(), e.to_string())));
        }
    }
}

/// The records of the log at `path` in order (`(seq, op bytes)`), truncating a torn or corrupt tail.
pub fn read(path: &Path) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let sum = u64::from_le_bytes(header[4..12].try_into().unwrap_or_default());
        let Some(body) = bytes.get(at + 12..at + 12 + len).filter(|b| len >= 8 && xxhash_rust::xxh3::xxh3_64(b) == sum)
        else {
            break;
        };
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        records.push((seq, body[8..].to_vec()));
        at += 12 + len;
    }
    if at < bytes.len() {
        tracing::warn!(log = %path.display(), kept = at, dropped = bytes.len() - at, "write-ahead log ends in a torn record; truncated");
        file.set_len(at as u64)?;
        file.seek(SeekFrom::End(0))?;
        file.sync_all()?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = std::env::temp_dir().join(format!("ferroserve-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wal.log");
        let _ = std::fs::remove_file(&path);
        for durability in [Durability::Fsync, Durability::Interval { ms: 5 }] {
            let wal = Wal::open(&path, durability).unwrap();
            let acks: Vec<_> = (1..=50u64).map(|seq| wal.append(seq, &seq.to_le_bytes())).collect();
            for ack in acks {
                ack.await.unwrap().unwrap();
            }
            drop(wal);
            let records = read(&path).unwrap();
            assert_eq!(records.len(), 50);
            assert!(records.iter().enumerate().all(|(i, (seq, op))| *seq == i as u64 + 1 && op == &seq.to_le_bytes()));
            let wal = Wal::open(&path, durability).unwrap();
            wal.truncate().await.unwrap().unwrap();
            drop(wal);
            assert!(read(&path).unwrap().is_empty());
        }
        // A crash in the middle of a record: the whole records before it survive, the rest is cut.
        let wal = Wal::open(&path, Durability::Fsync).unwrap();
        for seq in 1..=3u64 {
            wal.append(seq, b"abc").await.unwrap().unwrap();
        }
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 2]).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            full.len() / 3 * 2,
            "truncated at the torn record"
        );
        let mut corrupt = std::fs::read(&path).unwrap();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        std::fs::write(&path, &corrupt).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1, "a checksum mismatch ends the log");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
