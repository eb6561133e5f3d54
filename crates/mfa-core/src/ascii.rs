//! Small ASCII helpers for the lenient parsers (algorithm names, URI schemes and parameters).

/// `text` without `prefix`, compared ignoring ASCII case, or `None` when it does not start with it.
pub(crate) fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, tail) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(tail)
}

/// The byte index of the first occurrence of `needle` (ASCII) in `haystack`, ignoring ASCII case.
pub(crate) fn find_ignore_ascii_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}
