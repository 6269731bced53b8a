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

/// A record version from a timestamp: microseconds since the epoch of the
/// instant it names (never its text, whose offsets make it unsortable).
pub fn version_of(s: &str) -> Result<i64, String> {
    Ok(instant(s)?.timestamp_micros())
}

/// The newest of several instants (or the first error reading one), as a
/// version like [`version_of`]'s.
pub fn newest(
    instants: impl IntoIterator<Item = Result<DateTime<Utc>, String>>,
) -> Result<i64, String> {
    let mut best = None;
    for t in instants {
        let v = t?.timestamp_micros();
        best = Some(best.map_or(v, |b: i64| b.max(v)));
    }
    best.ok_or_else(|| "no timestamp to version the record by".to_owned())
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
        assert_eq!(
            newest(
                [
                    Some("2026-11-02T20:00:00Z"),
                    None,
                    Some("2026-11-02T21:00:00Z")
                ]
                .into_iter()
                .flatten()
                .map(instant)
            )
            .unwrap(),
            version_of("2026-11-02T21:00:00Z").unwrap()
        );
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
