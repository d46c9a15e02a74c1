//! Channel state (seed 003, "Unaligned Checkpointing"): the records that were in flight
//! into a task across an unaligned barrier, per input channel and in order, and where
//! each goes when the checkpoint is restored at another parallelism.
//!
//! File format (`<task>.channels`): magic `weir-chs`, a version byte, a `u32` channel
//! count; per channel its input index, its producer subtask and its record count
//! (`u32`s), then per record: key (`u32` length, bytes), key group (`u16`), payload
//! (`u32` length, bytes), timestamp (flag byte, `i64`), origin (flag byte, label as
//! length and bytes, `u64` number); last the CRC-32C of everything before it. Integers
//! are little-endian.
//!
//! Invariants: a record keeps its key and key group, so a keyed channel's records are
//! routed to the subtask that owns their key group now; per channel the order is kept.

use crate::record::{KeyedRecord, Origin};
use crate::state::{KeyGroup, KeyGroupRange};
use crate::wire::{Reader, Truncated, put_bytes, put_u32};

const MAGIC: &[u8; 8] = b"weir-chs";
const VERSION: u8 = 1;

/// The records in flight into one channel of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The input (index in the task's `input` list) the channel carries.
    pub input: u32,
    /// The upstream subtask that sent them.
    pub producer: u32,
    /// The records, in the order they were sent.
    pub records: Vec<KeyedRecord>,
}

/// One task's channel state in one checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// Per channel with records in flight.
    pub channels: Vec<InFlight>,
}

/// Why a channel-state file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelStateError {
    /// Not a channel-state file, or another version.
    #[error("not a channel-state file (no `weir-chs` version {VERSION} header)")]
    Header,
    /// The checksum does not match.
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    /// The checksum matched but the contents do not parse.
    #[error("malformed channel state: {0}")]
    Malformed(&'static str),
}

/// How a consumer's input is routed, which decides where its in-flight records go when
/// the consumer's parallelism changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// By key group: each record goes to the subtask that owns its key group.
    Keyed,
    /// To every subtask: each new subtask gets old subtask 0's records, matching the
    /// broadcast state it restores (a copy of old subtask 0's).
    Broadcast,
    /// Unkeyed (forward or round-robin): any subtask may take a record, so old subtask
    /// *j*'s channels go whole, in order, to new subtask *j* mod the new parallelism.
    Unkeyed,
}

impl ChannelState {
    /// Records in flight, over all channels.
    pub fn records(&self) -> usize {
        self.channels.iter().map(|c| c.records.len()).sum()
    }

