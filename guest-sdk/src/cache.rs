//! Value and list state read and written once per batch instead of per record.
//!
//! A host call costs far more than the work of a keyed count, so value-like state (value,
//! reducing, aggregating) and list state are read for the whole batch in one call, served
//! from here while the batch runs, and their changes are written back in one call at
//! the end. The host observes state only between batches (checkpoint barriers fall
//! between them), so it sees exactly what per-record calls would have left.
//!
//! A state that the last batch used for fewer than a quarter of its records is not
//! cached in the next one: reading every key of a batch to serve a few would cost more
//! than it saves (RocksDB reads are not free). List state counts only its reads: a list
//! that is only appended to is cheaper to append to than to read and replace.

use std::ops::Range;

// The batch calls' records, as the bindings define them (also on native targets, where
// the harness plays the host).
pub(crate) use crate::bindings::weir::operator::state::{
    BatchLists, BatchValues, ListChanges, ValueChanges,
};

/// The values of one state's keys in the current batch, and what the batch changed.
pub(crate) struct ValueCache {
    /// For each record of the batch: the index of its key.
    keys: Vec<u32>,
    /// For each key: where its value lies in `data`, if it has one.
    stored: Vec<Option<Range<usize>>>,
    data: Vec<u8>,
    /// For each key: where its value as the batch left it lies in `written`, once the
    /// batch changed it.
    changed: Vec<Option<Option<Range<usize>>>>,
    /// Values the batch set, one after another; superseded ones stay until they are
    /// more than the live ones (`live` bytes), when the live ones are compacted.
    written: Vec<u8>,
    live: usize,
}

/// Superseded values the cache keeps before it compacts, beyond as many as live ones.
const SLACK: usize = 64 * 1024;

impl ValueCache {
    /// The cache of a batch whose values the host sent; `None` if they do not add up
    /// (a host bug, which fails the batch).
    pub(crate) fn new(values: BatchValues) -> Option<ValueCache> {
        let mut at = 0;
        let mut absent = values.absent.iter().peekable();
        let stored = (values.lengths.iter().enumerate())
            .map(|(i, &length)| {
                let range = next(&mut at, length);
                absent
                    .next_if(|&&a| a as usize == i)
                    .is_none()
                    .then_some(range)
            })
            .collect::<Vec<_>>();
        // Marks out of order or out of range are left over.
        let consistent = at == values.data.len()
            && absent.next().is_none()
            && all_below(&values.keys, stored.len());
        consistent.then(|| ValueCache {
            keys: values.keys,
            changed: vec![None; stored.len()],
            stored,
            data: values.data,
            written: Vec::new(),
            live: 0,
        })
    }

    /// Whether record `rec` is one of the batch's.
    pub(crate) fn covers(&self, rec: u32) -> bool {
        (rec as usize) < self.keys.len()
    }

    /// The value of record `rec`'s key, as the batch has left it so far.
    pub(crate) fn get(&self, rec: u32) -> Option<&[u8]> {
        let key = self.keys[rec as usize] as usize;
        match &self.changed[key] {
            Some(value) => value.clone().map(|range| &self.written[range]),
            None => self.stored[key].clone().map(|range| &self.data[range]),
        }
    }

    /// Sets (or, with `None`, removes) the value of record `rec`'s key.
    pub(crate) fn set(&mut self, rec: u32, value: Option<&[u8]>) {
        let key = self.keys[rec as usize] as usize;
        if let Some(Some(old)) = &self.changed[key] {
            self.live -= old.len();
        }
        let written = value.map(|value| self.write(value));
        self.changed[key] = Some(written);
    }

    fn write(&mut self, value: &[u8]) -> Range<usize> {
        if self.written.len() > 2 * self.live + SLACK {
            let mut kept = Vec::with_capacity(self.live + value.len());
            for range in self.changed.iter_mut().flatten().flatten() {
                let start = kept.len();
                kept.extend_from_slice(&self.written[range.clone()]);
                *range = start..kept.len();
            }
            self.written = kept;
        }
        let start = self.written.len();
        self.written.extend_from_slice(value);
        self.live += value.len();
        start..self.written.len()
    }

    /// What the batch changed, one change per key, each named by a record with that key.
    pub(crate) fn changes(&self) -> ValueChanges {
        let mut changes = ValueChanges {
            records: Vec::new(),
            lengths: Vec::new(),
            removals: Vec::new(),
            data: Vec::new(),
        };
        for (i, (rec, value)) in changed(&self.keys, &self.changed).enumerate() {
            changes.records.push(rec);
            match value {
                Some(range) => {
                    let value = &self.written[range.clone()];
                    changes.lengths.push(value.len() as u32);
                    changes.data.extend_from_slice(value);
                }
                None => {
                    changes.lengths.push(0);
                    changes.removals.push(i as u32);
                }
            }
        }
        changes
    }
}

