//! The memory state backend: one hash map per key group and registered state.
//!
//! Invariants: a slot's layout is fixed by the first write to it; operations for another
//! layout fail rather than reinterpret bytes. Snapshots are copy-on-write per key group:
//! taking one clones a pointer per group, and the first write to a group afterwards
//! copies that group only, so the task is never stopped for a copy of all state. Keys
//! and short values are stored inline (`SmallBytes`), so that copy is one of the
//! group's table, without an allocation per key; the checkpoint writer encodes the
//! snapshot straight into a file, without copying its entries first.

use std::collections::BTreeSet;

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use std::sync::Arc;

use super::snapshot::{Encoder, Entry, GroupEntries, SlotData, StateInfo, Timer};
use super::ttl::{Now, Ttl};
use super::{
    BackendSnapshot, DueTimer, KeyGroup, KeyGroupRange, Layout, Result, Scope, StateBackend,
    StateError, StateId, TimeDomain,
};
use crate::small_bytes::SmallBytes;

/// One key's state in one registered state. Keys and values are [`SmallBytes`]: short
/// ones cost no allocation, which makes copy-on-write copies and 10M keys (W5 of
/// `host bench`) cheap.
#[derive(Debug, Clone)]
enum Slot {
    Value(SmallBytes),
    List(Vec<Vec<u8>>),
    /// Unordered (a lookup is a probe or two, not a walk of comparisons); sorted where
    /// order shows: entries, snapshots.
    /// Boxed, so that value slots (most of all, in most jobs) stay small.
    Map(Box<HashMap<SmallBytes, SmallBytes>>),
}

impl Slot {
    fn layout(&self) -> Layout {
        match self {
            Slot::Value(_) => Layout::Value,
            Slot::List(_) => Layout::List,
            Slot::Map(_) => Layout::Map,
        }
    }
}

/// One state's slots in one key group, by record key.
type Slots = HashMap<SmallBytes, Slot>;

/// The slots of one key group: indexed by state id, then keyed by record key; and its
/// timers, per domain, in firing order.
#[derive(Debug, Default, Clone)]
struct Group {
    states: Vec<Slots>,
    timers: [BTreeSet<(i64, SmallBytes)>; 2],
}

impl Group {
    fn is_empty(&self) -> bool {
        self.states.iter().all(|keys| keys.is_empty()) && self.timers.iter().all(|t| t.is_empty())
    }

    /// The group's timers in snapshot order: by domain, timestamp, then key.
    fn timers(&self) -> impl Iterator<Item = (TimeDomain, i64, &[u8])> {
        [TimeDomain::Event, TimeDomain::Processing]
            .into_iter()
            .flat_map(|domain| {
                self.timers[domain as usize]
                    .iter()
                    .map(move |(timestamp, key)| (domain, *timestamp, &**key))
            })
    }
}

/// Keyed state held in memory, per key group.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    range: KeyGroupRange,
    groups: Vec<Arc<Group>>,
    /// The group TTL cleanup looks at next.
    sweep: usize,
}

impl MemoryBackend {
    /// An empty backend holding the key groups of `range`.
    pub fn new(range: KeyGroupRange) -> MemoryBackend {
        MemoryBackend {
            range,
            groups: (0..range.len()).map(|_| Arc::default()).collect(),
            sweep: 0,
        }
    }

    fn slots(&self, scope: Scope<'_>) -> Result<Option<&Slots>> {
        let group = self.group_index(scope)?;
        Ok(self.groups[group].states.get(scope.state.0 as usize))
    }

    fn slots_mut(&mut self, scope: Scope<'_>) -> Result<&mut Slots> {
        let group = self.group_index(scope)?;
        let states = &mut Arc::make_mut(&mut self.groups[group]).states;
        let index = scope.state.0 as usize;
        if states.len() <= index {
            states.resize_with(index + 1, HashMap::new);
        }
        Ok(&mut states[index])
    }

    fn group_index(&self, scope: Scope<'_>) -> Result<usize> {
        self.offset(scope.key_group)
    }

    fn offset(&self, key_group: KeyGroup) -> Result<usize> {
        self.range
            .offset(key_group)
            .ok_or(StateError::KeyGroupOutOfRange {
                key_group,
                range: self.range,
            })
    }

