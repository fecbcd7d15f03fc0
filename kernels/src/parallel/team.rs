//! A team of helper threads that spin between parallel regions.
//!
//! Why not rayon alone: an idle rayon worker goes to sleep after a few dozen `yield_now`
//! rounds, and a kernel call opens one or two regions (pad, then tasks) a millisecond or
//! less apart. On the 2-vCPU KVM guest this was measured on (`perf sched`, 14x14x256
//! forward, 2 threads), the helper slept and was woken about twice per call, each wake
//! 30-50 us of scheduling delay on a 1.1 ms call, more on a busy host. OpenMP's threads,
//! and so PyTorch's, spin between regions instead.
//!
//! The team: one helper OS thread per core but one (at least one), started on first use.
//! The caller of a region (the *owner*) works too. Each of the region's `w` workers starts
//! on its own contiguous `1/w` of the tasks, claims them from the front one at a time, and
//! when its range runs out steals the back half of the fullest other range, as rayon's
//! splitting does; a task's result never depends on the thread that runs it. Between
//! regions a helper spins ([`SPIN`]), then yields while it waits ([`YIELD`]), so a rayon
//! worker or another process that needs the core gets it, then parks until the next region.
//!
//! The team serves one region at a time: a region opened while it is busy (another thread
//! runs one), or with more workers than the team has, is refused and goes to rayon, and a
//! region opened inside a team task runs serially on that thread, since every worker is
//! already busy. (So kernels called from many rayon tasks at once run one region on the
//! team and the rest on rayon, and for that while the team's helpers add to rayon's
//! threads.)

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper spins on the entry word, with only a pause between looks,
/// before it starts yielding.
const SPIN: Duration = Duration::from_micros(100);
/// How long after that it keeps looking, yielding its core between looks, before it parks.
const YIELD: Duration = Duration::from_millis(2);

/// A task as the team runs it; the lifetime is erased while a region is open (see
/// [`Job`]).
type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// One value on its own pair of cache lines (adjacent-line prefetch pairs them), so the
/// workers' claims on their ranges do not contend.
#[repr(align(128))]
struct Padded<T>(T);

/// The entry word: `generation << 32 | workers << 17 | CLOSED | checked-in helpers`.
const COUNT_MASK: u64 = 0xffff;
const CLOSED: u64 = 1 << 16;
const WORKERS_SHIFT: u32 = 17;
const WORKERS_MASK: u64 = 0x7fff;

fn generation(entry: u64) -> u32 {
    (entry >> 32) as u32
}

fn workers(entry: u64) -> usize {
    ((entry >> WORKERS_SHIFT) & WORKERS_MASK) as usize
}

/// A range of unclaimed tasks `lo..hi`, packed as `hi << 32 | lo` so one compare-exchange
/// claims or splits it.
fn pack(lo: usize, hi: usize) -> u64 {
    (hi as u64) << 32 | lo as u64
}

fn unpack(v: u64) -> (usize, usize) {
    ((v & 0xffff_ffff) as usize, (v >> 32) as usize)
}

/// The open region's task. Written only by the owner while the entry is closed and no
/// helper is checked in; read only by helpers checked in to the open region.
struct Job {
    task: Option<&'static Task<'static>>,
}

struct Helper {
    /// The helper's thread, set by the helper itself before it first parks.
    thread: OnceLock<Thread>,
    /// Set by the helper just before it parks; the owner that opens a region clears it and
    /// unparks the helper.
    asleep: Padded<AtomicBool>,
}

struct Team {
    entry: Padded<AtomicU64>,
    /// Held by the owner of the open region.
    busy: AtomicBool,
    /// Set when a task panics: workers stop claiming.
    stop: AtomicBool,
    /// The first panic of a helper's task, rethrown by the owner unless its own task
    /// panicked too.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    job: UnsafeCell<Job>,
    /// Unclaimed tasks of each worker (the owner's is 0, helper `i`'s is `i + 1`).
    ranges: Box<[Padded<AtomicU64>]>,
    helpers: Box<[Helper]>,
}

