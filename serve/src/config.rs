//! Server configuration: the `[server]` table of the TOML file merged with env vars and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::api::auth::AuthConfig;
use crate::api::connections::ConnectionLimits;
use crate::api::http::HttpConfig;
use crate::api::tls::TlsConfig;
use crate::cache::CacheConfig;
use crate::cli::{LogFormat, ServeArgs};
use crate::routing::RouteSpec;
use crate::telemetry::TracingConfig;
use crate::vectors::VectorsConfig;

/// Everything `serve` needs to start, after merging file, environment and flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub model_repository: PathBuf,
    pub max_body_bytes: usize,
    pub max_client_batch_size: usize,
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    /// `None`: see [`crate::threads::ThreadBudget`].
    pub io_threads: Option<usize>,
    /// Whether ONNX models on the shared pool get a second session whose pool spins, for steps that compute
    /// alone (see [`crate::threads::ThreadBudget`]).
    pub onnx_solo_sessions: bool,
    /// Seconds between checks of the repository folder for changed model files (0: never).
    pub repository_poll_secs: u64,
    /// Most MiB of model weights loaded at once (0: no limit).
    pub max_loaded_mb: u64,
    /// The `[cache]` table of the file.
    #[serde(skip)]
    pub cache: CacheConfig,
    /// The `[vectors]` table of the file (collections).
    #[serde(skip)]
    pub vectors: VectorsConfig,
    /// The `[chains]` table of the file.
    #[serde(skip)]
    pub chains: ChainsConfig,
    /// The `[auth]` table of the file (API keys).
    #[serde(skip)]
    pub auth: AuthConfig,
    /// The `[http]` table of the file (compression, CORS).
    #[serde(skip)]
    pub http: HttpConfig,
    /// The `[connections]` table of the file (caps, timeouts, stream limits of both ports).
    #[serde(skip)]
    pub connections: ConnectionLimits,
    /// The `[tls]` table of the file (certificate and key of both ports).
    #[serde(skip)]
    pub tls: TlsConfig,
    /// The `[tracing]` table of the file (OpenTelemetry traces).
    #[serde(skip)]
    pub tracing: TracingConfig,
    /// The `[[routes]]` of the file: aliases routed to model variants (A/B), with optional shadows.
    #[serde(skip)]
    pub routes: Vec<RouteSpec>,
    /// The `[ui]` table of the file (the web console).
    #[serde(skip)]
    pub ui: UiConfig,
}

/// The web console at `/ui` (`[ui]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Folder whose sub-folders hold `ferroserve bench` results (tables and plots) for the console's bench
    /// page; `None`: the page has nothing to show.
    pub bench_results: Option<PathBuf>,
}

/// Where chain definitions live and how often the folder is checked for changes (`[chains]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainsConfig {
    /// `None`: `chains` beside the model repository.
    pub path: Option<PathBuf>,
    /// Seconds between checks of the folder for changed files; 0: read once at start.
    pub reload_secs: u64,
}

