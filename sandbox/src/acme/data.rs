//! A deterministic, realistic and messy data set from a seed: names with
//! non-ASCII letters, phone numbers typed every which way, missing emails,
//! appointments across time zones, some with no `ends_at`, a few with no
//! `starts_at`, a few pointing at contacts that do not exist, deleted
//! records, and `updated_at` written with the offset of whoever changed it.

use super::model::{Activity, Appointment, Contact, User};
use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How much to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Users.
    pub users: usize,
    /// Contacts.
    pub contacts: usize,
    /// Appointments.
    pub appointments: usize,
    /// Activities.
    pub activities: usize,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            users: 5,
            contacts: 60,
            appointments: 200,
            activities: 200,
        }
    }
}

/// The generated records.
#[derive(Debug, Clone, Default)]
pub struct DataSet {
    /// Users.
    pub users: Vec<User>,
    /// Contacts.
    pub contacts: Vec<Contact>,
    /// Appointments.
    pub appointments: Vec<Appointment>,
    /// Activities.
    pub activities: Vec<Activity>,
}

const FIRST: &[&str] = &[
    "Ola",
    "Zoë",
    "José",
    "Åsa",
    "Ngozi",
    "Łukasz",
    "Mei",
    "François",
    "Siobhán",
    "Dmitri",
    "Ana",
    "Jürgen",
    "Priya",
    "Chloé",
    "Björn",
    "Hiroshi",
    "Aylin",
    "Noah",
    "Fatima",
    "Liam",
];
const LAST: &[&str] = &[
    "Nordmann",
    "Müller",
    "Álvarez",
    "Lindqvist",
    "Okafor",
    "Wójcik",
    "Zhang",
    "Dubois",
    "O'Brien",
    "Ivanov",
    "Souza",
    "Groß",
    "Patel",
    "Lefèvre",
    "Sørensen",
    "Tanaka",
    "Yılmaz",
    "Smith",
    "Haddad",
    "Murphy",
];
const ZONES: &[&str] = &[
    "America/Chicago",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
];
const TITLES: &[&str] = &[
    "Renewal review",
    "Quarterly check-in",
    "Demo",
    "Onboarding call",
    "Contract signing",
    "Site visit",
];
const PLACES: &[&str] = &[
    "Zoom",
    "Phone",
    "Head office, Room 4",
    "Café Ümlaut",
    "Teams",
    "Customer site",
];

/// A phone number as a person might type it.
fn phone(rng: &mut StdRng) -> Option<String> {
    let a = rng.random_range(200..999);
    let b = rng.random_range(0..10_000);
    Some(match rng.random_range(0..10) {
        0 => return None,
        1 => format!("+1 ({a}) 555-{b:04}"),
        2 => format!("{a}.555.{b:04}"),
        3 => format!("{a}-555-{b:04}"),
        4 => format!("+44 20 7946 {b:04}"),
        5 => format!("(020) 7946 {b:04}"),
        6 => format!("555{b:04}"),
        7 => format!("+49 30 {a}{b:04}"),
        8 => format!("  +33 1 42 68 {:02} {:02} ", b % 100, b / 100),
        _ => format!("1-{a}-555-{b:04} ext. {}", rng.random_range(1..99)),
    })
}

fn ascii_slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'a'..='z' | 'A'..='Z' => Some(c.to_ascii_lowercase()),
            'ë' | 'é' | 'è' => Some('e'),
            'á' | 'å' | 'Å' | 'Á' => Some('a'),
            'ü' | 'ú' => Some('u'),
            'ö' | 'ø' | 'ó' => Some('o'),
            'ł' | 'Ł' => Some('l'),
            'ç' => Some('c'),
            'ı' => Some('i'),
            'ß' => Some('s'),
            _ => None,
        })
        .collect()
}

/// An offset that some user in the world might write a timestamp with.
pub fn random_offset(rng: &mut impl Rng) -> FixedOffset {
    const OFFSETS: &[i32] = &[
        -8 * 3600,
        -6 * 3600,
        -5 * 3600,
        0,
        3600,
        2 * 3600,
        5 * 3600 + 1800,
        9 * 3600,
    ];
    FixedOffset::east_opt(OFFSETS[rng.random_range(0..OFFSETS.len())]).expect("valid offset")
}

