//! What the scheduler did to a worker's thread over its timed span: the time it ran, the time
//! it was runnable but waited for a CPU, its context switches and migrations. Busy-polling
//! workers that outnumber the CPUs take turns on them, and every turn lands in the latencies;
//! these figures say how much, per side, beside the numbers they bend.
//!
//! Read from the kernel's per-thread files (`/proc/thread-self/schedstat`, `status`, `sched`):
//! a few microseconds per reading, taken outside the timed iterations.

use std::time::Instant;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// What the scheduler did to one thread between two readings (or to several, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSched {
    /// Wall time between the readings, ns (summed over threads where several are summed).
    pub span_ns: u64,
    /// Time the thread ran on a CPU, ns.
    pub on_cpu_ns: u64,
    /// Time the thread was runnable but waited for a CPU, ns.
    pub waiting_ns: u64,
    /// Switches away because the thread blocked (a sleep, a read that waits).
    pub voluntary_switches: u64,
    /// Switches away while runnable (preempted, or yielded to another thread).
    pub involuntary_switches: u64,
    /// Moves to another CPU (None where the kernel does not count them for users).
    #[serde(default)]
    pub migrations: Option<u64>,
}

/// The calling thread's counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct SchedMark {
    at: Instant,
    counters: ThreadSched,
}

impl SchedMark {
    /// The calling thread's counters now (None where the kernel offers no per-thread
    /// schedstat, as with no /proc).
    pub fn now() -> Option<SchedMark> {
        let at = Instant::now();
        let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/{f}")).ok();
        let (on_cpu_ns, waiting_ns) = parse_schedstat(&read("schedstat")?)?;
        let (voluntary_switches, involuntary_switches) = parse_switches(&read("status")?)?;
        let migrations = read("sched").and_then(|s| parse_migrations(&s));
        Some(SchedMark {
            at,
            counters: ThreadSched {
                span_ns: 0,
                on_cpu_ns,
                waiting_ns,
                voluntary_switches,
                involuntary_switches,
                migrations,
            },
        })
    }

    /// What the scheduler did to the calling thread since this mark (which it must have
    /// taken); None when the counters cannot be read now.
    pub fn since(&self) -> Option<ThreadSched> {
        let now = SchedMark::now()?;
        Some(now.counters.minus(&self.counters, now.at - self.at))
    }
}

impl ThreadSched {
    /// The counters of `self` less the earlier `before`, `span` apart.
    fn minus(&self, before: &ThreadSched, span: std::time::Duration) -> ThreadSched {
        ThreadSched {
            span_ns: u64::try_from(span.as_nanos()).unwrap_or(u64::MAX),
            on_cpu_ns: self.on_cpu_ns.saturating_sub(before.on_cpu_ns),
            waiting_ns: self.waiting_ns.saturating_sub(before.waiting_ns),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(before.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(before.involuntary_switches),
            migrations: self
                .migrations
                .zip(before.migrations)
                .map(|(a, b)| a.saturating_sub(b)),
        }
    }

    /// These figures less a `part` of their span (the same thread's, read within it).
    pub fn less(&self, part: &ThreadSched) -> ThreadSched {
        let span = std::time::Duration::from_nanos(self.span_ns.saturating_sub(part.span_ns));
        self.minus(part, span)
    }

    /// Adds `other` (another round of the same thread, or another thread).
    pub fn add(&mut self, other: &ThreadSched) {
        self.span_ns = self.span_ns.saturating_add(other.span_ns);
        self.on_cpu_ns = self.on_cpu_ns.saturating_add(other.on_cpu_ns);
        self.waiting_ns = self.waiting_ns.saturating_add(other.waiting_ns);
        self.voluntary_switches = self
            .voluntary_switches
            .saturating_add(other.voluntary_switches);
        self.involuntary_switches = self
            .involuntary_switches
            .saturating_add(other.involuntary_switches);
        self.migrations = self
            .migrations
            .zip(other.migrations)
            .map(|(a, b)| a.saturating_add(b));
    }

    /// Two spans' figures of one thread summed, as two rounds' are (one unread: none to state).
    pub fn sum(a: Option<ThreadSched>, b: Option<ThreadSched>) -> Option<ThreadSched> {
        let (mut a, b) = (a?, b?);
        a.add(&b);
        Some(a)
    }

    /// The share of the span spent runnable without a CPU, % (None for an empty span).
    pub fn waiting_pct(&self) -> Option<f64> {
        (self.span_ns > 0).then(|| self.waiting_ns as f64 * 100.0 / self.span_ns as f64)
    }
}

/// One side's workers over their timed spans, as a result states them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideSched {
    /// Workers whose threads were read.
    pub workers: usize,
    /// Their timed spans, summed, ms.
    pub span_ms: f64,
    /// Time they ran, summed, ms.
    pub on_cpu_ms: f64,
    /// Time they were runnable but waited for a CPU, summed, ms.
    pub waiting_ms: f64,
    /// `waiting_ms` as a share of `span_ms`, %.
    pub waiting_pct: f64,
    /// Each worker's waiting share, %, in worker order.
    pub worker_waiting_pct: Vec<f64>,
    /// Switches away because a thread blocked.
    pub voluntary_switches: u64,
    /// Switches away while runnable.
    pub involuntary_switches: u64,
    /// Moves to another CPU (null where the kernel does not count them).
    pub migrations: Option<u64>,
}

