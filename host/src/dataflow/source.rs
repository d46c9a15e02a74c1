//! Source tasks: read JSON lines from files or stdin, or generate records, and push them
//! downstream in batches; inject checkpoint barriers when the coordinator asks.
//!
//! Invariant: a source subtask's state is its splits (see [`split`]), each with where its
//! next record comes from (a file range's next line; a generator split's next index). A
//! barrier is sent after every record before those positions and before any after them,
//! so restoring a checkpoint and seeking every split to its position replays exactly the
//! records that followed the barrier, whichever subtask now holds the split.

mod kafka;
pub mod split;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::edge::{BadRecord, Outputs};
use super::watermark::SourceWatermarks;
use super::{BATCH_SIZE, Failure, SourceReport, Stop};
use crate::checkpoint::coordinator::{AckState, FinalAck, Handle};
use crate::checkpoint::{Barrier, SourceSplit};
use crate::job::{GeneratedTime, OnBadRecord, Source, SourceKind, WatermarkStrategy};
use crate::record::event_time::EventTime;
use crate::record::{Origin, Record};

/// A source subtask's link to the checkpoint coordinator.
pub struct Checkpoints {
    /// Triggers: "inject this barrier now".
    pub triggers: Receiver<Barrier>,
    /// Acknowledgements, and the final splits at the end.
    pub handle: Handle,
}

/// Where a source subtask starts, and who it answers to.
pub struct Context {
    /// The splits it reads, each from its position.
    pub splits: Vec<SourceSplit>,
    /// Present when the job checkpoints.
    pub checkpoints: Option<Checkpoints>,
    /// Set when the job is cancelled.
    pub cancel: Arc<AtomicBool>,
    /// This subtask's number.
    pub subtask: usize,
    /// Every subtask's splits, as dealt for this attempt (a Kafka source's partitions
    /// found later are new if not among them).
    pub dealt: Arc<[SourceSplit]>,
}

impl Context {
    /// Between two records: stops if the job was cancelled, and injects a barrier if
    /// one was asked for, with `splits` (this subtask's splits as of now) as its part.
    fn poll_trigger(
        &self,
        outputs: &mut Outputs,
        splits: impl FnOnce() -> Vec<SourceSplit>,
    ) -> Result<(), Stop> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Stop::Failed(Failure::Cancelled));
        }
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        if let Ok(barrier) = checkpoints.triggers.try_recv() {
            outputs.forward(barrier).map_err(|_| Stop::Disconnected)?;
            checkpoints
                .handle
                .ack(barrier.id, AckState::Source(splits()));
        }
        Ok(())
    }

    /// Sends the buffered records downstream, unless waiting for room would hold up a
    /// barrier the coordinator asked for (then they go with it).
    fn flush(&self, outputs: &mut Outputs) -> Result<(), Stop> {
        let triggers = self.checkpoints.as_ref().map(|c| &c.triggers);
        let asked = || triggers.is_some_and(|t| !t.is_empty());
        outputs
            .flush_unless(asked)
            .map(|_| ())
            .map_err(|_| Stop::Disconnected)
    }
}