/// `instant` as written by someone at a random offset.
pub fn stamp(rng: &mut impl Rng, instant: DateTime<Utc>) -> DateTime<FixedOffset> {
    use chrono::SubsecRound;
    instant.trunc_subsecs(3).with_timezone(&random_offset(rng))
}

/// A local time in `zone` with that zone's offset.
fn zoned(zone: &str, utc: DateTime<Utc>) -> DateTime<FixedOffset> {
    let tz: chrono_tz::Tz = zone.parse().expect("known zone");
    use chrono::SubsecRound;
    tz.from_utc_datetime(&utc.trunc_subsecs(0).naive_utc())
        .fixed_offset()
}

/// Generates a data set; the same seed and counts give the same records
/// (timestamps relative to `now`).
pub fn generate(seed: u64, counts: Counts, now: DateTime<Utc>) -> DataSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ds = DataSet::default();
    let past =
        |rng: &mut StdRng, days: i64| now - Duration::seconds(rng.random_range(60..days * 86_400));

    for i in 0..counts.users {
        let first = FIRST[(i * 7 + 3) % FIRST.len()];
        let last = LAST[(i * 3 + 1) % LAST.len()];
        ds.users.push(User {
            id: format!("usr_{:04x}", 0x8f20 + i),
            name: format!("{first} {last}"),
            email: if i % 4 == 1 {
                // Mixed case: matching must ignore case.
                format!(
                    "{}.{}@Northwind.example",
                    ascii_slug(first),
                    ascii_slug(last)
                )
            } else {
                format!(
                    "{}.{}@northwind.example",
                    ascii_slug(first),
                    ascii_slug(last)
                )
            },
            timezone: ZONES[i % ZONES.len()].to_owned(),
        });
    }
    let owner = |rng: &mut StdRng, ds: &DataSet| {
        ds.users[rng.random_range(0..ds.users.len().max(1))]
            .id
            .clone()
    };

    for i in 0..counts.contacts {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let created = past(&mut rng, 400);
        let updated =
            created + Duration::seconds(rng.random_range(0..(now - created).num_seconds().max(1)));
        let email = if rng.random_range(0..100) < 15 {
            None
        } else {
            Some(format!(
                "{}.{}{}@example.org",
                ascii_slug(first),
                ascii_slug(last),
                i
            ))
        };
        ds.contacts.push(Contact {
            id: format!("con_{:04x}", 0x1000 + i),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
            email,
            phone: phone(&mut rng),
            owner_id: if ds.users.is_empty() {
                String::new()
            } else {
                owner(&mut rng, &ds)
            },
            created_at: stamp(&mut rng, created),
            updated_at: stamp(&mut rng, updated),
            deleted_at: None,
        });
    }

    for i in 0..counts.appointments {
        let zone = ZONES[rng.random_range(0..ZONES.len())];
        let start =
            now + Duration::minutes(rng.random_range(-60 * 24 * 30..60 * 24 * 60) / 15 * 15);
        let minutes = [15, 30, 45, 60, 90][rng.random_range(0..5)];
        let roll = rng.random_range(0..100);
        let starts_at = (roll >= 2).then(|| zoned(zone, start));
        let ends_at = (roll >= 8).then(|| zoned(zone, start + Duration::minutes(minutes)));
        let contact_id = if !ds.contacts.is_empty() && rng.random_range(0..100) >= 2 {
            ds.contacts[rng.random_range(0..ds.contacts.len())]
                .id
                .clone()
        } else {
            format!("con_{:04x}", 0xdead + i)
        };
        let created = past(&mut rng, 90);
        let updated =
            created + Duration::seconds(rng.random_range(0..(now - created).num_seconds().max(1)));
        let status = match rng.random_range(0..100) {
            0..75 => "scheduled",
            75..90 => "completed",
            _ => "cancelled",
        };
        // A deletion is the record's latest change, within the 30 days that
        // deleted records stay listed.
        let deleted = (rng.random_range(0..100) < 3)
            .then(|| now - Duration::seconds(rng.random_range(60..20 * 86_400)));
        let updated = deleted.unwrap_or(updated).max(created);
        let deleted_at = deleted.map(|d| stamp(&mut rng, d.max(created)));
        ds.appointments.push(Appointment {
            id: format!("apt_{:04x}", 0x7000 + i),
            owner_id: if ds.users.is_empty() {
                String::new()
            } else {
                owner(&mut rng, &ds)
            },
            contact_id,
            title: (rng.random_range(0..100) >= 20)
                .then(|| TITLES[rng.random_range(0..TITLES.len())].to_owned()),
            starts_at,
            ends_at,
            timezone: zone.to_owned(),
            location: (rng.random_range(0..100) >= 25)
                .then(|| PLACES[rng.random_range(0..PLACES.len())].to_owned()),
            notes: (rng.random_range(0..100) < 40)
                .then(|| "Bring the Q3 numbers; ask about the Zürich office.".to_owned()),
            status: status.to_owned(),
            created_at: stamp(&mut rng, created),
            updated_at: stamp(&mut rng, updated),
            deleted_at,
        });
    }

    for i in 0..counts.activities {
        let kind = ["email", "email", "call", "call", "meeting", "note"][rng.random_range(0..6)];
        let occurred = past(&mut rng, 30);
        let updated = (occurred + Duration::seconds(rng.random_range(0..3600))).min(now);
        ds.activities.push(Activity {
            id: format!("act_{:04x}", 0x4000 + i),
            kind: kind.to_owned(),
            direction: if rng.random_bool(0.5) {
                "inbound"
            } else {
                "outbound"
            }
            .to_owned(),
            owner_id: if ds.users.is_empty() {
                String::new()
            } else {
                owner(&mut rng, &ds)
            },
            contact_id: if ds.contacts.is_empty() {
                "con_none".into()
            } else {
                ds.contacts[rng.random_range(0..ds.contacts.len())]
                    .id
                    .clone()
            },
            occurred_at: stamp(&mut rng, occurred),
            duration_seconds: (kind == "call").then(|| rng.random_range(20..2400)),
            subject: (kind != "call")
                .then(|| format!("Re: {}", TITLES[rng.random_range(0..TITLES.len())])),
            created_at: stamp(&mut rng, occurred),
            updated_at: stamp(&mut rng, updated),
            deleted_at: None,
        });
    }
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_and_it_is_messy() {
        let now = Utc::now();
        let counts = Counts {
            users: 5,
            contacts: 100,
            appointments: 400,
            activities: 100,
        };
        let a = generate(42, counts, now);
        let b = generate(42, counts, now);
        assert_eq!(a.appointments, b.appointments);
        assert_ne!(generate(43, counts, now).appointments, a.appointments);
        assert!(a.contacts.iter().any(|c| c.email.is_none()));
        assert!(
            a.contacts
                .iter()
                .any(|c| !c.first_name.is_ascii() || !c.last_name.is_ascii())
        );
        assert!(a.appointments.iter().any(|x| x.starts_at.is_none()));
        assert!(
            a.appointments
                .iter()
                .any(|x| x.starts_at.is_some() && x.ends_at.is_none())
        );
        let offsets: std::collections::HashSet<_> = a
            .appointments
            .iter()
            .map(|x| x.updated_at.offset().local_minus_utc())
            .collect();
        assert!(offsets.len() > 3, "updated_at carries varying offsets");
        let phones: std::collections::HashSet<_> = a
            .contacts
            .iter()
            .filter_map(|c| c.phone.as_deref())
            .map(|p| {
                p.chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect::<String>()
            })
            .collect();
        assert!(phones.len() > 4, "phone formats vary");
        // Appointment times carry their zone's offset.
        let chicago = a
            .appointments
            .iter()
            .find(|x| x.timezone == "America/Chicago" && x.starts_at.is_some())
            .unwrap();
        let off = chicago.starts_at.unwrap().offset().local_minus_utc();
        assert!(off == -6 * 3600 || off == -5 * 3600);
    }
}