/// The lists of one list state's keys in the current batch, and what the batch changed.
pub(crate) struct ListCache {
    /// For each record of the batch: the index of its key.
    keys: Vec<u32>,
    /// For each key: the range of its elements in `ends`.
    stored: Vec<Range<usize>>,
    /// Where each element ends in `data`, all keys' elements one after another.
    ends: Vec<u32>,
    data: Vec<u8>,
    /// For each key: its list as the batch left it, once the batch changed it.
    changed: Vec<Option<Elements>>,
}

/// Byte strings in one buffer (a list's elements, a batch's outputs): fewer allocations
/// than a vector each, and the layout the WIT's flat buffers use.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Elements {
    pub(crate) data: Vec<u8>,
    /// Where each element ends in `data`.
    pub(crate) ends: Vec<u32>,
}

impl Elements {
    /// Room for `count` elements of `bytes` in all.
    pub(crate) fn with_capacity(bytes: usize, count: usize) -> Elements {
        Elements {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    /// Appends an element written by `write` into the buffer it is given.
    pub(crate) fn push_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let written = write(&mut self.data);
        match written {
            Ok(()) => self.ends.push(self.data.len() as u32),
            // Nothing half-written stays.
            Err(_) => self
                .data
                .truncate(self.ends.last().map_or(0, |&end| end as usize)),
        }
        written
    }

    /// Appends `element`.
    pub(crate) fn push(&mut self, element: &[u8]) {
        self.data.extend_from_slice(element);
        self.ends.push(self.data.len() as u32);
    }

    /// Appends every element of `other`.
    fn append(&mut self, other: &Elements) {
        other.iter().for_each(|element| self.push(element));
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The elements, in order.
    pub(crate) fn iter(&self) -> Pieces<'_> {
        pieces(&self.data, &self.ends)
    }

    /// The elements as vectors, as the per-record host calls take them.
    pub(crate) fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }
}

impl ListCache {
    /// The cache of a batch whose lists the host sent; `None` if they do not add up
    /// (a host bug, which fails the batch).
    pub(crate) fn new(lists: BatchLists) -> Option<ListCache> {
        let mut at = 0;
        let stored = lists
            .counts
            .iter()
            .map(|&count| next(&mut at, count))
            .collect::<Vec<_>>();
        let consistent_counts = at == lists.lengths.len();
        let mut at = 0u64;
        let ends = (lists.lengths.iter())
            .map(|&length| {
                at += u64::from(length);
                at as u32
            })
            .collect();
        let consistent = consistent_counts
            && at == lists.data.len() as u64
            && all_below(&lists.keys, stored.len());
        consistent.then(|| ListCache {
            keys: lists.keys,
            changed: vec![None; stored.len()],
            stored,
            ends,
            data: lists.data,
        })
    }

    /// Whether record `rec` is one of the batch's.
    pub(crate) fn covers(&self, rec: u32) -> bool {
        (rec as usize) < self.keys.len()
    }

    /// The elements of record `rec`'s key, as the batch has left them so far.
    pub(crate) fn get(&self, rec: u32) -> Pieces<'_> {
        let key = self.keys[rec as usize] as usize;
        match &self.changed[key] {
            Some(list) => list.iter(),
            None => {
                let range = self.stored[key].clone();
                let start = range.start.checked_sub(1).map_or(0, |i| self.ends[i]);
                pieces_from(&self.data, start, &self.ends[range])
            }
        }
    }

    /// Appends `elements` to record `rec`'s key's list.
    pub(crate) fn add_all(&mut self, rec: u32, elements: &Elements) {
        let key = self.keys[rec as usize] as usize;
        if self.changed[key].is_none() {
            let stored = self.get(rec);
            let bytes: usize = stored.clone().map(<[u8]>::len).sum();
            let mut copy =
                Elements::with_capacity(bytes + elements.data.len(), stored.len() + elements.len());
            stored.for_each(|e| copy.push(e));
            self.changed[key] = Some(copy);
        }
        if let Some(list) = &mut self.changed[key] {
            list.append(elements);
        }
    }

    /// Replaces record `rec`'s key's list (with nothing: removes it).
    pub(crate) fn update(&mut self, rec: u32, elements: Elements) {
        let key = self.keys[rec as usize] as usize;
        self.changed[key] = Some(elements);
    }

    /// What the batch changed, one new list per key, each named by a record with that
    /// key.
    pub(crate) fn changes(&self) -> ListChanges {
        let mut changes = ListChanges {
            records: Vec::new(),
            counts: Vec::new(),
            lengths: Vec::new(),
            data: Vec::new(),
        };
        for (rec, list) in changed(&self.keys, &self.changed) {
            changes.records.push(rec);
            changes.counts.push(list.len() as u32);
            for element in list.iter() {
                changes.lengths.push(element.len() as u32);
                changes.data.extend_from_slice(element);
            }
        }
        changes
    }
}