/// Runs a subtask of `source` to its end, or until it fails or its consumers are gone.
pub fn run(source: &Source, context: Context, mut outputs: Outputs) -> Result<SourceReport, Stop> {
    let mut report = SourceReport {
        name: source.name.clone(),
        ..SourceReport::default()
    };
    let read_out = match &source.kind {
        SourceKind::File { path, .. } => {
            let per_subtask = |r: u64| r as f64 / f64::from(source.parallelism);
            let mut pace = source.records_per_second.map(|r| Pace::new(per_subtask(r)));
            let mut splits = context.splits.clone();
            let mut clock = source.watermark.map(|w| Clock::new(w, splits.len()));
            for current in 0..splits.len() {
                let reader = open_split(source, path, &splits[current])?;
                let Some((reader, lines)) = reader else {
                    if let Some(clock) = &mut clock {
                        clock.watermarks.on_finished(current);
                    }
                    continue;
                };
                if let Some(clock) = &mut clock {
                    clock.start(current);
                }
                let mut lines = lines;
                lines.read(
                    &context,
                    reader,
                    &mut outputs,
                    &mut report,
                    (pace.as_mut(), clock.as_mut()),
                    &mut |lines: &Lines| {
                        let mut now = splits.clone();
                        now[current] = lines.split();
                        now
                    },
                )?;
                splits[current] = lines.split();
                if let Some(clock) = &mut clock {
                    clock.watermarks.on_finished(current);
                    clock.tick(&mut outputs, true)?;
                }
            }
            splits
        }
        SourceKind::Stdin => {
            let mut lines = Lines {
                source,
                label: "stdin".into(),
                file: String::new(),
                start: 0,
                end: None,
                offset: 0,
                line: Some(0),
            };
            let mut clock = source.watermark.map(|w| Clock::new(w, 1));
            if let Some(clock) = &mut clock {
                clock.start(0);
            }
            lines.read(
                &context,
                Box::new(io::stdin()),
                &mut outputs,
                &mut report,
                (None, clock.as_mut()),
                &mut |_| Vec::new(),
            )?;
            Vec::new()
        }
        SourceKind::Kafka(kafka) => {
            kafka::read(source, kafka, &context, &mut outputs, &mut report)?
        }
        SourceKind::Generator {
            count,
            keys,
            key_field,
            key_prefix,
            time,
        } => {
            let generator = Generator::new(key_field, key_prefix, *keys, time.as_ref());
            let at = Origin::label(format!("source `{}`, generated record", source.name));
            let mut owned = Owned::new(&context.splits, *keys);
            // The cap is shared by split: a subtask with more of the splits gets more.
            let mut pace = source.records_per_second.map(|r| {
                let total = owned.next.len() as f64;
                Pace::new(r as f64 * owned.next.iter().flatten().count() as f64 / total)
            });
            // The subtask generates its splits' records interleaved, in index order: one
            // stream as far as its watermark goes.
            let mut clock = source.watermark.map(|w| Clock::new(w, 1));
            if let Some(clock) = &mut clock {
                clock.start(0);
            }
            while let Some(index) = owned.next_index(*count) {
                context.poll_trigger(&mut outputs, || owned.splits(index))?;
                if let Some(pace) = &mut pace {
                    pace.wait(&context, &mut outputs, clock.as_mut(), || {
                        owned.splits(index)
                    })?;
                }
                let origin = Origin { at, number: index };
                let record = generator.record(index);
                let time = record.timestamp;
                outputs
                    .push(record, Some(&origin))
                    .expect("generated records are JSON documents with their key field");
                report.records += 1;
                if let (Some(clock), Some(time)) = (&mut clock, time) {
                    clock.after_record(time, &mut outputs)?;
                }
                if outputs.pending() >= BATCH_SIZE {
                    context.flush(&mut outputs)?;
                    if let Some(clock) = &mut clock {
                        clock.tick(&mut outputs, false)?;
                    }
                }
            }
            if let Some(clock) = &mut clock {
                context.flush(&mut outputs)?;
                clock.watermarks.on_finished(0);
                clock.tick(&mut outputs, true)?;
            }
            owned.splits(*count)
        }
    };
    if let Some(checkpoints) = context.checkpoints {
        let last = FinalAck(AckState::Source(read_out));
        checkpoints.handle.finished(Box::new(last));
    }
    outputs.end().map_err(|_| Stop::Disconnected)?;
    Ok(report)
}

/// A generator subtask's splits: the next index of each split it holds, by split number.
/// It walks the record indices once, generating those of its splits; the key and the
/// split of each index are counted along, not divided, and a run of indices of other
/// subtasks' splits is skipped in one step.
struct Owned {
    /// `next[j]`: split `j`'s next index, if this subtask holds split `j`.
    next: Vec<Option<u64>>,
    /// `skip[j]`: from split `j`, how many splits on to the next one held here.
    skip: Vec<u64>,
    keys: u64,
    /// The walk: the next index to look at, its key and its split.
    index: u64,
    key: u64,
    split: u64,
}

impl Owned {
    fn new(splits: &[SourceSplit], keys: u64) -> Owned {
        let count = split::GENERATOR_SPLITS.min(keys);
        let mut next = vec![None; count as usize];
        for split in splits {
            if let SourceSplit::Generator { split, next: n, .. } = split {
                next[*split as usize] = Some(*n);
            }
        }
        let skip = (0..count)
            .map(|j| {
                (1..=count)
                    .find(|d| next[((j + d) % count) as usize].is_some())
                    .unwrap_or(count)
            })
            .collect();
        let index = next.iter().flatten().copied().min().unwrap_or(u64::MAX);
        let key = if index == u64::MAX { 0 } else { index % keys };
        Owned {
            split: key % count.max(1),
            next,
            skip,
            keys,
            index,
            key,
        }
    }

