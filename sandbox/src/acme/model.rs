//! Acme's resources as its API documents them (`../shared/specs/acme-crm-api.md`).

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// An Acme seat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// `usr_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// IANA time zone.
    pub timezone: String,
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// `con_…`.
    pub id: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email, if known.
    pub email: Option<String>,
    /// Phone as typed.
    pub phone: Option<String>,
    /// Owning user.
    pub owner_id: String,
    /// Created.
    pub created_at: DateTime<FixedOffset>,
    /// Last changed.
    pub updated_at: DateTime<FixedOffset>,
    /// Deleted (still listed for 30 days).
    #[serde(default)]
    pub deleted_at: Option<DateTime<FixedOffset>>,
}

/// An appointment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appointment {
    /// `apt_…`.
    pub id: String,
    /// Owning user.
    pub owner_id: String,
    /// The customer.
    pub contact_id: String,
    /// Title.
    pub title: Option<String>,
    /// Start, with the offset of its time zone; null in imported data.
    pub starts_at: Option<DateTime<FixedOffset>>,
    /// End; null means "default duration".
    pub ends_at: Option<DateTime<FixedOffset>>,
    /// IANA time zone.
    pub timezone: String,
    /// Location.
    pub location: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// `scheduled`, `completed` or `cancelled`.
    pub status: String,
    /// Created.
    pub created_at: DateTime<FixedOffset>,
    /// Last changed.
    pub updated_at: DateTime<FixedOffset>,
    /// Deleted.
    pub deleted_at: Option<DateTime<FixedOffset>>,
}

/// A touch-point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// `act_…`.
    pub id: String,
    /// `email`, `call`, `meeting` or `note`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Owning user.
    pub owner_id: String,
    /// The customer.
    pub contact_id: String,
    /// When it happened.
    pub occurred_at: DateTime<FixedOffset>,
    /// Call length.
    pub duration_seconds: Option<u32>,
    /// Subject.
    pub subject: Option<String>,
    /// Created.
    pub created_at: DateTime<FixedOffset>,
    /// Last changed.
    pub updated_at: DateTime<FixedOffset>,
    /// Deleted.
    pub deleted_at: Option<DateTime<FixedOffset>>,
}

/// Which listable resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `/contacts`.
    Contacts,
    /// `/appointments`.
    Appointments,
    /// `/activities`.
    Activities,
}

impl Kind {
    /// The event prefix (`appointment`, ...).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Contacts => "contact",
            Kind::Appointments => "appointment",
            Kind::Activities => "activity",
        }
    }

    /// The ID prefix.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Contacts => "con_",
            Kind::Appointments => "apt_",
            Kind::Activities => "act_",
        }
    }
}