impl Default for ChainsConfig {
    fn default() -> Self {
        ChainsConfig { path: None, reload_secs: 2 }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            model_repository: PathBuf::from("deploy/model-repository"),
            max_body_bytes: 2 * 1024 * 1024,
            max_client_batch_size: 2048,
            shutdown_grace_secs: 30,
            log_format: LogFormat::Text,
            io_threads: None,
            onnx_solo_sessions: true,
            repository_poll_secs: 0,
            max_loaded_mb: 0,
            cache: CacheConfig::default(),
            vectors: VectorsConfig::default(),
            chains: ChainsConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            connections: ConnectionLimits::default(),
            tls: TlsConfig::default(),
            tracing: TracingConfig::default(),
            routes: Vec::new(),
            ui: UiConfig::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    vectors: VectorsConfig,
    #[serde(default)]
    chains: ChainsConfig,
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    connections: ConnectionLimits,
    #[serde(default)]
    tls: TlsConfig,
    #[serde(default)]
    tracing: TracingConfig,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    ui: UiConfig,
}

impl ServerConfig {
    /// Reads the config file named by `args` (if any) and applies the flags and env vars on top.
    /// A relative `model_repository` in the file is taken relative to the file's folder.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => ServerConfig::default(),
        };
        let ServeArgs {
            config: _,
            http_addr,
            grpc_addr,
            model_repository,
            max_body_bytes,
            max_client_batch_size,
            shutdown_grace_secs,
            log_format,
            io_threads,
            onnx_solo_sessions,
            redis_url,
            vectors_path,
            chains_path,
            bench_results,
            repository_poll_secs,
            max_loaded_mb,
        } = args.clone();
        override_with(&mut config.http_addr, http_addr);
        override_with(&mut config.grpc_addr, grpc_addr);
        override_with(&mut config.model_repository, model_repository);
        override_with(&mut config.max_body_bytes, max_body_bytes);
        override_with(&mut config.max_client_batch_size, max_client_batch_size);
        override_with(&mut config.shutdown_grace_secs, shutdown_grace_secs);
        override_with(&mut config.log_format, log_format);
        if io_threads.is_some() {
            config.io_threads = io_threads;
        }
        override_with(&mut config.onnx_solo_sessions, onnx_solo_sessions);
        if redis_url.is_some() {
            config.cache.redis_url = redis_url;
        }
        override_with(&mut config.vectors.path, vectors_path);
        override_with(&mut config.repository_poll_secs, repository_poll_secs);
        override_with(&mut config.max_loaded_mb, max_loaded_mb);
        if chains_path.is_some() {
            config.chains.path = chains_path;
        }
        if bench_results.is_some() {
            config.ui.bench_results = bench_results;
        }
        anyhow::ensure!(config.max_body_bytes > 0, "max_body_bytes must be at least 1");
        anyhow::ensure!(config.max_client_batch_size > 0, "max_client_batch_size must be at least 1");
        anyhow::ensure!(config.io_threads != Some(0), "io_threads must be at least 1");
        config.http.check()?;
        config.connections.check()?;
        config.tracing.check()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let file: ConfigFile = toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        let mut config = file.server;
        config.cache = file.cache;
        config.vectors = file.vectors;
        config.chains = file.chains;
        config.auth = file.auth;
        config.http = file.http;
        config.connections = file.connections;
        config.tls = file.tls;
        config.tracing = file.tracing;
        config.routes = file.routes;
        config.ui = file.ui;
        let base = path.parent().unwrap_or(Path::new("."));
        let seeds = config.vectors.seed.iter_mut().map(|s| &mut s.file);
        for relative in [&mut config.model_repository, &mut config.vectors.path].into_iter().chain(seeds) {
            if relative.is_relative() {
                *relative = base.join(&*relative);
            }
        }
        let optional = [
            config.chains.path.as_mut(),
            config.tls.cert.as_mut(),
            config.tls.key.as_mut(),
            config.ui.bench_results.as_mut(),
        ];
        for relative in optional.into_iter().flatten().filter(|p| p.is_relative()) {
            *relative = base.join(&*relative);
        }
        Ok(config)
    }

    /// The chains folder: as configured, or `chains` beside the model repository.
    pub fn chains_folder(&self) -> PathBuf {
        self.chains
            .path
            .clone()
            .unwrap_or_else(|| self.model_repository.parent().unwrap_or(Path::new(".")).join("chains"))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

fn override_with<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("ferroserve-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.toml");
        std::fs::write(
            &file,
            "[server]\nhttp_addr = \"0.0.0.0:9000\"\nmodel_repository = \"repo\"\nmax_body_bytes = 10\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(file), max_body_bytes: Some(20), ..Default::default() };
        let c = ServerConfig::load(&args).unwrap();
        assert_eq!(c.http_addr.port(), 9000);
        assert_eq!(c.grpc_addr.port(), 50051);
        assert_eq!(c.model_repository, dir.join("repo"));
        assert_eq!(c.max_body_bytes, 20);

        std::fs::write(dir.join("bad.toml"), "[server]\nhttp_adr = \"x\"\n").unwrap();
        let args = ServeArgs { config: Some(dir.join("bad.toml")), ..Default::default() };
        let err = format!("{:#}", ServerConfig::load(&args).unwrap_err());
        assert!(err.contains("http_adr"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
