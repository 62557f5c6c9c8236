//! The budget's books: its limits (host, kind, project, endpoint), what is held against each and by how many, and
//! the [`Holding`] through which one holder takes and gives back chunks.

use crate::FastMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use wasmsock_wire::Limits;
use wasmsock_wire::limits::{MEMORY_ALLOWANCE, MEMORY_CHUNK, MEMORY_KIND_SHARE, MEMORY_SHORT_PERCENT};

/// What memory is held for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Messages being received: read from the socket and not yet handled.
    Receiving = 0,
    /// Frames waiting in outbound queues.
    Queued = 1,
    /// Handler instances' linear memory.
    Instances = 2,
}

impl Kind {
    /// Every kind, in the order of their metrics.
    pub const ALL: [Kind; 3] = [Kind::Receiving, Kind::Queued, Kind::Instances];

    /// The kind's name in metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiving => "receiving",
            Kind::Queued => "queued",
            Kind::Instances => "instances",
        }
    }
}

/// One limit and what is held against it, by how many holders.
#[derive(Debug)]
struct Meter {
    limit: usize,
    used: AtomicUsize,
    holders: AtomicUsize,
}

impl Meter {
    fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0), holders: AtomicUsize::new(0) }
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// A project's or an endpoint's share of the budget.
#[derive(Debug)]
pub struct Account {
    name: Box<str>,
    meter: Meter,
}

impl Account {
    /// The project or endpoint.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bytes its holders hold.
    pub fn held(&self) -> usize {
        self.meter.used()
    }
}

/// Whose shares a holder draws on: its project's and, for a connection, its endpoint's.
#[derive(Debug, Clone)]
pub struct Scope {
    project: Arc<Account>,
    endpoint: Option<Arc<Account>>,
}

/// Why memory was refused: which limit, and the flag that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What ran out: `the host`, `receiving`, `project p`, `endpoint e`.
    pub what: String,
    /// Its limit in bytes.
    pub limit: usize,
    /// Whether the limit is not reached yet but the budget is short and the holder holds more than most.
    pub short: bool,
    /// Whether no wait can help: the holder wants more than this limit would give it with nothing else held.
    pub never: bool,
    flag: &'static str,
}

impl Refusal {
    /// The limit as people read it (`6.4 MiB`, `64 MiB`, `512 KiB`).
    pub fn figure(&self) -> String {
        figure(self.limit)
    }

    /// The flag that sets the limit.
    pub fn flag(&self) -> &'static str {
        self.flag
    }
}

/// `bytes` as people read it: whole or one-decimal MiB from 1 MiB up, KiB below.
fn figure(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes < MIB {
        format!("{} KiB", bytes >> 10)
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, figure, flag) = (&self.what, self.figure(), self.flag);
        if self.never {
            write!(
                f,
                "the memory budget of {what} ({figure}, {flag}) is smaller than this needs, so waiting cannot help"
            )
        } else if self.short {
            write!(f, "the memory budget of {what} ({figure}, {flag}) is short and this holds more than most")
        } else {
            write!(f, "the memory budget of {what} ({figure}, {flag}) is used up")
        }
    }
}

/// The memory budget of one host.
#[derive(Debug)]
pub struct Budget {
    total: Meter,
    kinds: [Meter; 3],
    project_limit: usize,
    endpoint_limit: usize,
    projects: RwLock<FastMap<Box<str>, Arc<Account>>>,
    endpoints: RwLock<FastMap<Box<str>, Arc<Account>>>,
    refusals: [AtomicU64; 3],
    pauses: AtomicU64,
    wait: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(&Limits::default())
    }
}

fn percent(of: usize, share: u8) -> usize {
    usize::try_from(of as u128 * u128::from(share) / 100).unwrap_or(usize::MAX)
}