/// The pieces of `data` that `ends` cut it into, each starting where the one before
/// ended (empty where an end does not fit: never, for buffers this SDK or the host
/// built).
pub(crate) fn pieces<'a>(data: &'a [u8], ends: &'a [u32]) -> Pieces<'a> {
    pieces_from(data, 0, ends)
}

/// The pieces of `data` cut at `ends`, the first starting at `start`.
fn pieces_from<'a>(data: &'a [u8], start: u32, ends: &'a [u32]) -> Pieces<'a> {
    Pieces {
        data,
        start,
        ends: ends.iter(),
    }
}

/// The iterator of [`pieces`]: it knows how many are left.
#[derive(Clone)]
pub(crate) struct Pieces<'a> {
    data: &'a [u8],
    start: u32,
    ends: std::slice::Iter<'a, u32>,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let end = *self.ends.next()?;
        let piece = (self.data.get(self.start as usize..end as usize)).unwrap_or_default();
        self.start = end;
        Some(piece)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Pieces<'_> {}

/// For each of `count` items in order, whether `marks` (indices in increasing order, as
/// the WIT's `untimed` and `absent` are) list it.
pub(crate) fn marked(marks: &[u32], count: usize) -> impl Iterator<Item = bool> + '_ {
    let mut marks = marks.iter().peekable();
    (0..count).map(move |i| marks.next_if(|&&m| m as usize == i).is_some())
}

/// The range of the next `length` items after `at`, which it moves past them.
fn next(at: &mut usize, length: u32) -> Range<usize> {
    let range = *at..*at + length as usize;
    *at = range.end;
    range
}

/// Whether every key index is below `keys`.
fn all_below(indices: &[u32], keys: usize) -> bool {
    indices.iter().all(|&k| (k as usize) < keys)
}

