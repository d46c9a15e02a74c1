//! A fast path for the common key: a plain string (no escapes, ASCII) at an object path,
//! in a document that is certainly valid JSON.
//!
//! Reading every record's key with serde took two thirds of a source thread's time. This
//! scanner reads a document once, checking it as strictly as serde_json does, and answers
//! only when it is sure; anything unusual (escapes in a name or in the key, non-ASCII
//! bytes, fractions and exponents, array indices, duplicate names on the path, deep
//! nesting, any error) is left to the serde path, which also words the errors. So for
//! every document it answers, the key is exactly the one serde finds, and it never
//! accepts a document serde refuses.

use std::ops::Range;

/// Deeper documents are left to serde (whose own limit is 128).
const MAX_DEPTH: u32 = 64;
/// Longer integers are left to serde.
const MAX_DIGITS: usize = 18;

/// The key at the pointer `tokens` of `payload`, if the scanner is sure of it: see the
/// module documentation. `None` means "ask serde", not "no key".
pub(crate) fn string_key<'a>(payload: &'a [u8], tokens: &[String]) -> Option<&'a [u8]> {
    let mut scanner = Scanner {
        text: payload,
        at: 0,
        depth: 0,
        found: None,
    };
    scanner.space();
    scanner.value(Some(tokens))?;
    scanner.space();
    (scanner.at == payload.len()).then_some(())?;
    scanner.found.map(|range| &payload[range])
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    depth: u32,
    /// Where the key's characters are, once found.
    found: Option<Range<usize>>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One value. `path` is the pointer's rest when this value lies on its path
    /// (empty: this is the key), `None` when it lies off it.
    fn value(&mut self, path: Option<&[String]>) -> Option<()> {
        match (self.peek()?, path) {
            (b'"', Some([])) => {
                let (range, escaped) = self.string()?;
                // Two keys means a duplicate name on the path: serde knows which wins.
                (!escaped && self.found.is_none()).then_some(())?;
                self.found = Some(range);
                Some(())
            }
            // A key that is not a plain string is serde's compact JSON.
            (_, Some([])) => None,
            (b'{', path) => self.object(path),
            // An array on the path needs an index: serde's.
            (b'[', None) => self.array(),
            (_, Some(_)) => None,
            (b'"', None) => self.string().map(drop),
            (b'-' | b'0'..=b'9', None) => self.integer(),
            (b't', None) => self.word(b"true"),
            (b'f', None) => self.word(b"false"),
            (b'n', None) => self.word(b"null"),
            _ => None,
        }
    }

    fn object(&mut self, path: Option<&[String]>) -> Option<()> {
        let mut matched = false;
        self.items(b'{', b'}', |scanner| {
            let (name, escaped) = scanner.string()?;
            let inner = match path {
                Some([token, rest @ ..]) => {
                    // An escaped name might spell the token.
                    (!escaped).then_some(())?;
                    if same(&scanner.text[name], token.as_bytes()) {
                        (!matched).then_some(())?;
                        matched = true;
                        Some(rest)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            scanner.space();
            scanner.eat(b':')?;
            scanner.space();
            scanner.value(inner)
        })
    }

    fn array(&mut self) -> Option<()> {
        self.items(b'[', b']', |scanner| scanner.value(None))
    }

    /// `open`, then `item`s separated by commas, then `close`.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())?;
        self.eat(open)?;
        self.space();
        if self.eat(close).is_none() {
            loop {
                item(self)?;
                self.space();
                match self.peek()? {
                    b',' => self.at += 1,
                    byte if byte == close => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
                self.space();
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A string of printable ASCII and short escapes: where its characters are, and
    /// whether it had escapes. `\u` escapes are serde's (surrogates).
    fn string(&mut self) -> Option<(Range<usize>, bool)> {
        self.eat(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some((start..self.at - 1, escaped));
                }
                b'\\' => {
                    self.at += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            escaped = true;
                            self.at += 1;
                        }
                        _ => return None,
                    }
                }
                0x20..=0x7e => self.at += 1,
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)`, short enough for any integer type, and no fraction or
    /// exponent after it.
    fn integer(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        let start = self.at;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.at += 1;
                }
            }
            _ => return None,
        }
        let short = self.at - start <= MAX_DIGITS;
        let plain = !matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9'));
        (short && plain).then_some(())
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.text.get(self.at..end)? == word).then(|| self.at = end)
    }
}

/// `a == b`, without a call to `memcmp` for the few bytes of a member name (that call
/// was a tenth of a source thread's time).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(true, |same, (x, y)| same & (x == y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(document: &'a str, pointer: &[&str]) -> Option<&'a str> {
        let tokens: Vec<String> = pointer.iter().map(|t| t.to_string()).collect();
        string_key(document.as_bytes(), &tokens).map(|k| std::str::from_utf8(k).unwrap())
    }

    #[test]
    fn plain_string_keys_are_found_on_object_paths() {
        assert_eq!(key(r#"{"key":"key-7","seq":3}"#, &["key"]), Some("key-7"));
        let nested = r#" { "a" : [1, -2, 0, {"x": null}], "u": {"id": "42", "n": true} } "#;
        assert_eq!(key(nested, &["u", "id"]), Some("42"));
        assert_eq!(key(r#""whole""#, &[]), Some("whole"));
        assert_eq!(key(r#"{"k":"","e":"a\"b\\c\/\n"}"#, &["k"]), Some(""));
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for (document, pointer) in [
            (r#"{"key": 7}"#, &["key"][..]),
            (r#"{"key": "a\"b"}"#, &["key"]),
            (r#"{"k\u0065y": "x"}"#, &["key"]),
            (r#"{"k\"y": "x", "key": "y"}"#, &["key"]),
            (r#"{"key": "é"}"#, &["key"]),
            (r#"{"key": "x", "key": "y"}"#, &["key"]),
            (r#"{"a": ["x"]}"#, &["a", "0"]),
            (r#"{"key": "x", "n": 1.5}"#, &["key"]),
            (r#"{"key": "x", "n": 1e3}"#, &["key"]),
            (r#"{"key": "x", "n": 1234567890123456789}"#, &["key"]),
            (r#"{"other": "x"}"#, &["key"]),
        ] {
            assert_eq!(key(document, pointer), None, "{document}");
        }
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert_eq!(key(&format!(r#"{{"key":"x","d":{deep}}}"#), &["key"]), None);
    }

    #[test]
    fn invalid_documents_are_never_answered() {
        for document in [
            r#"{"key":"x""#,
            r#"{"key":"x",}"#,
            r#"{"key":"x"} {}"#,
            r#"{"key":"x","n":01}"#,
            r#"{"key":"x","n":-}"#,
            r#"{"key":"x","n":[1,]}"#,
            r#"{"key":"x","n":tru}"#,
            r#"{"key":"x","n":"a	b"}"#,
            r#"{"key":"x","n":"\q"}"#,
            r#"{"key":"x" "n":1}"#,
            r#"{"key":"x","n":{1:2}}"#,
            r#"{"key" "x"}"#,
            "",
        ] {
            assert_eq!(key(document, &["key"]), None, "{document}");
            assert!(serde_json::from_str::<serde_json::Value>(document).is_err());
        }
    }
}