    /// The file's contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        put_u32(&mut out, self.channels.len());
        for channel in &self.channels {
            out.extend_from_slice(&channel.input.to_le_bytes());
            out.extend_from_slice(&channel.producer.to_le_bytes());
            put_u32(&mut out, channel.records.len());
            for record in &channel.records {
                put_bytes(&mut out, &record.key);
                out.extend_from_slice(&record.key_group.0.to_le_bytes());
                put_bytes(&mut out, &record.payload);
                match record.timestamp {
                    Some(t) => {
                        out.push(1);
                        out.extend_from_slice(&t.to_le_bytes());
                    }
                    None => out.push(0),
                }
                match record.origin {
                    Some(origin) => {
                        out.push(1);
                        put_bytes(&mut out, origin.at.as_bytes());
                        out.extend_from_slice(&origin.number.to_le_bytes());
                    }
                    None => out.push(0),
                }
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a channel-state file, checking header and checksum.
    pub fn decode(bytes: &[u8]) -> Result<ChannelState, ChannelStateError> {
        let header = MAGIC.len() + 1;
        if bytes.len() < header + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(ChannelStateError::Header);
        }
        if bytes[MAGIC.len()] != VERSION {
            return Err(ChannelStateError::Header);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(ChannelStateError::Checksum);
        }
        let mut reader = Reader::new(&body[header..]);
        let mut channels = Vec::new();
        for _ in 0..reader.u32()? {
            let (input, producer) = (reader.u32()?, reader.u32()?);
            let count = reader.u32()?;
            let mut records = Vec::new();
            for _ in 0..count {
                let key = reader.bytes()?.into();
                let key_group = KeyGroup(u16::from_le_bytes(reader.array()?));
                let payload = reader.bytes()?.to_vec();
                let timestamp = match flag(&mut reader)? {
                    true => Some(i64::from_le_bytes(reader.array()?)),
                    false => None,
                };
                let origin = match flag(&mut reader)? {
                    true => {
                        let at = std::str::from_utf8(reader.bytes()?)
                            .map_err(|_| ChannelStateError::Malformed("an origin is not UTF-8"))?;
                        let number = u64::from_le_bytes(reader.array()?);
                        Some(Origin {
                            at: Origin::label(at.to_string()),
                            number,
                        })
                    }
                    false => None,
                };
                records.push(KeyedRecord {
                    key,
                    key_group,
                    payload,
                    timestamp,
                    origin,
                });
            }
            channels.push(InFlight {
                input,
                producer,
                records,
            });
        }
        if !reader.is_empty() {
            return Err(ChannelStateError::Malformed("bytes after the last channel"));
        }
        Ok(ChannelState { channels })
    }
}

/// What each of `parallelism` new subtasks of a consumer replays, before it reads
/// anything new: the channel states of its old subtasks (`old[j]`: old subtask *j*'s),
/// routed by each input's `routing` (`routing[i]`: input *i*'s). A new subtask gets its
/// segments in old-subtask and channel order, so every old channel's order is kept.
pub fn redistribute(
    old: &[ChannelState],
    routing: &[Routing],
    max_parallelism: u16,
    parallelism: u16,
) -> Vec<ChannelState> {
    let mut new = vec![ChannelState::default(); usize::from(parallelism)];
    for (j, state) in old.iter().enumerate() {
        for channel in &state.channels {
            let segment = |records: Vec<KeyedRecord>| InFlight {
                input: channel.input,
                producer: channel.producer,
                records,
            };
            match routing.get(channel.input as usize).copied() {
                Some(Routing::Keyed) => {
                    for (subtask, target) in new.iter_mut().enumerate() {
                        let range = KeyGroupRange::for_subtask(
                            max_parallelism,
                            parallelism,
                            subtask as u16,
                        );
                        let records: Vec<KeyedRecord> = channel
                            .records
                            .iter()
                            .filter(|r| range.contains(r.key_group))
                            .cloned()
                            .collect();
                        if !records.is_empty() {
                            target.channels.push(segment(records));
                        }
                    }
                }
                Some(Routing::Broadcast) if j == 0 => {
                    for target in &mut new {
                        target.channels.push(channel.clone());
                    }
                }
                // Old subtask j's copy of the broadcast records: subtask 0's stands for it.
                Some(Routing::Broadcast) => {}
                Some(Routing::Unkeyed) | None => {
                    new[j % usize::from(parallelism)]
                        .channels
                        .push(channel.clone());
                }
            }
        }
    }
    new
}

impl From<Truncated> for ChannelStateError {
    fn from(_: Truncated) -> ChannelStateError {
        ChannelStateError::Malformed("it ends early")
    }
}

/// A flag byte: 0 or 1.
fn flag(reader: &mut Reader<'_>) -> Result<bool, ChannelStateError> {
    match reader.array::<1>()? {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(ChannelStateError::Malformed("a flag is neither 0 nor 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroupRange;

    fn record(key: &str, n: u64) -> KeyedRecord {
        let key_group = KeyGroup::of(key.as_bytes(), 128);
        KeyedRecord {
            key: key.as_bytes().into(),
            key_group,
            payload: format!(r#"{{"k":"{key}","n":{n}}}"#).into_bytes(),
            timestamp: n.is_multiple_of(2).then_some(n as i64 * 1000),
            origin: n.is_multiple_of(3).then(|| Origin {
                at: Origin::label("source `in`, data/in.jsonl line".into()),
                number: n,
            }),
        }
    }

    fn sample() -> ChannelState {
        ChannelState {
            channels: vec![
                InFlight {
                    input: 0,
                    producer: 1,
                    records: (0..20)
                        .map(|n| record(&format!("key-{}", n % 7), n))
                        .collect(),
                },
                InFlight {
                    input: 1,
                    producer: 0,
                    records: vec![record("rule", 3)],
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_refuses_any_truncation_or_bit_flip() {
        let bytes = sample().encode();
        assert_eq!(ChannelState::decode(&bytes).unwrap(), sample());
        assert_eq!(
            ChannelState::decode(&ChannelState::default().encode())
                .unwrap()
                .records(),
            0
        );
        for len in 0..bytes.len() {
            assert!(
                ChannelState::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut damaged = bytes.clone();
                damaged[i] ^= bit;
                assert!(ChannelState::decode(&damaged).is_err(), "bit flip at {i}");
            }
        }
    }

    /// Per key, the record numbers in the order a subtask replays them.
    fn order(state: &ChannelState) -> std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
        let mut order = std::collections::BTreeMap::<Vec<u8>, Vec<Vec<u8>>>::new();
        for record in state.channels.iter().flat_map(|c| &c.records) {
            order
                .entry(record.key.to_vec())
                .or_default()
                .push(record.payload.clone());
        }
        order
    }

    #[test]
    fn keyed_records_follow_their_key_group_in_order_and_none_is_lost() {
        let old: Vec<ChannelState> = (0..3)
            .map(|j| ChannelState {
                channels: vec![InFlight {
                    input: 0,
                    producer: j,
                    records: (0..40)
                        .map(|n| record(&format!("k{}", (n * 7 + j as u64) % 11), n))
                        .collect(),
                }],
            })
            .collect();
        for parallelism in [1, 2, 3, 4] {
            let new = redistribute(&old, &[Routing::Keyed], 128, parallelism);
            assert_eq!(new.len(), usize::from(parallelism));
            assert_eq!(new.iter().map(ChannelState::records).sum::<usize>(), 120);
            for (subtask, state) in new.iter().enumerate() {
                let range = KeyGroupRange::for_subtask(128, parallelism, subtask as u16);
                let records = state.channels.iter().flat_map(|c| &c.records);
                assert!(records.clone().all(|r| range.contains(r.key_group)));
                // Each key's records keep their old order.
                let mut expected = std::collections::BTreeMap::<Vec<u8>, Vec<Vec<u8>>>::new();
                for r in old
                    .iter()
                    .flat_map(|s| &s.channels)
                    .flat_map(|c| &c.records)
                {
                    if range.contains(r.key_group) {
                        expected
                            .entry(r.key.to_vec())
                            .or_default()
                            .push(r.payload.clone());
                    }
                }
                assert_eq!(order(state), expected, "subtask {subtask} of {parallelism}");
            }
        }
    }

    #[test]
    fn broadcast_records_are_old_subtask_zeros_on_every_subtask_and_unkeyed_ones_move_whole() {
        let old: Vec<ChannelState> = (0..2u32)
            .map(|j| ChannelState {
                channels: vec![
                    InFlight {
                        input: 0,
                        producer: j,
                        records: vec![record(&format!("plain-{j}"), 1), record("x", 2)],
                    },
                    InFlight {
                        input: 1,
                        producer: 0,
                        records: (0..=j as u64).map(|n| record("rule", n)).collect(),
                    },
                ],
            })
            .collect();
        let routing = [Routing::Unkeyed, Routing::Broadcast];
        let new = redistribute(&old, &routing, 128, 3);
        for state in &new {
            let broadcast: Vec<&InFlight> =
                state.channels.iter().filter(|c| c.input == 1).collect();
            assert_eq!(broadcast, [&old[0].channels[1]]);
        }
        let unkeyed = |state: &ChannelState| -> Vec<InFlight> {
            state
                .channels
                .iter()
                .filter(|c| c.input == 0)
                .cloned()
                .collect()
        };
        assert_eq!(unkeyed(&new[0]), [old[0].channels[0].clone()]);
        assert_eq!(unkeyed(&new[1]), [old[1].channels[0].clone()]);
        assert_eq!(unkeyed(&new[2]), []);
        let shrunk = redistribute(&old, &routing, 128, 1);
        let both = [old[0].channels[0].clone(), old[1].channels[0].clone()];
        assert_eq!(unkeyed(&shrunk[0]), both);
    }
}
