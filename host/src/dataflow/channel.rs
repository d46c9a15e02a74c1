//! A channel between two tasks with a priority path (seed 003, "Unaligned
//! Checkpointing"): a bounded queue of messages from one producer subtask to one consumer
//! subtask, where an unaligned barrier is put ahead of the records queued before it, and
//! the consumer copies those records (they stay queued and are processed as usual) as
//! channel state. Tasks wait on a [`Bell`]: one per task, rung by every channel it reads
//! or writes, so one wait covers "a message came" and "room came".
//!
//! Invariants: records and in-band barriers keep the order they were sent in; an
//! overtaking barrier is received before every record queued when it was sent, and its
//! copy holds exactly those records; a full queue refuses batches, never barriers or ends
//! (so a barrier cannot wait behind back-pressure), and a forced batch overfills it by at
//! most that batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::Message;
use crate::checkpoint::{Barrier, CheckpointId};
use crate::record::KeyedRecord;

/// What a task waits on: rung whenever one of its channels gets a message or room.
#[derive(Debug, Default)]
pub struct Bell {
    rings: AtomicU64,
    /// Threads asleep on `rung`: a ring with none wakes nobody (no system call).
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    rung: Condvar,
}

/// Looks a waiter takes at the bell, yielding between them, before it sleeps: a queue
/// between two busy tasks refills within a few scheduler turns.
const SPINS: usize = 16;

impl Bell {
    /// Rings: every waiter wakes.
    pub fn ring(&self) {
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) > 0 {
            // Under the lock, so that a waiter between its check and its sleep hears it.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.rung.notify_all();
        }
    }

    /// How often it has rung: read before looking at the channels, then
    /// [`Bell::wait`] with it, so a ring in between is never missed.
    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::SeqCst)
    }

    /// Waits until it rings after `seen` rings, or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Option<Duration>) {
        for _ in 0..SPINS {
            if self.rings() != seen {
                return;
            }
            std::thread::yield_now();
        }
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        let unchanged = |_: &mut ()| self.rings() == seen;
        match timeout {
            Some(t) => drop(self.rung.wait_timeout_while(guard, t, unchanged)),
            None => drop(self.rung.wait_while(guard, unchanged)),
        }
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The other side has gone (its task stopped).
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected;

/// What a consumer takes off a channel.
#[derive(Debug)]
pub enum Received {
    /// The next message, in order.
    Message(Message),
    /// An unaligned barrier, with a copy of the records it overtook (still queued).
    Overtaking {
        /// The barrier.
        barrier: Barrier,
        /// The records queued before it when it was sent, in order.
        in_flight: Vec<KeyedRecord>,
    },
}

enum Item {
    Message(Message),
    /// An unaligned barrier ahead of `behind` queued batches.
    Overtaking {
        barrier: Barrier,
        behind: usize,
    },
}

struct Queue {
    items: VecDeque<Item>,
    /// Batches queued (the bound counts batches only).
    batches: usize,
    capacity: usize,
    sender: bool,
    receiver: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Overtaking barriers queued: the consumer reads this channel first while any are.
    overtaking: AtomicUsize,
    producer: Arc<Bell>,
    consumer: Arc<Bell>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The producer's end.
pub struct Sender(Arc<Shared>);

/// The consumer's end.
pub struct Receiver(Arc<Shared>);

/// A channel holding up to `capacity` batches; the producer's task waits on `producer`,
/// the consumer's on `consumer`.
pub fn channel(capacity: usize, producer: Arc<Bell>, consumer: Arc<Bell>) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            batches: 0,
            capacity,
            sender: true,
            receiver: true,
        }),
        overtaking: AtomicUsize::new(0),
        producer,
        consumer,
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl Sender {
    /// Queues `message` unless it is a batch and the queue is full: then hands it back.
    pub fn try_send(&self, message: Message) -> Result<Option<Message>, Disconnected> {
        let mut queue = self.0.lock();
        if !queue.receiver {
            return Err(Disconnected);
        }
        if matches!(message, Message::Batch(_)) && queue.batches >= queue.capacity {
            return Ok(Some(message));
        }
        queue.push(message);
        drop(queue);
        self.0.consumer.ring();
        Ok(None)
    }

    /// Queues `message` even if the queue is full (a batch that must go before a barrier).
    pub fn force_send(&self, message: Message) -> Result<(), Disconnected> {
        let mut queue = self.0.lock();
        if !queue.receiver {
            return Err(Disconnected);
        }
        queue.push(message);
        drop(queue);
        self.0.consumer.ring();
        Ok(())
    }

    /// Puts `barrier` ahead of everything queued; returns the batches it overtook.
    pub fn send_overtaking(&self, barrier: Barrier) -> Result<usize, Disconnected> {
        let mut queue = self.0.lock();
        if !queue.receiver {
            return Err(Disconnected);
        }
        let behind = queue.batches;
        queue.items.push_front(Item::Overtaking { barrier, behind });
        self.0.overtaking.fetch_add(1, Ordering::SeqCst);
        drop(queue);
        self.0.consumer.ring();
        Ok(behind)
    }
}