    /// Moves the walk `steps` indices on (never past the next key 0).
    fn advance(&mut self, steps: u64) {
        self.index += steps;
        self.key += steps;
        self.split += steps;
        if self.key == self.keys {
            self.key = 0;
            self.split = 0;
        } else if self.split >= self.next.len() as u64 {
            // `steps` is at most the number of splits: one wrap at most.
            self.split -= self.next.len() as u64;
        }
    }

    /// The next index this subtask generates, below `count`.
    fn next_index(&mut self, count: u64) -> Option<u64> {
        while self.index < count {
            let (index, split) = (self.index, self.split as usize);
            match self.next[split] {
                Some(next) => {
                    self.advance(1);
                    if index >= next {
                        return Some(index);
                    }
                }
                None => self.advance(self.skip[split].min(self.keys - self.key)),
            }
        }
        None
    }

    /// The subtask's splits while `index` is the next to generate.
    fn splits(&self, index: u64) -> Vec<SourceSplit> {
        let splits = self.next.len() as u64;
        (0..splits)
            .filter_map(|j| {
                let next = self.next[j as usize]?;
                Some(SourceSplit::Generator {
                    split: j,
                    splits,
                    keys: self.keys,
                    next: next.max(index),
                })
            })
            .collect()
    }
}

/// What a source reads lines from.
type Input = Box<dyn Read + Send>;

/// A file split's reader, at its next line; none if the split is finished.
fn open_split<'a>(
    source: &'a Source,
    path: &Path,
    split: &SourceSplit,
) -> Result<Option<(Input, Lines<'a>)>, Stop> {
    let SourceSplit::File {
        file,
        start,
        end,
        offset,
        line,
    } = split
    else {
        return Ok(None);
    };
    if end.is_some_and(|end| *offset >= end) {
        return Ok(None);
    }
    let path = split::file_path(path, file);
    let io_error = |what: String| {
        let task = format!("source `{}`", source.name);
        move |error| Stop::Failed(Failure::Io { task, what, error })
    };
    let mut reader =
        File::open(&path).map_err(io_error(format!("cannot open {}", path.display())))?;
    let mut offset = *offset;
    if offset == *start && *start > 0 {
        // A line belongs to the range its first byte is in: the one that ends after
        // the range's first byte is the previous range's.
        reader
            .seek(SeekFrom::Start(start - 1))
            .map_err(io_error(format!("cannot seek in {}", path.display())))?;
        let mut skipped = Vec::new();
        let mut buffered = BufReader::new(&mut reader);
        let read = buffered
            .read_until(b'\n', &mut skipped)
            .map_err(io_error(format!("cannot read {}", path.display())))?;
        offset = start - 1 + read as u64;
    }
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(io_error(format!("cannot seek in {}", path.display())))?;
    let lines = Lines {
        source,
        label: path.display().to_string(),
        file: file.clone(),
        start: *start,
        end: *end,
        offset,
        line: *line,
    };
    Ok(Some((Box::new(reader), lines)))
}

/// Reading one file split (or stdin) line by line, with its position.
struct Lines<'a> {
    source: &'a Source,
    label: String,
    file: String,
    start: u64,
    end: Option<u64>,
    /// The next line's first byte.
    offset: u64,
    /// Lines before it, when counted from the file's start.
    line: Option<u64>,
}

