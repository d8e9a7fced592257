//! Checks of a GGUF file around candle's parser, found by feeding it damaged files (the property test
//! below): a header whose `general.alignment` is 0 makes the parser divide by zero (a panic), and a tensor
//! whose dimensions reach past the end of the file parses, then makes the loader allocate what the
//! dimensions say (an abort on a huge allocation) before it finds the file too short. So the header is
//! walked first, every length bounded by the bytes the file still has, the alignment checked; and after
//! parsing, every tensor's data must lie inside the file.

use std::io::{self, Read};

use candle_core::quantized::gguf_file::Content;

/// Value types of GGUF metadata (`gguf_type`).
const ARRAY: u32 = 9;
const STRING: u32 = 8;

/// Deepest nesting of arrays in metadata accepted (real files nest one level).
const MAX_ARRAY_DEPTH: u32 = 4;

/// Most tensor dimensions (GGML's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// Reads the header of a GGUF file of `file_len` bytes from `reader` (at its start) and checks every length
/// it holds against what is left of the file. Returns why not, in words.
pub fn check_header(reader: &mut impl Read, file_len: u64) -> Result<(), String> {
    let mut r = Bounded { inner: reader, left: file_len };
    let magic = r.u32()?;
    if magic != u32::from_le_bytes(*b"GGUF") {
        return Err("not a GGUF file (no GGUF magic number)".into());
    }
    let version = r.u32()?;
    if !(1..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported (1 to 3 are)"));
    }
    let wide = version >= 2;
    let tensors = r.count(wide)?;
    let entries = r.count(wide)?;
    // Each entry takes at least a key length and a type; each tensor at least a name length, dims and type.
    r.fits(entries, 12, "metadata entries")?;
    r.fits(tensors, 24, "tensors")?;
    for _ in 0..entries {
        let key = r.key(wide)?;
        let kind = r.u32()?;
        if key.as_deref() == Some(b"general.alignment".as_slice()) {
            // The parser divides by it.
            let size = match kind {
                0 | 1 => 1,
                2 | 3 => 2,
                4 | 5 => 4,
                10 | 11 => 8,
                _ => return Err(format!("general.alignment has value type {kind}, not an integer")),
            };
            let mut value = [0u8; 8];
            for byte in value.iter_mut().take(size) {
                *byte = r.bytes::<1>()?[0];
            }
            if u64::from_le_bytes(value) == 0 {
                return Err("general.alignment is 0".into());
            }
            continue;
        }
        r.value(kind, wide, 0)?;
    }
    for _ in 0..tensors {
        r.string(wide)?;
        let dims = r.u32()?;
        if dims == 0 || dims > MAX_DIMS {
            return Err(format!("a tensor has {dims} dimensions (1 to {MAX_DIMS} are possible)"));
        }
        for _ in 0..dims {
            r.count(wide)?;
        }
        r.u32()?; // type
        r.u64()?; // offset
    }
    Ok(())
}

/// Checks that every tensor of a parsed file lies inside its `file_len` bytes (before any is read).
pub fn check_tensors(content: &Content, file_len: u64) -> Result<(), String> {
    for (name, info) in &content.tensor_infos {
        let elements = info.shape.dims().iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let dtype = info.ggml_dtype;
        let bytes = elements
            .filter(|n| n % dtype.block_size() as u64 == 0)
            .and_then(|n| (n / dtype.block_size() as u64).checked_mul(dtype.type_size() as u64));
        let end = bytes.and_then(|b| content.tensor_data_offset.checked_add(info.offset)?.checked_add(b));
        match end {
            Some(end) if end <= file_len => {}
            _ => return Err(format!("tensor {name:?} lies outside the file (it is cut short or damaged)")),
        }
    }
    Ok(())
}

/// A reader that knows how many bytes of the file are left.
struct Bounded<'a, R> {
    inner: &'a mut R,
    left: u64,
}

