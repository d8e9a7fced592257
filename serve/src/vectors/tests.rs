//! Collections against brute force: filtered search, count and scroll on random payloads and random
//! filters; HNSW recall; tombstones and rebuilds; and the same answers after a restart, with or without a
//! snapshot.

use serde_json::{Value, json};

use super::collection::Collection;
use super::*;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f32 {
        (self.below(2_000_001) as f32 / 1_000_000.0) - 1.0
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.unit()).collect()
    }
}

const CITIES: [&str; 5] = ["Oslo", "Lima", "Pune", "Kyiv", "Rome"];

fn random_payload(rng: &mut Rng) -> Payload {
    let mut p = json!({
        "city": CITIES[rng.below(5) as usize],
        "price": rng.below(1000) as f64 / 10.0,
        "tags": (0..rng.below(3)).map(|i| format!("t{}", (rng.next() + i) % 4)).collect::<Vec<_>>(),
    });
    if rng.below(4) == 0 {
        p["note"] = Value::Null;
    }
    p.as_object().unwrap().clone()
}

fn random_condition(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 0 { 7 } else { 6 }) {
        0 => json!({"key": "city", "match": {"value": CITIES[rng.below(5) as usize]}}),
        1 => json!({"key": "city", "match": {"any": [CITIES[rng.below(5) as usize], CITIES[rng.below(5) as usize]]}}),
        2 => json!({"key": "city", "match": {"except": [CITIES[rng.below(5) as usize]]}}),
        3 => json!({"key": "price", "range": {"gte": rng.below(100), "lt": 20 + rng.below(100)}}),
        4 => json!({"key": "tags", "match": {"value": format!("t{}", rng.below(4))}}),
        5 => json!({"is_empty": {"key": if rng.below(2) == 0 { "tags" } else { "note" }}}),
        _ => random_filter(rng, depth - 1),
    }
}

fn random_filter(rng: &mut Rng, depth: u32) -> Value {
    let mut f = serde_json::Map::new();
    for clause in ["must", "should", "must_not"] {
        let n = rng.below(3);
        if n > 0 {
            f.insert(clause.into(), Value::Array((0..n).map(|_| random_condition(rng, depth)).collect()));
        }
    }
    Value::Object(f)
}

fn config(size: usize, distance: Distance, full_scan_threshold: usize) -> CollectionConfig {
    CollectionConfig {
        size,
        distance,
        hnsw: HnswParams { m: 16, ef_construct: 100, full_scan_threshold },
        embedding_model: None,
        quantization: None,
        on_disk: false,
    }
}

fn search(vector: Vec<f32>, limit: usize, filter: Option<Filter>, exact: bool) -> Search {
    Search {
        vector,
        limit,
        offset: 0,
        filter,
        score_threshold: None,
        ef: Some(128),
        exact,
        quantization: Default::default(),
        with_payload: false,
        with_vector: false,
    }
}

fn ids(hits: &[Scored]) -> Vec<PointId> {
    hits.iter().map(|h| h.record.id.clone()).collect()
}

/// Points with random vectors and payloads; every id divisible by 7 deleted afterwards.
fn filled(n: u64, dim: usize, threshold: usize, rng: &mut Rng) -> (Collection, Vec<(PointId, Vec<f32>, Payload)>) {
    let c = Collection::new("t", config(dim, Distance::Cosine, threshold));
    let points: Vec<_> = (0..n).map(|i| (PointId::Num(i), rng.vector(dim), random_payload(rng))).collect();
    let inputs = points.iter().map(|(id, v, p)| PointInput { id: id.clone(), vector: v.clone(), payload: p.clone() });
    c.upsert(inputs.collect()).unwrap();
    let gone: Vec<PointId> = (0..n).filter(|i| i % 7 == 0).map(PointId::Num).collect();
    c.delete(&gone);
    let live = points.into_iter().filter(|(id, ..)| !gone.contains(id)).collect();
    (c, live)
}