impl Queue {
    fn push(&mut self, message: Message) {
        if matches!(message, Message::Batch(_)) {
            self.batches += 1;
        }
        self.items.push_back(Item::Message(message));
    }

    /// Copies of the records in the first `batches` queued batches.
    fn copy_batches(&self, batches: usize) -> Vec<KeyedRecord> {
        let queued = self.items.iter().filter_map(|item| match item {
            Item::Message(Message::Batch(records)) => Some(records),
            _ => None,
        });
        queued.take(batches).flatten().cloned().collect()
    }
}

impl Receiver {
    /// The next message, if one is queued; `Disconnected` once the queue is empty and
    /// the producer has gone.
    pub fn try_recv(&self) -> Result<Option<Received>, Disconnected> {
        let mut queue = self.0.lock();
        let received = match queue.items.pop_front() {
            None if !queue.sender => return Err(Disconnected),
            None => return Ok(None),
            Some(Item::Message(message)) => {
                if matches!(message, Message::Batch(_)) {
                    queue.batches -= 1;
                }
                Received::Message(message)
            }
            // Nothing is taken from behind it before it (it is at the front, or behind
            // only newer overtaking barriers): `behind` batches still follow it.
            Some(Item::Overtaking { barrier, behind }) => {
                self.0.overtaking.fetch_sub(1, Ordering::SeqCst);
                Received::Overtaking {
                    barrier,
                    in_flight: queue.copy_batches(behind),
                }
            }
        };
        drop(queue);
        self.0.producer.ring();
        Ok(Some(received))
    }

    /// Whether an overtaking barrier is queued: it is to be read before anything else,
    /// even on a channel that alignment blocks.
    pub fn has_overtaking(&self) -> bool {
        self.0.overtaking.load(Ordering::SeqCst) > 0
    }

