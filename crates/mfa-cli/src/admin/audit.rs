//! `mfa admin audit`: an organisation's audit log, oldest first, streamed a page at a time to a
//! buffered stdout, so a log of millions of events exports in constant memory.

use std::io::{self, BufWriter, Write};

use clap::ValueEnum;
use mfa_core::{
    CustomerId, OrgId, Store, UnixTime,
    audit::{AuditExport, Event, EventKind, StoredEvent},
};
use mfa_ops::audit::{AuditEvent, details};

use super::output::rfc3339;
use crate::Failure;

/// Events read from the store at a time.
const PAGE: usize = 1000;

/// The widest a customer column grows in the table before longer ids push the next columns right.
const MAX_CUSTOMER_WIDTH: usize = 40;

/// `--format` of `audit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuditFormat {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// One JSON object a line, for machines.
    Jsonl,
}

/// What to export.
pub(crate) struct Export {
    pub(crate) org: OrgId,
    pub(crate) customer: Option<CustomerId>,
    pub(crate) since: Option<UnixTime>,
    pub(crate) format: AuditFormat,
}

/// Writes the events to stdout. A reader that goes away (`| head`) ends the export quietly.
pub(crate) async fn export<S: Store>(store: &S, export: Export) -> Result<(), Failure> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout());
    match write_all(store, &export, &mut out).await {
        Err(Exported::Io(error)) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(Exported::Io(error)) => Err(Failure::failed(format!("writing the export: {error}"))),
        Err(Exported::Store(failure)) => Err(failure),
        Ok(()) => Ok(()),
    }
}

enum Exported {
    Io(io::Error),
    Store(Failure),
}

impl From<io::Error> for Exported {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

async fn write_all<S: Store>(
    store: &S,
    export: &Export,
    out: &mut impl Write,
) -> Result<(), Exported> {
    let mut query = AuditExport {
        customer: export.customer.clone(),
        since: export.since,
        after_seq: None,
        limit: PAGE,
    };
    let mut widths = None;
    loop {
        let page = store
            .export_audit(&export.org, &query)
            .await
            .map_err(|error| {
                Exported::Store(Failure::failed(format!("store: {}", crate::chain(&error))))
            })?;
        // The last page is the empty one: a store may hand out fewer than asked on any page.
        let Some(last) = page.last() else { break };
        query.after_seq = Some(last.seq);
        match export.format {
            AuditFormat::Jsonl => {
                for stored in &page {
                    serde_json::to_writer(&mut *out, &AuditEvent::from(stored))
                        .map_err(io::Error::from)?;
                    out.write_all(b"\n")?;
                }
            }
            AuditFormat::Table => {
                let widths = match widths {
                    Some(widths) => widths,
                    None => {
                        // The first page sets the widths: the export never holds more than a page.
                        let first = Widths::of(&page);
                        write_header(first, out)?;
                        *widths.insert(first)
                    }
                };
                for stored in &page {
                    write_row(stored, widths, out)?;
                }
            }
        }
    }
    if export.format == AuditFormat::Table && widths.is_none() {
        write_header(Widths::of(&[]), out)?;
    }
    out.flush()?;
    Ok(())
}

/// Column widths of the table.
#[derive(Clone, Copy)]
struct Widths {
    seq: usize,
    customer: usize,
}

/// `2026-01-01T00:00:00Z`.
const AT_WIDTH: usize = 20;
/// `backup_codes_generated`, the longest kind name.
const KIND_WIDTH: usize = 22;

impl Widths {
    fn of(page: &[StoredEvent]) -> Self {
        let seq = page.last().map_or(0, |last| last.seq.to_string().len());
        let customer = page
            .iter()
            .filter_map(|stored| stored.event.customer.as_ref())
            .map(|customer| customer.as_str().chars().count())
            .max()
            .unwrap_or(0);
        Self {
            seq: seq.max("SEQ".len()),
            customer: customer.clamp("CUSTOMER".len(), MAX_CUSTOMER_WIDTH),
        }
    }
}

fn write_header(widths: Widths, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>seq$}  {:<AT_WIDTH$}  {:<customer$}  {:<KIND_WIDTH$}  DETAILS",
        "SEQ",
        "AT",
        "CUSTOMER",
        "KIND",
        seq = widths.seq,
        customer = widths.customer,
    )
}

fn write_row(stored: &StoredEvent, widths: Widths, out: &mut impl Write) -> io::Result<()> {
    let event = &stored.event;
    let customer = event.customer.as_ref().map_or("-", CustomerId::as_str);
    let details = details_text(event);
    let line = format!(
        "{:>seq$}  {:<AT_WIDTH$}  {:<customer_width$}  {:<KIND_WIDTH$}  {details}",
        stored.seq,
        rfc3339(event.at),
        customer,
        event.kind_name(),
        seq = widths.seq,
        customer_width = widths.customer,
    );
    writeln!(out, "{}", line.trim_end())
}

/// The kind's fields for people: `by=admin`, `factor=totp reason=wrong_code failures=2`, with
/// times as RFC 3339.
fn details_text(event: &Event) -> String {
    match &event.kind {
        EventKind::EnrollmentStarted { expires_at } => {
            format!("expires_at={}", rfc3339(*expires_at))
        }
        EventKind::LockedOut { until } => format!("until={}", rfc3339(*until)),
        _ => match details(event) {
            serde_json::Value::Object(fields) => fields
                .iter()
                .map(|(name, value)| match value {
                    // Free text (who did it): control characters shown escaped, so a name
                    // cannot move the cursor or forge a line on the reader's terminal.
                    serde_json::Value::String(text) => format!("{name}={}", text.escape_debug()),
                    other => format!("{name}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
    }
}
