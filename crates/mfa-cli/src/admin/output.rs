//! How `mfa admin` shows things: aligned tables for people, JSON for machines, times as RFC 3339.

use clap::ValueEnum;
use mfa_core::UnixTime;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `--format` of the commands that show one thing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// One JSON object, for machines.
    Json,
}

/// A time as RFC 3339 in UTC (`2026-01-01T00:00:00Z`). Times past the year 9999 (a lockout that
/// saturated at the end of time, say) have no RFC 3339 form and are shown as seconds since the epoch.
pub(crate) use mfa_ops::audit::rfc3339;

/// Reads an RFC 3339 time (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`); a fraction of a
/// second is dropped.
pub(crate) fn parse_rfc3339(text: &str) -> Result<UnixTime, String> {
    let time = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|error| {
        format!("{text:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z ({error})")
    })?;
    u64::try_from(time.unix_timestamp())
        .map(UnixTime::from_secs)
        .map_err(|_| format!("{text:?} is before 1970"))
}

/// `rfc3339` of an optional time, or `-`.
pub(crate) fn rfc3339_or_dash(at: Option<UnixTime>) -> String {
    at.map_or_else(|| "-".to_owned(), rfc3339)
}

/// Rows with their columns padded to the widest cell of each column (the last column is not
/// padded), one line each.
pub(crate) fn table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut text = String::new();
    for row in rows {
        let cells = row.as_ref();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        text.push('\n');
    }
    text
}

/// Pairs of a name and a value, as a two-column table.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let rows: Vec<[String; 2]> = pairs
        .iter()
        .map(|(name, value)| [(*name).to_owned(), value.clone()])
        .collect();
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let at = UnixTime::from_secs(1_767_225_600);
        assert_eq!(rfc3339(at), "2026-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Ok(at));
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00.75+01:00"), Ok(at));
        assert_eq!(rfc3339(UnixTime::from_secs(u64::MAX)), u64::MAX.to_string());
        for bad in ["2026-01-01", "yesterday", "1969-12-31T23:59:59Z", ""] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_align_every_column_but_the_last() {
        let rows = [
            ["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            ["dddd".to_owned(), "e".to_owned(), "ffff".to_owned()],
        ];
        assert_eq!(table(&rows), "a     bb  c\ndddd  e   ffff\n");
    }
}