impl Lines<'_> {
    fn split(&self) -> SourceSplit {
        SourceSplit::File {
            file: self.file.clone(),
            start: self.start,
            end: self.end,
            offset: self.offset,
            line: self.line,
        }
    }

    /// Where a line is, for messages: `number` is its line number, or its first byte's
    /// offset when lines are not counted.
    fn location(&self, number: u64) -> String {
        match self.line {
            Some(_) => format!("{}:{number}", self.label),
            None => format!("{} at byte {number}", self.label),
        }
    }

    /// Reads JSON lines to the end of the split; a batch is sent when full, or as soon as
    /// no more input is buffered, so that records typed on a terminal are processed at
    /// once. `splits` gives the subtask's splits for a barrier.
    fn read(
        &mut self,
        context: &Context,
        input: Input,
        outputs: &mut Outputs,
        report: &mut SourceReport,
        (mut pace, mut clock): (Option<&mut Pace>, Option<&mut Clock>),
        splits: &mut dyn FnMut(&Lines) -> Vec<SourceSplit>,
    ) -> Result<(), Stop> {
        let mut reader = BufReader::with_capacity(1 << 16, input);
        let event_time = self.source.event_time.clone().map(EventTime::new);
        let unit = if self.line.is_some() { "line" } else { "byte" };
        let at = Origin::label(format!(
            "source `{}`, {} {unit}",
            self.source.name, self.label
        ));
        loop {
            context.poll_trigger(outputs, || splits(self))?;
            if let Some(pace) = pace.as_deref_mut() {
                // Before the line is read: a barrier while waiting is before the line.
                pace.wait(context, outputs, clock.as_deref_mut(), || splits(self))?;
            }
            if self.end.is_some_and(|end| self.offset >= end) {
                return context.flush(outputs);
            }
            let mut line = Vec::new();
            let read = reader.read_until(b'\n', &mut line).map_err(|e| {
                Stop::Failed(Failure::Io {
                    task: format!("source `{}`", self.source.name),
                    what: format!("cannot read {} at byte offset {}", self.label, self.offset),
                    error: e,
                })
            })?;
            if read == 0 {
                self.end = Some(self.offset);
                return context.flush(outputs);
            }
            let number = match &mut self.line {
                Some(line) => {
                    *line += 1;
                    *line
                }
                None => self.offset,
            };
            self.offset += read as u64;
            while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let origin = Origin { at, number };
            let timestamp = match &event_time {
                None => Ok(None),
                Some(time) => time.of(&line).map(Some).map_err(BadRecord::from),
            };
            let pushed = timestamp.and_then(|timestamp| {
                let record = Record {
                    payload: line,
                    timestamp,
                };
                outputs.push(record, Some(&origin)).map(|()| timestamp)
            });
            match pushed {
                Ok(timestamp) => {
                    report.records += 1;
                    if let (Some(time), Some(clock)) = (timestamp, clock.as_deref_mut()) {
                        clock.after_record(time, outputs)?;
                    }
                }
                Err(error) => bad_record(self.source, report, self.location(number), error)?,
            }
            if outputs.pending() >= BATCH_SIZE
                || (reader.buffer().is_empty() && outputs.pending() > 0)
            {
                context.flush(outputs)?;
                if let Some(clock) = clock.as_deref_mut() {
                    clock.tick(outputs, false)?;
                }
            }
        }
    }
}

/// A record of `source` at `location` that cannot go downstream: fails the source, or
/// is counted and skipped, as its `on_bad_record` says.
fn bad_record(
    source: &Source,
    report: &mut SourceReport,
    location: String,
    error: BadRecord,
) -> Result<(), Stop> {
    match source.on_bad_record {
        OnBadRecord::Fail => Err(Stop::Failed(Failure::BadRecord {
            source_name: source.name.clone(),
            location,
            error,
        })),
        OnBadRecord::Skip => {
            report.skipped += 1;
            report.first_skipped.get_or_insert(location);
            Ok(())
        }
    }
}

/// A source subtask's watermarks (with a `watermark` strategy), sent at most every
/// `interval`, each behind the records it covers.
struct Clock {
    watermarks: SourceWatermarks,
    interval: Duration,
    /// Whether a watermark follows every record that moves it.
    per_record: bool,
    next: Instant,
    /// The split being read.
    split: usize,
}

impl Clock {
    fn new(strategy: WatermarkStrategy, splits: usize) -> Clock {
        let now = Instant::now();
        Clock {
            watermarks: SourceWatermarks::new(
                splits,
                strategy.out_of_orderness,
                strategy.idle_timeout,
                now,
            ),
            interval: strategy.interval,
            per_record: strategy.per_record,
            next: now + strategy.interval,
            split: 0,
        }
    }

    fn start(&mut self, split: usize) {
        self.split = split;
        self.watermarks.on_started(split, Instant::now());
    }

    /// After a record at `time` of the split being read: sends the watermark behind it
    /// if it moved and the strategy sends one after every record that moves it.
    fn after_record(&mut self, time: i64, outputs: &mut Outputs) -> Result<(), Stop> {
        let now = Instant::now();
        self.watermarks.on_record(self.split, time, now);
        if !self.per_record {
            return Ok(());
        }
        match self.watermarks.poll(now) {
            Some(status) => outputs.watermark(status).map_err(|_| Stop::Disconnected),
            None => Ok(()),
        }
    }

