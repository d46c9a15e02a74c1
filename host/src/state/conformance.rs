//! The state backend conformance suite: every test body runs against every backend,
//! so that guests cannot tell the backends apart.

use std::sync::atomic::{AtomicU32, Ordering};

use super::memory::MemoryBackend;
use super::rocksdb::RocksDbBackend;
use super::snapshot::{GroupEntries, SlotData, Snapshot, StateInfo};
use super::ttl::{self, Now, Ttl, TtlUpdate};
use super::{
    KeyGroup, KeyGroupRange, Scope, StateBackend, StateError, StateId, StateKind, TimeDomain,
};

type Make = fn(KeyGroupRange) -> Box<dyn StateBackend>;

fn memory(range: KeyGroupRange) -> Box<dyn StateBackend> {
    Box::new(MemoryBackend::new(range))
}

fn rocksdb(range: KeyGroupRange) -> Box<dyn StateBackend> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    // The backend deletes its folder when dropped.
    Box::new(RocksDbBackend::create(&dir, range).expect("create a RocksDB backend"))
}

const BACKENDS: [(&str, Make); 2] = [("memory", memory), ("rocksdb", rocksdb)];

fn scope(state: u32, key: &[u8]) -> Scope<'_> {
    Scope {
        state: StateId(state),
        key_group: KeyGroup::of(key, 128),
        key,
    }
}

fn all() -> KeyGroupRange {
    KeyGroupRange::all(128)
}

fn groups(backend: &dyn StateBackend) -> Vec<GroupEntries> {
    backend.snapshot().into_groups().expect("snapshot")
}

/// Writes a bit of every layout, with empty and large values, across many keys.
fn fill(b: &mut dyn StateBackend) {
    for i in 0..2000u32 {
        let key = format!("user-{i}");
        let k = key.as_bytes();
        b.value_put(scope(0, k), &i.to_be_bytes()).unwrap();
        if i % 3 == 0 {
            b.list_append(scope(1, k), vec![b"a".to_vec(), Vec::new()])
                .unwrap();
        }
        if i % 5 == 0 {
            b.map_put(
                scope(2, k),
                vec![(b"y".to_vec(), b"2".to_vec()), (b"x".to_vec(), Vec::new())],
            )
            .unwrap();
        }
    }
    b.value_put(scope(0, b""), &[]).unwrap();
    b.value_put(scope(3, b"big"), &vec![7; 1 << 20]).unwrap();
    b.list_append(scope(1, b"big"), vec![vec![8; 1 << 20]])
        .unwrap();
    b.map_put(scope(2, b"big"), vec![(vec![9; 1000], vec![9; 1 << 20])])
        .unwrap();
    for i in 0..500i64 {
        let key = format!("user-{i}");
        let group = KeyGroup::of(key.as_bytes(), 128);
        b.timer_set(group, TimeDomain::Event, i - 250, key.as_bytes())
            .unwrap();
        if i % 7 == 0 {
            b.timer_set(group, TimeDomain::Processing, i * 1000, key.as_bytes())
                .unwrap();
        }
    }
}

/// Every timer of `domain` due at `up_to`, fired `limit` at a time.
fn fire_all(
    b: &mut dyn StateBackend,
    domain: TimeDomain,
    up_to: i64,
    limit: usize,
) -> Vec<(i64, KeyGroup, Vec<u8>)> {
    let mut fired = Vec::new();
    loop {
        let due = b.timers_due(domain, up_to, limit).unwrap();
        assert!(due.len() <= limit);
        if due.is_empty() {
            return fired;
        }
        fired.extend(due.into_iter().map(|(g, t)| (t.timestamp, g, t.key)));
    }
}

