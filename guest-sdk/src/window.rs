//! Windows over keyed state and timers: tumbling, sliding and session windows in event
//! or processing time, each keeping an aggregate's accumulator (not its records), with
//! allowed lateness, re-firing and late records reported, as Flink's `WindowOperator`
//! has them.
//!
//! A [`Windows`] is a `const` like a state handle. The operator hands it every record
//! from `process` and every timer from `on_timer`, and emits what it reports:
//!
//! ```no_run
//! use guest_sdk::window::{Count, Fired, Windows};
//! use guest_sdk::{Context, Operator, Result, Timer};
//! use serde_json::{Value, json};
//!
//! const PER_MINUTE: Windows<Count> = Windows::tumbling("per-minute", 60_000, Count::new());
//!
//! #[derive(Default)]
//! struct VisitCount;
//!
//! impl Operator for VisitCount {
//!     type Input = Value;
//!     type Output = Value;
//!     fn process(&mut self, visit: Value, ctx: &mut Context<Value>) -> Result<()> {
//!         for fired in PER_MINUTE.add(&visit, ctx)? {
//!             match fired {
//!                 Fired::Result { window, result, .. } => {
//!                     ctx.emit(json!({"url": ctx.key(), "start": window.start, "count": result}))?
//!                 }
//!                 // To the side output `late` (the job file's `side_outputs`).
//!                 Fired::Late => ctx.emit_to("late", &visit)?,
//!             }
//!         }
//!         Ok(())
//!     }
//!     fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Value>) -> Result<()> {
//!         for fired in PER_MINUTE.on_timer(timer, ctx)? {
//!             if let Fired::Result { window, result, .. } = fired {
//!                 ctx.emit(json!({"url": ctx.key(), "start": window.start, "count": result}))?;
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Semantics (event time): a window `[start, end)` fires once the watermark reaches
//! `end - 1`, with its result timestamped `end - 1`. It keeps its accumulator for
//! `allowed_lateness` more: a record for it in that time is added and the window fires
//! again at once with the updated result (`update: true`). A record whose every window
//! is past `end - 1 + allowed_lateness` is late: it changes nothing and is reported as
//! [`Fired::Late`]. Session windows of a key merge when they touch or overlap.
//! A key's open windows are one value state (`name`), read and written once per batch.
//! In processing time, records fall in the window of the wall clock when they arrive,
//! and nothing is late.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Context, Error, Result, TimeDomain, Timer, ValueState};

/// A window: the times `start` (inclusive) to `end` (exclusive), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: i64,
    /// The first millisecond after it.
    pub end: i64,
}

