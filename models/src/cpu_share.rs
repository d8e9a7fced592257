//! Shares of the CPU between lanes that compute at the same time, by each lane's `weight`, in two ways:
//!
//! - **Nice values.** The threads that compute for a lane (its own thread and its pool's) get a nice value
//!   relative to the heaviest lane, so the kernel's fair scheduler gives busy threads CPU time in proportion to
//!   their weights. The heaviest lanes keep nice 0 and the others are lowered from there, which needs no
//!   privilege and leaves everything else on the machine as it was.
//! - **Rests.** Nice values share CPU time, but a lane whose steps are many short parallel sections (a language
//!   model's decode) loses speed to whatever runs beside it even when it gets most of the time. So a lane that
//!   finished a step while a heavier lane is busy rests before its next step, `step × (heavier / own − 1)`:
//!   beside a lane of four times its weight it computes a quarter of the time, and the heavier lane runs
//!   alone the rest. A lane never rests for an equal or lighter one, or when it is alone.
//!
//! Either way a lane computing alone gets every core: an idle lane's threads sleep and take nothing.
//!
//! A step can also ask whether it computes alone ([`others_busy`]): an ONNX Runtime lane then runs on a pool
//! whose threads spin between parallel sections, which only pays while nothing else wants the cores.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// CPU time between two neighbouring nice levels: Linux's fair scheduler gives each level about 1.25 times
/// the weight of the next one (`sched_prio_to_weight`).
const NICE_STEP: f64 = 1.25;

/// The nice value that gives a thread of `weight` its share beside threads of `heaviest` (at nice 0):
/// `round(log_1.25(heaviest / weight))`, 0 to 19. A weight a quarter of the heaviest gets nice 6 (3.8×
/// less CPU time than nice 0 when both are busy).
pub fn nice_for(weight: f64, heaviest: f64) -> i32 {
    if !(weight > 0.0 && heaviest > weight) {
        return 0;
    }
    ((heaviest / weight).ln() / NICE_STEP.ln()).round().clamp(0.0, 19.0) as i32
}

/// Lowers the calling thread's priority to `nice` (nothing for 0 or less: a thread cannot raise its own
/// priority without privileges). Linux keeps a nice value per thread; elsewhere this does nothing.
pub fn lower_current_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: plain system calls on the calling thread's own id.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice.min(19)) };
        if done != 0 {
            tracing::warn!(nice, error = %std::io::Error::last_os_error(), "could not lower a compute thread's priority");
        }
    }
}

/// A lane counts as busy this long after its last step ended (the gap between two requests or steps).
const LINGER: Duration = Duration::from_millis(5);

/// The longest rest after one step.
const MAX_REST: Duration = Duration::from_secs(1);

/// How often a resting lane checks that the heavier lane is still busy.
const REST_SLICE: Duration = Duration::from_millis(2);

struct LaneState {
    weight: f64,
    computing: AtomicBool,
    /// When the last step ended, microseconds since [`epoch`]; 0 before the first step ends.
    last_end_us: AtomicU64,
}

impl LaneState {
    fn busy(&self, now_us: u64) -> bool {
        let last_end = self.last_end_us.load(Ordering::Acquire);
        self.computing.load(Ordering::Acquire)
            || (last_end > 0 && now_us.saturating_sub(last_end) < LINGER.as_micros() as u64)
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Every CPU lane of the process.
static LANES: Mutex<Vec<Weak<LaneState>>> = Mutex::new(Vec::new());

thread_local! {
    /// The lane whose step runs on this thread (set by [`CpuShare::compute`]).
    static CURRENT: RefCell<Option<Arc<LaneState>>> = const { RefCell::new(None) };
}

/// Whether a CPU lane other than the one computing on this thread is busy now (any CPU lane, when called
/// outside a lane's step): the step does not have the cores to itself.
pub fn others_busy() -> bool {
    CURRENT.with(|current| heaviest_busy_except(current.borrow().as_ref()).is_some())
}

/// How one CPU lane shares the cores: its threads' nice value and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneCpu {
    pub nice: i32,
    pub weight: f64,
}

/// One lane's place among the CPU lanes that share the cores; it leaves when dropped. A GPU lane holds an
/// inert one: its steps are not counted and it never rests.
pub struct CpuShare {
    /// `None` for a GPU lane.
    lane: Option<Arc<LaneState>>,
    nice: i32,
    last_step: Duration,
}

impl CpuShare {
    /// Joins the lanes sharing the CPU (`None`: a GPU lane, inert). The lane's threads take its nice value
    /// with [`CpuShare::lower_this_thread`] (its own thread) and [`CpuShare::nice`] (its pool's).
    pub fn new(cpu: Option<LaneCpu>) -> Self {
        let Some(LaneCpu { nice, weight }) = cpu else {
            return CpuShare { lane: None, nice: 0, last_step: Duration::ZERO };
        };
        let lane = Arc::new(LaneState { weight, computing: AtomicBool::new(false), last_end_us: AtomicU64::new(0) });
        let mut lanes = LANES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lanes.retain(|l| l.strong_count() > 0);
        lanes.push(Arc::downgrade(&lane));
        CpuShare { lane: Some(lane), nice, last_step: Duration::ZERO }
    }

