//! Durability of vector collections against the real binary: a server taking upserts from several clients is
//! SIGKILLed at random moments, round after round (with snapshots and log truncation happening in between);
//! after each restart every acknowledged point is there with its exact vector and payload, and findable by
//! search. Then a snapshot, a clean restart, and the same search results as before.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroserve_e2e::{Server, metric, repo_root, repository_with};
use serde_json::{Value, json};

const DIM: usize = 8;

/// A small deterministic generator, so a failing round reproduces.
fn pseudo(seed: u64) -> impl FnMut() -> f64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 1_000_000) as f64 / 1_000_000.0
    }
}

fn vector_of(id: u64) -> Vec<f32> {
    let mut next = pseudo(id + 1);
    (0..DIM).map(|_| (next() * 2.0 - 1.0) as f32).collect()
}

fn start(repo: &Path, config: &Path) -> impl std::future::Future<Output = Server> {
    let collections = config.with_file_name("collections");
    let args = [
        "--model-repository".to_string(),
        repo.display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
        "--vectors-path".to_string(),
        collections.display().to_string(),
    ];
    async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::spawn(&args);
        server.wait_ready(Duration::from_secs(120)).await;
        server
    }
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> (u16, Value) {
    match client.request(method, url).json(&body).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let repo = repository_with("collections-crash", "", "");
    let dir = repo_root().join("target/e2e-data").join(format!("crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Snapshots every ~1 MiB of log: some kills land around a snapshot and its log truncation.
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!("[vectors]\npath = {:?}\nsnapshot_wal_mb = 1\n", dir.join("collections").display().to_string()),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut server = start(&repo, &config).await;
    let (status, body) = call(
        &client,
        reqwest::Method::PUT,
        format!("{}/collections/crash", server.http),
        json!({"vectors": {"size": DIM, "distance": "Euclid"}, "hnsw_config": {"full_scan_threshold": 10}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let acknowledged: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default(); // id -> round
    let mut random = pseudo(7);
    for round in 0..5u64 {
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let (client, url, acked) = (client.clone(), format!("{}/collections/crash/points?wait=true", server.http), acknowledged.clone());
                tokio::spawn(async move {
                    for batch in 0.. {
                        let ids: Vec<u64> = (0..20).map(|i| round * 1_000_000 + w * 100_000 + batch * 20 + i).collect();
                        let points: Vec<Value> = ids
                            .iter()
                            .map(|&id| json!({"id": id, "vector": vector_of(id), "payload": {"round": round, "blob": "x".repeat(200)}}))
                            .collect();
                        let (status, _) = call(&client, reqwest::Method::PUT, url.clone(), json!({"points": points})).await;
                        if status != 200 {
                            return; // the server is gone
                        }
                        acked.lock().unwrap().extend(ids.iter().map(|&id| (id, round)));
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + (random() * 1200.0) as u64)).await;
        server.kill();
        for w in writers {
            w.await.unwrap();
        }
        server = start(&repo, &config).await;
        let acked: Vec<(u64, u64)> = acknowledged.lock().unwrap().iter().map(|(a, b)| (*a, *b)).collect();
        assert!(acked.len() > round as usize * 20, "round {round}: writes were acknowledged before the kill");
        for chunk in acked.chunks(500) {
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            let (status, body) = call(
                &client,
                reqwest::Method::POST,
                format!("{}/collections/crash/points", server.http),
                json!({"ids": ids, "with_payload": true, "with_vector": true}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let found: BTreeMap<u64, &Value> =
                body["result"].as_array().unwrap().iter().map(|p| (p["id"].as_u64().unwrap(), p)).collect();
            for (id, written_in) in chunk {
                let p = found
                    .get(id)
                    .unwrap_or_else(|| panic!("round {round}: acknowledged point {id} is missing after kill -9"));
                let v: Vec<f32> = p["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                assert_eq!(v, vector_of(*id), "point {id} came back with another vector");
                assert_eq!(p["payload"]["round"], json!(written_in));
            }
        }
        // Searchable: a sample of them finds itself through the graph.
        for (id, _) in acked.iter().step_by(acked.len() / 20 + 1) {
            let (status, body) = call(
                &client,
                reqwest::Method::POST,
                format!("{}/collections/crash/points/query", server.http),
                json!({"query": vector_of(*id), "limit": 3}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let hits: Vec<u64> =
                body["result"]["points"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
            assert!(hits.contains(id), "round {round}: point {id} not found by its own vector: {hits:?}");
        }
    }

    // The collection's size is a gauge, read at the scrape (writes applied but not yet acknowledged when a
    // kill came may be there too, so: at least the acknowledged ones, and what count says).
    let acked = acknowledged.lock().unwrap().len() as f64;
    let (_, count) =
        call(&client, reqwest::Method::POST, format!("{}/collections/crash/points/count", server.http), json!({}))
            .await;
    let count = count["result"]["count"].as_f64().unwrap();
    let text = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "ferroserve_vector_points{collection=\"crash\"}"), Some(count), "{text}");
    assert!(count >= acked);

    // A snapshot, a clean stop, and the same answers after the restart.
    let queries: Vec<Vec<f32>> = (0..10).map(|i| vector_of(10_000_000 + i)).collect();
    let answers = |server: &Server| {
        let (client, url) = (client.clone(), format!("{}/collections/crash/points/query", server.http));
        let queries = queries.clone();
        async move {
            let mut out = Vec::new();
            for q in queries {
                let (_, body) = call(
                    &client,
                    reqwest::Method::POST,
                    url.clone(),
                    json!({"query": q, "limit": 5, "params": {"exact": true}}),
                )
                .await;
                out.push(body["result"]["points"].clone());
            }
            out
        }
    };
    let before = answers(&server).await;
    let (status, body) =
        call(&client, reqwest::Method::POST, format!("{}/collections/crash/snapshots", server.http), json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)));
    let server = start(&repo, &config).await;
    assert_eq!(answers(&server).await, before);
    assert_eq!(
        std::fs::metadata(dir.join("collections/crash/wal.log")).unwrap().len(),
        0,
        "the snapshot emptied the log"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
