//! Shares of the CPU between lanes that compute at the same time. A lane's `weight` becomes the nice value of
//! the threads that compute for it (its own thread and its pool's), so the kernel's fair scheduler gives busy
//! lanes CPU time in proportion to their weights, while a lane computing alone still gets every core: an idle
//! lane's threads sleep and take nothing. Weights are relative: the heaviest lanes keep nice 0 and the others
//! are lowered from there, which needs no privilege and leaves everything else on the machine as it was.

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
