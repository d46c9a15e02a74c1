//! The canonical snapshot of one operator subtask's keyed state, and its file codec.
//!
//! Canonical: per key group, the entries of each state, states named (never numbered)
//! and their kind recorded, entries sorted by state and key — so a snapshot does not
//! depend on the backend that took it or on registration order.
//!
//! File layout (little-endian): `WEIRSNAP`, format version (u16), the states (count,
//! then name, kind and TTL each), the key groups (count, then group, entry count and
//! entries, timer count and timers each), and a CRC-32C of everything before it.
//! Versions 1 (no timers) and 2 (no TTL) are still read. Entries of a TTL state keep
//! their stamps (`state::ttl`); those expired when the snapshot was taken are left out. Decoding checks the magic, the version,
//! the checksum and every length, so a torn or corrupted file is refused, never read.

use super::ttl::{Now, Ttl, TtlUpdate};
use super::{KeyGroup, StateKind, TimeDomain};

pub(crate) const MAGIC: &[u8; 8] = b"WEIRSNAP";
/// The format version this host writes.
pub const FORMAT_VERSION: u16 = 3;
/// The oldest format version this host reads (version 1: no timers).
pub const OLDEST_READ: u16 = 1;

/// A registered state, as snapshots name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    /// The state's name (its identity).
    pub name: String,
    /// Its kind.
    pub kind: StateKind,
    /// Its time-to-live, if it has one.
    pub ttl: Option<Ttl>,
}

/// One key's slot in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index into [`Snapshot::states`].
    pub state: u32,
    /// The record key.
    pub key: Vec<u8>,
    /// The slot's contents.
    pub data: SlotData,
}

/// A slot's contents, by layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotData {
    /// One value.
    Value(Vec<u8>),
    /// Elements in insertion order.
    List(Vec<Vec<u8>>),
    /// Entries sorted by user key.
    Map(Vec<(Vec<u8>, Vec<u8>)>),
}

/// A pending timer of one key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// Which clock it follows.
    pub domain: TimeDomain,
    /// When it fires, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The record key it is for.
    pub key: Vec<u8>,
}

/// The entries and timers of one key group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupEntries {
    /// The key group.
    pub group: KeyGroup,
    /// Its entries, sorted by state, then key.
    pub entries: Vec<Entry>,
    /// Its pending timers, sorted by domain, timestamp, then key.
    pub timers: Vec<Timer>,
}

/// One subtask's keyed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The states, indexed by [`Entry::state`].
    pub states: Vec<StateInfo>,
    /// The non-empty key groups, in order.
    pub groups: Vec<GroupEntries>,
    /// The moment the state was copied: entries of TTL states expired then are left
    /// out when it is encoded ([`Now::NEVER`] for a decoded file, which has none).
    pub taken_at: Now,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            states: Vec::new(),
            groups: Vec::new(),
            taken_at: Now::NEVER,
        }
    }
}

/// Why a snapshot file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot file.
    #[error("not a Weir state snapshot (bad magic bytes)")]
    Magic,
    /// Written by another format version.
    #[error(
        "snapshot format version {0} is not supported (this host reads versions {OLDEST_READ} to {FORMAT_VERSION})"
    )]
    Version(u16),
    /// The checksum does not match: the file is damaged.
    #[error(
        "checksum mismatch: the file is damaged (stored {stored:08x}, computed {computed:08x})"
    )]
    Checksum {
        /// The checksum in the file.
        stored: u32,
        /// The checksum of its contents.
        computed: u32,
    },
    /// The file ends early or a length is out of bounds.
    #[error("the file is truncated or malformed: {0}")]
    Malformed(&'static str),
}

impl Snapshot {
    /// Encodes the snapshot as a file.
    pub fn encode(&self) -> Vec<u8> {
        let mut encoder = Encoder::new(&self.states, self.taken_at);
        for group in &self.groups {
            encoder.group(group.group);
            for Entry { state, key, data } in &group.entries {
                match data {
                    SlotData::Value(v) => encoder.value(*state, key, v),
                    SlotData::List(elements) => encoder.list(*state, key, elements),
                    SlotData::Map(entries) => encoder.map(
                        *state,
                        key,
                        entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                    ),
                }
            }
            for timer in &group.timers {
                encoder.timer(timer.domain, timer.timestamp, &timer.key);
            }
        }
        encoder.finish()
    }

