//! A Kafka source subtask: reads the partitions it was dealt from their offsets, one
//! JSON document per message, until cancelled or, bounded, until every partition reached
//! the end it had when the job first started.
//!
//! Each partition is a split whose position is the offset of its next message; a barrier
//! goes out between two messages with every split's position, so a restore seeks each
//! partition there, whichever subtask now reads it.

use std::time::{Duration, Instant};

use super::{BATCH_SIZE, Clock, Context, Failure, Pace, SourceReport, Stop, bad_record};
use crate::checkpoint::SourceSplit;
use crate::dataflow::edge::{BadRecord, Outputs};
use crate::dataflow::watermark::Status;
use crate::job::{KafkaSource, Source};
use crate::kafka::{Polled, Reader};
use crate::record::event_time::EventTime;
use crate::record::{Origin, Record};

/// How long a poll waits when nothing is buffered downstream (barriers and cancellation
/// are looked at between polls).
const IDLE_POLL: Duration = Duration::from_millis(20);

struct Partition {
    topic: String,
    partition: i32,
    next: i64,
    end: Option<i64>,
    at: &'static str,
}

impl Partition {
    fn new(source: &Source, topic: &str, partition: i32, next: i64, end: Option<i64>) -> Partition {
        Partition {
            topic: topic.to_string(),
            partition,
            next,
            end,
            at: Origin::label(format!(
                "source `{}`, topic `{topic}` partition {partition} offset",
                source.name
            )),
        }
    }

    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }

    fn split(&self) -> SourceSplit {
        SourceSplit::Kafka {
            topic: self.topic.clone(),
            partition: self.partition,
            next: self.next,
            end: self.end,
        }
    }
}

/// Reads the subtask's partitions; returns their splits where reading stopped.
pub(super) fn read(
    source: &Source,
    kafka: &KafkaSource,
    context: &Context,
    outputs: &mut Outputs,
    report: &mut SourceReport,
) -> Result<Vec<SourceSplit>, Stop> {
    let failed = |error: String| {
        Stop::Failed(Failure::Kafka {
            task: format!("source `{}`", source.name),
            error,
        })
    };
    let mut parts: Vec<Partition> = (context.splits.iter())
        .filter_map(|split| match split {
            SourceSplit::Kafka {
                topic,
                partition,
                next,
                end,
            } => Some(Partition::new(source, topic, *partition, *next, *end)),
            _ => None,
        })
        .collect();
    let splits = |parts: &[Partition]| parts.iter().map(Partition::split).collect::<Vec<_>>();
    let mut clock = source.watermark.map(|w| Clock::new(w, parts.len()));
    if let Some(clock) = &mut clock {
        for (i, part) in parts.iter().enumerate() {
            match part.done() {
                true => clock.watermarks.on_finished(i),
                false => clock.start(i),
            }
        }
    }
    let open: Vec<(&str, i32, i64)> = (parts.iter())
        .filter(|p| !p.done())
        .map(|p| (p.topic.as_str(), p.partition, p.next))
        .collect();
    // A subtask with nothing to read ends, unless it may find new partitions.
    let mut reader = match open.is_empty() && kafka.discovery.is_none() {
        true => None,
        false => Some(Reader::new(&kafka.client, &kafka.group_id, &open).map_err(failed)?),
    };
    // The reader numbers its partitions in `open`'s order, then as they are added: map
    // them back.
    let mut index: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].done()).collect();
    if parts.is_empty() && reader.is_some() && clock.is_some() {
        // Nothing read yet: the watermark goes on without this subtask.
        outputs
            .watermark(Status::Idle)
            .map_err(|_| Stop::Disconnected)?;
    }
    let mut look = kafka.discovery.map(|every| (every, Instant::now() + every));
    let event_time = source.event_time.clone().map(EventTime::new);
    // `"<key_field>":`, ready to go in front of each message's first field.
    let key_field =
        (kafka.key_field.as_ref()).map(|f| format!("{}:", serde_json::Value::from(f.as_str())));
    let per_subtask = |r: u64| r as f64 / f64::from(source.parallelism);
    let mut pace = source.records_per_second.map(|r| Pace::new(per_subtask(r)));
    while let Some(reader) = &mut reader {
        if let Some((every, at)) = &mut look
            && Instant::now() >= *at
        {
            *at = Instant::now() + *every;
            for (topic, partition) in reader.partitions(&kafka.topics).map_err(failed)? {
                let known = |s: &SourceSplit| {
                    matches!(s, SourceSplit::Kafka { topic: t, partition: p, .. }
                        if *t == topic && *p == partition)
                };
                let taken = parts
                    .iter()
                    .any(|p| p.topic == topic && p.partition == partition);
                if context.dealt.iter().any(known)
                    || taken
                    || owner(&topic, partition, source.parallelism) != context.subtask
                {
                    continue;
                }
                let next = reader.add(&topic, partition).map_err(failed)?;
                eprintln!(
                    "weir: source `{}` subtask {} reads new partition `{topic}` [{partition}] from offset {next}",
                    source.name, context.subtask
                );
                parts.push(Partition::new(source, &topic, partition, next, None));
                index.push(parts.len() - 1);
                if let Some(clock) = &mut clock {
                    clock.watermarks.add_split(Instant::now());
                }
            }
        }
        if let Some(pace) = &mut pace {
            // Before the message is read: a barrier while waiting is before it.
            pace.wait(context, outputs, clock.as_mut(), || splits(&parts))?;
        }
        context.poll_trigger(outputs, || splits(&parts))?;
        if kafka.bounded && parts.iter().all(Partition::done) {
            break;
        }
        let wait = match outputs.pending() {
            0 => IDLE_POLL,
            _ => Duration::ZERO,
        };
        match reader.poll(wait).transpose().map_err(failed)? {
            None => {
                context.flush(outputs)?;
                if let Some(clock) = clock.as_mut().filter(|_| !parts.is_empty()) {
                    clock.tick(outputs, false)?;
                }
            }
            Some(Polled::Caught) => {
                for (split, position) in reader.positions().map_err(failed)? {
                    let i = index[split];
                    let part = &mut parts[i];
                    part.next = part.next.max(position);
                    if part.done() {
                        reader.pause(split);
                        if let Some(clock) = &mut clock {
                            clock.watermarks.on_finished(i);
                        }
                    }
                }
            }
            Some(Polled::Message {
                split,
                offset,
                value,
                key,
                timestamp,
            }) => {
                let i = index[split];
                let part = &mut parts[i];
                if part.end.is_some_and(|end| offset >= end) {
                    // Past a bounded source's end: not this job's to read.
                    part.next = part.next.max(part.end.unwrap_or(offset));
                    reader.pause(split);
                    continue;
                }
                part.next = offset + 1;
                let origin = Origin {
                    at: part.at,
                    number: offset as u64,
                };
                let with_key = |value: Vec<u8>| match &key_field {
                    Some(field) => with_key_field(field, key.as_deref(), &value),
                    None => Ok(value),
                };
                let pushed =
                    value
                        .ok_or(BadRecord::NoValue)
                        .and_then(with_key)
                        .and_then(|payload| {
                            let timestamp = match &event_time {
                                None => timestamp,
                                Some(time) => Some(time.of(&payload)?),
                            };
                            let record = Record { payload, timestamp };
                            outputs.push(record, Some(&origin)).map(|()| timestamp)
                        });
                match pushed {
                    Ok(time) => {
                        report.records += 1;
                        if let (Some(time), Some(clock)) = (time, &mut clock) {
                            clock.split = i;
                            clock.after_record(time, outputs)?;
                        }
                    }
                    Err(error) => {
                        let location = format!(
                            "topic `{}` partition {} offset {offset}",
                            part.topic, part.partition
                        );
                        bad_record(source, report, location, error)?;
                    }
                }
                if part.done() {
                    reader.pause(split);
                    if let Some(clock) = &mut clock {
                        clock.watermarks.on_finished(i);
                    }
                }
                if outputs.pending() >= BATCH_SIZE {
                    context.flush(outputs)?;
                    if let Some(clock) = &mut clock {
                        clock.tick(outputs, false)?;
                    }
                }
            }
        }
    }
    context.flush(outputs)?;
    if let Some(clock) = &mut clock {
        clock.tick(outputs, true)?;
    }
    Ok(splits(&parts))
}

