//! Fair share of handler execution between projects: a bounded set of execution slots, a queue per project served
//! by least recent use, the per-project quotas on calls and kept instances, and the pause of a handler that keeps
//! running out its deadline. It knows projects by name only; the runtime asks it before every call.
//!
//! Why it is fair: a call runs only while it holds one of a few execution slots (one fewer than the worker threads,
//! so the network side always has a thread). When every slot is taken, a waiting call is queued in its project's
//! queue, and a freed slot goes to the project that has run least recently (its running time, decayed by half each
//! [`USAGE_HALF_LIFE`]), then to that project's oldest call. A running call gives its slot back at every epoch tick
//! (to the waiting call the scheduler picks, or free while it yields), and at once (the engine's epoch is advanced for
//! it) when a project that is running nothing starts to wait: a quiet project's event waits for one check of the
//! running calls, not for a busy project's backlog. A project's calls under way are capped by its quota, so its
//! backlog holds no instance until it runs.

use crate::FastMap;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use wasmsock_wire::{ProjectQuotas, QuotaOverrides};

/// How fast a project's recent running time is forgotten: halved every this long. Long enough that a project that
/// spun a moment ago still yields to one that did not; short enough that a burst is forgiven within seconds.
pub const USAGE_HALF_LIFE: Duration = Duration::from_secs(1);

/// What the scheduler tells the host's metrics.
pub trait Observer: Send + Sync + 'static {
    /// Where the calls of `project` are counted (asked once per project).
    fn meter(&self, project: &str) -> Arc<dyn Meter>;
    /// A call of `project` was refused by its quota `quota` (`resident-instances`, …).
    fn quota_refused(&self, project: &str, quota: &'static str);
    /// `handler` of `project` was paused for running out its deadline.
    fn paused(&self, project: &str, handler: &str);
}

/// Counts one project's calls.
pub trait Meter: Send + Sync + 'static {
    /// A call held an execution slot for `ran` (counted each time it gives the slot back, so a long call shows).
    fn ran(&self, ran: Duration);
    /// A call ended after waiting `waited` for its first slot.
    fn call_ended(&self, waited: Duration);
}

/// A project as the scheduler knows it (an index; found once per handler, not per call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectId(usize);

/// A quota that refused something: which one, its limit, and the project.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "project {project:?} has its quota of {limit} {what} (quotas.{quota} in its project.json, or serve --project-{quota})"
)]
pub struct QuotaRefused {
    /// The project.
    pub project: String,
    /// The quota's field name (`resident-instances`, `clients`, `connections`).
    pub quota: &'static str,
    /// What it counts, in words.
    pub what: &'static str,
    /// Its value for this project.
    pub limit: u64,
}

/// The scheduler of one host's handler calls.
pub struct Scheduler {
    state: Mutex<State>,
    /// Calls waiting for a slot, over every project: a running call reads it at every epoch tick.
    waiting: AtomicUsize,
    /// Advances the engine's epoch so every running call checks in at once (set by the runtime).
    kick: OnceLock<Box<dyn Fn() + Send + Sync>>,
    observer: OnceLock<Arc<dyn Observer>>,
    slots: usize,
    instances: usize,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("slots", &self.slots).field("instances", &self.instances).finish()
    }
}

struct State {
    free_slots: usize,
    free_instances: usize,
    defaults: ProjectQuotas,
    projects: Vec<Project>,
    by_name: FastMap<Arc<str>, usize>,
    /// Orders waiters across projects (oldest first among equals).
    seq: u64,
}

struct Project {
    name: Arc<str>,
    quotas: ProjectQuotas,
    /// Where its calls are counted, once an observer is set.
    meter: Option<Arc<dyn Meter>>,
    /// Calls holding a slot now.
    running: usize,
    /// Calls admitted and not ended (running or waiting to resume).
    under_way: u32,
    /// Instances kept between events.
    resident: u32,
    /// Running time, decayed to `usage_at`, in seconds.
    usage: f64,
    usage_at: Instant,
    /// Calls that ran and gave their slot away, waiting to go on.
    resumed: VecDeque<Waiter>,
    /// Calls that have not started, waiting for a slot (and, past the quota, for a call of the project to end).
    fresh: VecDeque<Waiter>,
}

