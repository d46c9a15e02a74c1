//! Typed keyed state over the byte-level host API. Values and map keys are stored as
//! JSON, so `host state` can show them without the operator's code.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Elements;
use crate::runtime::{KeyedState, StateRef, Ttl};
use crate::runtime::{
    Kind, add_to_list, read_list, read_value, replace_list, with_state, write_value,
};
use crate::{Error, Result};

pub(crate) fn encode<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(name, value, &mut out)?;
    Ok(out)
}

/// Appends `value`'s JSON to `out`.
fn encode_into<T: Serialize + ?Sized>(name: &str, value: &T, out: &mut Vec<u8>) -> Result<()> {
    serde_json::to_writer(out, value)
        .map_err(|e| Error::new(format!("state `{name}`: cannot encode: {e}")))
}

/// The current key's value of value-like state `name`, decoded.
fn get_value<T: DeserializeOwned>(state: StateRef) -> Result<Option<T>> {
    read_value(state, |bytes| {
        bytes.map(|bytes| decode(state.name, bytes)).transpose()
    })?
}

thread_local! {
    /// The buffer values are encoded into before they are stored: reused, so that setting
    /// a value allocates nothing once it has grown.
    static ENCODED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Sets the current key's value of value-like state `name`.
fn set_value<T: Serialize>(state: StateRef, value: &T) -> Result<()> {
    // Taken out while user code (the value's `Serialize`) runs, so nothing is borrowed.
    let mut encoded = ENCODED.take();
    encoded.clear();
    let written = encode_into(state.name, value, &mut encoded)
        .and_then(|()| write_value(state, Some(&encoded)));
    ENCODED.set(encoded);
    written
}

pub(crate) fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(format!(
            "state `{name}` holds a value that does not decode as {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// One value per key: Flink's `ValueState`.
pub struct ValueState<T> {
    pub(crate) name: &'static str,
    ttl: Option<Ttl>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// A handle to the value state `name`. Names are the state's identity in
    /// checkpoints and savepoints: keep them stable.
    pub const fn new(name: &'static str) -> Self {
        ValueState {
            name,
            ttl: None,
            _value: PhantomData,
        }
    }

    /// The current key's value, if it has one.
    pub fn get(&self) -> Result<Option<T>> {
        get_value(self.state_ref())
    }

    /// Sets the current key's value.
    pub fn set(&self, value: &T) -> Result<()> {
        set_value(self.state_ref(), value)
    }

    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        write_value(self.state_ref(), None)
    }
}

/// A list of elements per key: Flink's `ListState`.
pub struct ListState<T> {
    pub(crate) name: &'static str,
    ttl: Option<Ttl>,
    _element: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// A handle to the list state `name`.
    pub const fn new(name: &'static str) -> Self {
        ListState {
            name,
            ttl: None,
            _element: PhantomData,
        }
    }

    /// The current key's elements, in insertion order.
    pub fn get(&self) -> Result<Vec<T>> {
        read_list(self.state_ref(), |elements| {
            let mut decoded = Vec::with_capacity(elements.len());
            for bytes in elements {
                decoded.push(decode(self.name, bytes)?);
            }
            Ok(decoded)
        })?
    }

    /// Appends one element.
    pub fn add(&self, element: &T) -> Result<()> {
        self.add_all(std::slice::from_ref(element))
    }

    /// Appends elements, in order.
    pub fn add_all(&self, elements: &[T]) -> Result<()> {
        add_to_list(self.state_ref(), self.encode_all(elements)?)
    }

    /// Replaces all elements.
    pub fn update(&self, elements: &[T]) -> Result<()> {
        replace_list(self.state_ref(), self.encode_all(elements)?)
    }

    /// Removes all elements.
    pub fn clear(&self) -> Result<()> {
        replace_list(self.state_ref(), Elements::default())
    }

    fn encode_all(&self, elements: &[T]) -> Result<Elements> {
        // A guess that spares most regrowth for small elements (numbers, short strings).
        let mut encoded = Elements::with_capacity(elements.len() * 8, elements.len());
        for element in elements {
            encoded.push_with(|data| encode_into(self.name, element, data))?;
        }
        Ok(encoded)
    }
}

/// A map per key: Flink's `MapState`. Entries are ordered by their keys' JSON bytes.
pub struct MapState<K, V> {
    pub(crate) name: &'static str,
    ttl: Option<Ttl>,
    _entries: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// A handle to the map state `name`.
    pub const fn new(name: &'static str) -> Self {
        MapState {
            name,
            ttl: None,
            _entries: PhantomData,
        }
    }

    /// The value under `key` in the current key's map.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let user_key = encode(self.name, key)?;
        with_state(self.state_ref(), |h, id, rec| h.map_get(id, rec, &user_key))?
            .map(|bytes| decode(self.name, &bytes))
            .transpose()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        self.put_all(&[(key, value)])
    }

    /// Sets several entries.
    pub fn put_all(&self, entries: &[(&K, &V)]) -> Result<()> {
        let bytes = entries
            .iter()
            .map(|(k, v)| Ok((encode(self.name, k)?, encode(self.name, v)?)))
            .collect::<Result<Vec<_>>>()?;
        with_state(self.state_ref(), |h, id, rec| h.map_put_all(id, rec, bytes))
    }

    /// Removes `key`.
    pub fn remove(&self, key: &K) -> Result<()> {
        let user_key = encode(self.name, key)?;
        with_state(self.state_ref(), |h, id, rec| {
            h.map_remove(id, rec, &user_key)
        })
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> Result<bool> {
        let user_key = encode(self.name, key)?;
        with_state(self.state_ref(), |h, id, rec| {
            h.map_contains(id, rec, &user_key)
        })
    }

    /// All entries.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        with_state(self.state_ref(), |h, id, rec| h.map_entries(id, rec))?
            .iter()
            .map(|(k, v)| Ok((decode(self.name, k)?, decode(self.name, v)?)))
            .collect()
    }

    /// All keys.
    pub fn keys(&self) -> Result<Vec<K>> {
        with_state(self.state_ref(), |h, id, rec| h.map_keys(id, rec))?
            .iter()
            .map(|k| decode(self.name, k))
            .collect()
    }

    /// All values, in key order.
    pub fn values(&self) -> Result<Vec<V>> {
        with_state(self.state_ref(), |h, id, rec| h.map_values(id, rec))?
            .iter()
            .map(|v| decode(self.name, v))
            .collect()
    }

    /// Whether the current key's map is empty.
    pub fn is_empty(&self) -> Result<bool> {
        with_state(self.state_ref(), |h, id, rec| h.map_is_empty(id, rec))
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        with_state(self.state_ref(), |h, id, rec| h.map_clear(id, rec))
    }
}

/// A value per key folded with a reduce function: Flink's `ReducingState`.
pub struct ReducingState<T> {
    pub(crate) name: &'static str,
    ttl: Option<Ttl>,
    reduce: fn(T, T) -> T,
}

impl<T: Serialize + DeserializeOwned> ReducingState<T> {
    /// A handle to the reducing state `name`, folding with `reduce(current, new)`.
    pub const fn new(name: &'static str, reduce: fn(T, T) -> T) -> Self {
        ReducingState {
            name,
            ttl: None,
            reduce,
        }
    }

    /// The current key's folded value.
    pub fn get(&self) -> Result<Option<T>> {
        get_value(self.state_ref())
    }

    /// Folds `value` into the current key's value.
    pub fn add(&self, value: T) -> Result<()> {
        let folded = match self.get()? {
            Some(current) => (self.reduce)(current, value),
            None => value,
        };
        set_value(self.state_ref(), &folded)
    }

    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        write_value(self.state_ref(), None)
    }
}