#[test]
fn timers_are_a_set_per_key_and_fire_in_time_order_across_key_groups() {
    let mut fired = Vec::new();
    for (name, make) in BACKENDS {
        let mut b = make(all());
        let set = |b: &mut dyn StateBackend, key: &str, at: i64| {
            let group = KeyGroup::of(key.as_bytes(), 128);
            b.timer_set(group, TimeDomain::Event, at, key.as_bytes())
                .unwrap();
        };
        for i in 0..300 {
            set(b.as_mut(), &format!("k{}", i % 40), (i * 37) % 101 - 50);
        }
        // Set twice: one timer.
        set(b.as_mut(), "k0", -50);
        set(b.as_mut(), "k1", 7);
        set(b.as_mut(), "k1", 7);
        let group = KeyGroup::of(b"k1", 128);
        b.timer_delete(group, TimeDomain::Event, 7, b"k1").unwrap();
        b.timer_delete(group, TimeDomain::Event, 999, b"k1")
            .unwrap();
        assert_eq!(
            b.next_timer(TimeDomain::Event).unwrap(),
            Some(-50),
            "{name}"
        );
        assert_eq!(
            b.next_timer(TimeDomain::Processing).unwrap(),
            None,
            "{name}"
        );
        assert!(
            b.timers_due(TimeDomain::Event, -51, 10).unwrap().is_empty(),
            "{name}: none early"
        );
        let early = fire_all(b.as_mut(), TimeDomain::Event, 0, 7);
        let late = fire_all(b.as_mut(), TimeDomain::Event, i64::MAX, 13);
        assert!(early.iter().all(|(t, ..)| *t <= 0) && late.iter().all(|(t, ..)| *t > 0));
        let all: Vec<_> = early.into_iter().chain(late).collect();
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "{name}: by time, group, key, once"
        );
        assert_eq!(b.next_timer(TimeDomain::Event).unwrap(), None, "{name}");
        // A timer set below what already fired fires too.
        set(b.as_mut(), "k2", -1000);
        assert_eq!(
            fire_all(b.as_mut(), TimeDomain::Event, -1000, 5).len(),
            1,
            "{name}"
        );
        fired.push(all);
    }
    assert_eq!(fired[0], fired[1], "memory and rocksdb fire alike");
    assert_eq!(
        fired[0].len(),
        300,
        "the 300 timers set, the deleted one not"
    );
    let outside = MemoryBackend::new(KeyGroupRange::for_subtask(128, 2, 0)).timer_set(
        KeyGroup(100),
        TimeDomain::Event,
        0,
        b"k",
    );
    assert!(matches!(
        outside,
        Err(StateError::KeyGroupOutOfRange { .. })
    ));
}

#[test]
fn a_million_timers_of_one_key_fire_in_order_from_rocksdb() {
    let mut b = rocksdb(all());
    let group = KeyGroup::of(b"hot", 128);
    // Registered out of order: time i * 7919 mod 1M visits every millisecond once.
    for i in 0..1_000_000i64 {
        b.timer_set(group, TimeDomain::Event, (i * 7919) % 1_000_000, b"hot")
            .unwrap();
    }
    let mut next = 0;
    loop {
        let due = b.timers_due(TimeDomain::Event, i64::MAX, 512).unwrap();
        if due.is_empty() {
            break;
        }
        for (_, timer) in due {
            assert_eq!(timer.timestamp, next);
            next += 1;
        }
    }
    assert_eq!(next, 1_000_000);
}

#[test]
fn values_are_scoped_by_state_and_key_and_empty_is_not_absent() {
    for (name, make) in BACKENDS {
        let mut b = make(all());
        b.value_put(scope(0, b"a"), b"1").unwrap();
        b.value_put(scope(1, b"a"), b"2").unwrap();
        b.value_put(scope(0, b"ab"), &[]).unwrap();
        assert_eq!(
            b.value_get(scope(0, b"a")).unwrap(),
            Some(b"1".to_vec()),
            "{name}"
        );
        assert_eq!(
            b.value_get(scope(1, b"a")).unwrap(),
            Some(b"2".to_vec()),
            "{name}"
        );
        assert_eq!(
            b.value_get(scope(0, b"ab")).unwrap(),
            Some(Vec::new()),
            "{name}"
        );
        assert_eq!(b.value_get(scope(0, b"b")).unwrap(), None, "{name}");
        // Batch reads append what single reads return.
        let mut out = b"x".to_vec();
        let found: Vec<bool> = [&b"a"[..], b"ab", b"b"]
            .iter()
            .map(|&k| b.value_get_into(scope(0, k), &mut out).unwrap())
            .collect();
        assert_eq!(
            (found, out),
            (vec![true, true, false], b"x1".to_vec()),
            "{name}"
        );
        b.clear(scope(0, b"a")).unwrap();
        assert_eq!(b.value_get(scope(0, b"a")).unwrap(), None, "{name}");
        assert_eq!(
            b.value_get(scope(1, b"a")).unwrap(),
            Some(b"2".to_vec()),
            "{name}"
        );
    }
}

#[test]
fn lists_keep_insertion_order() {
    for (name, make) in BACKENDS {
        let mut b = make(all());
        let s = scope(0, b"k");
        assert!(b.list_get(s).unwrap().is_empty(), "{name}");
        b.list_append(s, vec![b"x".to_vec()]).unwrap();
        b.list_append(s, vec![b"y".to_vec(), Vec::new(), b"x".to_vec()])
            .unwrap();
        assert_eq!(
            b.list_get(s).unwrap(),
            [b"x".to_vec(), b"y".to_vec(), Vec::new(), b"x".to_vec()],
            "{name}"
        );
        b.list_replace(s, vec![b"z".to_vec()]).unwrap();
        assert_eq!(b.list_get(s).unwrap(), [b"z".to_vec()], "{name}");
        b.clear(s).unwrap();
        assert!(b.list_get(s).unwrap().is_empty(), "{name}");
    }
}

