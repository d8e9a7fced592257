//! ferroserve: one process that serves machine-learning models over REST (axum) and gRPC (tonic).
//!
//! Layout: `api` (transports) → `engine` (models, requests) → `batching` (queues, lanes) and `generation` (continuous batching) → the
//! `ferroserve_models` crate (backends). `cli` and `config` turn flags, env and files into a
//! [`config::ServerConfig`]; `server` wires it all together.

pub mod api;
pub mod batching;
pub mod bench;
pub mod cache;
pub mod chains;
pub mod cli;
pub mod config;
#[cfg(test)]
mod damage;
pub mod engine;
pub mod export;
pub mod generation;
pub mod ratelimit;
pub mod remote;
pub mod repository;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod threads;
pub mod utc;
pub mod vectors;
