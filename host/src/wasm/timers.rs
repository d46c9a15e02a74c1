//! The host side of the `timers` import, and what the instance needs to fire timers
//! cheaply: a lower bound of the next due timer per domain, so that a watermark or a
//! clock tick with nothing due costs no backend scan.
//!
//! Invariant: `Next::at` is never above the earliest pending timer of its domain
//! (registering lowers it; deleting or firing leaves it, and a scan that finds nothing
//! due sets it exactly).

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Result, bail};

use super::bindings::weir::operator::{timers, types};
use super::imports::{CurrentBatch, GuestCtx};
use crate::state::TimeDomain;

/// The timestamps a timer may have: the years 0000 to 9999, in milliseconds since the
/// Unix epoch (what RFC 3339 can write; anything else is a bug in the guest's
/// arithmetic, such as a time in seconds taken for milliseconds times 1000).
pub const EARLIEST: i64 = -62_167_219_200_000;
/// See [`EARLIEST`]: 9999-12-31T23:59:59.999Z.
pub const LATEST: i64 = 253_402_300_799_999;

/// The host's wall clock in milliseconds since the Unix epoch.
pub fn processing_time() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A lower bound of each domain's earliest pending timer (`i64::MAX`: none known).
#[derive(Debug, Clone, Copy)]
pub(super) struct Next {
    at: [i64; 2],
}

impl Default for Next {
    /// Unknown: a restored backend may hold timers of any time.
    fn default() -> Next {
        Next { at: [i64::MIN; 2] }
    }
}

impl Next {
    /// Whether a timer of `domain` may be due at `up_to`.
    pub(super) fn may_be_due(&self, domain: TimeDomain, up_to: i64) -> bool {
        self.at[domain as usize] <= up_to
    }

    /// The earliest a timer of `domain` may be due (`i64::MIN`: unknown).
    pub(super) fn earliest(&self, domain: TimeDomain) -> i64 {
        self.at[domain as usize]
    }

    /// A timer at `timestamp` was registered.
    pub(super) fn registered(&mut self, domain: TimeDomain, timestamp: i64) {
        let at = &mut self.at[domain as usize];
        *at = (*at).min(timestamp);
    }

    /// The backend's earliest pending timer of `domain` is `next`.
    pub(super) fn found(&mut self, domain: TimeDomain, next: Option<i64>) {
        self.at[domain as usize] = next.unwrap_or(i64::MAX);
    }
}

pub(super) fn domain(domain: types::TimeDomain) -> TimeDomain {
    match domain {
        types::TimeDomain::Event => TimeDomain::Event,
        types::TimeDomain::Processing => TimeDomain::Processing,
    }
}

/// The key group and key of record `rec` of `current`, for a timer at `timestamp`.
fn timer_key(
    current: &CurrentBatch,
    rec: u32,
    timestamp: i64,
) -> Result<(crate::state::KeyGroup, &[u8])> {
    if !(EARLIEST..=LATEST).contains(&timestamp) {
        bail!(
            "timer timestamp {timestamp} is outside the years 0000 to 9999 (timestamps \
             are milliseconds since the Unix epoch)"
        );
    }
    current.key(rec, "a timer")
}

impl GuestCtx {
    /// Registers (or deletes) the timer of `domain` at `timestamp` for record `rec`'s key.
    fn change_timer(
        &mut self,
        domain: TimeDomain,
        rec: u32,
        timestamp: i64,
        register: bool,
    ) -> Result<()> {
        // From `on-timer`, a timer of the same domain at or before the one firing is
        // due at once: set again each time it fires, it would fire without end.
        if register
            && let Some((firing, times)) = &self.firing
            && *firing == domain
            && let Some(&at) = times.get(rec as usize)
            && timestamp <= at
        {
            bail!(
                "on-timer set the key's {} timer at {timestamp}, not after the timer firing \
                 at {at}: it is due at once and would fire again without end; set it later \
                 than the timer that fired",
                domain.name()
            );
        }
        let (key_group, key) = timer_key(&self.current, rec, timestamp)?;
        if register {
            self.backend.timer_set(key_group, domain, timestamp, key)?;
            self.next_timer.registered(domain, timestamp);
        } else {
            self.backend
                .timer_delete(key_group, domain, timestamp, key)?;
        }
        Ok(())
    }
}

impl timers::Host for GuestCtx {
    fn register_timer(
        &mut self,
        domain: types::TimeDomain,
        rec: u32,
        timestamp: i64,
    ) -> Result<()> {
        self.change_timer(self::domain(domain), rec, timestamp, true)
    }

    fn delete_timer(&mut self, domain: types::TimeDomain, rec: u32, timestamp: i64) -> Result<()> {
        self.change_timer(self::domain(domain), rec, timestamp, false)
    }

    fn set_timers(&mut self, changes: timers::TimerChanges) -> Result<()> {
        let timers::TimerChanges {
            recs,
            timestamps,
            changes,
        } = changes;
        if recs.len() != timestamps.len() || recs.len() != changes.len() {
            bail!(
                "set-timers got {} records, {} timestamps and {} changes: one of each per \
                 change",
                recs.len(),
                timestamps.len(),
                changes.len()
            );
        }
        for ((rec, timestamp), change) in recs.into_iter().zip(timestamps).zip(changes) {
            use timers::TimerChange as C;
            let (domain, register) = match change {
                C::RegisterEvent => (TimeDomain::Event, true),
                C::DeleteEvent => (TimeDomain::Event, false),
                C::RegisterProcessing => (TimeDomain::Processing, true),
                C::DeleteProcessing => (TimeDomain::Processing, false),
            };
            self.change_timer(domain, rec, timestamp, register)?;
        }
        Ok(())
    }

    fn current_watermark(&mut self) -> Result<Option<i64>> {
        Ok(self.operator_state.watermark)
    }

    fn current_processing_time(&mut self) -> Result<i64> {
        Ok(self.clock.unwrap_or_else(processing_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_the_first_and_last_millisecond_rfc_3339_can_write() {
        use crate::record::event_time::rfc3339_millis;
        assert_eq!(rfc3339_millis("0000-01-01T00:00:00Z"), Some(EARLIEST));
        assert_eq!(rfc3339_millis("9999-12-31T23:59:59.999Z"), Some(LATEST));
    }

    #[test]
    fn the_next_timer_is_a_lower_bound_until_a_scan_finds_it() {
        let mut next = Next::default();
        assert!(next.may_be_due(TimeDomain::Event, i64::MIN), "unknown");
        next.found(TimeDomain::Event, None);
        assert!(!next.may_be_due(TimeDomain::Event, i64::MAX - 1));
        next.registered(TimeDomain::Event, 50);
        next.registered(TimeDomain::Event, 70);
        assert!(!next.may_be_due(TimeDomain::Event, 49));
        assert!(next.may_be_due(TimeDomain::Event, 50));
        assert!(next.may_be_due(TimeDomain::Processing, 0), "domains apart");
    }
}