struct Waiter {
    seq: u64,
    per_event: bool,
    grant: oneshot::Sender<()>,
}

impl Project {
    fn usage_now(&self, now: Instant) -> f64 {
        if self.usage == 0.0 {
            return 0.0;
        }
        let halvings = now.saturating_duration_since(self.usage_at).as_secs_f64() / USAGE_HALF_LIFE.as_secs_f64();
        // Between calls a few microseconds apart, 2^-x is 1 - x ln 2 to within x² (under 4e-6 here), without the
        // cost of `exp2` on every call.
        let decay = if halvings < 1.0 / 512.0 { 1.0 - halvings * std::f64::consts::LN_2 } else { (-halvings).exp2() };
        self.usage * decay
    }

    /// The sequence number of the call this project would run next given `free_instances`, and whether it resumes.
    fn next(&self, free_instances: usize) -> Option<(u64, bool)> {
        let resumed = self.resumed.front().map(|w| (w.seq, true));
        let fresh = self
            .fresh
            .front()
            .filter(|w| self.under_way < self.quotas.calls && (!w.per_event || free_instances > 0))
            .map(|w| (w.seq, false));
        match (resumed, fresh) {
            (Some(r), Some(f)) => Some(if f.0 < r.0 { f } else { r }),
            (r, f) => r.or(f),
        }
    }
}

impl Scheduler {
    /// A scheduler with `slots` execution slots and `instances` per-event instances, giving each project `defaults`.
    pub fn new(slots: usize, instances: usize, defaults: ProjectQuotas) -> Arc<Self> {
        let slots = slots.max(1);
        Arc::new(Self {
            state: Mutex::new(State {
                free_slots: slots,
                free_instances: instances,
                defaults,
                projects: Vec::new(),
                by_name: FastMap::default(),
                seq: 0,
            }),
            waiting: AtomicUsize::new(0),
            kick: OnceLock::new(),
            observer: OnceLock::new(),
            slots,
            instances,
        })
    }

    /// The slots for a runtime with `workers` worker threads when none is configured: one fewer, at least one.
    pub fn default_slots(workers: usize) -> usize {
        workers.saturating_sub(1).max(1)
    }

    /// How many execution slots there are.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Sets what makes every running call check in at once (the runtime advances its engine's epoch).
    pub fn set_kick(&self, kick: impl Fn() + Send + Sync + 'static) {
        let _ = self.kick.set(Box::new(kick));
    }

    /// Sets who hears about calls, refusals and pauses (the host's metrics); the first one set stays.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The project named `name`, known from now on.
    pub fn project(&self, name: &str) -> ProjectId {
        let mut state = self.lock();
        ProjectId(state.project(name))
    }

    /// Gives `project` the host's quotas with `overrides` (its manifest's) applied.
    pub fn set_quotas(&self, name: &str, overrides: QuotaOverrides) {
        let mut state = self.lock();
        let i = state.project(name);
        let quotas = overrides.over(state.defaults);
        state.projects[i].quotas = quotas;
        // A raised quota may let waiting calls start.
        self.dispatch(&mut state);
    }

    /// The quotas `project` runs with.
    pub fn quotas(&self, name: &str) -> ProjectQuotas {
        let state = self.lock();
        state.by_name.get(name).map_or(state.defaults, |&i| state.projects[i].quotas)
    }

    /// Starts a call of `project`: waits until the project may have another call under way (its quota), a per-event
    /// instance is free when `per_event`, and an execution slot is given to it. The turn holds the slot until it
    /// steps aside ([`Turn::step_aside`], [`Turn::away`]) or is dropped (the call ended). `asked` is when the call
    /// was asked for (the caller's clock reading: its wait counts from there).
    pub async fn begin(self: &Arc<Self>, project: ProjectId, per_event: bool, asked: Instant) -> Turn {
        let queued = {
            let mut state = self.lock();
            let p = &state.projects[project.0];
            let fresh_ok =
                p.under_way < p.quotas.calls && (!per_event || state.free_instances > 0) && p.fresh.is_empty();
            if fresh_ok && state.free_slots > 0 {
                state.free_slots -= 1;
                if per_event {
                    state.free_instances -= 1;
                }
                let p = &mut state.projects[project.0];
                p.running += 1;
                p.under_way += 1;
                None
            } else {
                Some(self.enqueue(&mut state, project, per_event, false))
            }
        };
        // A call that did not queue started when it asked: one clock reading on the uncontended path.
        let now = match queued {
            Some(granted) => {
                granted.wait().await;
                Instant::now()
            }
            None => asked,
        };
        Turn {
            scheduler: self.clone(),
            project,
            per_event,
            started: now,
            waited: now.saturating_duration_since(asked),
            clock: Mutex::new(Clock { holding_since: Some(now) }),
        }
    }

