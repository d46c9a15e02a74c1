//! Typed operator state over the byte-level host API: list state of this operator
//! subtask, not of a key, usable in `open`, `process` and `close`, and broadcast state.
//! Elements, keys and values are stored as JSON, so `host state` can show them without
//! the operator's code.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::runtime::{with_broadcast, with_operator_list};
use crate::state::{decode, encode};

/// The list operations shared by both redistributions.
macro_rules! operator_list {
    ($name:ident, $union:expr) => {
        impl<T: Serialize + DeserializeOwned> $name<T> {
            /// A handle to the list state `name`. Names are the state's identity in
            /// checkpoints and savepoints: keep them stable.
            pub const fn new(name: &'static str) -> Self {
                $name {
                    name,
                    _element: PhantomData,
                }
            }

            /// All elements, in order.
            pub fn get(&self) -> Result<Vec<T>> {
                let bytes =
                    with_operator_list(self.name, $union, |host, id| host.operator_list_get(id))?;
                bytes.iter().map(|b| decode(self.name, b)).collect()
            }

            /// Appends `element`.
            pub fn add(&self, element: &T) -> Result<()> {
                self.add_all(std::slice::from_ref(element))
            }

            /// Appends `elements`.
            pub fn add_all(&self, elements: &[T]) -> Result<()> {
                let encoded = self.encode(elements)?;
                with_operator_list(self.name, $union, |host, id| {
                    host.operator_list_add_all(id, encoded)
                })
            }

            /// Replaces all elements with `elements`.
            pub fn update(&self, elements: &[T]) -> Result<()> {
                let encoded = self.encode(elements)?;
                with_operator_list(self.name, $union, |host, id| {
                    host.operator_list_update(id, encoded)
                })
            }

            /// Removes all elements.
            pub fn clear(&self) -> Result<()> {
                self.update(&[])
            }

            fn encode(&self, elements: &[T]) -> Result<Vec<Vec<u8>>> {
                elements.iter().map(|e| encode(self.name, e)).collect()
            }
        }
    };
}

/// Operator list state with *split* redistribution (Flink's `getListState`): when the
/// operator's parallelism changes, all subtasks' elements are concatenated and dealt
/// evenly, each to exactly one new subtask. For work to share out, such as offsets.
pub struct OperatorListState<T> {
    pub(crate) name: &'static str,
    _element: PhantomData<fn() -> T>,
}

/// Operator list state with *union* redistribution (Flink's `getUnionListState`): when
/// the operator's parallelism changes, every new subtask gets every old subtask's
/// elements. For knowledge every subtask needs.
pub struct UnionListState<T> {
    pub(crate) name: &'static str,
    _element: PhantomData<fn() -> T>,
}

operator_list!(OperatorListState, false);
operator_list!(UnionListState, true);

/// Broadcast state (Flink's `BroadcastState`): a map that is the same on every subtask
/// of the operator. Readable everywhere; changed only while processing a record of a
/// broadcast input, which every subtask sees in the same order, so that every subtask
/// makes the same change. When the parallelism changes, every new subtask gets a copy.
pub struct BroadcastState<K, V> {
    pub(crate) name: &'static str,
    _entry: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> BroadcastState<K, V> {
    /// A handle to the broadcast state `name`. Names are the state's identity in
    /// checkpoints and savepoints: keep them stable.
    pub const fn new(name: &'static str) -> Self {
        BroadcastState {
            name,
            _entry: PhantomData,
        }
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = encode(self.name, key)?;
        let value = with_broadcast(self.name, false, |host, id| host.broadcast_get(id, &key))?;
        value.map(|v| decode(self.name, &v)).transpose()
    }

    /// Every entry, ordered by the key's JSON bytes.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        let entries = with_broadcast(self.name, false, |host, id| host.broadcast_entries(id))?;
        entries
            .iter()
            .map(|(k, v)| Ok((decode(self.name, k)?, decode(self.name, v)?)))
            .collect()
    }

    /// Sets `key` to `value`: only while processing a broadcast record.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let (key, value) = (encode(self.name, key)?, encode(self.name, value)?);
        with_broadcast(self.name, true, |host, id| {
            host.broadcast_put(id, &key, &value)
        })
    }

    /// Removes `key`: only while processing a broadcast record.
    pub fn remove(&self, key: &K) -> Result<()> {
        let key = encode(self.name, key)?;
        with_broadcast(self.name, true, |host, id| host.broadcast_remove(id, &key))
    }
}
