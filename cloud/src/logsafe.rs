//! Text a device or client controls, made safe to log: escaped (no control characters, no
//! forged log lines) and cut to a length.

/// `text` with control characters and quotes escaped (`escape_debug`), cut after `max`
/// characters with a note of what was left out.
pub fn truncate(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max) {
        out.extend(c.escape_debug());
    }
    let rest = chars.count();
    if rest > 0 {
        out.push_str(&format!("… ({rest} more characters)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn newlines_are_escaped_and_long_text_cut() {
        assert_eq!(truncate("a\nb", 10), "a\\nb");
        assert_eq!(truncate("abcdef", 3), "abc… (3 more characters)");
        assert_eq!(truncate("\u{1b}[31m", 10), "\\u{1b}[31m");
    }
}