impl SideSched {
    /// The figures of the workers in `each` (in worker order); None when no worker's thread
    /// was read or every span was empty.
    pub fn of<'a>(each: impl IntoIterator<Item = &'a ThreadSched>) -> Option<SideSched> {
        let each: Vec<&ThreadSched> = each.into_iter().collect();
        let (first, rest) = each.split_first()?;
        let mut sum = **first;
        rest.iter().for_each(|t| sum.add(t));
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(SideSched {
            workers: each.len(),
            span_ms: ms(sum.span_ns),
            on_cpu_ms: ms(sum.on_cpu_ns),
            waiting_ms: ms(sum.waiting_ns),
            waiting_pct: sum.waiting_pct()?,
            worker_waiting_pct: each
                .iter()
                .map(|t| t.waiting_pct().unwrap_or(0.0))
                .collect(),
            voluntary_switches: sum.voluntary_switches,
            involuntary_switches: sum.involuntary_switches,
            migrations: sum.migrations,
        })
    }
}

/// Both sides' workers over their timed spans, and the CPUs this process may run on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scheduling {
    /// The initiator's workers (absent where none was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator: Option<SideSched>,
    /// The target's workers, as their summaries carried them (absent where none was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<SideSched>,
    /// The CPUs this process may run on.
    pub host_cpus: usize,
}

impl Scheduling {
    /// The figures of both sides' workers; None when neither side's were read.
    pub fn of<'a>(
        initiator: impl IntoIterator<Item = &'a ThreadSched>,
        target: impl IntoIterator<Item = &'a ThreadSched>,
    ) -> Option<Scheduling> {
        let (initiator, target) = (SideSched::of(initiator), SideSched::of(target));
        (initiator.is_some() || target.is_some()).then(|| Scheduling {
            initiator,
            target,
            host_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        })
    }
}

/// Which CPU each worker thread of a side is pinned to (`--cpus`): worker `w` takes the
/// list's entry `first + w`, wrapping round; an empty list pins nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuPlan {
    /// The CPUs, in the order workers take them.
    pub list: Vec<usize>,
    /// The entry worker 0 takes (a one-process run's target starts after the initiator's).
    pub first: usize,
}