    /// Queues a call of `project` and returns what it waits on; advances the epoch when the project runs nothing now
    /// (so the running calls step aside for it at once).
    fn enqueue(&self, state: &mut State, project: ProjectId, per_event: bool, resumed: bool) -> Granted<'_> {
        let (grant, granted) = oneshot::channel();
        state.seq += 1;
        let waiter = Waiter { seq: state.seq, per_event, grant };
        let p = &mut state.projects[project.0];
        if resumed {
            p.resumed.push_back(waiter);
        } else {
            p.fresh.push_back(waiter);
        }
        // A call that stepped aside had its turn: only a project that starts to wait makes the running calls check in.
        let idle = p.running == 0 && !resumed;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        // Slots may be free (the waiter was behind others of its project, or is resuming): hand them out now.
        self.dispatch(state);
        if idle
            && state.free_slots == 0
            && state.projects[project.0].running == 0
            && let Some(kick) = self.kick.get()
        {
            kick();
        }
        Granted { scheduler: self, project, per_event, resumed, receiver: Some(granted) }
    }

    /// Hands free slots to the waiting calls: the project that has run least recently first, its oldest call first.
    fn dispatch(&self, state: &mut State) {
        if state.free_slots == 0 || self.waiting.load(Ordering::Acquire) == 0 {
            return; // The uncontended path reads no clock.
        }
        let now = Instant::now();
        while state.free_slots > 0 && self.waiting.load(Ordering::Acquire) > 0 {
            let free_instances = state.free_instances;
            let mut best: Option<(usize, f64, u64, bool)> = None;
            for (i, p) in state.projects.iter().enumerate() {
                let Some((seq, resumed)) = p.next(free_instances) else { continue };
                let usage = p.usage_now(now);
                let better = match best {
                    None => true,
                    Some((_, best_usage, best_seq, _)) => usage < best_usage || (usage == best_usage && seq < best_seq),
                };
                if better {
                    best = Some((i, usage, seq, resumed));
                }
            }
            let Some((i, _, _, resumed)) = best else { return };
            let p = &mut state.projects[i];
            let waiter = if resumed { p.resumed.pop_front() } else { p.fresh.pop_front() };
            let Some(waiter) = waiter else { return };
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            // Taken before the grant is sent: a waiter dropped after it got the grant gives all of it back.
            p.running += 1;
            if !resumed {
                p.under_way += 1;
            }
            state.free_slots -= 1;
            if !resumed && waiter.per_event {
                state.free_instances -= 1;
            }
            if waiter.grant.send(()).is_err() {
                // Its call was dropped while waiting: undo and go on.
                Self::give_back(state, ProjectId(i), !resumed, waiter.per_event);
                state.free_slots += 1;
                state.projects[i].running -= 1;
            }
        }
    }

    /// Gives back a call's place under way (and its per-event instance).
    fn give_back(state: &mut State, project: ProjectId, under_way: bool, per_event: bool) {
        if under_way {
            let p = &mut state.projects[project.0];
            p.under_way = p.under_way.saturating_sub(1);
            if per_event {
                state.free_instances += 1;
            }
        }
    }

    /// Releases a slot held since `since` by a call of `project`, counting its running time.
    fn release_slot(&self, state: &mut State, project: ProjectId, since: Instant, now: Instant) -> Duration {
        let held = now.saturating_duration_since(since);
        let p = &mut state.projects[project.0];
        p.usage = p.usage_now(now) + held.as_secs_f64();
        p.usage_at = now;
        p.running = p.running.saturating_sub(1);
        state.free_slots += 1;
        held
    }

    /// Where `project`'s calls are counted, asking the observer the first time.
    fn meter<'s>(&self, state: &'s mut State, project: ProjectId) -> Option<&'s dyn Meter> {
        let p = &mut state.projects[project.0];
        if p.meter.is_none()
            && let Some(observer) = self.observer.get()
        {
            p.meter = Some(observer.meter(&p.name));
        }
        p.meter.as_deref()
    }

    /// Takes a place for a kept instance of `project` (its quota of resident instances), given back when dropped.
    pub fn take_resident(self: &Arc<Self>, project: ProjectId) -> Result<ResidentPlace, QuotaRefused> {
        let mut state = self.lock();
        let p = &mut state.projects[project.0];
        if p.resident >= p.quotas.resident_instances {
            let refused = QuotaRefused {
                project: p.name.to_string(),
                quota: "resident-instances",
                what: "resident instances",
                limit: u64::from(p.quotas.resident_instances),
            };
            drop(state);
            self.refused(&refused);
            return Err(refused);
        }
        p.resident += 1;
        Ok(ResidentPlace { scheduler: self.clone(), project })
    }

    /// Counts a refusal by a quota (the scheduler's own, or one the connection layer enforces).
    pub fn refused(&self, refused: &QuotaRefused) {
        if let Some(observer) = self.observer.get() {
            observer.quota_refused(&refused.project, refused.quota);
        }
    }

    /// Tells the observer that `handler` was paused.
    pub fn paused(&self, handler: &str) {
        if let Some(observer) = self.observer.get() {
            observer.paused(wasmsock_wire::descriptor::project_of(handler), handler);
        }
    }

    /// Whether a call is waiting for a slot (read at every epoch tick by the running calls).
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Each project's calls under way and kept instances now, by name.
    pub fn usage(&self) -> Vec<(String, u32, u32)> {
        let state = self.lock();
        state.projects.iter().map(|p| (p.name.to_string(), p.under_way, p.resident)).collect()
    }
}