impl<R: Read> Bounded<'_, R> {
    fn take(&mut self, n: u64) -> Result<(), String> {
        if n > self.left {
            return Err("the file ends inside its header (it is cut short or damaged)".into());
        }
        self.left -= n;
        let copied = io::copy(&mut (&mut *self.inner).take(n), &mut io::sink()).map_err(|e| e.to_string())?;
        if copied != n {
            return Err("the file ends inside its header (it is cut short or damaged)".into());
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if (N as u64) > self.left {
            return Err("the file ends inside its header (it is cut short or damaged)".into());
        }
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(|_| "the file ends inside its header".to_string())?;
        self.left -= N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A count or length: 64 bits from version 2 on, 32 before.
    fn count(&mut self, wide: bool) -> Result<u64, String> {
        if wide { self.u64() } else { self.u32().map(u64::from) }
    }

    /// Whether `count` items of at least `each` bytes fit in what is left.
    fn fits(&self, count: u64, each: u64, what: &str) -> Result<(), String> {
        match count.checked_mul(each) {
            Some(need) if need <= self.left => Ok(()),
            _ => Err(format!("the header claims {count} {what}, more than the file holds")),
        }
    }

    /// A metadata key as the parser will see it (trailing NUL bytes dropped), when it is short enough to be
    /// one we look for; `None` for a longer one. Past the first 64 bytes only NULs can follow a key we look
    /// for, however many there are.
    fn key(&mut self, wide: bool) -> Result<Option<Vec<u8>>, String> {
        let len = self.count(wide)?;
        self.fits(len, 1, "bytes of text")?;
        let mut key = vec![0u8; len.min(64) as usize];
        self.inner.read_exact(&mut key).map_err(|_| "the file ends inside its header".to_string())?;
        self.left -= key.len() as u64;
        let mut rest = len - key.len() as u64;
        let mut only_nul = true;
        let mut chunk = [0u8; 4096];
        while rest > 0 {
            let n = rest.min(chunk.len() as u64) as usize;
            self.inner.read_exact(&mut chunk[..n]).map_err(|_| "the file ends inside its header".to_string())?;
            only_nul &= chunk[..n].iter().all(|&b| b == 0);
            self.left -= n as u64;
            rest -= n as u64;
        }
        if !only_nul {
            return Ok(None);
        }
        while key.last() == Some(&0) {
            key.pop();
        }
        Ok(Some(key))
    }

    fn string(&mut self, wide: bool) -> Result<(), String> {
        let len = self.count(wide)?;
        self.fits(len, 1, "bytes of text")?;
        self.take(len)
    }

    fn value(&mut self, kind: u32, wide: bool, depth: u32) -> Result<(), String> {
        match kind {
            0 | 1 | 7 => self.take(1),
            2 | 3 => self.take(2),
            4..=6 => self.take(4),
            10..=12 => self.take(8),
            STRING => self.string(wide),
            ARRAY if depth < MAX_ARRAY_DEPTH => {
                let item = self.u32()?;
                let len = self.count(wide)?;
                self.fits(len, 1, "array items")?;
                for _ in 0..len {
                    self.value(item, wide, depth + 1)?;
                }
                Ok(())
            }
            ARRAY => Err(format!("metadata arrays nest deeper than {MAX_ARRAY_DEPTH}")),
            other => Err(format!("metadata value type {other} is not a GGUF type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use rand::{Rng, SeedableRng};

    use super::*;

    /// A small version-3 GGUF file: three metadata entries (a string, an array of strings, a u32) and one
    /// 4x8 f32 tensor, aligned to 32 bytes.
    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes()); // tensors
        b.extend(4u64.to_le_bytes()); // entries
        string(&mut b, "general.architecture");
        b.extend(STRING.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "tokenizer.ggml.tokens");
        b.extend(ARRAY.to_le_bytes());
        b.extend(STRING.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        for t in ["<s>", "a", "b"] {
            string(&mut b, t);
        }
        string(&mut b, "llama.context_length");
        b.extend(4u32.to_le_bytes());
        b.extend(64u32.to_le_bytes());
        string(&mut b, "general.alignment");
        b.extend(4u32.to_le_bytes());
        b.extend(32u32.to_le_bytes());
        string(&mut b, "w");
        b.extend(2u32.to_le_bytes());
        b.extend(8u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(0u32.to_le_bytes()); // F32
        b.extend(0u64.to_le_bytes()); // offset
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend((0..32).flat_map(|i| (i as f32).to_le_bytes()));
        b
    }

    /// What loading does: the checks, then the parser.
    fn load(bytes: &[u8]) -> Result<(), String> {
        check_header(&mut Cursor::new(bytes), bytes.len() as u64)?;
        let content = Content::read(&mut Cursor::new(bytes)).map_err(|e| e.to_string())?;
        check_tensors(&content, bytes.len() as u64)
    }

    #[test]
    fn a_sound_file_passes() {
        let bytes = sample();
        load(&bytes).unwrap();
        let content = Content::read(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(content.tensor_infos["w"].shape.dims(), &[4, 8]);
    }

    #[test]
    fn lengths_beyond_the_file_are_refused_before_parsing() {
        let bytes = sample();
        let string_len_at = 4 + 4 + 8 + 8; // the first key's length
        let mut huge = bytes.clone();
        huge[string_len_at..string_len_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(load(&huge).unwrap_err().contains("more than the file holds"));
        let mut entries = bytes.clone();
        entries[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(load(&entries).unwrap_err().contains("metadata entries"));
        assert!(load(&bytes[..bytes.len() - 4]).unwrap_err().contains("outside the file"));
        assert!(load(&bytes[..40]).unwrap_err().contains("more than the file holds"));
        assert!(load(&bytes[..20]).unwrap_err().contains("cut short"));
        assert!(load(b"GGML").unwrap_err().contains("not a GGUF file"));
        assert!(load(b"GG").unwrap_err().contains("cut short"));
        let mut zero_alignment = bytes.clone();
        let at = bytes.windows(17).position(|w| w == b"general.alignment").unwrap() + 17 + 4;
        zero_alignment[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(load(&zero_alignment).unwrap_err(), "general.alignment is 0");
        // The parser drops a key's trailing NULs: "general.alignment\0..." is the alignment too, however many
        // NULs pad it (found by benches/fuzz: a division by zero in the parser).
        for padding in [3usize, 200] {
            let key_at = bytes.windows(17).position(|w| w == b"general.alignment").unwrap();
            let mut padded = bytes[..key_at - 8].to_vec();
            padded.extend(((17 + padding) as u64).to_le_bytes());
            padded.extend(b"general.alignment");
            padded.extend(std::iter::repeat_n(0u8, padding));
            padded.extend(&zero_alignment[key_at + 17..]);
            assert_eq!(load(&padded).unwrap_err(), "general.alignment is 0", "{padding} NULs");
        }
        // Dimensions far beyond the file: refused before the loader would allocate for them.
        let mut huge_dims = bytes.clone();
        let name = [1u64.to_le_bytes().as_slice(), b"w"].concat();
        let dims_at = bytes.windows(9).rposition(|w| w == name.as_slice()).unwrap() + 9 + 4;
        huge_dims[dims_at..dims_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(load(&huge_dims).unwrap_err().contains("outside the file"));
    }

    /// Property: whatever the bytes (the sample with random bytes changed, cut short, or lengths
    /// overwritten with large numbers, and pure noise), loading answers Ok or Err, never panics or aborts.
    #[test]
    fn damaged_files_fail_cleanly() {
        let sound = sample();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6767_7566);
        for round in 0..3000 {
            let mut bytes = sound.clone();
            match round % 4 {
                0 => {
                    for _ in 0..rng.random_range(1..8) {
                        let at = rng.random_range(0..bytes.len());
                        bytes[at] = rng.random();
                    }
                }
                1 => bytes.truncate(rng.random_range(0..bytes.len())),
                2 => {
                    let at = rng.random_range(0..bytes.len() - 8);
                    let big: u64 = 1 << rng.random_range(8..64);
                    bytes[at..at + 8].copy_from_slice(&big.to_le_bytes());
                }
                _ => {
                    let len = rng.random_range(0..256);
                    bytes = b"GGUF\x03\0\0\0".iter().copied().chain((0..len).map(|_| rng.random::<u8>())).collect();
                }
            }
            let _ = load(&bytes);
        }
    }
}