    /// The nice value of the lane's threads.
    pub fn nice(&self) -> i32 {
        self.nice
    }

    /// Lowers the calling thread (the lane's own, when it starts) to the lane's nice value.
    pub fn lower_this_thread(&self) {
        lower_current_thread(self.nice);
    }

    /// Runs one step of the lane's compute, counted as busy.
    pub fn compute<R>(&mut self, step: impl FnOnce() -> R) -> R {
        let Some(lane) = &self.lane else { return step() };
        /// Marks the lane idle again (and the thread as computing for no lane) even when the step unwinds.
        struct Computing<'a>(&'a LaneState);
        impl Drop for Computing<'_> {
            fn drop(&mut self) {
                CURRENT.with(|current| current.borrow_mut().take());
                self.0.last_end_us.store(now_us().max(1), Ordering::Release);
                self.0.computing.store(false, Ordering::Release);
            }
        }
        let started = Instant::now();
        lane.computing.store(true, Ordering::Release);
        CURRENT.with(|current| *current.borrow_mut() = Some(Arc::clone(lane)));
        let computing = Computing(lane);
        let out = step();
        drop(computing);
        self.last_step = started.elapsed();
        out
    }

    /// Rests after the last step while a heavier lane is busy (see the module's doc); returns how long.
    pub fn rest(&mut self) -> Duration {
        let Some(lane) = &self.lane else { return Duration::ZERO };
        let Some(heavier) = heaviest_busy_other(lane).filter(|&w| w > lane.weight) else {
            return Duration::ZERO;
        };
        let target = rest_for(self.last_step, lane.weight, heavier);
        let started = Instant::now();
        while let Some(left) = target.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) {
            if !heaviest_busy_other(lane).is_some_and(|w| w > lane.weight) {
                break;
            }
            std::thread::sleep(left.min(REST_SLICE));
        }
        started.elapsed()
    }
}

/// The heaviest weight among the lanes other than `lane` busy now.
fn heaviest_busy_other(lane: &Arc<LaneState>) -> Option<f64> {
    heaviest_busy_except(Some(lane))
}

/// The heaviest weight among the lanes busy now, `except` one.
fn heaviest_busy_except(except: Option<&Arc<LaneState>>) -> Option<f64> {
    let now = now_us();
    let lanes = LANES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    lanes
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|l| !except.is_some_and(|e| Arc::ptr_eq(l, e)) && l.busy(now))
        .map(|l| l.weight)
        .reduce(f64::max)
}

