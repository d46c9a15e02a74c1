//! Value state read and written once per batch instead of twice per record.
//!
//! A host call costs far more than the work of a keyed count, so value-like state (value,
//! reducing, aggregating) is read for the whole batch in one call, served from here while
//! the batch runs, and its changes are written back in one call at the end. The host
//! observes state only between batches (checkpoint barriers fall between them), so it
//! sees exactly what per-record calls would have left.
//!
//! A state that the last batch used for fewer than a quarter of its records is not
//! cached in the next one: reading every key of a batch to serve a few would cost more
//! than it saves (RocksDB reads are not free).

/// The values of one state's keys in the current batch, and what the batch changed.
pub(crate) struct BatchCache {
    /// For each record of the batch: the index of its key.
    keys: Vec<u32>,
    /// For each key: where its value lies in `data`, if it has one.
    stored: Vec<Option<(usize, usize)>>,
    data: Vec<u8>,
    /// For each key: its value as the batch left it, once the batch changed it.
    changed: Vec<Option<Option<Vec<u8>>>>,
}

/// A batch's values as the host sends them: see `value-get-batch` in the WIT.
pub(crate) struct BatchValues {
    pub(crate) keys: Vec<u32>,
    pub(crate) lengths: Vec<Option<u32>>,
    pub(crate) data: Vec<u8>,
}

/// Changes as the host takes them: see `value-set-many` in the WIT.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ValueChanges {
    pub(crate) records: Vec<u32>,
    pub(crate) lengths: Vec<Option<u32>>,
    pub(crate) data: Vec<u8>,
}

impl BatchCache {
    /// The cache of a batch whose values the host sent; `None` if they do not add up
    /// (a host bug, which fails the batch).
    pub(crate) fn new(values: BatchValues) -> Option<BatchCache> {
        let mut at = 0;
        let stored = values
            .lengths
            .iter()
            .map(|length| {
                length.map(|length| {
                    let range = (at, at + length as usize);
                    at = range.1;
                    range
                })
            })
            .collect::<Vec<_>>();
        let consistent =
            at == values.data.len() && values.keys.iter().all(|&k| (k as usize) < stored.len());
        consistent.then(|| BatchCache {
            keys: values.keys,
            changed: vec![None; stored.len()],
            stored,
            data: values.data,
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
            Some(value) => value.as_deref(),
            None => self.stored[key].map(|(start, end)| &self.data[start..end]),
        }
    }

    /// Sets (or, with `None`, removes) the value of record `rec`'s key.
    pub(crate) fn set(&mut self, rec: u32, value: Option<Vec<u8>>) {
        let key = self.keys[rec as usize] as usize;
        self.changed[key] = Some(value);
    }

    /// What the batch changed, one change per key, each named by a record with that key.
    pub(crate) fn changes(&self) -> ValueChanges {
        let mut changes = ValueChanges::default();
        let mut done = vec![false; self.changed.len()];
        for (rec, &key) in self.keys.iter().enumerate() {
            let key = key as usize;
            let Some(value) = &self.changed[key] else {
                continue;
            };
            if std::mem::replace(&mut done[key], true) {
                continue;
            }
            changes.records.push(rec as u32);
            changes.lengths.push(value.as_ref().map(|v| v.len() as u32));
            changes
                .data
                .extend_from_slice(value.as_deref().unwrap_or_default());
        }
        changes
    }
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
    fn cache() -> BatchCache {
        BatchCache::new(BatchValues {
            keys: vec![0, 1, 0],
            lengths: vec![Some(1), None],
            data: b"a".to_vec(),
        })
        .expect("consistent")
    }

    #[test]
    fn records_with_one_key_see_each_others_changes() {
        let mut cache = cache();
        assert_eq!(cache.get(0), Some(&b"a"[..]));
        assert_eq!(cache.get(1), None);
        cache.set(0, Some(b"bb".to_vec()));
        assert_eq!(cache.get(2), Some(&b"bb"[..]));
        cache.set(2, None);
        assert_eq!(cache.get(0), None);
        assert_eq!(cache.get(1), None);
    }

    #[test]
    fn changes_hold_one_final_value_per_changed_key() {
        let mut cache = cache();
        assert_eq!(cache.changes(), ValueChanges::default());
        cache.set(2, Some(b"x".to_vec()));
        cache.set(0, Some(b"yz".to_vec()));
        cache.set(1, None);
        assert_eq!(
            cache.changes(),
            ValueChanges {
                records: vec![0, 1],
                lengths: vec![Some(2), None],
                data: b"yz".to_vec(),
            }
        );
    }

    #[test]
    fn values_that_do_not_add_up_are_refused() {
        let short = BatchValues {
            keys: vec![0],
            lengths: vec![Some(3)],
            data: b"ab".to_vec(),
        };
        assert!(BatchCache::new(short).is_none());
        let unknown_key = BatchValues {
            keys: vec![1],
            lengths: vec![None],
            data: Vec::new(),
        };
        assert!(BatchCache::new(unknown_key).is_none());
    }

    #[test]
    fn sparse_use_is_not_cached() {
        assert!(worth_caching(2 * 512, 512));
        assert!(worth_caching(128, 512));
        assert!(!worth_caching(3, 512));
    }
}