    fn timers_mut(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
    ) -> Result<&mut BTreeSet<(i64, SmallBytes)>> {
        let group = self.offset(key_group)?;
        Ok(&mut Arc::make_mut(&mut self.groups[group]).timers[domain as usize])
    }

    fn slot(&self, scope: Scope<'_>, expected: Layout) -> Result<Option<&Slot>> {
        let slot = self.slots(scope)?.and_then(|slots| slots.get(scope.key));
        match slot {
            Some(slot) if slot.layout() != expected => Err(wrong(scope.state, expected, slot)),
            other => Ok(other),
        }
    }

    /// The slot for writing, created empty in `expected`'s layout when missing.
    fn slot_mut(&mut self, scope: Scope<'_>, expected: Layout) -> Result<&mut Slot> {
        let slot = match self.slots_mut(scope)?.entry_ref(scope.key) {
            EntryRef::Occupied(slot) => slot.into_mut(),
            EntryRef::Vacant(vacant) => {
                let empty = match expected {
                    Layout::Value => Slot::Value(SmallBytes::default()),
                    Layout::List => Slot::List(Vec::new()),
                    Layout::Map => Slot::Map(Box::default()),
                };
                vacant.insert_with_key(scope.key.into(), empty)
            }
        };
        if slot.layout() != expected {
            return Err(wrong(scope.state, expected, slot));
        }
        Ok(slot)
    }
}

fn wrong(state: StateId, expected: Layout, found: &Slot) -> StateError {
    StateError::WrongLayout {
        state,
        expected,
        found: found.layout(),
    }
}

impl StateBackend for MemoryBackend {
    fn key_groups(&self) -> KeyGroupRange {
        self.range
    }

    fn value_get(&self, scope: Scope<'_>) -> Result<Option<Vec<u8>>> {
        Ok(match self.slot(scope, Layout::Value)? {
            Some(Slot::Value(value)) => Some(value.to_vec()),
            _ => None,
        })
    }

    fn value_get_into(&self, scope: Scope<'_>, out: &mut Vec<u8>) -> Result<bool> {
        Ok(match self.slot(scope, Layout::Value)? {
            Some(Slot::Value(value)) => {
                out.extend_from_slice(value);
                true
            }
            _ => false,
        })
    }

    fn value_put(&mut self, scope: Scope<'_>, value: &[u8]) -> Result<()> {
        if let Slot::Value(slot) = self.slot_mut(scope, Layout::Value)? {
            *slot = value.into();
        }
        Ok(())
    }

    fn list_get(&self, scope: Scope<'_>) -> Result<Vec<Vec<u8>>> {
        Ok(match self.slot(scope, Layout::List)? {
            Some(Slot::List(elements)) => elements.clone(),
            _ => Vec::new(),
        })
    }

    fn list_append(&mut self, scope: Scope<'_>, mut elements: Vec<Vec<u8>>) -> Result<()> {
        if elements.is_empty() {
            // Appending nothing creates no slot (as on every backend).
            return self.slot(scope, Layout::List).map(|_| ());
        }
        if let Slot::List(list) = self.slot_mut(scope, Layout::List)? {
            list.append(&mut elements);
        }
        Ok(())
    }

    fn list_replace(&mut self, scope: Scope<'_>, elements: Vec<Vec<u8>>) -> Result<()> {
        if elements.is_empty() {
            return self.clear(scope);
        }
        if let Slot::List(list) = self.slot_mut(scope, Layout::List)? {
            *list = elements;
        }
        Ok(())
    }

