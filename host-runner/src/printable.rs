//! Text from manifests, rule sets and requests on its way to a terminal or a CI log. A name with
//! an ESC sequence, a newline or a right-to-left override could otherwise repaint the screen or
//! forge a line such as "✔ ... nothing fails the check"; each such character is shown escaped.

use std::borrow::Cow;

/// Whether `c` must not reach a log as itself: control characters (C0, DEL, C1), line and
/// paragraph separators, and the invisible format characters that reorder or hide text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `text` with every unsafe character written as a Rust-style escape (`\n`, `\u{1b}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_and_reordering_characters_are_escaped() {
        assert_eq!(printable("api-v1.2 ✔ ünïcode"), "api-v1.2 ✔ ünïcode");
        assert_eq!(printable("a\nb\x1b[2K\r"), "a\\nb\\u{1b}[2K\\r");
        assert_eq!(printable("x\u{202e}y\0"), "x\\u{202e}y\\u{0}");
        assert_eq!(printable("\u{85}\u{2028}"), "\\u{85}\\u{2028}");
    }
}
