//! Starts the real `ferroserve` binary on free loopback ports for end-to-end tests, and stops it.
//!
//! The binary is `$FERROSERVE_BIN`, else `target/debug/ferroserve` (built by `make test` before the tests
//! run). The server's log goes to `target/e2e-logs/`, named in failure messages.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn binary() -> PathBuf {
    std::env::var_os("FERROSERVE_BIN").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/debug/ferroserve"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub http: String,
    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub grpc: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts the default model repository with `extra` flags and waits until `/ready` says 200. A port found
    /// free can be taken by another test's server before this one binds it: then it starts again on new ports.
    pub async fn start(extra: &[&str]) -> Server {
        for _ in 0..3 {
            let mut server = Server::spawn(extra);
            if server.wait_ready_or_port_taken(Duration::from_secs(120)).await {
                return server;
            }
        }
        panic!("three starts in a row found a port taken");
    }

    /// Waits until `/ready` says 200 (true), or the server exits because a port was taken (false); panics
    /// with the log when it exits for another reason or is not ready in `timeout`.
    async fn wait_ready_or_port_taken(&mut self, timeout: Duration) -> bool {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(format!("{}/ready", self.http)).send().await
                && r.status().is_success()
            {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(log.contains("Address already in use"), "server exited ({status}) before ready; log: {log}");
                return false;
            }
            assert!(Instant::now() < deadline, "server not ready in {timeout:?}; log: {}", self.log.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts with its own model repository (see [`repository_with`]).
    pub async fn start_with_repository(repository: &std::path::Path, extra: &[&str]) -> Server {
        let mut args = vec!["--model-repository", repository.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Server::start(&args).await
    }

    /// Starts without waiting for readiness.
    pub fn spawn(extra: &[&str]) -> Server {
        Server::spawn_with_env(extra, &[])
    }

    /// Starts without waiting for readiness, with extra environment variables.
    pub fn spawn_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let (http_port, grpc_port) = (free_port(), free_port());
        let logs = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = logs.join(format!("server-{http_port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let bin = binary();
        assert!(bin.exists(), "{} is missing: run `cargo build --bin ferroserve` (make test does)", bin.display());
        let child = Command::new(&bin)
            .arg("serve")
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(if extra.contains(&"--model-repository") {
                vec![]
            } else {
                vec!["--model-repository".to_string(), default_repo()]
            })
            .args(if extra.contains(&"--vectors-path") {
                vec![]
            } else {
                let data = logs.join(format!("collections-{http_port}"));
                let _ = std::fs::remove_dir_all(&data);
                vec!["--vectors-path".to_string(), data.display().to_string()]
            })
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start ferroserve");
        Server {
            child,
            http: format!("http://127.0.0.1:{http_port}"),
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            log,
        }
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(format!("{}/ready", self.http)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready in {timeout:?}; log: {}", self.log.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL: no chance to flush or clean up) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "server did not exit in {timeout:?}; log: {}", self.log.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn default_repo() -> String {
    repo_root().join("deploy/model-repository").display().to_string()
}

/// Writes a model repository serving MiniLM as [`MODEL`] with the given `[batching]` keys and lane tables,
/// into a fresh folder under `target/`, and returns the folder.
pub fn repository_with(name: &str, batching: &str, lanes: &str) -> PathBuf {
    let dir = repo_root().join("target/e2e-repos").join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("repository dir");
    let toml = format!("{}\n[batching]\n{batching}\n\n{lanes}\n", minilm_config());
    std::fs::write(dir.join("model.toml"), toml).expect("model config");
    dir
}

/// The config of MiniLM (Candle, F32) as [`MODEL`], without tables.
fn minilm_config() -> String {
    let checkpoint = repo_root().join("assets/all-MiniLM-L6-v2");
    format!(
        "name = \"{MODEL}\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = {:?}\n",
        checkpoint.display().to_string()
    )
}

/// Reads one sample of a Prometheus text exposition: the value of the line that starts with `prefix`.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// POSTs `body` as JSON to `server.http` + `path`, asserts success, and returns the JSON answer.
pub async fn post_ok(server: &Server, path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = reqwest::Client::new().post(format!("{}{path}", server.http)).json(&body).send().await.expect("request");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("JSON answer")
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Reads a JSON array of floats.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

pub const MODEL: &str = "all-MiniLM-L6-v2";

pub const LLM: &str = "SmolLM2-135M-Instruct";

/// Writes a model repository serving only SmolLM2 as [`LLM`] with the given `[generation]` keys, into a fresh
/// folder under `target/`, and returns the folder.
pub fn llm_repository(name: &str, generation: &str) -> PathBuf {
    let dir = repo_root().join("target/e2e-repos").join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("repository dir");
    let checkpoint = repo_root().join("assets/SmolLM2-135M-Instruct");
    let toml = format!(
        "name = \"{LLM}\"\ntask = \"generation\"\nbackend = \"candle\"\npath = {:?}\n\
         weights = \"SmolLM2-135M-Instruct.Q4_1.gguf\"\ndtype = \"q8_0\"\n\n[generation]\n{generation}\n\n\
         [[lanes]]\ndevice = \"cpu\"\nthreads = 2\n",
        checkpoint.display().to_string()
    );
    std::fs::write(dir.join("model.toml"), toml).expect("model config");
    dir
}

/// Like [`llm_repository`], plus MiniLM as [`MODEL`].
pub fn llm_and_minilm_repository(name: &str) -> PathBuf {
    let dir = llm_repository(name, "");
    std::fs::write(dir.join("minilm.toml"), minilm_config()).expect("model config");
    dir
}

/// Like [`llm_and_minilm_repository`], with the LLM's `[semantic_cache]` (embedding with MiniLM) and the given
/// extra keys.
pub fn semantic_repository(name: &str, semantic: &str) -> PathBuf {
    let dir = llm_and_minilm_repository(name);
    let llm = dir.join("model.toml");
    let toml = std::fs::read_to_string(&llm).expect("model config");
    let toml = format!("{toml}\n[semantic_cache]\nembedding_model = \"{MODEL}\"\n{semantic}\n");
    std::fs::write(&llm, toml).expect("model config");
    dir
}

/// A real `redis-server` (Debian package `redis-server`, installed by `tests/setup-packages.sh`) on a free
/// loopback port, without persistence; killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis { child: None, port: free_port() };
        redis.restart();
        redis
    }

    /// The URL servers connect with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run tests/setup-packages.sh (make test does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pings(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let mut answer = [0u8; 7];
        s.set_read_timeout(Some(Duration::from_secs(1))).ok();
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// Kills it at once (SIGKILL: no goodbye to connected clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `data:` payloads of a server-sent-events body, `[DONE]` included.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}

/// Waits (up to 30 s) until the server's metric sample starting with `prefix` satisfies `ready`, and
/// returns it: for tests that need the server in a state (a lane busy, a request waiting) before they act.
pub async fn wait_for_metric(server: &Server, prefix: &str, ready: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("{}/metrics", server.http)).await.expect("metrics").text().await.unwrap();
        if let Some(v) = metric(&text, prefix).filter(|v| ready(*v)) {
            return v;
        }
        assert!(Instant::now() < deadline, "{prefix} never reached the awaited value; log: {}", server.log.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