    /// Sends the watermark if it moved on and is due (`now`: at the end of a split), and
    /// nothing is buffered, so that it follows every record it covers.
    fn tick(&mut self, outputs: &mut Outputs, now: bool) -> Result<(), Stop> {
        let at = Instant::now();
        if outputs.pending() > 0 || (!now && at < self.next) {
            return Ok(());
        }
        self.next = at + self.interval;
        match self.watermarks.poll(at) {
            Some(status) => outputs.watermark(status).map_err(|_| Stop::Disconnected),
            None => Ok(()),
        }
    }
}

/// A rate limit: record `n` of this run (counting from 0) is due `n / rate` seconds after
/// the start. A resumed run paces from its own start.
struct Pace {
    start: Instant,
    per_second: f64,
    /// Records let through so far.
    sent: u64,
}

impl Pace {
    fn new(per_second: f64) -> Pace {
        Pace {
            start: Instant::now(),
            per_second,
            sent: 0,
        }
    }

    /// Waits until the next record is due, in short naps so that barriers (with the
    /// subtask's `splits` then), watermarks (with `clock`) and cancellation are not held
    /// up; counts the record.
    fn wait(
        &mut self,
        context: &Context,
        outputs: &mut Outputs,
        mut clock: Option<&mut Clock>,
        mut splits: impl FnMut() -> Vec<SourceSplit>,
    ) -> Result<(), Stop> {
        while let Some(early) = self.early(self.sent, self.start.elapsed()) {
            context.flush(outputs)?;
            if let Some(clock) = clock.as_deref_mut() {
                clock.tick(outputs, false)?;
            }
            std::thread::sleep(early.min(Duration::from_millis(5)));
            context.poll_trigger(outputs, &mut splits)?;
        }
        self.sent += 1;
        Ok(())
    }

    /// How long before record `sent` is due, `elapsed` after the start; none once due.
    fn early(&self, sent: u64, elapsed: Duration) -> Option<Duration> {
        let due = Duration::from_secs_f64(sent as f64 / self.per_second);
        due.checked_sub(elapsed).filter(|d| !d.is_zero())
    }
}

/// Generates `{"<field>":"<prefix><k>","seq":<s>}` for record `i`, where `k = i % keys`
/// and `s = i / keys`: every key's records are numbered 0, 1, 2, … in order; with a
/// time field, `"<time field>":<t>` follows, `t` also being the record's event time.
struct Generator {
    head: String,
    prefix: String,
    keys: u64,
    /// `,"<time field>":` and the times.
    time: Option<(String, GeneratedTime)>,
}

impl Generator {
    fn new(
        key_field: &str,
        key_prefix: &str,
        keys: u64,
        time: Option<&GeneratedTime>,
    ) -> Generator {
        let quoted = |text: &str| serde_json::to_string(text).expect("strings serialize");
        let quoted_prefix = quoted(key_prefix);
        Generator {
            head: format!("{{{}:", quoted(key_field)),
            prefix: quoted_prefix[..quoted_prefix.len() - 1].to_string(),
            keys,
            time: time.map(|t| (format!(",{}:", quoted(&t.field)), t.clone())),
        }
    }

    /// Record `index`'s event time: its place in event time, moved back by its disorder.
    fn time(time: &GeneratedTime, index: u64) -> i64 {
        let at = u128::from(index) * u128::from(time.step_us) / 1000;
        let back = match time.disorder_ms {
            0 => 0,
            d => mix(index) % (d + 1),
        };
        i64::try_from(at).unwrap_or(i64::MAX) - back as i64
    }

    fn record(&self, index: u64) -> Record {
        // Written piece by piece: `format!` cost the source thread a tenth of its time.
        let mut digits = itoa::Buffer::new();
        let mut payload = Vec::with_capacity(self.head.len() + self.prefix.len() + 48);
        payload.extend_from_slice(self.head.as_bytes());
        payload.extend_from_slice(self.prefix.as_bytes());
        payload.extend_from_slice(digits.format(index % self.keys).as_bytes());
        payload.extend_from_slice(b"\",\"seq\":");
        payload.extend_from_slice(digits.format(index / self.keys).as_bytes());
        let timestamp = match &self.time {
            None => index as i64,
            Some((field, time)) => {
                let t = Generator::time(time, index);
                payload.extend_from_slice(field.as_bytes());
                payload.extend_from_slice(digits.format(t).as_bytes());
                t
            }
        };
        payload.push(b'}');
        Record {
            payload,
            timestamp: Some(timestamp),
        }
    }
}

