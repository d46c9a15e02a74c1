//! Key groups: the unit in which keyed state is stored, snapshotted and redistributed.
//!
//! Invariant: `key_group(key, max)` depends only on the key bytes and the maximum
//! parallelism, never on the process, the platform or the Rust version, because
//! checkpoints and savepoints store state by key group.

use std::fmt;

/// A key group: `hash(key) % max_parallelism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyGroup(pub u16);

impl fmt::Display for KeyGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The largest maximum parallelism a job may declare.
pub const MAX_PARALLELISM_LIMIT: u16 = 32_768;

impl KeyGroup {
    /// The key group of `key` for a job whose maximum parallelism is `max_parallelism`
    /// (at least 1).
    pub fn of(key: &[u8], max_parallelism: u16) -> KeyGroup {
        debug_assert!(max_parallelism > 0);
        KeyGroup((stable_hash(key) % u64::from(max_parallelism.max(1))) as u16)
    }
}

/// FNV-1a over the bytes, then the MurmurHash3 finaliser so that keys differing in their
/// last bytes spread over all groups. Fixed forever: stored state depends on it.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A contiguous, non-empty range of key groups `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    start: u16,
    end: u16,
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

impl KeyGroupRange {
    /// Every key group of a job.
    pub fn all(max_parallelism: u16) -> KeyGroupRange {
        KeyGroupRange {
            start: 0,
            end: max_parallelism,
        }
    }

    /// The key groups that subtask `index` of `parallelism` owns: ranges are contiguous,
    /// cover `[0, max_parallelism)` and differ in size by at most one.
    pub fn for_subtask(max_parallelism: u16, parallelism: u16, index: u16) -> KeyGroupRange {
        debug_assert!(0 < parallelism && parallelism <= max_parallelism && index < parallelism);
        let bound =
            |i: u16| (u32::from(i) * u32::from(max_parallelism) / u32::from(parallelism)) as u16;
        KeyGroupRange {
            start: bound(index),
            end: bound(index + 1),
        }
    }

    /// The subtask of `parallelism` whose range holds `group`: the inverse of
    /// [`KeyGroupRange::for_subtask`].
    pub fn subtask_of(group: KeyGroup, max_parallelism: u16, parallelism: u16) -> u16 {
        ((u32::from(group.0 + 1) * u32::from(parallelism) - 1) / u32::from(max_parallelism)) as u16
    }

    /// Whether `group` is in the range.
    pub fn contains(&self, group: KeyGroup) -> bool {
        (self.start..self.end).contains(&group.0)
    }

    /// Position of `group` inside the range, if it is in it.
    pub fn offset(&self, group: KeyGroup) -> Option<usize> {
        self.contains(group)
            .then(|| usize::from(group.0 - self.start))
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start)
    }

    /// Whether the range is empty (never, for ranges made by this module).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The key groups in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup> + use<> {
        (self.start..self.end).map(KeyGroup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_stable_across_releases() {
        // Golden values: if these change, every stored checkpoint becomes unreadable.
        assert_eq!(
            KeyGroup::of(b"", 128),
            KeyGroup(stable_hash(b"") as u16 % 128)
        );
        let golden: Vec<u16> = [&b"/index.html"[..], b"/about", b"user-1", b"user-2"]
            .iter()
            .map(|k| KeyGroup::of(k, 128).0)
            .collect();
        assert_eq!(golden, [82, 92, 69, 59]);
    }

    #[test]
    fn keys_spread_evenly_over_groups() {
        let mut counts = [0u32; 128];
        for i in 0..128_000 {
            counts[usize::from(KeyGroup::of(format!("key-{i}").as_bytes(), 128).0)] += 1;
        }
        let (min, max) = (
            counts.iter().min().unwrap_or(&0),
            counts.iter().max().unwrap_or(&0),
        );
        assert!(
            *min > 850 && *max < 1150,
            "uneven spread: min {min}, max {max}"
        );
    }

    #[test]
    fn subtask_ranges_partition_all_key_groups() {
        for max in [1u16, 2, 7, 128, 1000] {
            for parallelism in 1..=max.min(40) {
                let mut next = 0;
                for index in 0..parallelism {
                    let range = KeyGroupRange::for_subtask(max, parallelism, index);
                    assert_eq!(range.start, next, "max {max} p {parallelism} i {index}");
                    assert!(!range.is_empty());
                    let ideal = usize::from(max / parallelism);
                    assert!(range.len() == ideal || range.len() == ideal + 1);
                    next = range.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn every_key_group_routes_to_the_subtask_whose_range_holds_it() {
        for max in [1u16, 2, 7, 128, 1000] {
            for parallelism in 1..=max.min(40) {
                for index in 0..parallelism {
                    for group in KeyGroupRange::for_subtask(max, parallelism, index).iter() {
                        assert_eq!(KeyGroupRange::subtask_of(group, max, parallelism), index);
                    }
                }
            }
        }
    }

    #[test]
    fn offsets_are_positions_inside_the_range() {
        let range = KeyGroupRange::for_subtask(128, 4, 1);
        assert_eq!(range.offset(KeyGroup(32)), Some(0));
        assert_eq!(range.offset(KeyGroup(63)), Some(31));
        assert_eq!(range.offset(KeyGroup(64)), None);
        assert_eq!(range.iter().count(), range.len());
    }
}
