//! One timer thread per server: runs closures at a deadline (`send_after`, delayed replies).
//!
//! Owns the timer queue ([`Timers`]); the thread itself is started by `server`. Depends only on
//! `locks`: the tasks are opaque closures, so this module knows nothing of connections or
//! channels.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::locks::lock;

type Task = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, Task>,
    seq: u64,
    stop: bool,
}

/// The timer queue; [`Timers::run`] is the thread body.
#[derive(Default)]
pub(crate) struct Timers {
    state: Mutex<State>,
    cv: Condvar,
}

impl Timers {
    pub(crate) fn schedule(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        let mut st = lock(&self.state);
        if st.stop {
            return;
        }
        st.seq += 1;
        let id = st.seq;
        st.heap.push(Reverse((Instant::now() + delay, id)));
        st.tasks.insert(id, Box::new(f));
        self.cv.notify_all();
    }

    pub(crate) fn stop(&self) {
        let mut st = lock(&self.state);
        st.stop = true;
        st.tasks.clear();
        st.heap.clear();
        self.cv.notify_all();
    }

    pub(crate) fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return;
            }
            let now = Instant::now();
            match st.heap.peek().copied() {
                Some(Reverse((at, id))) if at <= now => {
                    st.heap.pop();
                    if let Some(task) = st.tasks.remove(&id) {
                        drop(st);
                        task();
                        st = lock(&self.state);
                    }
                }
                Some(Reverse((at, _))) => {
                    st = self
                        .cv
                        .wait_timeout(st, at - now)
                        .map(|r| r.0)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                None => {
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}