impl CpuPlan {
    /// A list such as `0-3,8,10-11` (each CPU once, in the order written).
    pub fn parse(text: &str) -> Result<CpuPlan, String> {
        let mut list: Vec<usize> = Vec::new();
        for part in text.split(',').map(str::trim) {
            let num = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{s:?} is not a CPU number"))
            };
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if lo > hi || hi >= CpuSet::count() {
                return Err(format!(
                    "{part:?} is no range of CPUs 0 to {}",
                    CpuSet::count() - 1
                ));
            }
            for cpu in lo..=hi {
                if list.contains(&cpu) {
                    return Err(format!("CPU {cpu} is named twice"));
                }
                list.push(cpu);
            }
        }
        Ok(CpuPlan { list, first: 0 })
    }

    /// Refuses a CPU this process may not run on, naming the ones it may.
    pub fn check_allowed(&self) -> Result<(), String> {
        if self.list.is_empty() {
            return Ok(());
        }
        let allowed = sched_getaffinity(Pid::from_raw(0))
            .map_err(|e| format!("cannot read this process's CPUs: {e}"))?;
        let ok = |c: usize| allowed.is_set(c).unwrap_or(false);
        match self.list.iter().find(|&&c| !ok(c)) {
            None => Ok(()),
            Some(c) => {
                let mine: Vec<String> = (0..CpuSet::count())
                    .filter(|&c| ok(c))
                    .map(|c| c.to_string())
                    .collect();
                Err(format!(
                    "CPU {c} is not among this process's CPUs ({})",
                    mine.join(",")
                ))
            }
        }
    }

    /// The same list for threads numbered on after `n` others.
    pub fn after(&self, n: usize) -> CpuPlan {
        CpuPlan {
            list: self.list.clone(),
            first: self.first + n,
        }
    }

    /// The CPU of worker `w` (None: not pinned).
    pub fn for_worker(&self, w: usize) -> Option<usize> {
        (!self.list.is_empty()).then(|| self.list[(self.first + w) % self.list.len()])
    }

    /// Pins the calling thread, worker `w`, to its CPU (nothing without a list).
    pub fn pin(&self, w: usize) -> Result<(), String> {
        let Some(cpu) = self.for_worker(w) else {
            return Ok(());
        };
        let mut set = CpuSet::new();
        set.set(cpu)
            .map_err(|e| format!("--cpus: CPU {cpu}: {e}"))?;
        sched_setaffinity(Pid::from_raw(0), &set)
            .map_err(|e| format!("--cpus: cannot pin worker {w} to CPU {cpu}: {e}"))
    }
}

/// The waiting share above which a result says its latencies include the scheduler's turns, %.
pub const WAITING_NOTABLE_PCT: f64 = 5.0;

/// Time on a CPU and time waiting on a run queue, ns, from `/proc/<tid>/schedstat`'s first
/// two fields.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace().map(str::parse::<u64>);
    Some((f.next()?.ok()?, f.next()?.ok()?))
}

/// The voluntary and involuntary context switches of `/proc/<tid>/status`.
fn parse_switches(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches")?,
        field("nonvoluntary_ctxt_switches")?,
    ))
}