    /// Leaves out the entries of TTL states expired at `taken_at` (what encoding does),
    /// and the key groups left empty.
    pub fn drop_expired(&mut self) {
        let (ttls, at): (Vec<Option<Ttl>>, Now) =
            (self.states.iter().map(|s| s.ttl).collect(), self.taken_at);
        if ttls.iter().all(Option::is_none) {
            return;
        }
        let expired = |state: u32, stored: &[u8]| {
            let ttl = ttls.get(state as usize).copied().flatten();
            ttl.is_some_and(|ttl| ttl.expired(stored, &at))
        };
        for group in &mut self.groups {
            group.entries.retain_mut(|entry| match &mut entry.data {
                _ if ttls.get(entry.state as usize).copied().flatten().is_none() => true,
                SlotData::Value(v) => !expired(entry.state, v),
                SlotData::List(l) => {
                    l.retain(|e| !expired(entry.state, e));
                    !l.is_empty()
                }
                SlotData::Map(m) => {
                    m.retain(|(_, v)| !expired(entry.state, v));
                    !m.is_empty()
                }
            });
        }
        self.groups
            .retain(|g| !g.entries.is_empty() || !g.timers.is_empty());
    }

    /// Decodes a snapshot file, checking its magic, version, checksum and lengths.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if bytes.len() < MAGIC.len() + 2 + 4 {
            return Err(SnapshotError::Malformed(
                "shorter than a header and a checksum",
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let mut r = Reader { bytes: &body[8..] };
        let version = r.u16()?;
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::Version(version));
        }
        let mut snapshot = Snapshot::default();
        for _ in 0..r.count()? {
            let name = String::from_utf8(r.bytes()?.to_vec())
                .map_err(|_| SnapshotError::Malformed("state name is not UTF-8"))?;
            let kind = kind_from_code(r.u8()?)?;
            let ttl = match version >= 3 && r.u8()? == 1 {
                false => None,
                true => Some(Ttl {
                    ttl_ms: u64::try_from(r.i64()?)
                        .map_err(|_| SnapshotError::Malformed("a negative TTL"))?,
                    domain: domain_from_code(r.u8()?)?,
                    update: match r.u8()? {
                        0 => TtlUpdate::OnCreateAndWrite,
                        1 => TtlUpdate::OnReadAndWrite,
                        _ => return Err(SnapshotError::Malformed("unknown TTL update policy")),
                    },
                }),
            };
            snapshot.states.push(StateInfo { name, kind, ttl });
        }
        for _ in 0..r.count()? {
            let group = KeyGroup(r.u16()?);
            let mut entries = Vec::new();
            for _ in 0..r.count()? {
                let state = r.u32()?;
                if state as usize >= snapshot.states.len() {
                    return Err(SnapshotError::Malformed("entry of an unknown state"));
                }
                let key = r.bytes()?.to_vec();
                let data = match r.u8()? {
                    0 => SlotData::Value(r.bytes()?.to_vec()),
                    1 => SlotData::List(
                        (0..r.count()?)
                            .map(|_| Ok(r.bytes()?.to_vec()))
                            .collect::<Result<_, _>>()?,
                    ),
                    2 => SlotData::Map(
                        (0..r.count()?)
                            .map(|_| Ok((r.bytes()?.to_vec(), r.bytes()?.to_vec())))
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => return Err(SnapshotError::Malformed("unknown slot layout")),
                };
                entries.push(Entry { state, key, data });
            }
            let mut timers = Vec::new();
            if version >= 2 {
                for _ in 0..r.count()? {
                    let domain = domain_from_code(r.u8()?)?;
                    let timestamp = r.i64()?;
                    let key = r.bytes()?.to_vec();
                    timers.push(Timer {
                        domain,
                        timestamp,
                        key,
                    });
                }
            }
            snapshot.groups.push(GroupEntries {
                group,
                entries,
                timers,
            });
        }
        if !r.bytes.is_empty() {
            return Err(SnapshotError::Malformed(
                "trailing bytes after the last key group",
            ));
        }
        Ok(snapshot)
    }
}

