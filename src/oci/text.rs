//! What any string a request brings must be before it goes further: no
//! control characters (PostgreSQL refuses a NUL in text, and none belongs
//! in a name, a pattern, a password or a description) and a bounded
//! length. `http`'s and `ui`'s extractors apply it to every value they take.

/// The longest string taken from a path, query, form or JSON body; names,
/// patterns and passwords are far shorter.
pub const MAX_TEXT_LEN: usize = 4096;

/// Why `text` cannot be used, if it cannot.
pub fn refusal(text: &str, max_len: usize) -> Option<&'static str> {
    if text.len() > max_len {
        Some("is too long")
    } else if text.chars().any(char::is_control) {
        Some("holds a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_huge_strings_are_refused() {
        assert_eq!(refusal("alice", 64), None);
        assert_eq!(refusal("Ünïcode is fine", 64), None);
        assert!(refusal("a\0b", 64).is_some());
        assert!(refusal("line\nbreak", 64).is_some());
        assert!(refusal("del\u{7f}", 64).is_some());
        assert!(refusal(&"a".repeat(65), 64).is_some());
    }
}
