//! What the Acme connectors share: turning Acme timestamps (RFC 3339 with
//! varying offsets) into comparable versions, and matching an Acme owner to
//! one of our users (by email, ignoring case, or through a tenant's explicit
//! mapping).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Parses an RFC 3339 timestamp with any offset into an instant.
pub fn instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp: {e}"))
}

/// Bits of a version below the newest instant's milliseconds (see
/// [`newest`]).
const TIE_BITS: u32 = 21;

/// A record version from one timestamp (never its text, whose offsets make
/// it unsortable): [`newest`] of that one instant.
pub fn version_of(s: &str) -> Result<i64, String> {
    newest([instant(s)])
}

/// The version of a record built from one or more Acme objects (an
/// appointment and its contact; an activity alone), from their instants.
///
/// Ordered first by the newest instant, then by the oldest: of two reads of
/// one record, the one that saw a newer state of *either* object is newer,
/// even when their newest instant is the same. Without the second key, the
/// appointment as it was before a reassignment, read with a contact changed
/// since, had the same version as the reassigned appointment with that
/// contact, and whichever came first stayed (a late webhook then kept an
/// event in its old owner's calendar). The order holds only between reads
/// whose objects are each as they were when read: a late webhook's object
/// with the other object read now would outrank later states of its own,
/// so `acme-crm` reads such an object again.
///
/// The milliseconds of the newest instant fill the high bits; the low 21
/// say how far the oldest is from it, on a logarithmic scale (exact up to
/// 32 seconds apart, then to within 1/32,768 of the gap: 0.1 s at an hour,
/// 3 s at a day). Versions grow with time until the year 2109.
pub fn newest(
    instants: impl IntoIterator<Item = Result<DateTime<Utc>, String>>,
) -> Result<i64, String> {
    let mut range: Option<(i64, i64)> = None;
    for t in instants {
        let ms = t?.timestamp_millis().max(0);
        range = Some(range.map_or((ms, ms), |(lo, hi)| (lo.min(ms), hi.max(ms))));
    }
    let (oldest, newest) =
        range.ok_or_else(|| "no timestamp to version the record by".to_owned())?;
    let gap = log_scale((newest - oldest) as u64);
    Ok((newest << TIE_BITS) | ((1i64 << TIE_BITS) - 1 - gap as i64))
}

/// A non-decreasing map of `x` into 21 bits: `x` itself below 2^15, then
/// the position of its highest bit and the 15 bits after it.
fn log_scale(x: u64) -> u64 {
    const M: u32 = 15;
    if x < 1 << M {
        return x;
    }
    let high = 63 - x.leading_zeros();
    let mantissa = (x >> (high - M)) & ((1 << M) - 1);
    (u64::from(high - M + 1) << M) | mantissa
}

/// The JSON Schema properties of [`UserMatching`], for the `describe` of
/// connectors that take it in their config.
pub fn user_matching_properties() -> Value {
    serde_json::json!({
        "user_map": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Acme email (any case) to our user's email" },
        "known_users": { "type": "array", "items": { "type": "string" }, "description": "Our users' emails; others are refused" }
    })
}

/// How a tenant's Acme users become our users.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserMatching {
    /// Acme email (any case) → our user's email.
    pub user_map: BTreeMap<String, String>,
    /// Our users' emails; when given, an owner who is not among them is
    /// refused instead of guessed.
    pub known_users: Option<Vec<String>>,
}