/// `se.nr_migrations` of `/proc/<tid>/sched` (a debugging file some kernels lack).
fn parse_migrations(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "se.nr_migrations")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tkvxfer-initiato\nState:\tR (running)\nTgid:\t4242\n\
        voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t2462\n";
    const SCHED: &str = "kvxfer-initiato (4243, #threads: 8)\n\
        -------------------------------------------------------------------\n\
        se.exec_start                                :       8944511.028881\n\
        se.nr_migrations                             :                   42\n\
        nr_switches                                  :                 2479\n";

    #[test]
    fn the_kernel_files_parse_into_their_counters() {
        assert_eq!(
            parse_schedstat("565578678 270566013 2462\n"),
            Some((565578678, 270566013))
        );
        assert_eq!(parse_schedstat("565578678\n"), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
        assert_eq!(parse_switches(STATUS), Some((17, 2462)));
        assert_eq!(parse_switches("Name:\tx\n"), None);
        assert_eq!(parse_migrations(SCHED), Some(42));
        assert_eq!(parse_migrations("nr_switches : 3\n"), None);
    }

    fn t(span: u64, on: u64, wait: u64, inv: u64, mig: Option<u64>) -> ThreadSched {
        ThreadSched {
            span_ns: span,
            on_cpu_ns: on,
            waiting_ns: wait,
            voluntary_switches: 1,
            involuntary_switches: inv,
            migrations: mig,
        }
    }

    #[test]
    fn a_cpu_list_parses_in_order_and_workers_take_it_in_turn() {
        let p = CpuPlan::parse("2-4,0, 7").unwrap();
        assert_eq!(p.list, [2, 3, 4, 0, 7]);
        let got: Vec<Option<usize>> = (0..6).map(|w| p.for_worker(w)).collect();
        assert_eq!(got, [2, 3, 4, 0, 7, 2].map(Some));
        // A one-process run's target starts after the initiator's two workers.
        assert_eq!(p.after(2).for_worker(0), Some(4));
        assert_eq!(CpuPlan::default().for_worker(3), None);
        for bad in ["", "x", "3-1", "1,1", "0-2,2", "-1", "99999"] {
            let e = CpuPlan::parse(bad).unwrap_err();
            assert!(e.contains("CPU"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_cpu_this_process_may_not_use_is_refused_by_name() {
        let last = CpuSet::count() - 1;
        let e = CpuPlan::parse(&last.to_string()).unwrap().check_allowed();
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains(&format!("CPU {last} is not among"))),
            "{e:?}"
        );
        assert_eq!(CpuPlan::parse("0").unwrap().check_allowed(), Ok(()));
    }

    #[test]
    fn a_side_sums_its_workers_and_states_each_share() {
        let a = t(1_000_000_000, 550_000_000, 450_000_000, 2400, Some(3));
        let b = t(1_000_000_000, 990_000_000, 10_000_000, 5, Some(1));
        let s = SideSched::of([&a, &b]).unwrap();
        assert_eq!(s.workers, 2);
        assert_eq!(s.span_ms, 2000.0);
        assert_eq!(s.waiting_ms, 460.0);
        assert_eq!(s.waiting_pct, 23.0);
        assert_eq!(s.worker_waiting_pct, vec![45.0, 1.0]);
        assert_eq!((s.voluntary_switches, s.involuntary_switches), (2, 2405));
        assert_eq!(s.migrations, Some(4));
        // One thread whose kernel does not count migrations: the sum has none to state.
        let c = t(1_000_000_000, 1, 0, 0, None);
        assert_eq!(SideSched::of([&a, &c]).unwrap().migrations, None);
        assert_eq!(SideSched::of(Vec::<&ThreadSched>::new()), None);
        assert_eq!(SideSched::of([&t(0, 0, 0, 0, None)]), None);
    }

    #[test]
    fn a_difference_of_readings_is_what_happened_between_them() {
        let before = t(0, 100, 50, 10, Some(2));
        let after = t(0, 400, 150, 13, Some(5));
        let d = after.minus(&before, std::time::Duration::from_nanos(500));
        let want = ThreadSched {
            voluntary_switches: 0,
            ..t(500, 300, 100, 3, Some(3))
        };
        assert_eq!(d, want);
        assert_eq!(d.waiting_pct(), Some(20.0));
        assert_eq!(
            after
                .minus(&t(0, 0, 0, 0, None), Default::default())
                .migrations,
            None
        );
    }

    #[test]
    fn a_part_of_a_span_comes_off_every_figure_and_the_span() {
        let whole = t(1000, 600, 200, 9, Some(4));
        let gaps = t(400, 100, 150, 2, Some(1));
        let none_voluntary = |s: ThreadSched| ThreadSched {
            voluntary_switches: 0,
            ..s
        };
        assert_eq!(
            whole.less(&gaps),
            none_voluntary(t(600, 500, 50, 7, Some(3)))
        );
        // A part read larger than the whole (readings a tick apart) leaves zeros, not a wrap.
        assert_eq!(gaps.less(&whole), none_voluntary(t(0, 0, 0, 0, Some(0))));
    }

    #[test]
    fn a_thread_that_spins_alone_reads_its_own_time() {
        let Some(mark) = SchedMark::now() else {
            eprintln!("skipped: this kernel offers no /proc/thread-self/schedstat");
            return;
        };
        let until = Instant::now() + std::time::Duration::from_millis(30);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let d = mark.since().expect("read once, readable again");
        assert!(d.span_ns >= 30_000_000, "{d:?}");
        // It ran or waited for the whole span, never more than the span.
        // Both readings may lag a scheduler tick (10 ms at the slowest HZ).
        assert!(
            d.on_cpu_ns + d.waiting_ns <= d.span_ns + 10_000_000,
            "{d:?}"
        );
        assert!(d.on_cpu_ns + d.waiting_ns >= d.span_ns / 2, "{d:?}");
    }
}