// SAFETY: `job` is the only field that is not `Sync`. The owner writes it only while it
// holds `busy` and the entry is closed with no helper checked in; a helper reads it only
// after checking in to an open region (an acquire compare-exchange on the entry that the
// owner's opening store released) and before checking out, and the owner waits (acquire)
// for every helper to check out before it writes again; the next owner, possibly another
// thread, comes after that through `busy` (released after the wait, acquired to take it).
// So a write never overlaps a read.
unsafe impl Sync for Team {}

static TEAM: OnceLock<&'static Team> = OnceLock::new();

thread_local! {
    /// The number of workers of the team region this thread is running a task of (0: none).
    static IN_REGION: Cell<usize> = const { Cell::new(0) };
}

/// Workers of the team region the current thread is running a task of, if any.
pub(super) fn region_workers() -> Option<usize> {
    match IN_REGION.get() {
        0 => None,
        w => Some(w),
    }
}

/// Runs `task(0..tasks)` on `workers` threads of the team, the caller among them, and
/// returns true; or returns false without running anything if the team cannot take the
/// region (it is busy, has fewer threads, or `tasks` does not fit its ranges).
pub(super) fn run(tasks: usize, workers: usize, task: &Task<'_>) -> bool {
    team().run(tasks, workers, task)
}

/// The process's team: one helper per core but one (at least one, so 2-thread pools use
/// it on any machine), started on first use.
fn team() -> &'static Team {
    TEAM.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Team::start(cores.max(2) - 1)
    })
}