impl State {
    fn project(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let name: Arc<str> = name.into();
        self.projects.push(Project {
            name: name.clone(),
            quotas: self.defaults,
            meter: None,
            running: 0,
            under_way: 0,
            resident: 0,
            usage: 0.0,
            usage_at: Instant::now(),
            resumed: VecDeque::new(),
            fresh: VecDeque::new(),
        });
        let i = self.projects.len() - 1;
        self.by_name.insert(name, i);
        i
    }
}

/// A call waiting for its slot. Dropped before the grant arrived, it leaves the queue; dropped after, it gives back
/// what it was granted.
struct Granted<'a> {
    scheduler: &'a Scheduler,
    project: ProjectId,
    per_event: bool,
    resumed: bool,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Granted<'_> {
    async fn wait(mut self) {
        if let Some(receiver) = self.receiver.as_mut() {
            // The sender is dropped only with the scheduler's state, which outlives every waiter.
            let _ = receiver.await;
        }
        self.receiver = None;
    }
}

impl Drop for Granted<'_> {
    fn drop(&mut self) {
        let Some(mut receiver) = self.receiver.take() else { return };
        receiver.close();
        let mut state = self.scheduler.lock();
        if receiver.try_recv().is_ok() {
            // Granted, but nobody will run: hand it all back.
            state.free_slots += 1;
            let p = &mut state.projects[self.project.0];
            p.running = p.running.saturating_sub(1);
            Scheduler::give_back(&mut state, self.project, !self.resumed, self.per_event);
        } else {
            // Still queued: take it out (the grant side has not seen it).
            let p = &mut state.projects[self.project.0];
            let queue = if self.resumed { &mut p.resumed } else { &mut p.fresh };
            let before = queue.len();
            queue.retain(|w| !w.grant.is_closed());
            let removed = before - queue.len();
            self.scheduler.waiting.fetch_sub(removed, Ordering::AcqRel);
            if self.resumed {
                // A call that had started still holds its place under way until the turn is dropped.
            }
        }
        self.scheduler.dispatch(&mut state);
    }
}

/// One call's place: under way in its project, and holding an execution slot while it runs. Shared (behind an
/// `Arc`) between the call and what runs while it is suspended (an epoch tick's step aside, a wait for other hosts).
pub struct Turn {
    scheduler: Arc<Scheduler>,
    project: ProjectId,
    per_event: bool,
    /// When it first got a slot.
    started: Instant,
    waited: Duration,
    clock: Mutex<Clock>,
}