impl Window {
    /// The last millisecond in the window: when it fires.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Whether the two touch or overlap (and so merge, for sessions).
    fn meets(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// An incremental aggregate: how a window's accumulator starts, takes a record, merges
/// with another (when session windows merge) and gives the window's result.
pub trait Aggregate {
    /// The records it takes.
    type Input;
    /// What a window keeps (in keyed state).
    type Acc: Serialize + DeserializeOwned;
    /// The window's result.
    type Output;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds `input` to `acc`.
    fn add(&self, acc: &mut Self::Acc, input: &Self::Input);
    /// Merges `other` into `acc` (session windows).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result of a window holding `acc`.
    fn result(&self, acc: &Self::Acc) -> Self::Output;
}

/// Counts a window's records of type `T`, whatever they hold.
pub struct Count<T = serde_json::Value>(PhantomData<fn() -> T>);

impl<T> Count<T> {
    /// Counts records of type `T`.
    pub const fn new() -> Self {
        Count(PhantomData)
    }
}

impl<T> Default for Count<T> {
    fn default() -> Self {
        Count::new()
    }
}

impl<T> Aggregate for Count<T> {
    type Input = T;
    type Acc = u64;
    type Output = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// The whole window's records, for a window function that needs them all (the window
/// keeps every record: prefer an aggregate where one will do).
pub struct Collect<T>(PhantomData<fn() -> T>);

impl<T> Collect<T> {
    /// Collects records of type `T`.
    pub const fn new() -> Self {
        Collect(PhantomData)
    }
}

impl<T> Default for Collect<T> {
    fn default() -> Self {
        Collect::new()
    }
}

impl<T: Serialize + DeserializeOwned + Clone> Aggregate for Collect<T> {
    type Input = T;
    type Acc = Vec<T>;
    type Output = Vec<T>;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, input: &T) {
        acc.push(input.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn result(&self, acc: &Vec<T>) -> Vec<T> {
        acc.clone()
    }
}

/// How records are put in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// Windows one after another from the epoch.
    Tumbling {
        /// Each window's length, in ms.
        size: i64,
    },
    /// Overlapping windows: a record is in `size / slide` of them.
    Sliding {
        /// Each window's length, in ms.
        size: i64,
        /// How far apart windows start, in ms.
        slide: i64,
    },
    /// A window per burst of a key's records.
    Session {
        /// How long after its last record a session ends, in ms.
        gap: i64,
    },
}

impl Assigner {
    /// The windows a record at `time` falls in (for sessions, its own, before merging).
    fn assign(&self, time: i64) -> Vec<Window> {
        let at = |start: i64, size: i64| Window {
            start,
            end: start.saturating_add(size),
        };
        match *self {
            Assigner::Tumbling { size } => vec![at(time - time.rem_euclid(size), size)],
            Assigner::Sliding { size, slide } => {
                let last = time - time.rem_euclid(slide);
                (0..)
                    .map(|i| last - i * slide)
                    .take_while(|start| *start > time - size)
                    .map(|start| at(start, size))
                    .collect()
            }
            Assigner::Session { gap } => vec![at(time, gap)],
        }
    }
}

/// What a window reports, for the operator to emit.
#[derive(Debug, Clone, PartialEq)]
pub enum Fired<O> {
    /// A window's result: when the watermark (or clock) reached its end, or again,
    /// updated (`update`), when a record came within the allowed lateness.
    Result {
        /// The window.
        window: Window,
        /// The aggregate's result for it.
        result: O,
        /// Whether it fired before (this is a late record's update).
        update: bool,
    },
    /// The record was too late for every window it falls in: nothing changed.
    Late,
}

/// An open window of a key and its accumulator, stored as the JSON array
/// `[start, end, acc]` (an object would spell out its three names for every window of
/// every key, and cost their parsing on every record).
#[derive(Serialize, Deserialize)]
struct Slot<A>(i64, i64, A);

impl<A> Slot<A> {
    fn window(&self) -> Window {
        Window {
            start: self.0,
            end: self.1,
        }
    }
}

/// Windowed aggregation for the current key, its open windows kept together in the value
/// state `name` (a key has few open at a time; one value is read and written once per
/// batch, where an entry per window would cost host calls per record).
pub struct Windows<A: Aggregate> {
    state: ValueState<Vec<Slot<A::Acc>>>,
    assigner: Assigner,
    domain: TimeDomain,
    allowed_lateness: i64,
    aggregate: A,
}

impl<A: Aggregate> Windows<A> {
    /// Tumbling event-time windows of `size_ms`.
    pub const fn tumbling(name: &'static str, size_ms: i64, aggregate: A) -> Self {
        Windows::new(name, Assigner::Tumbling { size: size_ms }, aggregate)
    }

    /// Sliding event-time windows of `size_ms`, one starting every `slide_ms`.
    pub const fn sliding(name: &'static str, size_ms: i64, slide_ms: i64, aggregate: A) -> Self {
        let assigner = Assigner::Sliding {
            size: size_ms,
            slide: slide_ms,
        };
        Windows::new(name, assigner, aggregate)
    }

    /// Event-time session windows that close after `gap_ms` without a record.
    pub const fn sessions(name: &'static str, gap_ms: i64, aggregate: A) -> Self {
        Windows::new(name, Assigner::Session { gap: gap_ms }, aggregate)
    }

    /// Event-time windows of `assigner`, kept in the map state `name`.
    pub const fn new(name: &'static str, assigner: Assigner, aggregate: A) -> Self {
        Windows {
            state: ValueState::new(name),
            assigner,
            domain: TimeDomain::Event,
            allowed_lateness: 0,
            aggregate,
        }
    }

    /// The same windows over processing time (the host's wall clock when a record
    /// arrives; not replayable).
    pub const fn in_processing_time(mut self) -> Self {
        self.domain = TimeDomain::Processing;
        self
    }

    /// Keeps each window `ms` after it fired (event time), re-firing it for records
    /// that come in that time; later ones are [`Fired::Late`].
    pub const fn allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness = ms;
        self
    }

    /// When a window's state goes.
    fn cleanup(&self, window: &Window) -> i64 {
        match self.domain {
            TimeDomain::Event => window.max_timestamp().saturating_add(self.allowed_lateness),
            TimeDomain::Processing => window.max_timestamp(),
        }
    }

    /// Adds `input`, the record being processed, to its windows; reports the windows it
    /// fired again (within their lateness), or that it was late.
    pub fn add<T: Serialize>(
        &self,
        input: &A::Input,
        ctx: &mut Context<T>,
    ) -> Result<Vec<Fired<A::Output>>> {
        self.check()?;
        let (time, watermark) = match self.domain {
            TimeDomain::Event => {
                let time = ctx.timestamp().ok_or_else(|| {
                    Error::new("an event-time window needs the record's event time: set `event_time` on the source")
                })?;
                (time, ctx.current_watermark())
            }
            TimeDomain::Processing => (ctx.current_processing_time(), None),
        };
        let late = |window: &Window| watermark.is_some_and(|w| self.cleanup(window) <= w);
        let mut open = self.state.get()?.unwrap_or_default();
        let mut fired = Vec::new();
        let mut added = false;
        for window in self.assigner.assign(time) {
            // A session takes in the key's sessions it meets (none of which is late:
            // their state goes as the watermark passes their lateness).
            let merging: Vec<Slot<A::Acc>> = match self.assigner {
                Assigner::Session { .. } => {
                    let (meeting, rest) = std::mem::take(&mut open)
                        .into_iter()
                        .partition(|slot| slot.window().meets(&window));
                    open = rest;
                    meeting
                }
                _ => Vec::new(),
            };
            let window = (merging.iter()).fold(window, |w, session| Window {
                start: w.start.min(session.0),
                end: w.end.max(session.1),
            });
            if late(&window) {
                open.extend(merging);
                continue;
            }
            let kept = match open.iter().position(|slot| slot.0 == window.start) {
                Some(at) if merging.is_empty() => Some(open.swap_remove(at).2),
                _ => None,
            };
            // A window in state whose end the watermark passed has come out (its timer
            // fired); one that comes into being there comes out for the first time.
            let was_there = kept.is_some();
            let existed = was_there || !merging.is_empty();
            let mut acc = kept.unwrap_or_else(|| self.aggregate.create());
            for session in merging {
                self.delete_timers(&session.window(), ctx)?;
                self.aggregate.merge(&mut acc, session.2);
            }
            self.aggregate.add(&mut acc, input);
            added = true;
            let fired_already = watermark.is_some_and(|w| window.max_timestamp() <= w);
            if fired_already {
                fired.push(Fired::Result {
                    window,
                    result: self.aggregate.result(&acc),
                    update: existed,
                });
            }
            // A window that was there has its timers: a new or merged one needs them.
            if !was_there {
                self.set_timers(&window, !fired_already, ctx)?;
            }
            open.push(Slot(window.start, window.end, acc));
        }
        self.keep(open)?;
        if !added {
            fired.push(Fired::Late);
        }
        Ok(fired)
    }

    /// Reports the windows of the current key that `timer` fires, and forgets those
    /// whose lateness it ends. Timers of the other domain, or at no window's time, are
    /// not the windows' and report nothing.
    pub fn on_timer<T: Serialize>(
        &self,
        timer: Timer,
        _ctx: &mut Context<T>,
    ) -> Result<Vec<Fired<A::Output>>> {
        self.check()?;
        if timer.domain != self.domain {
            return Ok(Vec::new());
        }
        let mut open = self.state.get()?.unwrap_or_default();
        let mut fired = Vec::new();
        for slot in &open {
            if slot.window().max_timestamp() == timer.timestamp {
                fired.push(Fired::Result {
                    window: slot.window(),
                    result: self.aggregate.result(&slot.2),
                    update: false,
                });
            }
        }
        let before = open.len();
        open.retain(|slot| self.cleanup(&slot.window()) != timer.timestamp);
        if open.len() != before {
            self.keep(open)?;
        }
        Ok(fired)
    }

    /// The windows the current key has open, with their results so far, by start.
    pub fn pending(&self) -> Result<Vec<(Window, A::Output)>> {
        let mut open = self.state.get()?.unwrap_or_default();
        open.sort_by_key(|slot| slot.0);
        Ok((open.iter())
            .map(|slot| (slot.window(), self.aggregate.result(&slot.2)))
            .collect())
    }

    /// Stores the key's open windows (none: no state).
    fn keep(&self, open: Vec<Slot<A::Acc>>) -> Result<()> {
        match open.is_empty() {
            true => self.state.clear(),
            false => self.state.set(&open),
        }
    }

    fn check(&self) -> Result<()> {
        let fine = match self.assigner {
            Assigner::Tumbling { size } => size > 0,
            Assigner::Sliding { size, slide } => size > 0 && slide > 0,
            Assigner::Session { gap } => gap > 0,
        };
        if !fine || self.allowed_lateness < 0 {
            return Err(Error::new(format!(
                "windows {:?} with allowed lateness {} ms: sizes, slides and gaps must be \
                 positive and the lateness not negative",
                self.assigner, self.allowed_lateness
            )));
        }
        Ok(())
    }

    /// Sets the window's timers: when it fires (unless it has, `fires`) and when its
    /// state goes.
    fn set_timers<T: Serialize>(
        &self,
        window: &Window,
        fires: bool,
        ctx: &mut Context<T>,
    ) -> Result<()> {
        match self.domain {
            TimeDomain::Event => {
                let cleanup = self.cleanup(window);
                if fires && window.max_timestamp() != cleanup {
                    ctx.register_event_time_timer(window.max_timestamp())?;
                }
                ctx.register_event_time_timer(cleanup)
            }
            TimeDomain::Processing => ctx.register_processing_time_timer(window.max_timestamp()),
        }
    }

    fn delete_timers<T: Serialize>(&self, window: &Window, ctx: &mut Context<T>) -> Result<()> {
        match self.domain {
            TimeDomain::Event => {
                let cleanup = self.cleanup(window);
                if window.max_timestamp() != cleanup {
                    ctx.delete_event_time_timer(window.max_timestamp())?;
                }
                ctx.delete_event_time_timer(cleanup)
            }
            TimeDomain::Processing => ctx.delete_processing_time_timer(window.max_timestamp()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fall_in_the_windows_flink_puts_them_in() {
        let tumbling = Assigner::Tumbling { size: 60_000 };
        assert_eq!(
            tumbling.assign(61_000),
            [Window {
                start: 60_000,
                end: 120_000
            }]
        );
        assert_eq!(
            tumbling.assign(-1)[0].start,
            -60_000,
            "before the epoch too"
        );
        let sliding = Assigner::Sliding {
            size: 10_000,
            slide: 5_000,
        };
        let starts: Vec<i64> = sliding.assign(12_000).iter().map(|w| w.start).collect();
        assert_eq!(starts, [10_000, 5_000]);
        let starts: Vec<i64> = sliding.assign(10_000).iter().map(|w| w.start).collect();
        assert_eq!(
            starts,
            [10_000, 5_000],
            "a window's start is in it, its end not"
        );
        assert_eq!(
            Assigner::Session { gap: 30 }.assign(7),
            [Window { start: 7, end: 37 }]
        );
    }
}