impl Team {
    /// A team of `helpers` helper threads (at most `WORKERS_MASK - 1`), which lives as long
    /// as the process. A helper whose thread fails to start never checks in; the other
    /// workers then steal its range, so its regions still complete.
    fn start(helpers: usize) -> &'static Team {
        let helpers = helpers.min(WORKERS_MASK as usize - 1);
        let team: &'static Team = Box::leak(Box::new(Team {
            entry: Padded(AtomicU64::new(CLOSED)),
            busy: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
            job: UnsafeCell::new(Job { task: None }),
            ranges: (0..=helpers).map(|_| Padded(AtomicU64::new(0))).collect(),
            helpers: (0..helpers)
                .map(|_| Helper {
                    thread: OnceLock::new(),
                    asleep: Padded(AtomicBool::new(false)),
                })
                .collect(),
        }));
        let started: Vec<usize> = (0..helpers)
            .filter(|&index| {
                // A failed start is handled as above.
                std::thread::Builder::new()
                    .name(format!("convnet-team-{index}"))
                    .spawn(move || team.helper(index))
                    .is_ok()
            })
            .collect();
        // Wait until each started helper runs its own code: what a new thread allocates as
        // it starts (the runtime's thread-local registrations) then happens here, not at a
        // moment of the scheduler's choosing inside a later call that promises to allocate
        // nothing (`tests/plan_allocations.rs`).
        for index in started {
            while team.helpers[index].thread.get().is_none() {
                std::thread::yield_now();
            }
        }
        team
    }

    /// [`run`] on this team.
    fn run(&'static self, tasks: usize, workers: usize, task: &Task<'_>) -> bool {
        if workers < 2 || workers > self.helpers.len() + 1 || tasks > u32::MAX as usize {
            return false;
        }
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: only the lifetime is erased. The reference is read only by helpers checked
        // in to this region, and `close` (below; the owner's own panic is caught first) waits
        // for all of them to check out and clears it before this function returns, so it never
        // outlives `task`.
        let erased: &'static Task<'static> =
            unsafe { std::mem::transmute::<&Task<'_>, &'static Task<'static>>(task) };
        // SAFETY: we hold `busy` and the entry is closed with no helper checked in (the last
        // owner's `close` left it so), so no helper reads `job` now (see `impl Sync for Team`).
        unsafe { (*self.job.get()).task = Some(erased) };
        // Worker `t`'s share starts at task `t * tasks / workers` (in u64: no overflow).
        let start = |t: usize| (t as u64 * tasks as u64 / workers as u64) as usize;
        for (t, range) in self.ranges[..workers].iter().enumerate() {
            range
                .0
                .store(pack(start(t), start(t + 1)), Ordering::Relaxed);
        }
        self.stop.store(false, Ordering::Relaxed);
        let next = generation(self.entry.0.load(Ordering::Relaxed)).wrapping_add(1);
        // Open: a new generation, no helper checked in. SeqCst pairs with the helpers' SeqCst
        // `asleep` store and entry load before they park: either a helper sees this region, or
        // we see it asleep and unpark it.
        self.entry.0.store(
            (next as u64) << 32 | (workers as u64) << WORKERS_SHIFT,
            Ordering::SeqCst,
        );
        for h in &self.helpers[..workers - 1] {
            // A helper sets its thread before it first sleeps, so an asleep one has it.
            if h.asleep.0.swap(false, Ordering::SeqCst)
                && let Some(thread) = h.thread.get()
            {
                thread.unpark();
            }
        }
        IN_REGION.set(workers);
        let ran = catch_unwind(AssertUnwindSafe(|| work(self, 0, workers, task)));
        IN_REGION.set(0);
        if ran.is_err() {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.close();
        let helper_panic = self
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.busy.store(false, Ordering::Release);
        // The owner's own panic first, as rayon would propagate it. A helper's is dropped
        // here, and a panic in its `Drop` is caught, not raised during the unwind.
        if let Err(payload) = ran {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(helper_panic)));
            resume_unwind(payload);
        }
        if let Some(payload) = helper_panic {
            resume_unwind(payload);
        }
        true
    }

    /// Ends the open region: closes the entry, waits until every helper has checked out,
    /// and clears the job.
    fn close(&self) {
        self.entry.0.fetch_or(CLOSED, Ordering::AcqRel);
        // Acquire: each helper's task writes happen before its check-out. A checked-in
        // helper that the host preempted may take a while; yield to it after a short spin,
        // in case it waits on this core.
        let mut looks = 0u32;
        while self.entry.0.load(Ordering::Acquire) & COUNT_MASK != 0 {
            looks = looks.saturating_add(1);
            if looks < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        // SAFETY: we hold `busy`, the entry is closed and no helper is checked in.
        unsafe { (*self.job.get()).task = None };
    }

    /// Helper `index`'s life: wait for a region it is a worker of, check in, work, check
    /// out.
    fn helper(&'static self, index: usize) {
        let _ = self.helpers[index].thread.set(std::thread::current());
        // Generation 0 is the closed entry the team starts with: a region opened before
        // this thread ran is still one to join.
        let mut seen = 0;
        loop {
            let workers = self.check_in(index, &mut seen);
            // SAFETY: we are checked in to an open region, so `job` holds its task and the
            // owner neither writes it nor lets the task go until we check out.
            let task = unsafe { (*self.job.get()).task };
            if let Some(task) = task {
                IN_REGION.set(workers);
                let ran = catch_unwind(AssertUnwindSafe(|| work(self, index + 1, workers, task)));
                IN_REGION.set(0);
                if let Err(payload) = ran {
                    self.stop.store(true, Ordering::Relaxed);
                    // Keep the first payload. A later one is dropped outside the lock, and a
                    // panic in its `Drop` is caught: the check-out below must happen.
                    let extra = {
                        let mut slot = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
                        match *slot {
                            None => slot.replace(payload),
                            Some(_) => Some(payload),
                        }
                    };
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(extra)));
                }
            }
            // Check out. Release: our task writes happen before it.
            self.entry.0.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits for a region after generation `seen` that helper `index` is a worker of, checks
    /// in to it and returns its number of workers. Spins, then yields, then parks.
    fn check_in(&self, index: usize, seen: &mut u32) -> usize {
        let asleep = &self.helpers[index].asleep.0;
        let mut started = Instant::now();
        let mut looks = 0u32;
        loop {
            let e = self.entry.0.load(Ordering::Acquire);
            if generation(e) != *seen {
                if e & CLOSED != 0 || index + 1 >= workers(e) {
                    *seen = generation(e);
                    continue;
                }
                // Acquire: the job and ranges were written before the opening store.
                if self
                    .entry
                    .0
                    .compare_exchange_weak(e, e + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    *seen = generation(e);
                    return workers(e);
                }
                continue;
            }
            looks = looks.wrapping_add(1);
            if !looks.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let idle = started.elapsed();
            if idle < SPIN {
                std::hint::spin_loop();
            } else if idle < SPIN + YIELD {
                std::thread::yield_now();
            } else {
                asleep.store(true, Ordering::SeqCst);
                if generation(self.entry.0.load(Ordering::SeqCst)) == *seen {
                    std::thread::park();
                }
                asleep.store(false, Ordering::Relaxed);
                started = Instant::now();
            }
        }
    }
}