struct Clock {
    /// Since when it holds a slot; none while it has stepped aside.
    holding_since: Option<Instant>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("project", &self.project).field("waited", &self.waited).finish_non_exhaustive()
    }
}

impl Turn {
    /// When the call first got its slot (the start of its deadlines).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// How long the call waited for its first slot.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Whether another call waits for a slot, so this one should step aside at its next chance.
    pub fn contended(&self) -> bool {
        self.scheduler.contended()
    }

    fn clock(&self) -> MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self) {
        let Some(since) = self.clock().holding_since.take() else { return };
        let now = Instant::now();
        let mut state = self.scheduler.lock();
        let held = self.scheduler.release_slot(&mut state, self.project, since, now);
        self.scheduler.dispatch(&mut state);
        if let Some(meter) = self.scheduler.meter(&mut state, self.project) {
            meter.ran(held);
        }
    }

    async fn resume(&self) {
        let granted = {
            let mut state = self.scheduler.lock();
            if state.free_slots > 0 && !self.scheduler.contended() {
                // Nobody waits: the slot is taken back without queueing.
                state.free_slots -= 1;
                state.projects[self.project.0].running += 1;
                None
            } else {
                Some(self.scheduler.enqueue(&mut state, self.project, self.per_event, true))
            }
        };
        if let Some(granted) = granted {
            granted.wait().await;
        }
        self.clock().holding_since = Some(Instant::now());
    }

    /// Steps aside at an epoch tick: gives the slot back (to the call the scheduler picks, when one waits), lets the
    /// tokio worker run its other tasks and its I/O driver, then waits for a slot again. The slot is given back even
    /// when nobody waits yet: the worker's other tasks run during the yield, and one of them that found the slot held
    /// would queue, and every call after it behind that one, a convoy of hand-offs that outlasts the yield as long as
    /// events keep coming (it doubled the CPU per message of a `per-connection` echo on one core).
    pub async fn step_aside(&self) {
        self.release();
        tokio::task::yield_now().await;
        self.resume().await;
    }

    /// Runs `wait` (an answer from elsewhere) without holding a slot, then waits for one again.
    pub async fn away<T>(&self, wait: impl Future<Output = T>) -> T {
        self.release();
        let answer = wait.await;
        self.resume().await;
        answer
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let since = self.clock.get_mut().unwrap_or_else(PoisonError::into_inner).holding_since.take();
        let now = since.map(|since| (since, Instant::now()));
        let mut state = self.scheduler.lock();
        let ran = now.map(|(since, now)| self.scheduler.release_slot(&mut state, self.project, since, now));
        Scheduler::give_back(&mut state, self.project, true, self.per_event);
        self.scheduler.dispatch(&mut state);
        // Counted under the lock (the meter's counters are atomics): no reference count to move per call.
        if let Some(meter) = self.scheduler.meter(&mut state, self.project) {
            if let Some(ran) = ran {
                meter.ran(ran);
            }
            meter.call_ended(self.waited);
        }
    }
}

/// A kept instance's place in its project's quota.
#[derive(Debug)]
pub struct ResidentPlace {
    scheduler: Arc<Scheduler>,
    project: ProjectId,
}

impl Drop for ResidentPlace {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        let p = &mut state.projects[self.project.0];
        p.resident = p.resident.saturating_sub(1);
    }
}

/// Why a handler's event was not run: it is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// When the pause ends.
    pub until: SystemTime,
    /// How long it still lasts.
    pub remaining: Duration,
    /// How many calls in a row ran out of their deadline before it.
    pub after: u32,
}

/// The pause policy of one handler: after `after` calls in a row that ran out of their deadline, its events fail at
/// once for a pause that doubles with each pause in a row (no successful call between), up to a maximum.
#[derive(Debug)]
pub struct Pause {
    /// Whether the state is anything but fresh (no call ran out since the last success): checked without the lock
    /// on every call.
    active: std::sync::atomic::AtomicBool,
    state: Mutex<PauseState>,
    after: u32,
    first: Duration,
    longest: Duration,
}

#[derive(Debug, Default)]
struct PauseState {
    ran_out_in_a_row: u32,
    pauses_in_a_row: u32,
    until: Option<(Instant, SystemTime)>,
}

