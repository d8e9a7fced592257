//! The binary form of collection operations, shared by the write-ahead log and snapshots: ids, vectors as
//! little-endian f32, payloads as JSON. Every reader checks lengths, so a torn or corrupt record is an error,
//! never a panic.

use super::collection::PointInput;
use super::point::{Payload, PointId};

/// A write to a collection, as logged.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Upsert(Vec<PointInput>),
    Delete(Vec<PointId>),
    SetPayload { ids: Vec<PointId>, payload: Payload, overwrite: bool },
}

pub fn encode(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Upsert(points) => {
            out.push(1);
            put_u32(out, points.len());
            for p in points {
                put_id(out, &p.id);
                put_u32(out, p.vector.len());
                for x in &p.vector {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                put_json(out, &p.payload);
            }
        }
        Op::Delete(ids) => {
            out.push(2);
            put_ids(out, ids);
        }
        Op::SetPayload { ids, payload, overwrite } => {
            out.push(3);
            out.push(u8::from(*overwrite));
            put_json(out, payload);
            put_ids(out, ids);
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Op, String> {
    let mut r = Reader { bytes, at: 0 };
    let op = match r.u8()? {
        1 => {
            let n = r.u32()?;
            let mut points = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = r.id()?;
                let dim = r.u32()?;
                let raw = r.take(dim.checked_mul(4).ok_or("vector too long")?)?;
                let vector = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                points.push(PointInput { id, vector, payload: r.json()? });
            }
            Op::Upsert(points)
        }
        2 => Op::Delete(r.ids()?),
        3 => {
            let overwrite = r.u8()? == 1;
            let payload = r.json()?;
            Op::SetPayload { ids: r.ids()?, payload, overwrite }
        }
        t => return Err(format!("unknown operation {t}")),
    };
    if r.at != bytes.len() {
        return Err("trailing bytes after the operation".into());
    }
    Ok(op)
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_id(out: &mut Vec<u8>, id: &PointId) {
    match id {
        PointId::Num(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        PointId::Uuid(u) => {
            out.push(1);
            put_u32(out, u.len());
            out.extend_from_slice(u.as_bytes());
        }
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[PointId]) {
    put_u32(out, ids.len());
    for id in ids {
        put_id(out, id);
    }
}

fn put_json(out: &mut Vec<u8>, payload: &Payload) {
    let text = serde_json::to_vec(payload).unwrap_or_else(|_| b"{}".to_vec());
    put_u32(out, text.len());
    out.extend_from_slice(&text);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("record ends early")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn id(&mut self) -> Result<PointId, String> {
        match self.u8()? {
            0 => {
                let b = self.take(8)?;
                Ok(PointId::Num(u64::from_le_bytes(b.try_into().map_err(|_| "bad id")?)))
            }
            1 => {
                let n = self.u32()?;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| "id is not UTF-8")?;
                Ok(PointId::Uuid(s.to_string()))
            }
            t => Err(format!("unknown id kind {t}")),
        }
    }
    fn ids(&mut self) -> Result<Vec<PointId>, String> {
        let n = self.u32()?;
        (0..n).map(|_| self.id()).collect()
    }
    fn json(&mut self) -> Result<Payload, String> {
        let n = self.u32()?;
        serde_json::from_slice(self.take(n)?).map_err(|e| format!("payload: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_round_trip_and_truncation_is_an_error() {
        let payload = json!({"city": "Oslo", "n": [1, 2]}).as_object().unwrap().clone();
        let ops = [
            Op::Upsert(vec![
                PointInput { id: PointId::Num(7), vector: vec![0.5, -1.25, f32::MAX], payload: payload.clone() },
                PointInput {
                    id: PointId::uuid("5c56c793-69f3-4fbf-87e6-c4bf54c28c26").unwrap(),
                    vector: vec![],
                    payload: Payload::new(),
                },
            ]),
            Op::Delete(vec![PointId::Num(1), PointId::Num(u64::MAX)]),
            Op::SetPayload { ids: vec![PointId::Num(3)], payload, overwrite: true },
        ];
        for op in ops {
            let mut bytes = Vec::new();
            encode(&op, &mut bytes);
            assert_eq!(decode(&bytes).unwrap(), op);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "a record cut at {cut} is refused");
            }
        }
    }
}