/// An accumulator per key: Flink's `AggregatingState`. Inputs of type `IN` are added to
/// an accumulator `ACC`, from which a result `OUT` is computed.
pub struct AggregatingState<IN, ACC, OUT> {
    pub(crate) name: &'static str,
    ttl: Option<Ttl>,
    create: fn() -> ACC,
    add: fn(ACC, IN) -> ACC,
    result: fn(&ACC) -> OUT,
}

impl<IN, ACC: Serialize + DeserializeOwned, OUT> AggregatingState<IN, ACC, OUT> {
    /// A handle to the aggregating state `name`: `create` makes an empty accumulator,
    /// `add` folds an input into it, `result` computes the output.
    pub const fn new(
        name: &'static str,
        create: fn() -> ACC,
        add: fn(ACC, IN) -> ACC,
        result: fn(&ACC) -> OUT,
    ) -> Self {
        AggregatingState {
            name,
            ttl: None,
            create,
            add,
            result,
        }
    }

    fn accumulator(&self) -> Result<Option<ACC>> {
        get_value(self.state_ref())
    }

    /// The result for the current key, if anything was added.
    pub fn get(&self) -> Result<Option<OUT>> {
        Ok(self.accumulator()?.map(|acc| (self.result)(&acc)))
    }

    /// Adds `input` to the current key's accumulator.
    pub fn add(&self, input: IN) -> Result<()> {
        let acc = self.accumulator()?.unwrap_or_else(self.create);
        set_value(self.state_ref(), &(self.add)(acc, input))
    }

    /// Removes the current key's accumulator.
    pub fn clear(&self) -> Result<()> {
        write_value(self.state_ref(), None)
    }
}

impl<T> KeyedState for ValueState<T> {
    fn state_ref(&self) -> StateRef {
        StateRef {
            name: self.name,
            kind: Kind::Value,
            ttl: self.ttl,
        }
    }
}

impl<T> KeyedState for ListState<T> {
    fn state_ref(&self) -> StateRef {
        StateRef {
            name: self.name,
            kind: Kind::List,
            ttl: self.ttl,
        }
    }
}

impl<K, V> KeyedState for MapState<K, V> {
    fn state_ref(&self) -> StateRef {
        StateRef {
            name: self.name,
            kind: Kind::Map,
            ttl: self.ttl,
        }
    }
}

impl<T> KeyedState for ReducingState<T> {
    fn state_ref(&self) -> StateRef {
        StateRef {
            name: self.name,
            kind: Kind::Reducing,
            ttl: self.ttl,
        }
    }
}

impl<IN, ACC, OUT> KeyedState for AggregatingState<IN, ACC, OUT> {
    fn state_ref(&self) -> StateRef {
        StateRef {
            name: self.name,
            kind: Kind::Aggregating,
            ttl: self.ttl,
        }
    }
}

macro_rules! with_ttl {
    ($($handle:ident<$($param:ident),+>),+) => {$(
        impl<$($param),+> $handle<$($param),+> {
            /// The same state with a time-to-live: each entry is forgotten `ttl` after
            /// its last renewal (see [`Ttl`]), and never returned again. A state's TTL
            /// is part of its identity in savepoints: its length and update policy may
            /// change, its presence and clock may not.
            pub const fn with_ttl(mut self, ttl: Ttl) -> Self {
                self.ttl = Some(ttl);
                self
            }
        }
    )+};
}

with_ttl!(
    ValueState<T>,
    ListState<T>,
    MapState<K, V>,
    ReducingState<T>,
    AggregatingState<IN, ACC, OUT>
);