impl UserMatching {
    /// Our user for the owner described in an enriched record's `owner`
    /// object (`{"id", "email", "name"}`), or a reason that names the owner.
    pub fn our_user(&self, owner: &Value) -> Result<String, String> {
        let id = owner["id"].as_str().unwrap_or("(none)");
        let Some(email) = owner["email"].as_str().filter(|e| !e.is_empty()) else {
            return Err(format!(
                "owner {id} is not among Acme's /users, so has no email to match"
            ));
        };
        let lower = email.to_lowercase();
        let mapped = self
            .user_map
            .iter()
            .find(|(k, _)| k.to_lowercase() == lower)
            .map(|(_, v)| v.to_lowercase())
            .unwrap_or(lower);
        if let Some(known) = &self.known_users
            && !known.iter().any(|k| k.to_lowercase() == mapped)
        {
            return Err(format!(
                "owner {id} ({email}) has no user in our app (matched as {mapped})"
            ));
        }
        Ok(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_compare_instants_not_text() {
        let a = version_of("2026-11-02T14:30:00-06:00").unwrap();
        let b = version_of("2026-11-02T21:00:00+01:00").unwrap();
        assert!(
            a > b,
            "20:30Z is later than 20:00Z although its text sorts first"
        );
        let both = newest(
            [
                Some("2026-11-02T20:00:00Z"),
                None,
                Some("2026-11-02T21:00:00Z"),
            ]
            .into_iter()
            .flatten()
            .map(instant),
        )
        .unwrap();
        // Newer than anything before 21:00, older than 21:00 read alone.
        assert!(both > version_of("2026-11-02T20:59:59.999Z").unwrap());
        assert!(both < version_of("2026-11-02T21:00:00Z").unwrap());
    }

    #[test]
    fn of_two_reads_the_one_that_saw_a_newer_object_is_newer() {
        let v = |ts: &[&str]| newest(ts.iter().map(|t| instant(t))).unwrap();
        // The appointment before and after its reassignment at 10:00, each
        // read with the contact as changed at 11:00.
        let before = v(&["2026-11-02T09:00:00Z", "2026-11-02T11:00:00Z"]);
        let after = v(&["2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z"]);
        assert!(after > before);
        // The same appointment with the contact before and after a change.
        let old_contact = v(&["2026-11-02T12:00:00Z", "2026-11-02T11:00:00Z"]);
        let new_contact = v(&["2026-11-02T12:00:00Z", "2026-11-02T11:30:00Z"]);
        assert!(new_contact > old_contact);
        // The newest instant decides first, to the millisecond.
        assert!(
            v(&["2026-11-02T12:00:00.001Z"]) > v(&["2026-11-02T12:00:00Z", "2026-11-02T12:00:00Z"])
        );
        assert!(
            v(&["2026-11-02T12:00:00Z"]) > v(&["2026-11-02T12:00:00Z", "2026-11-02T11:59:00Z"])
        );
        // Days apart still count.
        assert!(
            v(&["2026-11-02T12:00:00Z", "2026-11-01T00:00:00Z"])
                > v(&["2026-11-02T12:00:00Z", "2026-10-01T00:00:00Z"])
        );
    }

    #[test]
    fn the_log_scale_never_goes_down_and_fits_21_bits() {
        let xs: std::collections::BTreeSet<u64> = (0..70_000)
            .chain((16..64).flat_map(|b| {
                let p = 1u64 << b;
                [p - 1, p, p + 1, p + p / 3]
            }))
            .collect();
        let mut last = 0;
        for x in xs {
            let y = log_scale(x);
            assert!(y >= last, "{x}");
            assert!(y < 1 << TIE_BITS, "{x}");
            last = y;
        }
        assert!(log_scale(3_600_000) < log_scale(3_600_200));
        assert_eq!(log_scale(u64::MAX) >> 15, 49);
    }

    #[test]
    fn owners_match_by_email_ignoring_case_or_by_map() {
        let m = UserMatching {
            user_map: [(
                "Dana@Old.example".to_string(),
                "dana@new.example".to_string(),
            )]
            .into(),
            known_users: Some(vec!["dana@new.example".into(), "ola@x.example".into()]),
        };
        assert_eq!(
            m.our_user(&json!({"id": "usr_1", "email": "OLA@x.example"}))
                .unwrap(),
            "ola@x.example"
        );
        assert_eq!(
            m.our_user(&json!({"id": "usr_2", "email": "dana@old.example"}))
                .unwrap(),
            "dana@new.example"
        );
        let e = m
            .our_user(&json!({"id": "usr_3", "email": "zoe@x.example"}))
            .unwrap_err();
        assert!(e.contains("usr_3") && e.contains("zoe@x.example"), "{e}");
        let e = m
            .our_user(&json!({"id": "usr_9", "email": null}))
            .unwrap_err();
        assert!(e.contains("usr_9"), "{e}");
    }
}