/// Writes a snapshot file entry by entry, so that a backend can encode its state without
/// building a [`Snapshot`] (a copy of every key and value) first. The caller gives key
/// groups in order, each group's entries sorted by state, then key, then its timers
/// sorted by domain, timestamp, then key. Entries of TTL states expired at the
/// encoder's moment are left out.
pub struct Encoder {
    out: Vec<u8>,
    /// Each state's TTL, by index, and the moment entries are judged at.
    ttls: Vec<Option<Ttl>>,
    at: Now,
    /// Where the key group count is, and the count so far.
    groups_at: usize,
    groups: u32,
    /// Where the open group's entry count is, and the count so far.
    entries_at: usize,
    entries: u32,
    /// Where the open group's timer count is, once its first timer came, and the count.
    timers_at: Option<usize>,
    timers: u32,
}

impl Encoder {
    /// Starts a file with `states` (indexed by the entries' `state`) as they were at
    /// `at`.
    pub fn new(states: &[StateInfo], at: Now) -> Encoder {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_u32(&mut out, states.len() as u32);
        for state in states {
            put_bytes(&mut out, state.name.as_bytes());
            out.push(kind_code(state.kind));
            match state.ttl {
                None => out.push(0),
                Some(ttl) => {
                    out.push(1);
                    let ms = i64::try_from(ttl.ttl_ms).unwrap_or(i64::MAX);
                    out.extend_from_slice(&ms.to_le_bytes());
                    out.push(domain_code(ttl.domain));
                    out.push(match ttl.update {
                        TtlUpdate::OnCreateAndWrite => 0,
                        TtlUpdate::OnReadAndWrite => 1,
                    });
                }
            }
        }
        let groups_at = out.len();
        put_u32(&mut out, 0);
        Encoder {
            out,
            ttls: states.iter().map(|s| s.ttl).collect(),
            at,
            groups_at,
            groups: 0,
            entries_at: 0,
            entries: 0,
            timers_at: None,
            timers: 0,
        }
    }

    /// Starts key group `group`, after the previous one.
    pub fn group(&mut self, group: KeyGroup) {
        self.end_group();
        self.out.extend_from_slice(&group.0.to_le_bytes());
        self.entries_at = self.out.len();
        put_u32(&mut self.out, 0);
        self.groups += 1;
    }

    fn end_group(&mut self) {
        if self.groups > 0 {
            let at = self.entries_at;
            self.out[at..at + 4].copy_from_slice(&self.entries.to_le_bytes());
            self.entries = 0;
            match self.timers_at.take() {
                Some(at) => self.out[at..at + 4].copy_from_slice(&self.timers.to_le_bytes()),
                None => put_u32(&mut self.out, 0),
            }
            self.timers = 0;
        }
    }

    fn entry(&mut self, state: u32, key: &[u8], layout: u8) {
        assert!(self.groups > 0, "an entry before its key group");
        assert!(self.timers_at.is_none(), "an entry after a timer");
        self.entries += 1;
        put_u32(&mut self.out, state);
        put_bytes(&mut self.out, key);
        self.out.push(layout);
    }

    /// Whether an entry of `state` stored as `stored` had expired at the encoder's
    /// moment.
    fn expired(&self, state: u32, stored: &[u8]) -> bool {
        let ttl = self.ttls.get(state as usize).copied().flatten();
        ttl.is_some_and(|ttl| ttl.expired(stored, &self.at))
    }

    /// A value-layout entry of the current key group.
    pub fn value(&mut self, state: u32, key: &[u8], value: &[u8]) {
        if self.expired(state, value) {
            return;
        }
        self.entry(state, key, 0);
        put_bytes(&mut self.out, value);
    }

