//! Stopping work whose answer is no longer wanted. The webhook answers a review at its deadline;
//! in wasm the host then stops the guest itself (epoch interruption), but natively nothing can be
//! preempted, so the work asks: every loop whose length the input decides (each iteration of a
//! CEL comprehension, each rule on each object) calls [`poll`], which asks the host's
//! `should_stop` every [`POLL_EVERY`] calls. Once it says stop, every later poll says so too and
//! the work unwinds within a few microseconds; [`run`] then returns `Err(Stopped)`, never a partial
//! answer. Without a host asking (`check`, the wasm guests), a poll only counts.

use std::cell::{Cell, RefCell};

/// How many polls go by between two questions to the host: a question (a clock read) costs tens
/// of nanoseconds, a comprehension iteration about as much.
pub const POLL_EVERY: u32 = 256;

/// The work was stopped before it finished; what it had computed is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the evaluation was stopped: its deadline passed")
    }
}

impl std::error::Error for Stopped {}

type ShouldStop = Box<dyn Fn() -> bool>;

thread_local! {
    static SHOULD_STOP: RefCell<Option<ShouldStop>> = const { RefCell::new(None) };
    static POLLS: Cell<u32> = const { Cell::new(0) };
    static STOPPED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on this thread, polling `should_stop` as it goes. `Err(Stopped)` if it said stop at
/// any point, whatever `work` returned.
pub fn run<R>(should_stop: impl Fn() -> bool + 'static, work: impl FnOnce() -> R) -> Result<R, Stopped> {
    /// Restores the outer state even if `work` panics, so a caught panic leaves no stale hook.
    struct Restore(Option<ShouldStop>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SHOULD_STOP.with(|s| *s.borrow_mut() = self.0.take());
            STOPPED.with(|s| s.set(self.1));
        }
    }
    let outer = SHOULD_STOP.with(|s| s.borrow_mut().replace(Box::new(should_stop)));
    let _restore = Restore(outer, STOPPED.with(|s| s.replace(false)));
    let answer = work();
    if STOPPED.with(Cell::get) {
        Err(Stopped)
    } else {
        Ok(answer)
    }
}

/// Whether the work on this thread should stop now.
pub fn poll() -> bool {
    if STOPPED.with(Cell::get) {
        return true;
    }
    let polls = POLLS.with(|p| {
        let n = p.get().wrapping_add(1);
        p.set(n);
        n
    });
    if polls % POLL_EVERY != 0 {
        return false;
    }
    let stop = SHOULD_STOP.with(|s| s.borrow().as_ref().is_some_and(|should_stop| should_stop()));
    if stop {
        STOPPED.with(|s| s.set(true));
    }
    stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn a_stop_is_asked_every_poll_every_calls_and_sticks() {
        let asked = Rc::new(Cell::new(0u32));
        let counter = Rc::clone(&asked);
        let answer = run(
            move || {
                counter.set(counter.get() + 1);
                counter.get() >= 2
            },
            || {
                let mut polls = 0;
                while !poll() {
                    polls += 1;
                    assert!(polls < 10 * POLL_EVERY, "never stopped");
                }
                assert!(poll(), "a stop sticks");
                polls
            },
        );
        assert_eq!(answer, Err(Stopped));
        assert_eq!(asked.get(), 2);
        assert!(!poll(), "outside run nothing is asked and nothing stops");
    }

    #[test]
    fn work_that_never_hears_stop_keeps_its_answer() {
        assert_eq!(run(|| false, || (0..3 * POLL_EVERY).filter(|_| poll()).count()), Ok(0));
        assert_eq!(run(|| true, || 7), Ok(7), "no poll, no stop: the work finished");
    }

    #[test]
    fn nested_runs_restore_the_outer_hook() {
        let outer = run(
            || true,
            || {
                let inner = run(|| false, || (0..2 * POLL_EVERY).any(|_| poll()));
                assert_eq!(inner, Ok(false));
                (0..2 * POLL_EVERY).any(|_| poll())
            },
        );
        assert_eq!(outer, Err(Stopped));
    }
}