impl Pause {
    /// A policy pausing after `after` calls in a row ran out, for `first` doubling up to `longest`.
    pub fn new(after: u32, first: Duration, longest: Duration) -> Self {
        Self {
            active: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(PauseState::default()),
            after: after.max(1),
            first,
            longest: longest.max(first),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PauseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pause in force now, if any.
    pub fn check(&self) -> Result<(), Paused> {
        if !self.active.load(Ordering::Acquire) {
            return Ok(());
        }
        let state = self.lock();
        let Some((until, until_wall)) = state.until else { return Ok(()) };
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        Err(Paused { until: until_wall, remaining: until - now, after: state.ran_out_in_a_row.max(self.after) })
    }

    /// Whether the handler is paused now (read at every epoch tick of its running calls).
    pub fn is_paused(&self) -> bool {
        self.check().is_err()
    }

    /// Records how a call ended: `Some(true)` ran out of its deadline, `Some(false)` succeeded (which ends a pause
    /// and starts the count afresh), `None` failed otherwise (no change). Returns the pause it starts, if any.
    pub fn record(&self, ran_out: Option<bool>) -> Option<Paused> {
        if ran_out != Some(true) && !self.active.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.lock();
        match ran_out {
            Some(false) => {
                *state = PauseState::default();
                self.active.store(false, Ordering::Release);
                None
            }
            None => None,
            Some(true) => {
                self.active.store(true, Ordering::Release);
                state.ran_out_in_a_row += 1;
                let now = Instant::now();
                let paused_now = state.until.is_some_and(|(until, _)| now < until);
                if paused_now || state.ran_out_in_a_row < self.after {
                    return None;
                }
                let doubling = 2u32.saturating_pow(state.pauses_in_a_row.min(16));
                let length = self.first.saturating_mul(doubling).min(self.longest);
                let until_wall = SystemTime::now() + length;
                state.until = Some((now + length, until_wall));
                state.pauses_in_a_row += 1;
                let after = state.ran_out_in_a_row;
                state.ran_out_in_a_row = 0;
                Some(Paused { until: until_wall, remaining: length, after })
            }
        }
    }

    /// The end of the pause in force, if any (for listings).
    pub fn paused_until(&self) -> Option<SystemTime> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let state = self.lock();
        state.until.filter(|(until, _)| Instant::now() < *until).map(|(_, wall)| wall)
    }
}

/// `time` as an RFC 3339 UTC timestamp to the millisecond (`2026-12-03T19:55:12.345Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, written out).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures_util::FutureExt as _;

    use super::*;

    fn quotas(calls: u32) -> ProjectQuotas {
        ProjectQuotas { calls, ..ProjectQuotas::default() }
    }

