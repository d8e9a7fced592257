//! Full-precision vectors on disk, by slot number (collections with `on_disk` vectors): slot `i` at byte
//! `i · dim · 4`, little-endian f32, read back with positional reads (the page cache keeps hot ones in
//! memory without counting against the process).
//!
//! The file is not a source of truth: the snapshot and the write-ahead log are. It is recreated empty when
//! the collection opens and refilled as the snapshot and log are replayed, so it never needs an fsync.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub struct VectorFile {
    file: File,
    dim: usize,
}

impl VectorFile {
    /// An empty file at `path` (any old contents are dropped).
    pub fn create(path: &Path, dim: usize) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(VectorFile { file, dim })
    }

    fn offset(&self, slot: usize) -> u64 {
        (slot * self.dim * 4) as u64
    }

    pub fn write(&self, slot: usize, vector: &[f32]) -> io::Result<()> {
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.file.write_all_at(&bytes, self.offset(slot))
    }

    pub fn read(&self, slot: usize) -> io::Result<Vec<f32>> {
        let mut bytes = vec![0u8; self.dim * 4];
        self.file.read_exact_at(&mut bytes, self.offset(slot))?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_come_back_by_slot_and_the_file_starts_empty() {
        let dir = std::env::temp_dir().join(format!("ferroserve-vector-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vectors.f32");
        let f = VectorFile::create(&path, 3).unwrap();
        f.write(1, &[4.0, 5.0, 6.0]).unwrap();
        f.write(0, &[1.0, -2.0, 3.5]).unwrap();
        assert_eq!(f.read(0).unwrap(), vec![1.0, -2.0, 3.5]);
        assert_eq!(f.read(1).unwrap(), vec![4.0, 5.0, 6.0]);
        assert!(f.read(2).is_err(), "past the end");
        assert_eq!(f.len(), 24);
        assert_eq!(VectorFile::create(&path, 3).unwrap().len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
