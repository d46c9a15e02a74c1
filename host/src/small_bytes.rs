//! [`SmallBytes`]: a byte string kept inside its own 24 bytes when it is short.
//!
//! Record keys and value-state values are mostly short (an id, a counter). Stored inline,
//! they cost no allocation of their own: a source keys each record without one (and the
//! operator frees none), a hash map of them is cloned by copying its table (what a
//! copy-on-write snapshot does to every key group it touches), and a lookup compares
//! the key without following a pointer.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// The longest byte string kept inline.
const INLINE: usize = 22;

/// A byte string, inline up to 22 bytes, else boxed. Hashes and compares as `[u8]`, so
/// maps keyed by it are looked up with `&[u8]`.
#[derive(Clone)]
pub enum SmallBytes {
    /// Up to [`INLINE`] bytes: `data[..len]`.
    Inline {
        /// How many bytes of `data` are used.
        len: u8,
        /// The bytes, zero after `len`.
        data: [u8; INLINE],
    },
    /// Longer byte strings.
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<SmallBytes>() == 24);

impl SmallBytes {
    fn inline(bytes: &[u8]) -> SmallBytes {
        let mut data = [0; INLINE];
        data[..bytes.len()].copy_from_slice(bytes);
        SmallBytes::Inline {
            len: bytes.len() as u8,
            data,
        }
    }
}

impl Default for SmallBytes {
    fn default() -> SmallBytes {
        SmallBytes::inline(&[])
    }
}

impl Deref for SmallBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, data } => &data[..*len as usize],
            SmallBytes::Heap(bytes) => bytes,
        }
    }
}

impl From<&[u8]> for SmallBytes {
    fn from(bytes: &[u8]) -> SmallBytes {
        if bytes.len() <= INLINE {
            SmallBytes::inline(bytes)
        } else {
            SmallBytes::Heap(bytes.into())
        }
    }
}

impl From<Vec<u8>> for SmallBytes {
    fn from(bytes: Vec<u8>) -> SmallBytes {
        if bytes.len() <= INLINE {
            SmallBytes::inline(&bytes)
        } else {
            SmallBytes::Heap(bytes.into_boxed_slice())
        }
    }
}

impl AsRef<[u8]> for SmallBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, which `Borrow` requires.
        (**self).hash(state)
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &SmallBytes) -> bool {
        **self == **other
    }
}

impl Eq for SmallBytes {}

impl PartialOrd for SmallBytes {
    fn partial_cmp(&self, other: &SmallBytes) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallBytes {
    /// As the bytes order (which `Borrow<[u8]>` requires of ordered collections).
    fn cmp(&self, other: &SmallBytes) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::HashMap;

    #[test]
    fn short_and_long_byte_strings_round_trip_and_look_up_by_slice() {
        let long = vec![7u8; 100];
        let cases: [&[u8]; 4] = [b"", b"k1", &[1; INLINE], &long];
        let mut map = HashMap::new();
        for (i, bytes) in cases.iter().enumerate() {
            let small = SmallBytes::from(bytes.to_vec());
            assert_eq!(&*small, *bytes);
            assert_eq!(&*SmallBytes::from(*bytes), *bytes);
            assert_eq!(
                matches!(small, SmallBytes::Inline { .. }),
                bytes.len() <= INLINE
            );
            map.insert(small, i);
        }
        for (i, bytes) in cases.iter().enumerate() {
            assert_eq!(map.get(*bytes), Some(&i));
        }
        assert_eq!(map.get(&b"k2"[..]), None);
    }
}
