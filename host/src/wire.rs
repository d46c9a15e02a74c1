//! The little-endian, length-prefixed encoding that Weir's own binary files share
//! (operator state, channel state): writers and a reader that fails on a short input.

/// The input ended before a value did.
#[derive(Debug)]
pub struct Truncated;

/// Appends `n` as a `u32`.
pub fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("sizes in Weir's files fit in 32 bits");
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends `bytes`, prefixed by their length.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads values off the front of a byte slice.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.0.len() < n {
            return Err(Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next `N` bytes, as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// The next `u32`.
    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// The next length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], Truncated> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}
