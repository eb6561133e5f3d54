//! The JSON view of an audit event: one reading for `mfa admin audit --format jsonl`, the HTTP
//! API's audit log and the portal's audit page, so that a SIEM pipeline fed from any of them sees
//! the same objects.

use mfa_core::audit::{Event, StoredEvent};
use mfa_core::{CustomerId, UnixTime};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One audit event as JSON:
///
/// ```json
/// {"seq": 7, "at": "2026-01-01T00:00:30Z", "org": "acme", "customer": "alice@acme.test",
///  "kind": "attempt_rejected", "details": {"factor": "totp", "reason": "wrong_code", "failures": 1}}
/// ```
///
/// It never holds a secret or a code: events hold none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AuditEvent {
    /// Its position in the organisation's log: larger is newer.
    pub seq: u64,
    /// When it happened, in RFC 3339 UTC (`2026-01-01T00:00:30Z`).
    #[cfg_attr(feature = "openapi", schema(example = "2026-01-01T00:00:30Z"))]
    pub at: String,
    /// The organisation.
    pub org: String,
    /// The customer, for customer events; `null` for the organisation's own.
    pub customer: Option<String>,
    /// What happened: `enrollment_started`, `enrollment_confirmed`, `totp_accepted`,
    /// `backup_code_accepted`, `backup_codes_generated`, `attempt_rejected`, `locked_out`, `reset`,
    /// `org_enabled`, `org_disabled`, `org_settings_changed`...
    #[cfg_attr(feature = "openapi", schema(example = "attempt_rejected"))]
    pub kind: String,
    /// The kind's own fields (see [`details`]): for `attempt_rejected`, the `factor`
    /// (`enrollment`, `totp`, `backup_code`), the real `reason` (`wrong_code`, `replayed_code`,
    /// `used_backup_code`, `expired`, `locked`, `malformed`) and the consecutive `failures`. Times
    /// among them are seconds since the Unix epoch.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

impl From<&StoredEvent> for AuditEvent {
    fn from(stored: &StoredEvent) -> Self {
        let event = &stored.event;
        Self {
            seq: stored.seq,
            at: rfc3339(event.at),
            org: event.org.as_str().to_owned(),
            customer: event
                .customer
                .as_ref()
                .map(|c| CustomerId::as_str(c).to_owned()),
            kind: event.kind_name().to_owned(),
            details: details(event),
        }
    }
}

/// The fields of an event's kind, as a JSON object (`{"by": "ops"}` for a reset; `{}` for a kind
/// with none). `EventKind` serialises externally tagged (`{"reset": {"by": ..}}`); the tag is the
/// event's `kind` already, so only the inner object is kept. Never a secret or a code: events hold
/// none.
#[must_use]
pub fn details(event: &Event) -> serde_json::Value {
    match serde_json::to_value(&event.kind) {
        Ok(serde_json::Value::Object(mut tagged)) => tagged
            .remove(event.kind_name())
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new())),
        _ => serde_json::Value::Object(serde_json::Map::new()),
    }
}

/// `at` in RFC 3339 UTC (`2026-01-01T00:00:30Z`); a time past the year 9999, which RFC 3339
/// cannot write, as its seconds since the epoch.
#[must_use]
pub fn rfc3339(at: UnixTime) -> String {
    i64::try_from(at.as_secs())
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .filter(|time| time.year() <= 9999)
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.as_secs().to_string())
}

#[cfg(test)]
mod tests {
    use mfa_core::audit::{EventKind, Factor, Rejection};
    use mfa_core::{Actor, OrgId, UnixTime};

    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            at: UnixTime::from_secs(1),
            org: OrgId::new("acme").unwrap(),
            customer: None,
            kind,
        }
    }

    #[test]
    fn a_kinds_fields_without_its_tag() {
        let reset = event(EventKind::Reset {
            by: Actor::new("ops").unwrap(),
        });
        assert_eq!(details(&reset), serde_json::json!({"by": "ops"}));
        let rejected = event(EventKind::AttemptRejected {
            factor: Factor::Totp,
            reason: Rejection::WrongCode,
            failures: 2,
        });
        assert_eq!(
            details(&rejected),
            serde_json::json!({"factor": "totp", "reason": "wrong_code", "failures": 2})
        );
    }

    #[test]
    fn an_event_reads_the_same_everywhere() {
        let stored = StoredEvent {
            seq: 7,
            event: Event {
                at: UnixTime::from_secs(1_767_225_630),
                org: OrgId::new("acme").unwrap(),
                customer: Some(CustomerId::new("alice@acme.test").unwrap()),
                kind: EventKind::AttemptRejected {
                    factor: Factor::Totp,
                    reason: Rejection::WrongCode,
                    failures: 1,
                },
            },
        };
        assert_eq!(
            serde_json::to_value(AuditEvent::from(&stored)).unwrap(),
            serde_json::json!({
                "seq": 7,
                "at": "2026-01-01T00:00:30Z",
                "org": "acme",
                "customer": "alice@acme.test",
                "kind": "attempt_rejected",
                "details": {"factor": "totp", "reason": "wrong_code", "failures": 1},
            })
        );
        let mut org_event = stored;
        org_event.event.customer = None;
        assert_eq!(
            serde_json::to_value(AuditEvent::from(&org_event)).unwrap()["customer"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn times_rfc3339_cannot_write_stay_seconds() {
        assert_eq!(rfc3339(UnixTime::from_secs(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UnixTime::from_secs(253_402_300_800)),
            "253402300800",
            "the year 10000"
        );
        assert_eq!(rfc3339(UnixTime::from_secs(u64::MAX)), u64::MAX.to_string());
    }
}
