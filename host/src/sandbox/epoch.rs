//! The epoch ticker: the thread that advances the engine's epoch every [`EPOCH_TICK`],
//! which bounds each handler call in time (epoch interruption). It ticks only while
//! calls run, and for a second after the last one (so that a steady load never waits
//! for it), then sleeps until the next call: a server whose models are idle uses no
//! CPU for it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances; the time bound of a call is rounded up to it.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Ticks after the last call before the ticker sleeps (a second).
const IDLE_TICKS: u32 = 100;

/// Shared by the ticker thread and the calls.
#[derive(Default)]
pub(super) struct EpochTicker {
    /// Calls running now.
    active: AtomicUsize,
    /// Whether the ticker sleeps (waits on `wake`).
    parked: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

/// A running call: the ticker ticks while one exists.
pub(super) struct Busy<'a>(&'a EpochTicker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub(super) fn start(engine: Engine) -> std::io::Result<Arc<EpochTicker>> {
        let ticker = Arc::new(EpochTicker::default());
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || t.run(&engine))?;
        Ok(ticker)
    }

    fn run(&self, engine: &Engine) {
        let mut idle = 0;
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
            if self.active.load(Ordering::SeqCst) > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < IDLE_TICKS {
                continue;
            }
            // A call starting now either sees `parked` and wakes us under the lock, or
            // counted itself before we look at `active` here.
            let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.parked.store(true, Ordering::SeqCst);
            while self.active.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                guard = self.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            self.parked.store(false, Ordering::SeqCst);
            idle = 0;
        }
    }

    /// Marks a call running until the guard drops; wakes the ticker if it sleeps. The
    /// call's deadline is set after this, so it counts ticks from a running ticker.
    pub(super) fn busy(&self) -> Busy<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.wake.notify_one();
        }
        Busy(self)
    }

    /// Ends the ticker thread (after its current tick).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(t: &EpochTicker) -> bool {
        t.parked.load(Ordering::SeqCst)
    }

    #[test]
    fn sleeps_when_idle_and_a_call_wakes_it() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let ticker = EpochTicker::start(Engine::new(&config).unwrap()).unwrap();
        let waited = |want: bool, limit: Duration| {
            let t = std::time::Instant::now();
            while parked(&ticker) != want && t.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(5));
            }
            parked(&ticker) == want
        };
        assert!(waited(true, Duration::from_secs(3)), "idle, it sleeps");
        {
            let _call = ticker.busy();
            assert!(waited(false, Duration::from_millis(500)), "a call wakes it");
            std::thread::sleep(Duration::from_millis(1500));
            assert!(!parked(&ticker), "it ticks while the call runs");
        }
        assert!(
            waited(true, Duration::from_secs(3)),
            "and sleeps again after"
        );
        ticker.stop();
    }
}
