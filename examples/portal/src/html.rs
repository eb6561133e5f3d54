//! Server-rendered HTML: escaping, the page frame, dates.

use core::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// `text` with `& < > " '` escaped, safe in element content and in quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An id-safe slug of an email, for element ids: `alice@acme.test` -> `alice-acme-test`.
pub(crate) fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Who is signed in, for the page header: their email, and the CSRF token of the sign-out form.
pub(crate) struct Header<'a> {
    pub(crate) email: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) admin: bool,
    /// Signed in all the way (past MFA): the header links to the account.
    pub(crate) complete: bool,
}

/// A page in the portal's frame. `page` names it for the script (`<body data-page>`); `body` is
/// HTML, already escaped where it needs to be.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    page: &str,
    header: Option<&Header<'_>>,
    body: &str,
) -> Response {
    let mut html = String::with_capacity(body.len() + 2048);
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · Acme Billing</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js" defer></script>
</head>
<body data-page="{page}">
<header class="top">
<a class="brand" href="/"><span class="logo" aria-hidden="true">A</span>Acme Billing</a>
"#,
        title = escape(title),
        page = escape(page),
    );
    if let Some(header) = header {
        let admin = match (header.complete, header.admin) {
            (false, _) => "",
            (true, true) => r#"<a href="/admin" id="nav-admin">Settings</a>"#,
            (true, false) => r#"<a href="/account" id="nav-account">Account</a>"#,
        };
        let _ = write!(
            html,
            r#"<nav>{admin}<span class="who" id="who">{email}</span>
<form method="post" action="/signout" class="inline">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" id="sign-out" class="link">Sign out</button>
</form></nav>
"#,
            email = escape(header.email),
            csrf = escape(header.csrf),
        );
    }
    let _ = write!(
        html,
        r#"</header>
<main>
{body}
</main>
<footer>Customer portal demo · MFA by <code>mfa-core</code> · <a href="/api/openapi.json">API</a></footer>
</body>
</html>
"#
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(slug("Alice@acme.test"), "alice-acme-test");
    }
}