/// SplitMix64's finaliser: a fixed pseudo-random number per index.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_records_number_each_key_in_order() {
        let generator = Generator::new("url", "/page/\"", 3, None);
        let records: Vec<serde_json::Value> = (0..7)
            .map(|i| serde_json::from_slice(&generator.record(i).payload).unwrap())
            .collect();
        assert_eq!(records[0], json!({"url": "/page/\"0", "seq": 0}));
        assert_eq!(records[4], json!({"url": "/page/\"1", "seq": 1}));
        assert_eq!(records[6], json!({"url": "/page/\"0", "seq": 2}));
        assert_eq!(generator.record(5).timestamp, Some(5));
    }

    #[test]
    fn generated_event_times_step_on_and_are_moved_back_by_at_most_the_disorder() {
        let time = GeneratedTime {
            field: "ts".into(),
            step_us: 100,
            disorder_ms: 0,
        };
        let generator = Generator::new("key", "k", 10, Some(&time));
        let record = generator.record(12_345);
        assert_eq!(record.timestamp, Some(1_234));
        assert_eq!(
            std::str::from_utf8(&record.payload).unwrap(),
            r#"{"key":"k5","seq":1234,"ts":1234}"#
        );
        let disordered = GeneratedTime {
            disorder_ms: 50,
            ..time
        };
        let times: Vec<i64> = (0..100_000u64)
            .map(|i| Generator::time(&disordered, i))
            .collect();
        let mut moved = 0;
        for (i, t) in times.iter().enumerate() {
            let place = i as i64 / 10;
            assert!((place - 50..=place).contains(t), "record {i} at {t}");
            moved += i64::from(*t != place);
        }
        assert!(moved > 90_000, "nearly every record is moved back: {moved}");
        let again: Vec<i64> = (0..100u64)
            .map(|i| Generator::time(&disordered, i))
            .collect();
        assert_eq!(again, times[..100], "the same times on every run");
    }

    #[test]
    fn a_generator_subtask_walks_exactly_the_indices_of_its_splits() {
        for (keys, parallelism) in [(1000, 3), (5, 2), (300, 7), (128, 4)] {
            let kind = SourceKind::Generator {
                count: 5000,
                keys,
                key_field: "key".into(),
                key_prefix: "key-".into(),
                time: None,
            };
            let dealt = split::deal(split::initial(&kind).unwrap(), &kind, parallelism);
            let mut all = Vec::new();
            for splits in &dealt {
                let mut owned = Owned::new(splits, keys);
                let held: Vec<u64> = splits
                    .iter()
                    .filter_map(|s| match s {
                        SourceSplit::Generator { split, .. } => Some(*split),
                        _ => None,
                    })
                    .collect();
                while let Some(index) = owned.next_index(5000) {
                    let split = (index % keys) % split::GENERATOR_SPLITS.min(keys);
                    assert!(held.contains(&split), "{index} is not this subtask's");
                    all.push(index);
                }
            }
            all.sort_unstable();
            assert_eq!(
                all,
                (0..5000).collect::<Vec<_>>(),
                "keys {keys}, p={parallelism}"
            );
        }
    }

    /// Runs `kind` as one subtask (at most `rate` records/s) with `event_time` and a
    /// watermark of `disorder` sent every `interval`, and checks what it sent: each
    /// watermark trails the latest time sent before it by `disorder` + 1 ms, they only go
    /// up, the last is the end of time. Returns how many it sent.
    fn assert_watermarks_trail(
        kind: SourceKind,
        event_time: Option<&str>,
        disorder: u64,
        (rate, interval, per_record): (Option<u64>, Duration, bool),
    ) -> usize {
        use crate::dataflow::Message;
        use crate::dataflow::channel::{Bell, Received, channel};
        use crate::dataflow::edge::{Edge, Routing};
        use crate::dataflow::watermark::{END, Status};

        let splits = split::initial(&kind).unwrap();
        let source = Source {
            name: "events".into(),
            parallelism: 1,
            kind,
            on_bad_record: OnBadRecord::Fail,
            records_per_second: rate,
            event_time: event_time.map(|p| crate::job::JsonPointer::parse(p).unwrap()),
            watermark: Some(WatermarkStrategy {
                out_of_orderness: Duration::from_millis(disorder),
                idle_timeout: None,
                interval,
                per_record,
            }),
        };
        let bell = Arc::new(Bell::default());
        let (tx, rx) = channel(1000, Arc::clone(&bell), Arc::clone(&bell));
        let edge = Edge::new("out", None, None, Routing::Forward(0), vec![tx]);
        let context = Context {
            dealt: splits.clone().into(),
            splits,
            checkpoints: None,
            cancel: Arc::new(AtomicBool::new(false)),
            subtask: 0,
        };
        run(&source, context, Outputs::new(vec![edge], bell)).unwrap();
        let (mut latest, mut watermarks) = (i64::MIN, Vec::new());
        while let Ok(Some(Received::Message(message))) = rx.try_recv() {
            match message {
                Message::Batch(records) => {
                    let times = records.iter().filter_map(|r| r.timestamp);
                    latest = latest.max(times.max().unwrap());
                }
                Message::Watermark(Status::At(w)) => {
                    if w != END {
                        assert_eq!(w, latest - disorder as i64 - 1, "trails the latest time");
                    }
                    watermarks.push(w);
                }
                _ => {}
            }
        }
        assert!(watermarks.windows(2).all(|w| w[0] < w[1]), "{watermarks:?}");
        assert_eq!(
            watermarks.last(),
            Some(&END),
            "the end of the input is the end of time"
        );
        watermarks.len()
    }

    #[test]
    fn a_file_source_sends_watermarks_behind_the_records_they_cover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let lines: String = (0..3000)
            .map(|i| format!("{{\"ts\":{}}}\n", i * 10))
            .collect();
        std::fs::write(&path, lines).unwrap();
        let kind = SourceKind::File {
            path,
            split_bytes: 1 << 30,
        };
        let sent = assert_watermarks_trail(kind, Some("/ts"), 100, (None, Duration::ZERO, false));
        assert!(sent >= 3, "one per flush of 512 records: {sent}");
    }

    #[test]
    fn with_interval_0_a_watermark_follows_every_record_that_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // Times 0, 10, …, with every fourth record 5 ms behind: it moves nothing.
        let lines: String = (0..200)
            .map(|i| format!("{{\"ts\":{}}}\n", i * 10 - if i % 4 == 3 { 15 } else { 0 }))
            .collect();
        std::fs::write(&path, lines).unwrap();
        let kind = SourceKind::File {
            path,
            split_bytes: 1 << 30,
        };
        let every = (None, Duration::from_secs(3600), true);
        let sent = assert_watermarks_trail(kind, Some("/ts"), 100, every);
        assert_eq!(sent, 150 + 1, "one per record that moves it, then the end");
    }

    #[test]
    fn a_generator_with_a_time_field_sends_watermarks_behind_its_records() {
        let kind = SourceKind::Generator {
            count: 3000,
            keys: 10,
            key_field: "key".into(),
            key_prefix: "key-".into(),
            time: Some(GeneratedTime {
                field: "ts".into(),
                step_us: 1000,
                disorder_ms: 0,
            }),
        };
        let sent = assert_watermarks_trail(kind.clone(), None, 5, (None, Duration::ZERO, false));
        assert!(sent >= 3, "one per flush of 512 records: {sent}");
        // Paced to 2000 records/s, 300 records take 150 ms: never a full batch, but a
        // watermark every 10 ms while the source waits for its next record.
        let SourceKind::Generator { time, .. } = kind else {
            unreachable!()
        };
        let paced = SourceKind::Generator {
            count: 300,
            keys: 10,
            key_field: "key".into(),
            key_prefix: "key-".into(),
            time,
        };
        let pacing = (Some(2000), Duration::from_millis(10), false);
        let sent = assert_watermarks_trail(paced, None, 5, pacing);
        assert!(sent >= 5, "watermarks while paced: {sent}");
    }

    #[test]
    fn a_paced_record_waits_until_it_is_due() {
        let pace = Pace::new(1000.0);
        let ms = Duration::from_millis;
        assert_eq!(pace.early(0, ms(0)), None);
        assert_eq!(pace.early(10, ms(4)), Some(ms(6)));
        assert_eq!(pace.early(10, ms(10)), None);
        assert_eq!(pace.early(10, ms(50)), None, "a late source catches up");
        assert_eq!(Pace::new(0.5).early(1, ms(500)), Some(ms(1500)));
    }
}
