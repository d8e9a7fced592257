//! The solo session of a model on the process's shared pool: the same model on a pool of its own whose threads
//! spin while a run is in flight, for the steps that find no other CPU lane busy (`cpu_share::others_busy`).
//!
//! Spinning answers each parallel section at once instead of waking a sleeping thread, so a one-text batch
//! gets faster; but beside another busy lane spinning threads take the cores from it, and spin on while the
//! thread they wait for is off the core (benches/RESULTS.md). So the shared pool does not spin, and a step that
//! computes alone takes the solo session. A step may start alone and another lane join during it; the solo
//! pool then spins for the rest of that one step.
//!
//! A second session costs about the model's weights again in memory (ONNX Runtime keeps its own optimized
//! copy per session), so it is made only for a model that gets used: on a background thread, started by the
//! first step that computes alone; until it is ready steps run on the shared pool.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use ort::session::Session;

use super::session::{Pool, session};
use crate::cpu_share;

enum State {
    NotMade,
    Making(Receiver<Result<Session, String>>),
    Ready(Session),
    /// Making it failed (logged); the model runs on the shared pool only.
    Failed,
}

pub(super) struct Solo {
    path: PathBuf,
    pool: Pool,
    state: State,
}

impl Solo {
    /// The solo session of the model at `path`, on a pool of `threads` spinning threads at `nice` (made later).
    pub fn new(path: &Path, threads: usize, nice: i32) -> Self {
        Solo { path: path.to_path_buf(), pool: Pool::Spinning { threads, nice }, state: State::NotMade }
    }

    /// The session for this step when it computes alone and the solo session is ready; the first step alone
    /// starts making it.
    pub fn for_this_step(&mut self) -> Option<&mut Session> {
        if cpu_share::others_busy() {
            return None;
        }
        match &self.state {
            State::NotMade => {
                self.state = self.start_making();
                None
            }
            State::Making(made) => {
                self.state = match made.try_recv() {
                    Ok(Ok(session)) => State::Ready(session),
                    Err(TryRecvError::Empty) => return None,
                    Ok(Err(error)) => {
                        tracing::warn!(path = %self.path.display(), error, "no solo session: steps stay on the shared pool");
                        State::Failed
                    }
                    Err(TryRecvError::Disconnected) => State::Failed,
                };
                self.ready()
            }
            State::Ready(_) => self.ready(),
            State::Failed => None,
        }
    }

    fn ready(&mut self) -> Option<&mut Session> {
        match &mut self.state {
            State::Ready(session) => Some(session),
            _ => None,
        }
    }

    fn start_making(&self) -> State {
        let (path, pool) = (self.path.clone(), self.pool);
        let (made, receiver) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new().name("onnx-solo-load".into()).spawn(move || {
            let started = Instant::now();
            let result = session(&path, pool).map_err(|e| e.to_string());
            if result.is_ok() {
                tracing::info!(path = %path.display(), secs = started.elapsed().as_secs_f32(), "solo session ready");
            }
            // The model may be gone by now (unloaded); then nobody needs the session.
            let _ = made.send(result);
        });
        match spawned {
            Ok(_) => State::Making(receiver),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "no solo session: steps stay on the shared pool");
                State::Failed
            }
        }
    }
}