    /// If in-band barrier `id` is queued, takes it out and returns a copy of the records
    /// queued before it: it overtakes them (the aligned timeout fired).
    pub fn overtake(&self, id: CheckpointId) -> Option<Vec<KeyedRecord>> {
        let mut queue = self.0.lock();
        let at = queue
            .items
            .iter()
            .position(|item| matches!(item, Item::Message(Message::Barrier(b)) if b.id == id))?;
        queue.items.remove(at);
        let before = queue
            .items
            .iter()
            .take(at)
            .filter(|item| matches!(item, Item::Message(Message::Batch(_))))
            .count();
        Some(queue.copy_batches(before))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.lock().sender = false;
        self.0.consumer.ring();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.lock().receiver = false;
        self.0.producer.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyGroup;

    fn batch(from: u64, n: u64) -> Message {
        let records = (from..from + n)
            .map(|i| KeyedRecord {
                key: format!("k{i}").as_bytes().into(),
                key_group: KeyGroup(0),
                payload: format!("{i}").into_bytes(),
                timestamp: None,
                origin: None,
            })
            .collect();
        Message::Batch(records)
    }

    fn numbers(records: &[KeyedRecord]) -> Vec<u64> {
        let text = |r: &KeyedRecord| String::from_utf8(r.payload.clone()).unwrap();
        records.iter().map(|r| text(r).parse().unwrap()).collect()
    }

    fn pair(capacity: usize) -> (Sender, Receiver, Arc<Bell>, Arc<Bell>) {
        let (producer, consumer) = (Arc::new(Bell::default()), Arc::new(Bell::default()));
        let (tx, rx) = channel(capacity, Arc::clone(&producer), Arc::clone(&consumer));
        (tx, rx, producer, consumer)
    }

    fn next_batch(rx: &Receiver) -> Vec<u64> {
        match rx.try_recv() {
            Ok(Some(Received::Message(Message::Batch(records)))) => numbers(&records),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn a_full_queue_refuses_batches_but_not_barriers() {
        let (tx, rx, _, _) = pair(2);
        assert!(tx.try_send(batch(0, 2)).unwrap().is_none());
        assert!(tx.try_send(batch(2, 2)).unwrap().is_none());
        assert!(tx.try_send(batch(4, 2)).unwrap().is_some(), "full");
        assert!(
            tx.try_send(Message::Barrier(Barrier::aligned(CheckpointId(1))))
                .unwrap()
                .is_none()
        );
        tx.force_send(batch(4, 2)).unwrap();
        assert_eq!(next_batch(&rx), [0, 1]);
        assert_eq!(next_batch(&rx), [2, 3]);
        assert!(matches!(
            rx.try_recv(),
            Ok(Some(Received::Message(Message::Barrier(b)))) if b.id == CheckpointId(1)
        ));
        assert_eq!(next_batch(&rx), [4, 5]);
        assert!(rx.try_recv().unwrap().is_none());
        drop(tx);
        assert_eq!(rx.try_recv().unwrap_err(), Disconnected);
    }

    #[test]
    fn an_overtaking_barrier_comes_first_with_a_copy_of_what_it_jumped() {
        let (tx, rx, _, _) = pair(4);
        tx.try_send(batch(0, 2)).unwrap();
        tx.try_send(batch(2, 3)).unwrap();
        assert_eq!(next_batch(&rx), [0, 1]);
        let barrier = Barrier::aligned(CheckpointId(7));
        assert_eq!(tx.send_overtaking(barrier).unwrap(), 1);
        assert!(rx.has_overtaking());
        tx.try_send(batch(5, 1)).unwrap();
        match rx.try_recv() {
            Ok(Some(Received::Overtaking {
                barrier: got,
                in_flight,
            })) => {
                assert_eq!(got, barrier);
                assert!(!rx.has_overtaking());
                assert_eq!(numbers(&in_flight), [2, 3, 4], "not what came after it");
            }
            other => panic!("expected the barrier, got {other:?}"),
        }
        // The jumped records are still processed, in order.
        assert_eq!(next_batch(&rx), [2, 3, 4]);
        assert_eq!(next_batch(&rx), [5]);
    }

    #[test]
    fn a_timed_out_barrier_overtakes_from_inside_the_queue() {
        let (tx, rx, _, _) = pair(4);
        tx.try_send(batch(0, 1)).unwrap();
        tx.try_send(batch(1, 2)).unwrap();
        tx.try_send(Message::Barrier(Barrier::aligned(CheckpointId(3))))
            .unwrap();
        tx.try_send(batch(3, 1)).unwrap();
        assert_eq!(rx.overtake(CheckpointId(4)), None, "not queued");
        assert_eq!(numbers(&rx.overtake(CheckpointId(3)).unwrap()), [0, 1, 2]);
        assert_eq!(next_batch(&rx), [0]);
        assert_eq!(next_batch(&rx), [1, 2]);
        assert_eq!(next_batch(&rx), [3], "the barrier is gone from the queue");
    }

    #[test]
    fn a_waiting_producer_wakes_when_room_comes_or_its_consumer_goes() {
        let (tx, rx, producer, _) = pair(1);
        tx.try_send(batch(0, 1)).unwrap();
        let seen = producer.rings();
        let asleep = Arc::clone(&producer);
        let consumer = std::thread::spawn(move || {
            // Makes room only once the producer sleeps, so that the ring must wake it.
            while asleep.sleeping.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            rx.try_recv().unwrap();
            rx
        });
        producer.wait(seen, None);
        assert!(tx.try_send(batch(1, 1)).unwrap().is_none());
        let rx = consumer.join().unwrap();
        let seen = producer.rings();
        drop(rx);
        producer.wait(seen, Some(Duration::from_secs(5)));
        assert_eq!(tx.try_send(batch(2, 1)).unwrap_err(), Disconnected);
    }
}