    /// A list-layout entry of the current key group.
    pub fn list(&mut self, state: u32, key: &[u8], elements: &[Vec<u8>]) {
        let live = || elements.iter().filter(|e| !self.expired(state, e));
        let count = live().count();
        if count == 0 && !elements.is_empty() {
            return;
        }
        let live: Vec<&Vec<u8>> = live().collect();
        self.entry(state, key, 1);
        put_u32(&mut self.out, count as u32);
        for element in live {
            put_bytes(&mut self.out, element);
        }
    }

    /// A map-layout entry of the current key group, its entries sorted by user key.
    pub fn map<'a>(
        &mut self,
        state: u32,
        key: &[u8],
        entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        let any = entries.len() > 0;
        let live: Vec<_> = entries.filter(|(_, v)| !self.expired(state, v)).collect();
        if live.is_empty() && any {
            return;
        }
        self.entry(state, key, 2);
        put_u32(&mut self.out, live.len() as u32);
        for (k, v) in live {
            put_bytes(&mut self.out, k);
            put_bytes(&mut self.out, v);
        }
    }

    /// A pending timer of the current key group, after its entries.
    pub fn timer(&mut self, domain: TimeDomain, timestamp: i64, key: &[u8]) {
        assert!(self.groups > 0, "a timer before its key group");
        if self.timers_at.is_none() {
            self.timers_at = Some(self.out.len());
            put_u32(&mut self.out, 0);
        }
        self.timers += 1;
        self.out.push(domain_code(domain));
        self.out.extend_from_slice(&timestamp.to_le_bytes());
        put_bytes(&mut self.out, key);
    }

    /// The file: counts filled in, checksum appended.
    pub fn finish(mut self) -> Vec<u8> {
        self.end_group();
        let at = self.groups_at;
        self.out[at..at + 4].copy_from_slice(&self.groups.to_le_bytes());
        let crc = crc32c::crc32c(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
    }
}

fn domain_code(domain: TimeDomain) -> u8 {
    match domain {
        TimeDomain::Event => 0,
        TimeDomain::Processing => 1,
    }
}

fn domain_from_code(code: u8) -> Result<TimeDomain, SnapshotError> {
    match code {
        0 => Ok(TimeDomain::Event),
        1 => Ok(TimeDomain::Processing),
        _ => Err(SnapshotError::Malformed("unknown time domain")),
    }
}

fn kind_code(kind: StateKind) -> u8 {
    match kind {
        StateKind::Value => 0,
        StateKind::List => 1,
        StateKind::Map => 2,
        StateKind::Reducing => 3,
        StateKind::Aggregating => 4,
    }
}