    #[tokio::test]
    async fn a_quiet_project_goes_before_a_busy_one_and_a_call_past_the_quota_waits() {
        let scheduler = Scheduler::new(1, 100, quotas(2));
        let (busy, quiet) = (scheduler.project("busy"), scheduler.project("quiet"));
        let begin = |project| {
            let s = scheduler.clone();
            tokio::spawn(async move { s.begin(project, true, Instant::now()).await })
        };
        let first = Arc::new(scheduler.begin(busy, true, Instant::now()).await);
        // The busy project queues two more: the second is past its quota of two calls under way.
        let second = begin(busy);
        let third = begin(busy);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let quiet_call = begin(quiet);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(first.contended());
        // The busy call steps aside: the slot goes to the quiet project (it has run nothing), not to busy's backlog.
        let aside = tokio::spawn({
            let first = first.clone();
            async move { first.step_aside().await }
        });
        async fn wait<T>(handle: tokio::task::JoinHandle<T>) -> T {
            tokio::time::timeout(Duration::from_secs(5), handle).await.unwrap().unwrap()
        }
        let quiet_turn = wait(quiet_call).await;
        assert!(!second.is_finished() && !third.is_finished());
        drop(quiet_turn);
        // Then busy's oldest call, its second (under the quota); never the third while two are under way.
        let second = wait(second).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished(), "a third call of a project with a quota of two waited");
        assert!(!aside.is_finished());
        drop(second);
        let third = wait(third).await;
        assert!(third.waited() >= Duration::from_millis(40));
        drop(third);
        wait(aside).await;
        drop(first);
        assert_eq!(scheduler.usage().iter().map(|(_, under_way, _)| under_way).sum::<u32>(), 0);
        assert!(!scheduler.contended());
    }

    #[tokio::test]
    async fn a_waiter_dropped_before_or_after_its_grant_gives_everything_back() {
        let scheduler = Scheduler::new(1, 1, quotas(10));
        let p = scheduler.project("p");
        let held = scheduler.begin(p, true, Instant::now()).await;
        // Waiting for the one instance, then dropped: it leaves the queue.
        let mut waiting = Box::pin(scheduler.begin(p, true, Instant::now()));
        assert!(waiting.as_mut().now_or_never().is_none());
        drop(waiting);
        assert!(!scheduler.contended());
        drop(held);
        let again =
            scheduler.begin(p, true, Instant::now()).now_or_never().expect("the slot and the instance are free again");
        drop(again);
        assert_eq!(scheduler.usage(), vec![("p".to_owned(), 0, 0)]);
    }

    #[tokio::test]
    async fn a_call_stepping_aside_gives_its_slot_back_while_it_yields() {
        let scheduler = Scheduler::new(1, 10, quotas(10));
        let p = scheduler.project("p");
        let long = scheduler.begin(p, true, Instant::now()).await;
        let mut aside = Box::pin(long.step_aside());
        assert!(aside.as_mut().now_or_never().is_none(), "it yields to the worker's other tasks");
        // Nobody waited when it stepped aside; a call that starts during its yield runs at once instead of queueing
        // behind it (and every call after it behind that one).
        let short =
            scheduler.begin(p, true, Instant::now()).now_or_never().expect("the slot was free during the yield");
        assert!(!scheduler.contended());
        drop(short);
        tokio::time::timeout(Duration::from_secs(5), aside).await.expect("it takes the slot back");
        assert!(!scheduler.contended());
        let third = scheduler.begin(p, true, Instant::now());
        assert!(Box::pin(third).now_or_never().is_none(), "the one slot is held again by the call that stepped aside");
        drop(long);
        assert_eq!(scheduler.usage(), vec![("p".to_owned(), 0, 0)]);
    }

    #[tokio::test]
    async fn resident_places_are_counted_by_project() {
        let scheduler = Scheduler::new(1, 1, ProjectQuotas { resident_instances: 1, ..ProjectQuotas::default() });
        let (a, b) = (scheduler.project("a"), scheduler.project("b"));
        let kept = scheduler.take_resident(a).unwrap();
        let refused = scheduler.take_resident(a).unwrap_err();
        assert_eq!(refused.quota, "resident-instances");
        assert!(refused.to_string().contains("project \"a\" has its quota of 1 resident instances"), "{refused}");
        let other = scheduler.take_resident(b).expect("another project still gets one");
        drop((kept, other));
        assert!(scheduler.take_resident(a).is_ok());
        scheduler.set_quotas("a", QuotaOverrides { resident_instances: Some(3), ..QuotaOverrides::default() });
        assert_eq!(scheduler.quotas("a").resident_instances, 3);
    }

    #[test]
    fn a_handler_that_keeps_running_out_is_paused_with_back_off() {
        let pause = Pause::new(2, Duration::from_millis(40), Duration::from_millis(100));
        assert_eq!(pause.record(Some(true)), None);
        let first = pause.record(Some(true)).expect("paused after two in a row");
        assert_eq!((first.remaining, first.after), (Duration::from_millis(40), 2));
        assert!(pause.is_paused() && pause.paused_until().is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(pause.check().is_ok(), "the pause ended");
        pause.record(Some(true));
        let second = pause.record(Some(true)).expect("paused again");
        assert_eq!(second.remaining, Duration::from_millis(80), "doubled");
        std::thread::sleep(Duration::from_millis(90));
        pause.record(Some(true));
        assert_eq!(pause.record(Some(true)).unwrap().remaining, Duration::from_millis(100), "capped");
        std::thread::sleep(Duration::from_millis(110));
        // A success in between starts the count and the back-off afresh.
        pause.record(Some(true));
        pause.record(Some(false));
        assert_eq!(pause.record(Some(true)), None);
        assert_eq!(pause.record(Some(true)).unwrap().remaining, Duration::from_millis(40));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_327_712_345);
        assert_eq!(rfc3339(t), "2026-12-03T19:55:12.345Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