/// The subtask that reads a partition found while running: the same on every subtask
/// (FNV-1a over the topic, plus the partition), so exactly one takes it.
fn owner(topic: &str, partition: i32, parallelism: u16) -> usize {
    let hash = (topic.bytes()).fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash.wrapping_add(partition as u64) % u64::from(parallelism.max(1))) as usize
}

/// `value` (a JSON object) with `"<field>":<key>` as its first member: the key as a
/// string, or null for a message without one. `field` is the member's name as JSON,
/// with its colon.
fn with_key_field(field: &str, key: Option<&[u8]>, value: &[u8]) -> Result<Vec<u8>, BadRecord> {
    let start = value.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start.filter(|&i| value[i] == b'{') else {
        return Err(BadRecord::KeyField("its value is not a JSON object"));
    };
    let key = match key {
        None => serde_json::Value::Null,
        Some(key) => match std::str::from_utf8(key) {
            Ok(text) => serde_json::Value::from(text),
            Err(_) => return Err(BadRecord::KeyField("its key is not UTF-8 text")),
        },
    };
    let rest = &value[start + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(value.len() + field.len() + 32);
    out.push(b'{');
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(key.to_string().as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_field_goes_first_in_the_object() {
        let with = |key: Option<&[u8]>, value: &str| {
            with_key_field("\"user\":", key, value.as_bytes())
                .map(|v| String::from_utf8(v).expect("UTF-8"))
        };
        assert_eq!(
            with(Some(b"u-1"), r#"{"page":"/a"}"#).unwrap(),
            r#"{"user":"u-1","page":"/a"}"#
        );
        assert_eq!(
            with(Some(b"q\"x"), " { } ").unwrap(),
            r#"{"user":"q\"x" } "#
        );
        assert_eq!(with(None, r#"{"a":1}"#).unwrap(), r#"{"user":null,"a":1}"#);
        assert!(with(Some(b"k"), "[1]").is_err());
        assert!(with(Some(b"\xff"), "{}").is_err());
    }
}