/// Claims and runs tasks as worker `me` of `workers` until no range has any left.
fn work(team: &Team, me: usize, workers: usize, task: &Task<'_>) {
    let ranges = &team.ranges[..workers];
    loop {
        while let Some(t) = claim(&ranges[me].0) {
            if team.stop.load(Ordering::Relaxed) {
                return;
            }
            task(t);
        }
        match steal(ranges, me) {
            // Our range is empty and only we refill it; thieves compare-exchange only
            // non-empty ranges, so no steal can race with this plain store.
            Some((lo, hi)) => ranges[me].0.store(pack(lo, hi), Ordering::Relaxed),
            None => return,
        }
    }
}

/// Claims the first task of `range`, if any.
fn claim(range: &AtomicU64) -> Option<usize> {
    let mut v = range.load(Ordering::Relaxed);
    loop {
        let (lo, hi) = unpack(v);
        if lo >= hi {
            return None;
        }
        match range.compare_exchange_weak(v, pack(lo + 1, hi), Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return Some(lo),
            Err(now) => v = now,
        }
    }
}

/// Takes the back half (rounded up) of the fullest range but `me`'s, if any has tasks.
fn steal(ranges: &[Padded<AtomicU64>], me: usize) -> Option<(usize, usize)> {
    loop {
        let mut best: Option<(usize, u64, usize)> = None;
        for (i, range) in ranges.iter().enumerate() {
            if i == me {
                continue;
            }
            let v = range.0.load(Ordering::Relaxed);
            let (lo, hi) = unpack(v);
            if hi > lo && best.is_none_or(|(_, _, left)| hi - lo > left) {
                best = Some((i, v, hi - lo));
            }
        }
        let (victim, v, left) = best?;
        let (lo, hi) = unpack(v);
        let mid = lo + left / 2;
        if ranges[victim]
            .0
            .compare_exchange(v, pack(lo, mid), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return Some((mid, hi));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Runs a region on `team`: each test's team is its own, so it is never busy here.
    fn run_on(team: &'static Team, tasks: usize, workers: usize, task: &Task<'_>) {
        assert!(
            team.run(tasks, workers, task),
            "an idle team refused a region"
        );
    }

    /// Waits, yielding, for `done()`: false if it never comes within a bound of yields
    /// (seconds, far beyond any real hand-off), so a test that needs another thread to act
    /// fails instead of hanging. The bound counts yields, not time: nothing here measures
    /// speed.
    fn wait_for(done: impl Fn() -> bool) -> bool {
        for _ in 0..20_000_000 {
            if done() {
                return true;
            }
            std::thread::yield_now();
        }
        done()
    }

    #[test]
    fn every_task_runs_exactly_once() {
        let team = Team::start(3);
        for workers in 2..=4 {
            for tasks in [2, 3, 4, 5, 7, 64, 1000, 100_003] {
                let runs: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                run_on(team, tasks, workers, &|t| {
                    runs[t].fetch_add(1, Ordering::Relaxed);
                });
                for (t, r) in runs.iter().enumerate() {
                    assert_eq!(
                        r.load(Ordering::Relaxed),
                        1,
                        "task {t} of {tasks}, {workers}"
                    );
                }
            }
        }
    }

    /// Counts this task in and waits until `n` tasks have: tasks that meet this way ran on
    /// `n` different threads at once. False if they never did.
    fn meet(arrived: &AtomicUsize, n: usize) -> bool {
        arrived.fetch_add(1, Ordering::AcqRel);
        wait_for(|| arrived.load(Ordering::Acquire) >= n)
    }

    #[test]
    fn helpers_join_regions_and_wake_from_park() {
        let team = Team::start(1);
        for round in 0..3 {
            // Two tasks that each wait for the other to start: they complete only if the
            // helper checks in and runs one of them while the owner runs the other.
            let arrived = AtomicUsize::new(0);
            let met = AtomicUsize::new(0);
            run_on(team, 2, 2, &|_| {
                if meet(&arrived, 2) {
                    met.fetch_add(1, Ordering::Relaxed);
                }
            });
            assert_eq!(met.load(Ordering::Relaxed), 2, "round {round}");
            // Wait until the helper has parked (its spin and yield phases over), so the next
            // round must unpark it.
            assert!(
                wait_for(|| team.helpers[0].asleep.0.load(Ordering::SeqCst)),
                "round {round}: the helper never parked"
            );
        }
    }

    #[test]
    fn an_idle_worker_steals_from_a_busy_one() {
        let team = Team::start(1);
        // The first task to start holds its thread until 5 other tasks have completed. Each
        // worker's range has 4 of the 8 tasks, so the other worker completes 5 only by
        // stealing from the held one's range.
        let first = AtomicBool::new(true);
        let others = AtomicUsize::new(0);
        let held = AtomicBool::new(false);
        run_on(team, 8, 2, &|_| {
            if first.swap(false, Ordering::AcqRel) {
                let stole = wait_for(|| others.load(Ordering::Acquire) >= 5);
                held.store(stole, Ordering::Relaxed);
            } else {
                others.fetch_add(1, Ordering::AcqRel);
            }
        });
        assert!(held.load(Ordering::Relaxed), "no worker stole");
        assert_eq!(others.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn claim_and_steal_split_ranges_exactly() {
        let ranges: Vec<Padded<AtomicU64>> = [(0, 5), (5, 5), (7, 10)]
            .iter()
            .map(|&(lo, hi)| Padded(AtomicU64::new(pack(lo, hi))))
            .collect();
        assert_eq!(claim(&ranges[0].0), Some(0));
        assert_eq!(unpack(ranges[0].0.load(Ordering::Relaxed)), (1, 5));
        assert_eq!(claim(&ranges[1].0), None);
        // The fullest other range is 1..5: the thief takes 3..5 and leaves 1..3.
        assert_eq!(steal(&ranges, 1), Some((3, 5)));
        assert_eq!(unpack(ranges[0].0.load(Ordering::Relaxed)), (1, 3));
        // Now 7..10 is the fullest: 8..10 goes, 7..8 stays.
        assert_eq!(steal(&ranges, 1), Some((8, 10)));
        assert_eq!(unpack(ranges[2].0.load(Ordering::Relaxed)), (7, 8));
        // A single task is taken whole.
        ranges[0].0.store(pack(4, 5), Ordering::Relaxed);
        ranges[2].0.store(pack(9, 9), Ordering::Relaxed);
        assert_eq!(steal(&ranges, 1), Some((4, 5)));
        assert_eq!(steal(&ranges, 1), None);
    }

    #[test]
    fn a_busy_team_refuses_and_a_panic_reaches_the_owner() {
        let team = Team::start(1);
        // Inside a region the team is busy: a second region is refused, not queued.
        let refused = AtomicUsize::new(0);
        run_on(team, 2, 2, &|_| {
            if !team.run(2, 2, &|_| {}) {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert_eq!(refused.load(Ordering::Relaxed), 2);
        // A panic in the owner's task, the helper's or both reaches the owner (the two tasks
        // meet first, so each runs on its own thread), and the team stays usable.
        let owner = std::thread::current().id();
        for (owner_fails, helper_fails) in [(true, false), (false, true), (true, true)] {
            let arrived = AtomicUsize::new(0);
            let caught = catch_unwind(AssertUnwindSafe(|| {
                run_on(team, 2, 2, &|_| {
                    assert!(meet(&arrived, 2), "the tasks never met");
                    let on_owner = std::thread::current().id() == owner;
                    assert!(!on_owner || !owner_fails, "the owner's task fails");
                    assert!(on_owner || !helper_fails, "the helper's task fails");
                })
            }));
            let payload = caught.err().unwrap_or_else(|| Box::new("no panic"));
            let message = payload
                .downcast_ref::<&str>()
                .map(|m| m.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let expected = if owner_fails { "owner's" } else { "helper's" };
            assert!(
                message.contains(expected),
                "{owner_fails}, {helper_fails}: got {message:?}"
            );
            let runs = AtomicUsize::new(0);
            run_on(team, 10, 2, &|_| {
                runs.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(runs.load(Ordering::Relaxed), 10);
        }
    }
}