/// The keys a batch changed, once each, with the first record of each and its change.
fn changed<'a, T>(
    keys: &'a [u32],
    changed: &'a [Option<T>],
) -> impl Iterator<Item = (u32, &'a T)> + 'a {
    let mut done = vec![false; changed.len()];
    keys.iter().enumerate().filter_map(move |(rec, &key)| {
        let key = key as usize;
        let change = changed[key].as_ref()?;
        (!std::mem::replace(&mut done[key], true)).then_some((rec as u32, change))
    })
}

/// Whether a state used `accesses` times in a batch of `records` is worth caching in
/// the next batch.
pub(crate) fn worth_caching(accesses: usize, records: usize) -> bool {
    accesses * 4 >= records
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records 0 and 2 share key 0 (value "a"); record 1 has key 1 (no value).
    fn cache() -> ValueCache {
        ValueCache::new(BatchValues {
            keys: vec![0, 1, 0],
            lengths: vec![1, 0],
            absent: vec![1],
            data: b"a".to_vec(),
        })
        .expect("consistent")
    }

    #[test]
    fn records_with_one_key_see_each_others_changes() {
        let mut cache = cache();
        assert_eq!(cache.get(0), Some(&b"a"[..]));
        assert_eq!(cache.get(1), None);
        cache.set(0, Some(b"bb"));
        assert_eq!(cache.get(2), Some(&b"bb"[..]));
        cache.set(2, None);
        assert_eq!(cache.get(0), None);
        assert_eq!(cache.get(1), None);
    }

    #[test]
    fn superseded_values_are_dropped_before_they_outgrow_the_live_ones() {
        // Records 0 and 2 share key 0, record 1 has key 1.
        let mut cache = cache();
        let value = |n: u32| vec![n as u8; 1000 + n as usize];
        for n in 0..1000u32 {
            cache.set(n % 3, Some(&value(n)));
            assert!(cache.get(n % 3) == Some(&value(n)[..]), "set {n}");
        }
        assert!(cache.written.len() <= 2 * cache.live + SLACK + 2000);
        assert!(cache.get(0) == Some(&value(999)[..]) && cache.get(1) == Some(&value(997)[..]));
        assert_eq!(cache.changes().data.len(), 1999 + 1997);
    }

    #[test]
    fn changes_hold_one_final_value_per_changed_key() {
        let mut cache = cache();
        let none = ValueChanges {
            records: Vec::new(),
            lengths: Vec::new(),
            removals: Vec::new(),
            data: Vec::new(),
        };
        assert_eq!(cache.changes(), none);
        cache.set(2, Some(b"x"));
        cache.set(0, Some(b"yz"));
        cache.set(1, None);
        assert_eq!(
            cache.changes(),
            ValueChanges {
                records: vec![0, 1],
                lengths: vec![2, 0],
                removals: vec![1],
                data: b"yz".to_vec(),
            }
        );
    }

    #[test]
    fn values_that_do_not_add_up_are_refused() {
        let short = BatchValues {
            keys: vec![0],
            lengths: vec![3],
            absent: Vec::new(),
            data: b"ab".to_vec(),
        };
        assert!(ValueCache::new(short).is_none());
        let unknown_key = BatchValues {
            keys: vec![1],
            lengths: vec![0],
            absent: vec![0],
            data: Vec::new(),
        };
        assert!(ValueCache::new(unknown_key).is_none());
        for absent in [vec![2], vec![1, 0], vec![0, 0]] {
            let bad_marks = BatchValues {
                keys: vec![0, 1],
                lengths: vec![0, 0],
                absent,
                data: Vec::new(),
            };
            assert!(ValueCache::new(bad_marks).is_none());
        }
    }

    /// Records 0 and 2 share key 0 (list ["a", ""]); record 1 has key 1 (no list).
    fn lists() -> ListCache {
        ListCache::new(BatchLists {
            keys: vec![0, 1, 0],
            counts: vec![2, 0],
            lengths: vec![1, 0],
            data: b"a".to_vec(),
        })
        .expect("consistent")
    }

    fn elements(all: &[&[u8]]) -> Elements {
        let mut elements = Elements::default();
        all.iter().for_each(|e| elements.push(e));
        elements
    }

    #[test]
    fn elements_keep_their_order_and_nothing_half_written() {
        let mut list = elements(&[b"a", b"", b"bc"]);
        let failed = list.push_with(|data| {
            data.extend_from_slice(b"half");
            Err("cannot encode")
        });
        assert_eq!(failed, Err("cannot encode"));
        assert_eq!(list.len(), 3);
        assert_eq!(list.to_vecs(), [b"a".to_vec(), Vec::new(), b"bc".to_vec()]);
    }

    fn got(cache: &ListCache, rec: u32) -> Vec<&[u8]> {
        cache.get(rec).collect()
    }

    #[test]
    fn records_with_one_key_see_each_others_list_changes() {
        let mut cache = lists();
        assert_eq!(got(&cache, 0), [&b"a"[..], b""]);
        assert_eq!(cache.get(1).len(), 0);
        cache.add_all(0, &elements(&[b"b"]));
        assert_eq!(got(&cache, 2), [&b"a"[..], b"", b"b"]);
        cache.update(2, elements(&[b"c"]));
        cache.add_all(1, &elements(&[b"x", b"yz"]));
        assert_eq!(got(&cache, 0), [b"c"]);
        assert_eq!(
            cache.changes(),
            ListChanges {
                records: vec![0, 1],
                counts: vec![1, 2],
                lengths: vec![1, 1, 2],
                data: b"cxyz".to_vec(),
            }
        );
        cache.update(0, Elements::default());
        assert_eq!(cache.changes().counts, [0, 2], "an emptied list is removed");
    }

    #[test]
    fn each_key_gets_its_own_stored_elements() {
        let cache = ListCache::new(BatchLists {
            keys: vec![1, 0],
            counts: vec![2, 1],
            lengths: vec![1, 2, 3],
            data: b"abcdef".to_vec(),
        })
        .expect("consistent");
        assert_eq!(got(&cache, 0), [b"def"]);
        assert_eq!(got(&cache, 1), [&b"a"[..], b"bc"]);
    }

    #[test]
    fn lists_that_do_not_add_up_are_refused() {
        let too_few_lengths = BatchLists {
            keys: vec![0],
            counts: vec![2],
            lengths: vec![1],
            data: b"a".to_vec(),
        };
        assert!(ListCache::new(too_few_lengths).is_none());
        let short_data = BatchLists {
            keys: vec![0],
            counts: vec![1],
            lengths: vec![2],
            data: b"a".to_vec(),
        };
        assert!(ListCache::new(short_data).is_none());
        let unknown_key = BatchLists {
            keys: vec![1],
            counts: vec![0],
            lengths: Vec::new(),
            data: Vec::new(),
        };
        assert!(ListCache::new(unknown_key).is_none());
    }

    #[test]
    fn sparse_use_is_not_cached() {
        assert!(worth_caching(2 * 512, 512));
        assert!(worth_caching(128, 512));
        assert!(!worth_caching(3, 512));
    }
}