#[test]
fn filters_agree_with_brute_force_on_random_payloads() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for threshold in [0, 10_000] {
        // threshold 0: filtered HNSW traversal for every filter; 10,000: exact scans.
        let (c, live) = filled(600, 16, threshold, &mut rng);
        for round in 0..150 {
            let raw = random_filter(&mut rng, 1);
            let filter = Filter::parse(&raw).unwrap().unwrap();
            let expected: Vec<&(PointId, Vec<f32>, Payload)> =
                live.iter().filter(|(id, _, p)| filter.matches(id, p)).collect();
            assert_eq!(c.count(Some(&filter)), expected.len(), "count, filter {raw}");
            let selected = c.select(&filter);
            assert_eq!(selected, expected.iter().map(|(id, ..)| id.clone()).collect::<Vec<_>>(), "select, {raw}");
            let (page, next) = c.scroll(None, 10, Some(&filter), false, false).unwrap();
            assert_eq!(
                page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
                selected.iter().take(10).cloned().collect::<Vec<_>>()
            );
            assert_eq!(next, selected.get(10).cloned(), "scroll cursor, {raw}");
            let query = rng.vector(16);
            let exact = c.search(&search(query.clone(), 10, Some(filter.clone()), true)).unwrap();
            let mut reference: Vec<(f32, PointId)> = expected
                .iter()
                .map(|(id, v, _)| {
                    (
                        Distance::Cosine
                            .score(&Distance::Cosine.prepare(query.clone()), &Distance::Cosine.prepare(v.clone())),
                        id.clone(),
                    )
                })
                .collect();
            reference.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<PointId> = reference.iter().take(10).map(|r| r.1.clone()).collect();
            assert_eq!(ids(&exact), want, "exact search, {raw}");
            let planned = c.search(&search(query, 10, Some(filter), false)).unwrap();
            assert!(
                planned.iter().all(|h| expected.iter().any(|(id, ..)| *id == h.record.id)),
                "only points the filter keeps"
            );
            if threshold > 0 {
                assert_eq!(ids(&planned), want, "round {round}: few points, exact scan");
            } else {
                let found = ids(&planned).iter().filter(|id| want.contains(id)).count();
                assert!(
                    found * 10 >= want.len() * 7,
                    "round {round}: filtered HNSW found {found} of {} ({raw})",
                    want.len()
                );
            }
        }
    }
}

/// Qdrant's protobuf form of a filter (sent to another Qdrant over gRPC) reads back as the same filter, for
/// random filters with every kind of condition; what protobuf cannot carry is refused.
#[test]
fn filters_survive_the_protobuf_round_trip() {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    for _ in 0..300 {
        let mut raw = random_filter(&mut rng, 2);
        if rng.below(3) == 0 {
            let extra = [
                json!({"has_id": [rng.below(100), 7]}),
                json!({"is_null": {"key": "note"}}),
                json!({"key": "city", "match": {"text": "o"}}),
                json!({"key": "flag", "match": {"value": true}}),
                json!({"key": "n", "match": {"except": [1, 2]}}),
                json!({"key": "items[].price", "range": {"gt": 1.5, "lte": 9}}),
            ];
            raw.as_object_mut().unwrap().insert("must".into(), Value::Array(extra.to_vec()));
        }
        let filter = Filter::parse(&raw).unwrap().unwrap();
        let pb = qdrant_proto::to_pb_filter(&filter).unwrap();
        assert_eq!(qdrant_proto::filter(Some(pb), "filter").unwrap(), Some(filter), "{raw}");
    }
    for raw in [
        json!({"must": [{"key": "a", "match": {"any": ["x", 1]}}]}),
        json!({"must": [{"key": "a", "match": {"value": u64::MAX}}]}),
    ] {
        let filter = Filter::parse(&raw).unwrap().unwrap();
        assert!(qdrant_proto::to_pb_filter(&filter).is_err(), "{raw}");
    }
}