fn kind_from_code(code: u8) -> Result<StateKind, SnapshotError> {
    Ok(match code {
        0 => StateKind::Value,
        1 => StateKind::List,
        2 => StateKind::Map,
        3 => StateKind::Reducing,
        4 => StateKind::Aggregating,
        _ => return Err(SnapshotError::Malformed("unknown state kind")),
    })
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::Malformed(
                "a length runs past the end of the file",
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A count of items that each take at least one byte: bounded by what is left, so a
    /// corrupted count cannot make the decoder allocate or loop without end.
    fn count(&mut self) -> Result<usize, SnapshotError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() {
            return Err(SnapshotError::Malformed("a count exceeds the bytes left"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            states: vec![
                StateInfo {
                    name: "visits".into(),
                    kind: StateKind::Value,
                    ttl: None,
                },
                StateInfo {
                    name: "seen".into(),
                    kind: StateKind::Map,
                    ttl: None,
                },
                StateInfo {
                    name: "last".into(),
                    kind: StateKind::List,
                    ttl: None,
                },
            ],
            groups: vec![
                GroupEntries {
                    group: KeyGroup(3),
                    entries: vec![
                        Entry {
                            state: 0,
                            key: b"/a".to_vec(),
                            data: SlotData::Value(b"2".to_vec()),
                        },
                        Entry {
                            state: 0,
                            key: b"".to_vec(),
                            data: SlotData::Value(Vec::new()),
                        },
                    ],
                    timers: vec![
                        Timer {
                            domain: TimeDomain::Event,
                            timestamp: -5,
                            key: b"/a".to_vec(),
                        },
                        Timer {
                            domain: TimeDomain::Processing,
                            timestamp: 1_700_000_000_000,
                            key: Vec::new(),
                        },
                    ],
                },
                GroupEntries {
                    group: KeyGroup(127),
                    entries: vec![
                        Entry {
                            state: 1,
                            key: b"u".to_vec(),
                            data: SlotData::Map(vec![(b"k".to_vec(), vec![0; 100_000])]),
                        },
                        Entry {
                            state: 2,
                            key: b"u".to_vec(),
                            data: SlotData::List(vec![b"x".to_vec(), Vec::new()]),
                        },
                    ],
                    timers: Vec::new(),
                },
            ],
            taken_at: Now::NEVER,
        }
    }

    #[test]
    fn round_trips() {
        let snapshot = sample();
        assert_eq!(Snapshot::decode(&snapshot.encode()).unwrap(), snapshot);
        assert_eq!(
            Snapshot::decode(&Snapshot::default().encode()).unwrap(),
            Snapshot::default()
        );
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_detected() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Snapshot::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        // Flip one bit in every byte of a small snapshot (the large value is skipped).
        let small = Snapshot {
            groups: sample().groups[..1].to_vec(),
            ..sample()
        }
        .encode();
        for i in 0..small.len() {
            let mut damaged = small.clone();
            damaged[i] ^= 0x10;
            assert!(Snapshot::decode(&damaged).is_err(), "bit flip at byte {i}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let mut bytes = sample().encode();
        assert_eq!(
            Snapshot::decode(b"NOTASNAPSHOTxxxx"),
            Err(SnapshotError::Magic)
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            Snapshot::decode(&bytes),
            Err(SnapshotError::Checksum { .. })
        ));
        // A future version with a valid checksum.
        let mut future = Snapshot::default().encode();
        future[8] = 9;
        let body = future.len() - 4;
        let crc = crc32c::crc32c(&future[..body]).to_le_bytes();
        future[body..].copy_from_slice(&crc);
        assert_eq!(Snapshot::decode(&future), Err(SnapshotError::Version(9)));
    }

    #[test]
    fn a_version_1_file_is_read_as_having_no_timers() {
        // Version 1's layout: this snapshot's, without the timer counts.
        let mut snapshot = sample();
        for group in &mut snapshot.groups {
            group.timers.clear();
        }
        let mut v1 = Vec::from(&MAGIC[..]);
        v1.extend_from_slice(&1u16.to_le_bytes());
        put_u32(&mut v1, snapshot.states.len() as u32);
        for state in &snapshot.states {
            put_bytes(&mut v1, state.name.as_bytes());
            v1.push(kind_code(state.kind));
        }
        put_u32(&mut v1, snapshot.groups.len() as u32);
        for group in &snapshot.groups {
            v1.extend_from_slice(&group.group.0.to_le_bytes());
            put_u32(&mut v1, group.entries.len() as u32);
            for entry in &group.entries {
                put_u32(&mut v1, entry.state);
                put_bytes(&mut v1, &entry.key);
                match &entry.data {
                    SlotData::Value(v) => {
                        v1.push(0);
                        put_bytes(&mut v1, v);
                    }
                    SlotData::List(elements) => {
                        v1.push(1);
                        put_u32(&mut v1, elements.len() as u32);
                        elements.iter().for_each(|e| put_bytes(&mut v1, e));
                    }
                    SlotData::Map(entries) => {
                        v1.push(2);
                        put_u32(&mut v1, entries.len() as u32);
                        for (k, v) in entries {
                            put_bytes(&mut v1, k);
                            put_bytes(&mut v1, v);
                        }
                    }
                }
            }
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(Snapshot::decode(&v1).unwrap(), snapshot);
    }
}
