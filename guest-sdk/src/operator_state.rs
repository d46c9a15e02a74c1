//! Typed operator state over the byte-level host API: list state of this operator
//! subtask, not of a key, usable in `open`, `process` and `close`. Elements are stored as
//! JSON, so `host state` can show them without the operator's code.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::runtime::with_operator_list;
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