#[test]
fn hnsw_recall_against_exact_search() {
    let mut rng = Rng(42);
    let (c, _) = filled(4000, 32, 0, &mut rng);
    let (mut found, mut total) = (0, 0);
    for _ in 0..100 {
        let q = rng.vector(32);
        let exact = ids(&c.search(&search(q.clone(), 10, None, true)).unwrap());
        let approx = ids(&c.search(&search(q, 10, None, false)).unwrap());
        found += approx.iter().filter(|id| exact.contains(id)).count();
        total += exact.len();
    }
    let recall = found as f64 / total as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn deleted_and_replaced_points_never_come_back_and_the_graph_is_rebuilt() {
    let mut rng = Rng(7);
    let c = Collection::new("t", config(8, Distance::Euclid, 0));
    let points = |rng: &mut Rng, range: std::ops::Range<u64>| {
        range
            .map(|i| PointInput { id: PointId::Num(i), vector: rng.vector(8), payload: Payload::new() })
            .collect::<Vec<_>>()
    };
    c.upsert(points(&mut rng, 0..2000)).unwrap();
    let gone: Vec<PointId> = (0..1000).map(PointId::Num).collect();
    c.delete(&gone);
    // Replace half of the rest: the old vectors must not answer.
    let replaced = points(&mut rng, 1000..1500);
    c.upsert(replaced.clone()).unwrap();
    for p in replaced.iter().take(20) {
        let hits = c.search(&search(p.vector.clone(), 1, None, false)).unwrap();
        assert_eq!(hits[0].record.id, p.id);
        assert!(hits[0].score < 1e-3, "the new vector answers");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.is_rebuilding() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    c.rebuild_now().unwrap();
    let counts = c.counts();
    assert_eq!((counts.points, counts.graph_points), (1000, 1000));
    for _ in 0..20 {
        let hits = c.search(&search(rng.vector(8), 50, None, false)).unwrap();
        assert!(hits.iter().all(|h| !gone.contains(&h.record.id)));
    }
}

/// Points updated over and over: after each rebuild the slots of replaced points are taken by new ones, so
/// the collection keeps the size of its live points plus one period's tombstones; every point answers with
/// its latest vector and payload, in memory and with vectors on disk (where reused slots are overwritten).
#[test]
fn points_updated_forever_reuse_the_slots_a_rebuild_frees() {
    let wait = |c: &Collection| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while c.is_rebuilding() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    for on_disk in [false, true] {
        let dir = std::env::temp_dir().join(format!("ferroserve-reuse-{on_disk}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c =
            Collection::in_folder("t", CollectionConfig { on_disk, ..config(8, Distance::Euclid, 0) }, &dir).unwrap();
        let mut rng = Rng(11);
        let mut latest = std::collections::HashMap::new();
        for round in 0..20u64 {
            // Half the points each round, and a few deleted, so slots free at different places.
            let batch: Vec<PointInput> = (0..300)
                .map(|i| (i * 2 + round % 2) % 500)
                .map(|i| PointInput {
                    id: PointId::Num(i),
                    vector: rng.vector(8),
                    payload: json!({"round": round}).as_object().unwrap().clone(),
                })
                .collect();
            for p in &batch {
                latest.insert(p.id.clone(), (p.vector.clone(), p.payload.clone()));
            }
            c.upsert(batch).unwrap();
            let gone = PointId::Num(rng.below(500));
            c.delete(std::slice::from_ref(&gone));
            latest.remove(&gone);
            wait(&c);
            c.rebuild_now().unwrap();
        }
        assert!(c.slot_count() <= 900, "{} slots for {} points", c.slot_count(), latest.len());
        assert_eq!(c.counts().points, latest.len());
        for (id, (vector, payload)) in latest.iter().take(100) {
            let hits = c.search(&search(vector.clone(), 1, None, false)).unwrap();
            assert_eq!(&hits[0].record.id, id);
            assert!(hits[0].score < 1e-3, "its latest vector answers");
            let got = c.get(std::slice::from_ref(id), true, true).unwrap();
            assert_eq!((got[0].vector.as_ref().unwrap(), got[0].payload.as_ref().unwrap()), (vector, payload));
        }
        // Graph and exact search agree on the reused slots.
        for _ in 0..20 {
            let q = rng.vector(8);
            let exact = ids(&c.search(&search(q.clone(), 10, None, true)).unwrap());
            let graph = ids(&c.search(&search(q, 10, None, false)).unwrap());
            assert!(graph.iter().filter(|id| exact.contains(id)).count() >= 9);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn restarts_and_snapshots_give_the_same_answers() {
    restart_round_trip("plain", config(16, Distance::Dot, 100)).await;
}

/// The same with INT8 codes in the graph and full-precision vectors on disk (the file is rebuilt at open).
#[tokio::test]
async fn quantized_collections_with_vectors_on_disk_restart_with_the_same_answers() {
    let config =
        CollectionConfig { quantization: Some(Default::default()), on_disk: true, ..config(16, Distance::Dot, 100) };
    restart_round_trip("quantized", config).await;
}

async fn restart_round_trip(label: &str, config: CollectionConfig) {
    let root = std::env::temp_dir().join(format!("ferroserve-collections-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let vectors = VectorsConfig { path: root.clone(), snapshot_wal_mb: 0, ..Default::default() };
    let mut rng = Rng(99);
    let queries: Vec<Vec<f32>> = (0..10).map(|_| rng.vector(16)).collect();
    let answers = |c: &Collection| -> Vec<Vec<PointId>> {
        queries.iter().map(|q| ids(&c.search(&search(q.clone(), 5, None, true)).unwrap())).collect()
    };
    let before = {
        let all = Collections::open(vectors.clone()).unwrap();
        let c = all.create("docs", config.clone()).await.unwrap();
        for batch in 0..4u64 {
            let points = (batch * 50..batch * 50 + 50)
                .map(|i| PointInput {
                    id: PointId::Num(i),
                    vector: rng.vector(16),
                    payload: json!({"b": batch}).as_object().unwrap().clone(),
                })
                .collect();
            c.write(Op::Upsert(points)).await.unwrap();
            if batch == 1 {
                c.snapshot().await.unwrap();
            }
        }
        c.write(Op::Delete(vec![PointId::Num(3), PointId::Num(120)])).await.unwrap();
        let patch = json!({"seen": true}).as_object().unwrap().clone();
        c.write(Op::SetPayload { ids: vec![PointId::Num(4)], payload: patch, overwrite: false }).await.unwrap();
        assert!(all.create("docs", config.clone()).await.is_err(), "names are unique");
        assert!(all.create("../x", config.clone()).await.is_err(), "names are folder-safe");
        (answers(&c.collection), c.collection.get(&[PointId::Num(4)], true, true).unwrap(), c.collection.count(None))
    };
    // Reopened: snapshot (batches 0-1) plus the log (the rest).
    let all = Collections::open(vectors.clone()).unwrap();
    let c = all.get("docs").unwrap();
    assert_eq!(
        (answers(&c.collection), c.collection.get(&[PointId::Num(4)], true, true).unwrap(), c.collection.count(None)),
        before
    );
    assert_eq!(before.2, 198);
    assert_eq!(before.1[0].payload.as_ref().unwrap()["seen"], json!(true));
    // A snapshot of everything, an empty log, and the same answers again.
    c.snapshot().await.unwrap();
    drop((c, all));
    assert_eq!(std::fs::metadata(root.join("docs/wal.log")).unwrap().len(), 0);
    let all = Collections::open(vectors.clone()).unwrap();
    assert_eq!(answers(&all.get("docs").unwrap().collection), before.0);
    assert!(all.delete("docs").await.unwrap());
    assert!(!root.join("docs").exists());
    assert!(Collections::open(vectors).unwrap().names().is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}

/// INT8 codes in the graph: with re-scoring the answers are the exact ones for nearly every query, scores are
/// exact; without, scores are close; `ignore` scores every point at full precision.
#[test]
fn quantized_search_rescoring_and_oversampling() {
    let mut rng = Rng(5);
    let quantized = CollectionConfig { quantization: Some(Default::default()), ..config(32, Distance::Cosine, 10) };
    let (plain, int8) =
        (Collection::new("plain", config(32, Distance::Cosine, 10)), Collection::new("int8", quantized));
    let points: Vec<PointInput> = (0..3000u64)
        .map(|i| PointInput { id: PointId::Num(i), vector: rng.vector(32), payload: Default::default() })
        .collect();
    for batch in points.chunks(500) {
        plain.upsert(batch.to_vec()).unwrap();
        int8.upsert(batch.to_vec()).unwrap();
    }
    while int8.is_rebuilding() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(int8.counts().graph_bytes < plain.counts().graph_bytes, "codes are smaller than f32");
    let (mut hits, mut total) = (0, 0);
    for _ in 0..50 {
        let q = rng.vector(32);
        let exact = plain.search(&search(q.clone(), 10, None, true)).unwrap();
        let mut s = search(q.clone(), 10, None, false);
        s.quantization.oversampling = 2.0;
        let found = int8.search(&s).unwrap();
        hits += found.iter().filter(|h| exact.iter().any(|e| e.record.id == h.record.id)).count();
        total += exact.len();
        for h in &found {
            let truth = exact.iter().find(|e| e.record.id == h.record.id);
            assert!(truth.is_none_or(|t| (t.score - h.score).abs() < 1e-5), "re-scored scores are exact");
        }
        s.quantization.rescore = false;
        for h in int8.search(&s).unwrap() {
            let truth = plain.get(std::slice::from_ref(&h.record.id), false, true).unwrap()[0].vector.clone().unwrap();
            let want = Distance::Cosine.score(&Distance::Cosine.prepare(q.clone()), &truth);
            assert!((want - h.score).abs() < 0.05, "approximate score {} vs {want}", h.score);
        }
        s.quantization.ignore = true;
        assert_eq!(ids(&int8.search(&s).unwrap()), ids(&exact), "ignore: full precision, every point");
    }
    assert!(hits as f64 / total as f64 >= 0.9, "recall {}", hits as f64 / total as f64);
}

/// Memory counts follow writes without a pass over the payloads: they grow with upserts and payloads, and
/// deletes and replacements give it back.
#[test]
fn memory_counts_follow_writes() {
    let c = Collection::new("m", config(4, Distance::Dot, 100));
    let held = |c: &Collection| c.counts().bytes - c.counts().graph_bytes;
    assert_eq!(held(&c), 0);
    let point = |i: u64, text: &str| PointInput {
        id: PointId::Num(i),
        vector: vec![1.0, 0.0, 0.0, 0.0],
        payload: json!({"t": text}).as_object().unwrap().clone(),
    };
    c.upsert(vec![point(1, "a"), point(2, "b")]).unwrap();
    let two = held(&c);
    assert!(two > 0);
    c.upsert(vec![point(1, "a")]).unwrap();
    assert_eq!(held(&c), two, "a replacement gives back what it replaced");
    let long = json!({"t": "x".repeat(1000)}).as_object().unwrap().clone();
    c.set_payload(&[PointId::Num(2)], &long, true);
    assert!(held(&c) >= two + 990);
    c.delete(&[PointId::Num(1), PointId::Num(2)]);
    assert_eq!(held(&c), 0);
}
