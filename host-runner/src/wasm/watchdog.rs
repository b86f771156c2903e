//! [`super::OnDeadline::Exit`]: one thread watches the calls in flight and ends the process when
//! one passes its deadline. Nothing is compiled into the module, so the guest runs at full speed;
//! one-shot commands print nothing before their calls end, so an exit leaves no half-written output.

use super::EPOCH_TICK;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

struct InFlight {
    id: u64,
    due: Instant,
    what: &'static str,
    deadline: Duration,
}

static CALLS: Mutex<Vec<InFlight>> = Mutex::new(Vec::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static STARTED: Once = Once::new();

/// One watched call; dropping it ends the watch.
pub(crate) struct Watch {
    id: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut calls = CALLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        calls.retain(|c| c.id != self.id);
    }
}

/// Watches a call of `what` from now until the guard drops.
pub(crate) fn watch(what: &'static str, deadline: Duration) -> Watch {
    STARTED.call_once(|| {
        // Without the thread no deadline holds; a process that cannot start one is out of
        // resources, and the first call says so rather than running unbounded.
        if let Err(e) = std::thread::Builder::new().name("wasm-watchdog".into()).spawn(run) {
            eprintln!("error: cannot start the thread that bounds wasm calls: {e}");
            std::process::exit(2);
        }
    });
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let due = Instant::now() + deadline;
    CALLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(InFlight { id, due, what, deadline });
    Watch { id }
}

fn run() {
    loop {
        std::thread::sleep(EPOCH_TICK);
        let now = Instant::now();
        let calls = CALLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(late) = calls.iter().find(|c| c.due <= now) {
            eprintln!(
                "error: {} ran past its {} ms deadline and was stopped: it may loop forever (raise it with --call-timeout-ms)",
                late.what,
                late.deadline.as_millis()
            );
            std::process::exit(2);
        }
    }
}