    fn map_get(&self, scope: Scope<'_>, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(match self.slot(scope, Layout::Map)? {
            Some(Slot::Map(map)) => map.get(user_key).map(|v| v.to_vec()),
            _ => None,
        })
    }

    fn map_put(&mut self, scope: Scope<'_>, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        if entries.is_empty() {
            return self.slot(scope, Layout::Map).map(|_| ());
        }
        if let Slot::Map(map) = self.slot_mut(scope, Layout::Map)? {
            map.extend(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_slice().into(), v.as_slice().into())),
            );
        }
        Ok(())
    }

    fn map_remove(&mut self, scope: Scope<'_>, user_key: &[u8]) -> Result<()> {
        if self.slot(scope, Layout::Map)?.is_none() {
            return Ok(());
        }
        let now_empty = match self.slot_mut(scope, Layout::Map)? {
            Slot::Map(map) => {
                map.remove(user_key);
                map.is_empty()
            }
            _ => false,
        };
        if now_empty {
            self.clear(scope)?;
        }
        Ok(())
    }

    fn map_entries(&self, scope: Scope<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(match self.slot(scope, Layout::Map)? {
            Some(Slot::Map(map)) => sorted(map),
            _ => Vec::new(),
        })
    }

    fn map_is_empty(&self, scope: Scope<'_>) -> Result<bool> {
        Ok(match self.slot(scope, Layout::Map)? {
            Some(Slot::Map(map)) => map.is_empty(),
            _ => true,
        })
    }

    fn clear(&mut self, scope: Scope<'_>) -> Result<()> {
        self.slots_mut(scope)?.remove(scope.key);
        Ok(())
    }

    fn keys(&self, state: StateId) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
        let mut keys = Vec::new();
        for (group, slots) in self.range.iter().zip(&self.groups) {
            let Some(slots) = slots.states.get(state.0 as usize) else {
                continue;
            };
            let start = keys.len();
            keys.extend(slots.keys().map(|key| (group, key.to_vec())));
            keys[start..].sort_unstable();
        }
        Ok(keys)
    }

    fn timer_set(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
        timestamp: i64,
        key: &[u8],
    ) -> Result<()> {
        self.timers_mut(key_group, domain)?
            .insert((timestamp, key.into()));
        Ok(())
    }

    fn timer_delete(
        &mut self,
        key_group: KeyGroup,
        domain: TimeDomain,
        timestamp: i64,
        key: &[u8],
    ) -> Result<()> {
        let index = self.offset(key_group)?;
        let timer = (timestamp, SmallBytes::from(key));
        // Only a group that holds the timer is copied (if a snapshot shares it).
        if self.groups[index].timers[domain as usize].contains(&timer) {
            self.timers_mut(key_group, domain)?.remove(&timer);
        }
        Ok(())
    }

    fn timers_due(
        &mut self,
        domain: TimeDomain,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<DueTimer>> {
        let due = super::first_due(
            domain,
            (self.range.iter().zip(&self.groups))
                .filter(|(_, slots)| !slots.timers[domain as usize].is_empty())
                .map(|(group, slots)| {
                    let timers = slots.timers[domain as usize].iter();
                    (
                        group,
                        timers.map(|(timestamp, key)| Ok((*timestamp, &**key))),
                    )
                }),
            up_to,
            limit,
        )?;
        // What fired is each group's earliest timers, in the group's order.
        for (group, _) in &due {
            self.timers_mut(*group, domain)?.pop_first();
        }
        Ok(due)
    }

    fn next_timer(&self, domain: TimeDomain) -> Result<Option<i64>> {
        Ok(self
            .groups
            .iter()
            .filter_map(|group| group.timers[domain as usize].first().map(|(t, _)| *t))
            .min())
    }

    fn expire(&mut self, ttls: &[(StateId, Ttl)], now: Now, budget: usize) -> Result<()> {
        // Whole groups in turn, until `budget` slots were looked at or every group was.
        let (mut looked_at, groups) = (0, self.groups.len());
        for _ in 0..groups {
            if ttls.is_empty() || looked_at >= budget {
                break;
            }
            let index = self.sweep % groups;
            self.sweep = index + 1;
            for &(state, ttl) in ttls {
                let Some(slots) = self.groups[index].states.get(state.0 as usize) else {
                    continue;
                };
                looked_at += slots.len();
                // Only a group with something expired is written (and so copied, if a
                // snapshot shares it).
                if slots.values().any(|slot| holds_expired(slot, ttl, &now)) {
                    let slots = &mut Arc::make_mut(&mut self.groups[index]).states;
                    slots[state.0 as usize].retain(|_, slot| keep_live(slot, ttl, &now));
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Box<dyn BackendSnapshot> {
        Box::new(MemorySnapshot {
            range: self.range,
            groups: self.groups.clone(),
        })
    }

    fn restore(&mut self, groups: &[GroupEntries]) -> Result<()> {
        for group in groups {
            let Some(index) = self.range.offset(group.group) else {
                continue;
            };
            let restored = Arc::make_mut(&mut self.groups[index]);
            for Timer {
                domain,
                timestamp,
                key,
            } in &group.timers
            {
                restored.timers[*domain as usize].insert((*timestamp, key.as_slice().into()));
            }
            let states = &mut restored.states;
            for entry in &group.entries {
                let state = entry.state as usize;
                if states.len() <= state {
                    states.resize_with(state + 1, HashMap::new);
                }
                let slot = match &entry.data {
                    SlotData::Value(v) => Slot::Value(v.as_slice().into()),
                    SlotData::List(l) => Slot::List(l.clone()),
                    SlotData::Map(m) => Slot::Map(Box::new(
                        (m.iter())
                            .map(|(k, v)| (k.as_slice().into(), v.as_slice().into()))
                            .collect(),
                    )),
                };
                states[state].insert(entry.key.as_slice().into(), slot);
            }
        }
        Ok(())
    }
}

/// A map slot's entries, sorted by user key.
fn sorted(map: &HashMap<SmallBytes, SmallBytes>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
        map.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// Whether a slot of a state with `ttl` holds an entry expired at `now`.
fn holds_expired(slot: &Slot, ttl: Ttl, now: &Now) -> bool {
    match slot {
        Slot::Value(v) => ttl.expired(v, now),
        Slot::List(l) => l.iter().any(|e| ttl.expired(e, now)),
        Slot::Map(m) => m.values().any(|v| ttl.expired(v, now)),
    }
}

/// Removes a slot's entries expired at `now`; whether anything is left.
fn keep_live(slot: &mut Slot, ttl: Ttl, now: &Now) -> bool {
    match slot {
        Slot::Value(v) => !ttl.expired(v, now),
        Slot::List(l) => {
            l.retain(|e| !ttl.expired(e, now));
            !l.is_empty()
        }
        Slot::Map(m) => {
            m.retain(|_, v| !ttl.expired(v, now));
            !m.is_empty()
        }
    }
}

/// The key groups of a [`MemoryBackend`] at one moment.
struct MemorySnapshot {
    range: KeyGroupRange,
    groups: Vec<Arc<Group>>,
}

impl BackendSnapshot for MemorySnapshot {
    fn into_groups(self: Box<Self>) -> Result<Vec<GroupEntries>> {
        Ok(self
            .range
            .iter()
            .zip(&self.groups)
            .filter_map(|(group, slots)| {
                let mut entries: Vec<Entry> = slots
                    .states
                    .iter()
                    .enumerate()
                    .flat_map(|(state, keys)| {
                        keys.iter().map(move |(key, slot)| Entry {
                            state: state as u32,
                            key: key.to_vec(),
                            data: match slot {
                                Slot::Value(v) => SlotData::Value(v.to_vec()),
                                Slot::List(l) => SlotData::List(l.clone()),
                                Slot::Map(m) => SlotData::Map(sorted(m)),
                            },
                        })
                    })
                    .collect();
                // (state, key) is unique: an unstable sort gives the same order, faster.
                entries.sort_unstable_by(|a, b| (a.state, &a.key).cmp(&(b.state, &b.key)));
                let timers = (slots.timers())
                    .map(|(domain, timestamp, key)| Timer {
                        domain,
                        timestamp,
                        key: key.to_vec(),
                    })
                    .collect();
                (!slots.is_empty()).then_some(GroupEntries {
                    group,
                    entries,
                    timers,
                })
            })
            .collect())
    }

    fn encode(self: Box<Self>, states: &[StateInfo], at: Now) -> Result<Vec<u8>> {
        let mut encoder = Encoder::new(states, at);
        let mut sorted: Vec<(u64, &[u8], &Slot)> = Vec::new();
        for (group, slots) in self.range.iter().zip(&self.groups) {
            if slots.is_empty() {
                continue;
            }
            encoder.group(group);
            for (state, keys) in slots.states.iter().enumerate() {
                sorted.clear();
                sorted.extend(keys.iter().map(|(key, slot)| (prefix(key), &**key, slot)));
                // Keys are unique: an unstable sort gives the same order, faster. Most
                // comparisons are decided by the keys' first 8 bytes, as one integer.
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
                let state = state as u32;
                for (_, key, slot) in &sorted {
                    match slot {
                        Slot::Value(v) => encoder.value(state, key, v),
                        Slot::List(l) => encoder.list(state, key, l),
                        Slot::Map(m) => {
                            let mut entries: Vec<(&[u8], &[u8])> =
                                m.iter().map(|(k, v)| (&**k, &**v)).collect();
                            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                            encoder.map(state, key, entries.into_iter())
                        }
                    }
                }
            }
            for (domain, timestamp, key) in slots.timers() {
                encoder.timer(domain, timestamp, key);
            }
        }
        Ok(encoder.finish())
    }
}

/// A key's first 8 bytes, zero-padded, as an integer that orders like the keys: if two
/// prefixes differ, so do the keys, the same way.
fn prefix(key: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroup;

    fn scope(state: u32, key: &[u8]) -> Scope<'_> {
        Scope {
            state: StateId(state),
            key_group: KeyGroup::of(key, 128),
            key,
        }
    }

    fn backend() -> MemoryBackend {
        MemoryBackend::new(KeyGroupRange::all(128))
    }

    #[test]
    fn values_are_scoped_by_state_and_key() {
        let mut b = backend();
        b.value_put(scope(0, b"a"), b"1").unwrap();
        b.value_put(scope(1, b"a"), b"2").unwrap();
        b.value_put(scope(0, b"b"), &[]).unwrap();
        assert_eq!(b.value_get(scope(0, b"a")).unwrap(), Some(b"1".to_vec()));
        assert_eq!(b.value_get(scope(1, b"a")).unwrap(), Some(b"2".to_vec()));
        assert_eq!(
            b.value_get(scope(0, b"b")).unwrap(),
            Some(Vec::new()),
            "empty is not absent"
        );
        assert_eq!(b.value_get(scope(0, b"c")).unwrap(), None);
        b.clear(scope(0, b"a")).unwrap();
        assert_eq!(b.value_get(scope(0, b"a")).unwrap(), None);
        assert_eq!(b.value_get(scope(1, b"a")).unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn lists_keep_insertion_order() {
        let mut b = backend();
        let s = scope(0, b"k");
        b.list_append(s, vec![b"x".to_vec()]).unwrap();
        b.list_append(s, vec![b"y".to_vec(), b"x".to_vec()])
            .unwrap();
        assert_eq!(
            b.list_get(s).unwrap(),
            vec![b"x".to_vec(), b"y".to_vec(), b"x".to_vec()]
        );
        b.list_replace(s, vec![b"z".to_vec()]).unwrap();
        assert_eq!(b.list_get(s).unwrap(), vec![b"z".to_vec()]);
        b.list_replace(s, Vec::new()).unwrap();
        assert!(b.list_get(s).unwrap().is_empty());
    }

    #[test]
    fn maps_are_sorted_by_user_key() {
        let mut b = backend();
        let s = scope(2, b"k");
        assert!(b.map_is_empty(s).unwrap());
        b.map_put(
            s,
            vec![
                (b"b".to_vec(), b"2".to_vec()),
                (b"a".to_vec(), b"1".to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(b.map_get(s, b"a").unwrap(), Some(b"1".to_vec()));
        let keys: Vec<_> = b
            .map_entries(s)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        b.map_remove(s, b"a").unwrap();
        b.map_remove(s, b"b").unwrap();
        assert!(b.map_is_empty(s).unwrap());
        b.map_remove(s, b"absent").unwrap();
    }

    #[test]
    fn a_slot_keeps_its_layout() {
        let mut b = backend();
        b.value_put(scope(0, b"k"), b"v").unwrap();
        assert!(matches!(
            b.list_get(scope(0, b"k")),
            Err(StateError::WrongLayout {
                expected: Layout::List,
                found: Layout::Value,
                ..
            })
        ));
    }

    #[test]
    fn a_snapshot_is_the_state_when_it_was_taken_and_restores_exactly() {
        let mut b = backend();
        for i in 0..200u32 {
            let key = format!("k{i}");
            b.value_put(scope(0, key.as_bytes()), &i.to_le_bytes())
                .unwrap();
            b.map_put(
                scope(1, key.as_bytes()),
                vec![(b"m".to_vec(), b"v".to_vec())],
            )
            .unwrap();
        }
        let taken = b.snapshot();
        // Writes after the snapshot do not change it.
        b.value_put(scope(0, b"k1"), b"changed").unwrap();
        b.clear(scope(1, b"k2")).unwrap();
        let groups = taken.into_groups().unwrap();
        assert_eq!(groups.iter().map(|g| g.entries.len()).sum::<usize>(), 400);
        for g in &groups {
            assert!(
                g.entries
                    .windows(2)
                    .all(|w| (w[0].state, &w[0].key) < (w[1].state, &w[1].key))
            );
        }

        let mut restored = backend();
        restored.restore(&groups).unwrap();
        assert_eq!(
            restored.value_get(scope(0, b"k1")).unwrap(),
            Some(1u32.to_le_bytes().to_vec())
        );
        assert_eq!(
            restored.map_get(scope(1, b"k2"), b"m").unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(restored.snapshot().into_groups().unwrap(), groups);

        // A subtask restores only its own key groups.
        let mut half = MemoryBackend::new(KeyGroupRange::for_subtask(128, 2, 1));
        half.restore(&groups).unwrap();
        let kept: usize = half
            .snapshot()
            .into_groups()
            .unwrap()
            .iter()
            .map(|g| g.entries.len())
            .sum();
        assert!(kept > 100 && kept < 300, "{kept}");
    }

    #[test]
    fn key_groups_outside_the_range_are_refused() {
        let mut b = MemoryBackend::new(KeyGroupRange::for_subtask(128, 2, 0));
        let outside = Scope {
            state: StateId(0),
            key_group: KeyGroup(100),
            key: b"k",
        };
        assert!(matches!(
            b.value_put(outside, &[]),
            Err(StateError::KeyGroupOutOfRange { .. })
        ));
    }

    #[test]
    fn ttl_cleanup_removes_expired_entries_a_budget_at_a_time() {
        let mut b = backend();
        let ttl = Ttl {
            ttl_ms: 1_000,
            domain: crate::state::TimeDomain::Processing,
            update: crate::state::ttl::TtlUpdate::OnCreateAndWrite,
        };
        let stamped = |stamp| crate::state::ttl::stamped(stamp, b"v");
        for i in 0..1_000 {
            let key = format!("user-{i}");
            // State 0 has the TTL, state 1 none; odd keys of state 0 are still live.
            let stamp = if i % 2 == 0 { 0 } else { 5_000 };
            b.value_put(scope(0, key.as_bytes()), &stamped(stamp))
                .unwrap();
            b.value_put(scope(1, key.as_bytes()), &stamped(0)).unwrap();
        }
        let now = Now {
            watermark: None,
            processing: 2_000,
        };
        let taken = b.snapshot();
        b.expire(&[(StateId(0), ttl)], now, 100).unwrap();
        let left = b.keys(StateId(0)).unwrap().len();
        assert!(
            (500..1_000).contains(&left),
            "one call does a budget's worth: {left}"
        );
        assert!(
            left <= 1_000 - 50,
            "at least the budget's expired half: {left}"
        );
        for _ in 0..20 {
            b.expire(&[(StateId(0), ttl)], now, 100).unwrap();
        }
        assert_eq!(
            b.keys(StateId(0)).unwrap().len(),
            500,
            "only the live ones stay"
        );
        assert_eq!(
            b.keys(StateId(1)).unwrap().len(),
            1_000,
            "no TTL, no cleanup"
        );
        let copy = taken.into_groups().unwrap();
        let entries: usize = copy.iter().map(|g| g.entries.len()).sum();
        assert_eq!(entries, 2_000, "a snapshot taken before is untouched");
    }
}