#[test]
fn maps_are_sorted_by_user_key_and_keys_do_not_leak_into_each_other() {
    for (name, make) in BACKENDS {
        let mut b = make(all());
        let s = scope(2, b"k");
        // A key that is a prefix of another must not see the other's entries.
        let longer = scope(2, b"kk");
        b.map_put(longer, vec![(b"a".to_vec(), b"other".to_vec())])
            .unwrap();
        assert!(b.map_is_empty(s).unwrap(), "{name}");
        b.map_put(
            s,
            vec![
                (b"b".to_vec(), b"2".to_vec()),
                (b"a".to_vec(), b"1".to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(b.map_get(s, b"a").unwrap(), Some(b"1".to_vec()), "{name}");
        let entries = b.map_entries(s).unwrap();
        assert_eq!(
            entries,
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ],
            "{name}"
        );
        b.map_remove(s, b"a").unwrap();
        b.map_remove(s, b"absent").unwrap();
        assert_eq!(b.map_entries(s).unwrap().len(), 1, "{name}");
        b.clear(s).unwrap();
        assert!(b.map_is_empty(s).unwrap(), "{name}");
        assert_eq!(
            b.map_entries(longer).unwrap().len(),
            1,
            "{name}: clear touched another key"
        );
    }
}

#[test]
fn key_groups_outside_the_range_are_refused() {
    for (name, make) in BACKENDS {
        let mut b = make(KeyGroupRange::for_subtask(128, 2, 0));
        let outside = Scope {
            state: StateId(0),
            key_group: KeyGroup(100),
            key: b"k",
        };
        assert!(
            matches!(
                b.value_put(outside, &[]),
                Err(StateError::KeyGroupOutOfRange { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                b.map_entries(outside),
                Err(StateError::KeyGroupOutOfRange { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn many_keys_and_large_values_read_back() {
    for (name, make) in BACKENDS {
        let mut b = make(all());
        fill(b.as_mut());
        for i in (0..2000u32).step_by(97) {
            let key = format!("user-{i}");
            assert_eq!(
                b.value_get(scope(0, key.as_bytes())).unwrap(),
                Some(i.to_be_bytes().to_vec()),
                "{name}"
            );
        }
        assert_eq!(
            b.value_get(scope(3, b"big")).unwrap().map(|v| v.len()),
            Some(1 << 20),
            "{name}"
        );
        assert_eq!(
            b.list_get(scope(1, b"big")).unwrap()[0].len(),
            1 << 20,
            "{name}"
        );
    }
}

#[test]
fn every_backend_takes_the_same_snapshot_and_restores_any_other_backends() {
    // The states `fill` writes.
    let states: Vec<StateInfo> = [
        ("value", StateKind::Value),
        ("list", StateKind::List),
        ("map", StateKind::Map),
        ("big", StateKind::Value),
    ]
    .into_iter()
    .map(|(name, kind)| StateInfo {
        name: name.into(),
        kind,
        ttl: None,
    })
    .collect();
    let mut snapshots = Vec::new();
    for (name, make) in BACKENDS {
        let mut b = make(all());
        fill(b.as_mut());
        let taken = b.snapshot();
        let file = b.snapshot();
        // Writes after the snapshot do not change it.
        b.value_put(scope(0, b"user-1"), b"changed").unwrap();
        b.clear(scope(2, b"user-5")).unwrap();
        let groups = taken.into_groups().unwrap();
        assert!(groups.windows(2).all(|w| w[0].group < w[1].group), "{name}");
        // A backend that encodes its own file writes the canonical one.
        let canonical = Snapshot {
            states: states.clone(),
            groups: groups.clone(),
            ..Snapshot::default()
        };
        assert_eq!(
            Snapshot::decode(&file.encode(&states, Now::NEVER).unwrap()),
            Ok(canonical),
            "{name}"
        );
        snapshots.push((name, groups));
    }
    assert_eq!(
        snapshots[0].1, snapshots[1].1,
        "memory and rocksdb snapshots differ"
    );
    for (from, groups) in &snapshots {
        for (to, make) in BACKENDS {
            let mut restored = make(all());
            restored.restore(groups).unwrap();
            assert_eq!(
                &super::conformance::groups(restored.as_ref()),
                groups,
                "{from} → {to}"
            );
            // A subtask keeps only its own key groups.
            let range = KeyGroupRange::for_subtask(128, 3, 1);
            let mut part = make(range);
            part.restore(groups).unwrap();
            assert!(
                super::conformance::groups(part.as_ref())
                    .iter()
                    .all(|g| range.contains(g.group)),
                "{to}"
            );
        }
    }
}

#[test]
fn keys_of_a_state_are_listed_once_in_the_same_order_everywhere() {
    let mut listed = Vec::new();
    for (name, make) in BACKENDS {
        let mut b = make(all());
        fill(b.as_mut());
        // A key that held a map entry and lost it holds no slot.
        b.map_put(scope(2, b"gone"), vec![(b"k".to_vec(), b"v".to_vec())])
            .unwrap();
        b.map_remove(scope(2, b"gone"), b"k").unwrap();
        let keys: Vec<Vec<(KeyGroup, Vec<u8>)>> = (0..4)
            .map(|state| b.keys(StateId(state)).unwrap())
            .collect();
        assert_eq!(keys[0].len(), 2001, "{name}: every value key");
        assert_eq!(keys[1].len(), 667 + 1, "{name}: every list key");
        assert_eq!(keys[2].len(), 400 + 1, "{name}: each map key once");
        assert_eq!(keys[3], [(KeyGroup::of(b"big", 128), b"big".to_vec())]);
        for state in &keys {
            assert!(state.is_sorted(), "{name}: by key group, then key bytes");
            for (group, key) in state {
                assert_eq!(*group, KeyGroup::of(key, 128), "{name}");
            }
        }
        listed.push(keys);
    }
    assert_eq!(listed[0], listed[1], "the backends list the same keys");
    for (name, make) in BACKENDS {
        let part = KeyGroupRange::for_subtask(128, 4, 1);
        let mut b = make(part);
        let key_group = part.iter().last().unwrap();
        let s = Scope {
            state: StateId(0),
            key_group,
            key: b"x",
        };
        b.value_put(s, b"1").unwrap();
        assert_eq!(
            b.keys(StateId(0)).unwrap(),
            [(key_group, b"x".to_vec())],
            "{name}"
        );
        assert!(
            b.keys(StateId(9)).unwrap().is_empty(),
            "{name}: an unused state"
        );
    }
}

#[test]
fn ttl_entries_are_stamped_alike_and_snapshots_leave_out_those_expired_when_taken() {
    let ttl = Ttl {
        ttl_ms: 1_000,
        domain: TimeDomain::Event,
        update: TtlUpdate::OnCreateAndWrite,
    };
    let states: Vec<StateInfo> = [("value", StateKind::Value), ("list", StateKind::List)]
        .into_iter()
        .chain([("map", StateKind::Map)])
        .map(|(name, kind)| StateInfo {
            name: name.into(),
            kind,
            ttl: Some(ttl),
        })
        .collect();
    let at = |watermark| Now {
        watermark: Some(watermark),
        processing: 0,
    };
    let mut files = Vec::new();
    for (name, make) in BACKENDS {
        let mut b = make(all());
        // Keys written at event time 0 (expired at 1000) and 500 (live until 1500).
        for (stamp, key) in [(0, &b"old"[..]), (500, b"new")] {
            for state in 0..3 {
                let mut slot = ttl::Slot {
                    backend: b.as_mut(),
                    scope: scope(state, key),
                    ttl: Some((ttl, at(stamp), stamp)),
                };
                match state {
                    0 => slot.value_put(b"v").unwrap(),
                    1 => slot.list_append(vec![b"e".to_vec()]).unwrap(),
                    _ => slot.map_put(vec![(b"k".to_vec(), b"v".to_vec())]).unwrap(),
                }
            }
        }
        let file = b.snapshot().encode(&states, at(1_200)).unwrap();
        let snapshot = Snapshot::decode(&file).unwrap();
        assert_eq!(snapshot.states, states, "{name}: the TTLs are recorded");
        let entries: Vec<_> = snapshot.groups.iter().flat_map(|g| &g.entries).collect();
        assert_eq!(entries.len(), 3, "{name}: {entries:?}");
        for entry in entries {
            assert_eq!(entry.key, b"new", "{name}");
            let stored = match &entry.data {
                SlotData::Value(v) => v.clone(),
                SlotData::List(l) => l[0].clone(),
                SlotData::Map(m) => m[0].1.clone(),
            };
            assert_eq!(
                ttl::split(&stored).map(|(stamp, _)| stamp),
                Some(500),
                "{name}"
            );
        }
        files.push(file);
    }
    assert_eq!(files[0], files[1], "memory and rocksdb write the same file");
}