impl Budget {
    /// The budget `limits` describe.
    pub fn new(limits: &Limits) -> Self {
        let total = limits.memory_budget;
        let kind = percent(total, MEMORY_KIND_SHARE);
        Self {
            total: Meter::new(total),
            kinds: [Meter::new(kind), Meter::new(kind), Meter::new(total)],
            project_limit: percent(total, limits.project_memory_share),
            endpoint_limit: percent(total, limits.endpoint_memory_share),
            projects: RwLock::default(),
            endpoints: RwLock::default(),
            refusals: Default::default(),
            pauses: AtomicU64::new(0),
            wait: limits.memory_wait,
        }
    }

    /// The whole budget in bytes.
    pub fn limit(&self) -> usize {
        self.total.limit
    }

    /// How long a paused reader may wait for room (see `DEFAULT_MEMORY_WAIT`).
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The bytes held in all.
    pub fn held(&self) -> usize {
        self.total.used()
    }

    /// The bytes held for `kind`.
    pub fn held_for(&self, kind: Kind) -> usize {
        self.kinds[kind as usize].used()
    }

    /// The bytes each project holds, by name.
    pub fn projects(&self) -> Vec<(String, usize)> {
        let projects = self.projects.read().map(|p| p.values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        projects.iter().map(|a| (a.name().to_owned(), a.held())).collect()
    }

    /// Refusals so far of `kind`: readers closed for the budget, sends refused, instance growth refused.
    pub fn refusals(&self, kind: Kind) -> u64 {
        self.refusals[kind as usize].load(Ordering::Relaxed)
    }

    /// Readers paused for the budget so far.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// Counts a refusal of `kind` (the caller decides what counts as one).
    pub fn count_refusal(&self, kind: Kind) {
        self.refusals[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reader paused for the budget.
    pub fn count_pause(&self) {
        self.pauses.fetch_add(1, Ordering::Relaxed);
    }

    fn account(map: &RwLock<FastMap<Box<str>, Arc<Account>>>, name: &str, limit: usize) -> Arc<Account> {
        if let Some(account) = map.read().ok().and_then(|m| m.get(name).cloned()) {
            return account;
        }
        let fresh = || Arc::new(Account { name: name.into(), meter: Meter::new(limit) });
        match map.write() {
            Ok(mut m) => m.entry(name.into()).or_insert_with(fresh).clone(),
            Err(_) => fresh(),
        }
    }

    /// The shares a holder of `project` (and `endpoint`) draws on.
    pub fn scope(&self, project: &str, endpoint: Option<&str>) -> Scope {
        Scope {
            project: Self::account(&self.projects, project, self.project_limit),
            endpoint: endpoint.map(|e| Self::account(&self.endpoints, e, self.endpoint_limit)),
        }
    }

    /// A holder of `kind` in `scope` with `allowance` bytes it may hold without charging the budget.
    pub fn holding(self: &Arc<Self>, kind: Kind, scope: Scope, allowance: usize) -> Holding {
        Holding { budget: Arc::clone(self), kind, scope, allowance, charged: AtomicUsize::new(0), lock: Mutex::new(()) }
    }

    /// A connection's holder of `kind` with the connection allowance ([`MEMORY_ALLOWANCE`]).
    pub fn connection_holding(self: &Arc<Self>, kind: Kind, scope: Scope) -> Holding {
        self.holding(kind, scope, MEMORY_ALLOWANCE)
    }

    /// The meters a charge of `kind` in `scope` goes against, with their names (spelled out only for a refusal: this
    /// runs on every charge and release) and flags.
    fn meters<'a>(&'a self, kind: Kind, scope: &'a Scope) -> [Option<(&'a Meter, MeterName<'a>, &'static str)>; 4] {
        let kind_flag = "serve --memory-budget-mib";
        [
            Some((&self.total, MeterName::Host, kind_flag)),
            (kind != Kind::Instances).then(|| (&self.kinds[kind as usize], MeterName::Kind(kind), kind_flag)),
            Some((&scope.project.meter, MeterName::Project(&scope.project.name), "serve --project-memory-share")),
            scope.endpoint.as_ref().map(|e| (&e.meter, MeterName::Endpoint(&e.name), "serve --endpoint-memory-share")),
        ]
    }

    /// The smallest limit a charge of `kind` in `scope` goes against (what [`Budget::meters`] names, without the names).
    fn meters_limit(&self, kind: Kind, scope: &Scope) -> usize {
        let mut limit = self.total.limit.min(scope.project.meter.limit);
        if kind != Kind::Instances {
            limit = limit.min(self.kinds[kind as usize].limit);
        }
        if let Some(endpoint) = &scope.endpoint {
            limit = limit.min(endpoint.meter.limit);
        }
        limit
    }

    /// Adds `n` bytes for a holder that will then hold `after` (it held nothing before when `new`); refused when a
    /// limit would be passed, or when past the short mark and the holder would hold more than the average there.
    fn charge(&self, kind: Kind, scope: &Scope, n: usize, after: usize, new: bool) -> Result<(), Refusal> {
        let meters = self.meters(kind, scope);
        let mut added = 0;
        let mut refused = None;
        for (meter, what, flag) in meters.iter().flatten() {
            let used = meter.used.fetch_add(n, Ordering::AcqRel).saturating_add(n);
            added += 1;
            let short = kind != Kind::Instances && used > percent(meter.limit, MEMORY_SHORT_PERCENT) && {
                let holders = meter.holders.load(Ordering::Relaxed) + usize::from(new);
                after.saturating_mul(holders.max(1)) > used
            };
            if used > meter.limit || short {
                let short = used <= meter.limit;
                refused = Some(Refusal { what: what.spelled(), limit: meter.limit, short, never: false, flag });
                break;
            }
        }
        if let Some(refusal) = refused {
            for (meter, _, _) in meters.iter().flatten().take(added) {
                meter.used.fetch_sub(n, Ordering::AcqRel);
            }
            return Err(refusal);
        }
        if new {
            for (meter, _, _) in meters.iter().flatten() {
                meter.holders.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Gives back `n` bytes; the holder then holds nothing when `gone`.
    fn release(&self, kind: Kind, scope: &Scope, n: usize, gone: bool) {
        for (meter, _, _) in self.meters(kind, scope).iter().flatten() {
            meter.used.fetch_sub(n, Ordering::AcqRel);
            if gone {
                meter.holders.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Which meter a charge went against, as a refusal names it.
#[derive(Debug, Clone, Copy)]
enum MeterName<'a> {
    Host,
    Kind(Kind),
    Project(&'a str),
    Endpoint(&'a str),
}

impl MeterName<'_> {
    /// `the host`, `receiving`, `project p`, `endpoint e`.
    fn spelled(self) -> String {
        match self {
            Self::Host => "the host".to_owned(),
            Self::Kind(kind) => kind.as_str().to_owned(),
            Self::Project(name) => format!("project {name}"),
            Self::Endpoint(name) => format!("endpoint {name}"),
        }
    }
}

/// What one holder (a connection's receiving or its queue, a handler instance) has taken from the budget. It is told
/// how much it holds; beyond its allowance it takes chunks of [`MEMORY_CHUNK`], and gives them back as it holds less
/// and when dropped.
#[derive(Debug)]
pub struct Holding {
    budget: Arc<Budget>,
    kind: Kind,
    scope: Scope,
    allowance: usize,
    charged: AtomicUsize,
    lock: Mutex<()>,
}

impl Holding {
    /// What must be charged for holding `held` bytes.
    fn need(&self, held: usize) -> usize {
        held.saturating_sub(self.allowance).div_ceil(MEMORY_CHUNK).saturating_mul(MEMORY_CHUNK)
    }

    /// The budget this holder draws on.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The most this holder could ever hold, were nothing else held: its allowance and, in whole chunks, the smallest
    /// of the limits it draws on (the host's, its kind's, its project's and endpoint's shares). A few loads, nothing
    /// allocated.
    pub fn most(&self) -> usize {
        let limit = self.budget.meters_limit(self.kind, &self.scope);
        self.allowance.saturating_add(limit / MEMORY_CHUNK * MEMORY_CHUNK)
    }

    /// The refusal for wanting more than [`Holding::most`]: it names the smallest limit (the narrowest of equal ones:
    /// endpoint, project, kind, host) and its flag.
    pub fn too_big(&self) -> Refusal {
        let meters = self.budget.meters(self.kind, &self.scope);
        let smallest = meters.into_iter().rev().flatten().min_by_key(|(meter, _, _)| meter.limit);
        match smallest {
            Some((meter, what, flag)) => {
                Refusal { what: what.spelled(), limit: meter.limit, short: false, never: true, flag }
            }
            None => Refusal {
                what: "the host".into(),
                limit: self.budget.limit(),
                short: false,
                never: true,
                flag: "serve --memory-budget-mib",
            },
        }
    }

    /// The bytes charged to the budget now.
    pub fn charged(&self) -> usize {
        self.charged.load(Ordering::Relaxed)
    }

    /// Makes the charge cover holding `held` bytes; refused (and nothing more charged) when the budget has no room.
    /// Within what is already charged it is one load.
    pub fn cover(&self, held: usize) -> Result<(), Refusal> {
        let need = self.need(held);
        if need <= self.charged.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _guard = self.lock.lock().map_err(|_| Refusal {
            what: "the host".into(),
            limit: self.budget.limit(),
            short: false,
            never: false,
            flag: "serve --memory-budget-mib",
        })?;
        let charged = self.charged.load(Ordering::Relaxed);
        if need <= charged {
            return Ok(());
        }
        self.budget.charge(self.kind, &self.scope, need - charged, need, charged == 0)?;
        self.charged.store(need, Ordering::Relaxed);
        Ok(())
    }

    /// The holder now holds `held` bytes: what is charged beyond that (by a chunk or more) goes back. Nothing charged:
    /// one load.
    pub fn settle(&self, held: usize) {
        let charged = self.charged.load(Ordering::Relaxed);
        if charged == 0 {
            return;
        }
        let need = self.need(held);
        if need != 0 && need + MEMORY_CHUNK > charged {
            return;
        }
        let Ok(_guard) = self.lock.lock() else { return };
        let charged = self.charged.load(Ordering::Relaxed);
        if charged > need {
            self.budget.release(self.kind, &self.scope, charged - need, need == 0);
            self.charged.store(need, Ordering::Relaxed);
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.settle(0);
    }
}

/// The machine's memory as the host may use it: the smaller of physical memory (`/proc/meminfo`) and the cgroup's
/// limit (`memory.max`, cgroup v2); none when neither can be read.
pub fn machine_memory() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(mib: usize) -> Arc<Budget> {
        Arc::new(Budget::new(&Limits { memory_budget: mib << 20, ..Limits::default() }))
    }

    #[test]
    fn the_allowance_is_free_and_beyond_it_chunks_are_charged_and_given_back() {
        let budget = budget(64);
        let holding = budget.connection_holding(Kind::Queued, budget.scope("p", Some("e")));
        holding.cover(MEMORY_ALLOWANCE).unwrap();
        assert_eq!(budget.held(), 0, "the allowance is not charged");
        holding.cover(MEMORY_ALLOWANCE + 1).unwrap();
        assert_eq!((budget.held(), budget.held_for(Kind::Queued)), (MEMORY_CHUNK, MEMORY_CHUNK));
        holding.cover(MEMORY_ALLOWANCE + 3 * MEMORY_CHUNK).unwrap();
        assert_eq!(budget.held(), 3 * MEMORY_CHUNK);
        holding.settle(MEMORY_ALLOWANCE + 2 * MEMORY_CHUNK + 1);
        assert_eq!(budget.held(), 3 * MEMORY_CHUNK, "less than a chunk under the charge keeps it");
        holding.settle(MEMORY_ALLOWANCE + MEMORY_CHUNK);
        assert_eq!(budget.held(), MEMORY_CHUNK);
        assert_eq!(budget.projects(), vec![("p".to_owned(), MEMORY_CHUNK)]);
        drop(holding);
        assert_eq!((budget.held(), budget.projects()[0].1), (0, 0), "dropping gives everything back");
    }

    #[test]
    fn each_limit_refuses_past_it_and_names_its_flag() {
        // 64 MiB: receiving 32, project 32, endpoint 16.
        let budget = budget(64);
        let one = budget.holding(Kind::Receiving, budget.scope("p", Some("e")), 0);
        let err = one.cover(17 << 20).unwrap_err();
        assert!(err.to_string().contains("endpoint e") && err.to_string().contains("--endpoint-memory-share"), "{err}");
        assert_eq!(budget.held(), 0, "a refused charge leaves nothing behind");
        one.cover(16 << 20).unwrap();
        let other = budget.holding(Kind::Receiving, budget.scope("p", Some("f")), 0);
        let err = other.cover(17 << 20).unwrap_err();
        assert!(err.to_string().contains("project p") || err.to_string().contains("receiving"), "{err}");
        let instance = budget.holding(Kind::Instances, budget.scope("q", None), 0);
        instance.cover(32 << 20).unwrap();
        let err = instance.cover(49 << 20).unwrap_err();
        assert!(err.to_string().contains("the host") && err.to_string().contains("--memory-budget-mib"), "{err}");
    }

    #[test]
    fn when_short_the_holders_of_the_most_are_refused_first() {
        // Receiving may hold 32 MiB; short past 24 MiB.
        let budget = budget(64);
        let scope = |e: &str| budget.scope(e, Some(e));
        let big: Vec<Holding> = (0..4).map(|i| budget.holding(Kind::Receiving, scope(&format!("b{i}")), 0)).collect();
        for holding in &big {
            holding.cover(6 << 20).unwrap();
        }
        let small = budget.holding(Kind::Receiving, scope("s"), 0);
        small.cover(1 << 20).unwrap();
        let err = big[0].cover(7 << 20).unwrap_err();
        assert!(err.short, "{err}");
        small.cover(2 << 20).expect("a holder below the average still gets room");
        drop(big);
        big_again(&budget);
    }

    #[test]
    fn the_most_a_holder_may_ever_hold_is_its_smallest_share_and_the_refusal_names_it() {
        // 64 MiB: receiving 32, project 32, endpoint 16.
        let budget = budget(64);
        let session = budget.connection_holding(Kind::Receiving, budget.scope("p", Some("e")));
        assert_eq!(session.most(), MEMORY_ALLOWANCE + (16 << 20));
        let refusal = session.too_big();
        assert!(refusal.never && !refusal.short, "{refusal:?}");
        assert_eq!((refusal.what.as_str(), refusal.limit, refusal.figure()), ("endpoint e", 16 << 20, "16 MiB".into()));
        assert!(refusal.to_string().contains("--endpoint-memory-share"), "{refusal}");
        // A client has no endpoint: its project's share and receiving's are equal, and the narrower is named.
        let client = budget.connection_holding(Kind::Receiving, budget.scope("p", None));
        assert_eq!(client.most(), MEMORY_ALLOWANCE + (32 << 20));
        assert_eq!(client.too_big().what, "project p");
        // A share that is not a whole number of chunks counts in whole chunks; its figure keeps a decimal.
        let small =
            Arc::new(Budget::new(&Limits { memory_budget: 64 << 20, project_memory_share: 10, ..Limits::default() }));
        let holding = small.connection_holding(Kind::Receiving, small.scope("q", None));
        let share = (64 << 20) / 10;
        assert_eq!(holding.most(), MEMORY_ALLOWANCE + share / MEMORY_CHUNK * MEMORY_CHUNK);
        assert_eq!(holding.too_big().figure(), "6.4 MiB");
        holding.cover(holding.most()).expect("the most is given when nothing else is held");
        assert_eq!(small.held(), share / MEMORY_CHUNK * MEMORY_CHUNK);
        assert!(holding.cover(holding.most() + 1).is_err(), "one byte more is not");
    }

    fn big_again(budget: &Arc<Budget>) {
        let holding = budget.holding(Kind::Receiving, budget.scope("b", Some("b")), 0);
        holding.cover(8 << 20).expect("room again once the others let go");
    }
}
