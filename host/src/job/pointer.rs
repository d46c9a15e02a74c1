//! JSON pointers (RFC 6901), the syntax of `key_by`.

use serde_json::Value;

/// A syntactically valid JSON pointer such as `/url` or `/user/id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer(String);

impl JsonPointer {
    /// Checks the syntax: empty (the whole document) or `/`-separated tokens in which `~`
    /// is only used as `~0` (`~`) or `~1` (`/`).
    pub fn parse(text: &str) -> Result<JsonPointer, String> {
        if !text.is_empty() && !text.starts_with('/') {
            return Err(format!(
                "`{text}` is not a JSON pointer: it must start with `/`, as in `/{text}`"
            ));
        }
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "`{text}` is not a JSON pointer: `~` must be written `~0` and `/` inside a name `~1`"
                ));
            }
        }
        Ok(JsonPointer(text.to_string()))
    }

    /// The value the pointer names in `document`, if there is one.
    pub fn resolve<'v>(&self, document: &'v Value) -> Option<&'v Value> {
        document.pointer(&self.0)
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_rfc_6901_pointers() {
        for ok in ["", "/", "/url", "/user/id", "/a~1b", "/m~0n", "/0"] {
            assert!(JsonPointer::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_pointer_with_a_hint() {
        let err = JsonPointer::parse("url").unwrap_err();
        assert!(err.contains("`/url`"), "{err}");
        assert!(JsonPointer::parse("/a~2").is_err());
        assert!(JsonPointer::parse("/a~").is_err());
    }

    #[test]
    fn resolves_nested_and_escaped_names() {
        let doc = json!({"user": {"id": 7}, "a/b": "x"});
        let p = |s| JsonPointer::parse(s).unwrap();
        assert_eq!(p("/user/id").resolve(&doc), Some(&json!(7)));
        assert_eq!(p("/a~1b").resolve(&doc), Some(&json!("x")));
        assert_eq!(p("/missing").resolve(&doc), None);
    }
}
