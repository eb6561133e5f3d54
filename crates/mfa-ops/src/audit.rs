//! The JSON view of an audit event's own fields, one reading for `mfa admin audit --format jsonl`,
//! the HTTP API's audit log and the portal's audit page.

use mfa_core::audit::Event;

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
}