/// The rest after a step of `step` beside a busy lane of weight `heavier`: `step × (heavier / own − 1)`, so
/// the lane computes `own / heavier` of the time; none beside an equal or lighter lane; at most [`MAX_REST`].
pub fn rest_for(step: Duration, own: f64, heavier: f64) -> Duration {
    if !(own > 0.0 && heavier > own) {
        return Duration::ZERO;
    }
    step.mul_f64(heavier / own - 1.0).min(MAX_REST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_nice_levels_relative_to_the_heaviest() {
        assert_eq!(nice_for(1.0, 1.0), 0);
        assert_eq!(nice_for(4.0, 4.0), 0);
        assert_eq!(nice_for(2.0, 1.0), 0, "heavier than the heaviest cannot happen, and stays at 0");
        assert_eq!(nice_for(1.0, 2.0), 3, "1.25^3 = 1.95");
        assert_eq!(nice_for(1.0, 4.0), 6, "1.25^6 = 3.81");
        assert_eq!(nice_for(1.0, 1e9), 19, "clamped to the lowest priority");
        assert_eq!(nice_for(0.0, 1.0), 0, "not a weight");
    }

    #[test]
    fn rests_keep_the_weights_share_of_busy_time() {
        let ms = Duration::from_millis;
        assert_eq!(rest_for(ms(3), 1.0, 4.0), ms(9), "a quarter of the time beside four times the weight");
        assert_eq!(rest_for(ms(3), 1.0, 2.0), ms(3));
        assert_eq!(rest_for(ms(3), 2.0, 2.0), Duration::ZERO, "equal weights share through the scheduler alone");
        assert_eq!(rest_for(ms(3), 4.0, 1.0), Duration::ZERO, "never for a lighter lane");
        assert_eq!(rest_for(Duration::from_secs(2), 1.0, 4.0), MAX_REST);
    }

    /// Lanes are process-wide: the tests that make lanes take turns.
    static LANES_IN_TESTS: Mutex<()> = Mutex::new(());

    #[test]
    fn a_lane_rests_only_while_a_heavier_one_is_busy() {
        let _turn = LANES_IN_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let mut light = CpuShare::new(Some(LaneCpu { nice: 0, weight: 0.001 }));
        let mut heavy = CpuShare::new(Some(LaneCpu { nice: 0, weight: 0.004 }));
        light.compute(|| std::thread::sleep(Duration::from_millis(2)));
        let rested = heavy.compute(|| light.rest());
        assert!(rested >= Duration::from_millis(6), "beside a busy lane of 4x the weight: {rested:?}");
        assert_eq!(heavy.rest(), Duration::ZERO, "the heavier lane never rests for the lighter one");
        std::thread::sleep(LINGER * 2);
        drop(heavy);
        assert_eq!(light.rest(), Duration::ZERO, "the heavier lane left");
        let mut gpu = CpuShare::new(None);
        assert_eq!(gpu.compute(|| 7), 7);
        let mut heavy = CpuShare::new(Some(LaneCpu { nice: 0, weight: 0.004 }));
        assert_eq!(heavy.compute(|| gpu.rest()), Duration::ZERO, "a GPU lane never rests");
    }

    #[test]
    fn a_step_knows_whether_another_lane_computes() {
        let _turn = LANES_IN_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let mut one = CpuShare::new(Some(LaneCpu { nice: 0, weight: 1.0 }));
        let mut two = CpuShare::new(Some(LaneCpu { nice: 0, weight: 1.0 }));
        std::thread::sleep(LINGER * 2);
        assert!(!one.compute(others_busy), "its own step does not count");
        std::thread::sleep(LINGER * 2);
        assert!(two.compute(|| one.compute(others_busy)), "the other lane is in a step");
        assert!(one.compute(others_busy), "the other lane finished a step within the linger");
        std::thread::sleep(LINGER * 2);
        assert!(!one.compute(others_busy), "past the linger the other lane is idle");
        std::thread::sleep(LINGER * 2);
        assert!(!others_busy(), "outside a step: no CPU lane is busy");
        let mut gpu = CpuShare::new(None);
        assert!(!gpu.compute(others_busy), "a GPU lane is no CPU lane");
        two.compute(|| ());
        assert!(others_busy(), "outside a step: a CPU lane finished a step within the linger");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_changes_only_the_calling_thread() {
        fn nice_of(tid: i32) -> i32 {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // Fields after the command name (which may hold spaces): state is field 3, nice field 19.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse().unwrap()
        }
        let here = unsafe { libc::gettid() };
        let before = nice_of(here);
        let (tid, seen) = std::thread::spawn(move || {
            lower_current_thread(before + 5);
            let tid = unsafe { libc::gettid() };
            (tid, nice_of(tid))
        })
        .join()
        .unwrap();
        assert_ne!(tid, here);
        assert_eq!(seen, (before + 5).min(19));
        assert_eq!(nice_of(here), before, "the spawning thread keeps its priority");
    }
}
