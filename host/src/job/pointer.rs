//! JSON pointers (RFC 6901), the syntax of `key_by`.

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

    /// The reference tokens, unescaped (`~1` is `/`, `~0` is `~`); none for `""`.
    pub fn tokens(&self) -> Vec<String> {
        self.0
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect()
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tokens_are_unescaped_in_order() {
        let p = |s| JsonPointer::parse(s).unwrap().tokens();
        assert_eq!(p(""), Vec::<String>::new());
        assert_eq!(p("/"), [""]);
        assert_eq!(p("/user/id"), ["user", "id"]);
        // `~01` is `~1` unescaped once, not `/`.
        assert_eq!(p("/a~1b/m~0n/~01"), ["a/b", "m~n", "~1"]);
    }
}
