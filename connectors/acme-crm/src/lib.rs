//! `acme-crm`: the source connector for Acme CRM's REST API v1.
//!
//! Streams:
//! - `appointments`: every appointment change, enriched with its contact
//!   (batched `?ids=` lookups, at most 50 a call) and its owner (from
//!   `/users`, cached in kv and refreshed when an owner is unknown).
//! - `activities`: every activity (all types, so that one whose type changes
//!   away from email or call reaches the mapper and leaves the dashboard);
//!   emails and calls are enriched the same way.
//! - `contacts`: a changed contact re-emits the appointments that reference
//!   it, so that a customer's new phone or email reaches their events. Acme
//!   cannot list appointments by contact, so this connector keeps that index
//!   in kv (`contact:{id}` → appointment IDs), filled as appointments pass
//!   (a listing's pages through a journal: see the `index` module).
//!   Without a cursor it starts at `contacts-start` in kv: ten minutes
//!   before the first fetch of any of the tenant's streams, stored then and
//!   never moved (appointments read after it carry their contact as it is).
//!   A deleted contact re-emits its appointments with its last known
//!   fields. What records read after a deletion carry is the tenant's
//!   choice (`deleted_contacts`): nothing, as statement 10 of `our-app.md`
//!   says (the default), or the contact's last fields while Acme lists it.
//!   One call re-reads at most `reads_per_call` appointments and
//!   then continues from the contact it stopped at.
//!
//! Incremental by `updated_since` plus Acme's page cursor; the weft cursor is
//! JSON `{"since": …, "acme": …}` and an expired Acme cursor restarts from
//! `since`. Versions come from the instants of `updated_at` (never their
//! text, whose offsets make it unsortable): for an enriched appointment,
//! ordered by the newest of the appointment's and the contact's, then by
//! the oldest (`acme_common::newest`), so that a read that saw a newer
//! state of either is newer, and a late webhook of the appointment as it
//! was never wins over the reassigned one read with the same contact. Deleted records
//! become deletes. `on-webhook` turns Acme events into the same records. An
//! event can come late, so its object is not always taken as it came: an
//! appointment whose customer changed after it is read again (with its
//! customer as it is now, the appointment as it was would be versioned by
//! the customer's change and outrank the appointment's own later states),
//! and a customer is always read again before its appointments are.

weft_sdk::connector_bindings!("source-connector");

use acme_common::instant;
use exports::weft::connector::metadata::Guest as Metadata;
use exports::weft::connector::source::{Guest as Source, Page, Webhook};
mod index;
mod obj;

use obj::{Bad, Listing, Obj, Owner};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use weft_sdk::http::{Request, Response};
use weft_sdk::types::{ConnectorInfo, Error, Record, StreamInfo, TransientError};
use weft_sdk::{invalid, kv, log, tenant_config};

struct AcmeCrm;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    base_url: String,
    #[serde(default = "default_page_size")]
    page_size: u32,
    /// At most this many appointment re-reads in one `contacts` call (one
    /// contact's appointments are never split): keep it below the tenant's
    /// Acme rate times the call deadline.
    #[serde(default = "default_reads_per_call")]
    reads_per_call: u32,
    /// What an appointment or activity of a deleted contact carries.
    #[serde(default)]
    deleted_contacts: DeletedContacts,
}

/// What the records of a contact Acme lists as deleted carry.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum DeletedContacts {
    /// As `our-app.md` statement 10 says: the contact no longer exists, so
    /// an appointment read after the deletion is dead-lettered (its event
    /// keeps what it had); an activity counts with the contact's fields
    /// null.
    #[default]
    DeadLetter,
    /// The contact's last fields, which Acme keeps listing for 30 days:
    /// the calendar is then a function of what Acme lists, whenever the
    /// tenant was activated (a time change is never held back by a deleted
    /// customer). Past the 30 days, as `dead-letter`.
    LastKnown,
}

fn default_page_size() -> u32 {
    100
}

fn default_reads_per_call() -> u32 {
    100
}

/// kv key set once the tenant's first activities listing started: every
/// later one lists all types.
const ACTIVITIES_LISTED: &str = "activities-listed";

/// kv key of the instant the `contacts` stream starts from when it has no
/// cursor: fixed once, when the tenant's first sync of any stream starts.
const CONTACTS_START: &str = "contacts-start";

/// The `contacts` stream's starting point, stored the first time it is
/// asked for (by whichever stream's first fetch comes first) and never
/// moved afterwards: a change made after it is read by the contacts stream,
/// one made before it is already in what the first appointment sync read.
fn contacts_start() -> Result<String, Error> {
    if let Ok(Some(b)) = kv::get(CONTACTS_START)
        && let Ok(s) = String::from_utf8(b)
        && instant(&s).is_ok()
    {
        return Ok(s);
    }
    // Less a margin for clock skew between Acme and us.
    let start = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    kv::set(CONTACTS_START, start.as_bytes()).map_err(|e| {
        weft_sdk::transient(format!(
            "storing the contacts stream's starting point: {e:?}"
        ))
    })?;
    Ok(start)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// `updated_since` for the next listing: the newest `updated_at` seen.
    since: Option<String>,
    /// Acme's cursor of the listing in progress.
    acme: Option<String>,
    /// `activities`: this listing asks for emails and calls only. Only the
    /// tenant's very first listing does (nothing was delivered before it, so
    /// no activity can have left the touch-point types); every later one
    /// lists all types.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    touchpoints_only: bool,
    /// The ID of the last record handled at the instant of `since`: a
    /// listing skips the records at that instant whose ID sorts at or before
    /// it (Acme lists by `(updated_at, id)`). The contacts stream sets it
    /// when a call runs out of re-reads in the middle of a page, so that the
    /// next call goes on after that contact even when many share its
    /// instant (a bulk change), instead of handling them all again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

impl Cursor {
    fn parse(raw: Option<&str>) -> Result<Self, Error> {
        match raw {
            None => Ok(Cursor::default()),
            Some(s) if s.starts_with("since:") => {
                let since = &s["since:".len()..];
                instant(since).map_err(invalid)?;
                Ok(Cursor {
                    since: Some(since.to_owned()),
                    ..Cursor::default()
                })
            }
            Some(s) => serde_json::from_str(s)
                .map_err(|e| invalid(format!("unreadable cursor {s:?}: {e}"))),
        }
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How often one GET is made when its answer is not valid JSON.
const MALFORMED_ATTEMPTS: u32 = 3;

struct Client {
    base: String,
    /// Whether deleted contacts enrich records (see [`DeletedContacts`]).
    deleted_contacts: DeletedContacts,
}

impl Client {
    fn new(cfg: &Config) -> Self {
        Client {
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            deleted_contacts: cfg.deleted_contacts,
        }
    }

    /// Whether `contact` may enrich a record.
    fn usable(&self, contact: &Obj) -> bool {
        !contact.deleted() || self.deleted_contacts == DeletedContacts::LastKnown
    }

    fn get(&self, path_and_query: &str) -> Result<Response, Error> {
        Request::get(&format!("{}{path_and_query}", self.base))
            .header("accept", "application/json")
            .send()
    }

    /// GET and read the answer with `parse`, mapping HTTP errors to weft's
    /// classes. A body that is not JSON is asked for again (a cut-short
    /// answer is usually a one-off), `attempts` times in all, then reported
    /// as transient with what was wrong.
    fn get_parsed<T>(
        &self,
        path_and_query: &str,
        attempts: u32,
        parse: impl Fn(&[u8]) -> Result<T, Bad>,
    ) -> Result<T, Error> {
        let what = format!(
            "GET {}",
            path_and_query.split('?').next().unwrap_or(path_and_query)
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.get(path_and_query)?.error_for_status(&what)?;
            match parse(&resp.body) {
                Err(Bad::Json(e)) if attempt < attempts => {
                    let e = format!("{e:?}");
                    weft_sdk::log_line(
                        log::Level::Warn,
                        "malformed answer, asking again",
                        &[("request", &what), ("error", &e)],
                    );
                }
                other => return other.map_err(|e| unreadable(e, &what)),
            }
        }
    }
}

/// The error for an answer to `what` that could not be read: both kinds
/// are transient (Acme may answer properly next time).
fn unreadable(e: Bad, what: &str) -> Error {
    let message = match e {
        Bad::Json(e) => format!("malformed JSON in the answer to {what}: {e}"),
        Bad::Shape(s) => format!("unexpected answer to {what}: {s}"),
    };
    Error::Transient(TransientError {
        message,
        retry_after_ms: None,
    })
}

fn error_code(resp: &Response) -> Option<String> {
    serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
}

/// Reads a GET's answer with `parse`; a body that is not JSON is asked for
/// again (through [`Client::get_parsed`]), a wrong shape is an error.
fn read_or_ask_again<T>(
    client: &Client,
    resp: &Response,
    query: &str,
    what: &str,
    parse: impl Fn(&[u8]) -> Result<T, Bad> + Copy,
) -> Result<T, Error> {
    match parse(&resp.body) {
        Ok(t) => Ok(t),
        Err(Bad::Json(_)) => client.get_parsed(query, MALFORMED_ATTEMPTS - 1, parse),
        Err(e) => Err(unreadable(e, what)),
    }
}

/// One page of a listing, restarting from `since` when Acme's cursor expired.
fn list_page(
    client: &Client,
    path: &str,
    cursor: &Cursor,
    limit: u32,
) -> Result<(Vec<Obj>, Cursor, bool), Error> {
    let fresh = |c: &Cursor| {
        let mut q = format!("{path}?limit={limit}");
        if c.touchpoints_only {
            q.push_str("&types=email%2Ccall");
        }
        if let Some(s) = &c.since {
            q.push_str(&format!("&updated_since={}", enc(s)));
        }
        q
    };
    let mut query = match &cursor.acme {
        // `limit` is not one of the filters a cursor carries: send it on
        // every page, or Acme falls back to its default of 50.
        Some(c) => format!("{path}?cursor={}&limit={limit}", enc(c)),
        None => fresh(cursor),
    };
    let mut resp = client.get(&query)?;
    if resp.status == 400
        && cursor.acme.is_some()
        && error_code(&resp).as_deref() == Some("cursor_expired")
    {
        weft_sdk::log_line(
            log::Level::Info,
            "Acme cursor expired; restarting from updated_since",
            &[("path", path)],
        );
        query = fresh(cursor);
        resp = client.get(&query)?;
    }
    let what = format!("GET {path}");
    let resp = resp.error_for_status(&what)?;
    let listing = read_or_ask_again(client, &resp, &query, &what, Listing::parse)?;
    let mut since = match &cursor.since {
        Some(s) => Some((instant(s).map_err(invalid)?, s.clone())),
        None => None,
    };
    let start = since.as_ref().map(|(t, _)| *t);
    let mut items = listing.items;
    if let (Some(after), Some(start)) = (&cursor.after, start) {
        // Handled by an earlier call: the records at `since`'s instant up
        // to `after` in Acme's order.
        items.retain(|item| {
            !(item.updated().and_then(Result::ok) == Some(start)
                && item.f.id.as_deref().is_some_and(|id| id <= after.as_str()))
        });
    }
    for item in &items {
        let t = item
            .updated()
            .ok_or_else(|| transient_shape(path, "a record without `updated_at`"))?
            .map_err(invalid)?;
        if since.as_ref().is_none_or(|(s, _)| t > *s)
            && let Some(u) = &item.f.updated_at
        {
            since = Some((t, u.clone()));
        }
    }
    let acme = listing.next_cursor;
    let more = acme.is_some();
    // A filtered listing stays filtered until it ends; the next one lists all.
    let touchpoints_only = cursor.touchpoints_only && more;
    // `after` names a position at `since`'s instant: it holds while `since`
    // stays there.
    let after = match (&since, start) {
        (Some((t, _)), Some(s)) if *t == s => cursor.after.clone(),
        _ => None,
    };
    Ok((
        items,
        Cursor {
            since: since.map(|(_, s)| s),
            acme,
            touchpoints_only,
            after,
        },
        more,
    ))
}

fn transient_shape(path: &str, what: &str) -> Error {
    Error::Transient(TransientError {
        message: format!("unexpected answer to GET {path}: {what}"),
        retry_after_ms: None,
    })
}

/// Acme's users by ID.
type Users = HashMap<String, Obj>;

/// A map with a fast hash for IDs (looked up several times per record).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An appointment record's body, serialized from borrowed parts: Acme's
/// JSON of the appointment and its contact as Acme sent it.
#[derive(Serialize)]
struct AppointmentBody<'a> {
    appointment: &'a RawValue,
    contact: Option<&'a RawValue>,
    owner: Owner<'a>,
}

/// An activity record's body, like [`AppointmentBody`].
#[derive(Serialize)]
struct ActivityBody<'a> {
    activity: &'a RawValue,
    contact: Option<&'a RawValue>,
    owner: Owner<'a>,
}

thread_local! {
    /// Contacts known in this instance (one run), deleted ones included:
    /// `None` for an ID Acme does not list. A run reads each contact once.
    static CONTACTS: RefCell<FastMap<String, Option<Rc<Obj>>>> = RefCell::new(FastMap::default());
    /// Whether this run listed every contact already.
    static ALL_CONTACTS_LISTED: Cell<bool> = const { Cell::new(false) };
    /// Acme's users, read once per run (an email may change in Acme).
    static USERS: RefCell<Option<Rc<Users>>> = const { RefCell::new(None) };
}

/// The most contacts kept in an instance's memory; past it the cache starts
/// over (a run over a huge account reads some contacts twice, no more).
const MAX_CACHED_CONTACTS: usize = 50_000;

/// The most contacts listed up front in a full sync (pages of 200): past
/// that, contacts are looked up by ID as pages need them.
const MAX_LISTED_CONTACTS: usize = 20_000;

fn remember_contact(id: &str, contact: Option<Rc<Obj>>) {
    CONTACTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CACHED_CONTACTS {
            c.clear();
        }
        c.insert(id.to_owned(), contact);
    });
}

/// Lists every contact (200 a page) into this run's cache: a full sync
/// needs most of them, and a listing costs one request per 200 where lookups
/// by ID cost one per 50. Stops (and leaves the rest to lookups) past
/// [`MAX_LISTED_CONTACTS`].
fn list_all_contacts(client: &Client) -> Result<(), Error> {
    if ALL_CONTACTS_LISTED.with(Cell::get) {
        return Ok(());
    }
    let mut cursor: Option<String> = None;
    let mut seen = 0usize;
    loop {
        let q = match &cursor {
            Some(c) => format!("/contacts?cursor={}&limit=200", enc(c)),
            None => "/contacts?limit=200".to_owned(),
        };
        let resp = client.get(&q)?;
        if resp.status == 400 && error_code(&resp).as_deref() == Some("cursor_expired") {
            // Lookups by ID will fill in what this listing did not.
            break;
        }
        let what = "GET /contacts";
        let resp = resp.error_for_status(what)?;
        let listing = read_or_ask_again(client, &resp, &q, what, Listing::parse)?;
        for c in listing.items {
            if let Some(id) = c.f.id.clone() {
                remember_contact(&id, Some(Rc::new(c)));
                seen += 1;
            }
        }
        cursor = listing.next_cursor;
        if cursor.is_none() {
            ALL_CONTACTS_LISTED.with(|l| l.set(true));
            break;
        }
        if seen >= MAX_LISTED_CONTACTS {
            break;
        }
    }
    Ok(())
}

/// Contacts by ID that may enrich records ([`Client::usable`]: live ones,
/// and deleted ones with `deleted_contacts = "last-known"`): from this
/// run's cache, the rest looked
/// up at most 50 at a time (and remembered, missing ones too, so each ID is
/// asked about at most once per run); after a full listing, nothing more is
/// asked.
fn contacts_by_id<'a>(
    client: &Client,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<FastMap<&'a str, Rc<Obj>>, Error> {
    let mut out = FastMap::default();
    // In order: the lookups ask for them sorted.
    let mut missing = BTreeSet::new();
    CONTACTS.with(|c| {
        let c = c.borrow();
        for id in ids.into_iter().filter(|i| !i.is_empty()) {
            if out.contains_key(id) {
                continue;
            }
            match c.get(id) {
                Some(Some(contact)) => {
                    if client.usable(contact) {
                        out.insert(id, contact.clone());
                    }
                }
                Some(None) => {}
                None => {
                    missing.insert(id);
                }
            }
        }
    });
    let missing: Vec<&str> = missing.into_iter().collect();
    if ALL_CONTACTS_LISTED.with(Cell::get) {
        // Everything Acme listed at the start of the run is known: the rest
        // does not exist (Acme data has many appointments whose contact
        // never existed; looking each up costs a request per page). A
        // contact created during the run is picked up by the contacts
        // stream, which re-emits its appointments.
        return Ok(out);
    }
    for chunk in missing.chunks(50) {
        let list: Vec<String> = chunk.iter().map(|i| enc(i)).collect();
        let listing = client.get_parsed(
            &format!("/contacts?ids={}", list.join(",")),
            MALFORMED_ATTEMPTS,
            Listing::parse,
        )?;
        let mut found = HashMap::new();
        for c in listing.items {
            if let Some(id) = c.f.id.clone() {
                found.insert(id, c);
            }
        }
        for &id in chunk {
            let listed = found.remove(id).map(Rc::new);
            if let Some(c) = listed.as_ref().filter(|c| client.usable(c)) {
                out.insert(id, c.clone());
            }
            remember_contact(id, listed);
        }
    }
    Ok(out)
}

/// Acme users by ID: `/users` read once per run, whatever owners are
/// missing from it (an owner Acme does not list stays unknown for the run);
/// not read at all while no record `needed` an owner.
fn users(client: &Client, needed: bool) -> Result<Rc<Users>, Error> {
    if !needed {
        return Ok(Rc::default());
    }
    if let Some(u) = USERS.with(|u| u.borrow().clone()) {
        return Ok(u);
    }
    let listing = client.get_parsed("/users", MALFORMED_ATTEMPTS, Listing::parse)?;
    let fresh: Rc<Users> = listing
        .items
        .into_iter()
        .filter_map(|u| Some((u.f.id.clone()?, u)))
        .collect::<Users>()
        .into();
    USERS.with(|u| *u.borrow_mut() = Some(fresh.clone()));
    Ok(fresh)
}

fn owner_of<'a>(users: &'a Users, id: &'a str) -> Owner<'a> {
    let user = users.get(id);
    Owner {
        email: user.and_then(|u| u.f.email.as_deref()),
        id,
        name: user.and_then(|u| u.f.name.as_deref()),
    }
}

/// The string field `value` (named `field`) of `o`, or an `invalid` error.
fn required<'a>(
    o: &Obj,
    value: &'a Option<String>,
    field: &str,
    what: &str,
) -> Result<&'a str, Error> {
    value
        .as_deref()
        .ok_or_else(|| invalid(format!("{what} has no string `{field}`: {}", o.excerpt())))
}

/// Appointments as records: enriched with contact and owner, versioned by
/// the newest of the appointment and the contact.
fn appointment_records(
    client: &Client,
    apts: Vec<Obj>,
    known_contact: Option<&Obj>,
) -> Result<Vec<Record>, Error> {
    let known_id = known_contact.and_then(|c| c.f.id.as_deref());
    let contact_ids = apts
        .iter()
        .filter_map(|a| a.f.contact_id.as_deref())
        .filter(|id| known_contact.is_none() || known_id != Some(id));
    let mut contacts = contacts_by_id(client, contact_ids)?;
    if let Some(c) = known_contact
        && let Some(id) = known_id
    {
        contacts.insert(id, Rc::new(c.clone()));
    }
    let users = users(client, apts.iter().any(has_owner))?;
    apts.iter()
        .map(|a| {
            let id = required(a, &a.f.id, "id", "an appointment")?;
            required(
                a,
                &a.f.updated_at,
                "updated_at",
                &format!("appointment {id}"),
            )?;
            let contact = a.f.contact_id.as_deref().and_then(|c| contacts.get(c));
            let version =
                obj::newest_version([Some(a), contact.map(|c| &**c)].into_iter().flatten())
                    .map_err(|e| invalid(format!("appointment {id}: {e}")))?;
            let body = AppointmentBody {
                appointment: a.raw(),
                contact: contact.map(|c| c.raw()),
                owner: owner_of(&users, a.f.owner_id.as_deref().unwrap_or("")),
            };
            Ok(record_of(a, id, "appointment", version, &body))
        })
        .collect()
}

/// The record of Acme's `a`: a delete when Acme lists it as deleted, else
/// an upsert.
fn record_of(a: &Obj, id: &str, kind: &str, version: i64, body: &impl serde::Serialize) -> Record {
    if a.deleted() {
        Record::delete(id, kind, version, body)
    } else {
        Record::upsert(id, kind, version, body)
    }
}

/// Whether a record names an owner.
fn has_owner(a: &Obj) -> bool {
    a.f.owner_id.as_deref().is_some_and(|o| !o.is_empty())
}

/// Whether an activity is a touch-point (an email or a call). Others are
/// still emitted, unenriched: one that used to be an email or a call must
/// leave the dashboard.
fn is_touchpoint(a: &Obj) -> bool {
    matches!(a.f.kind.as_deref(), Some("email") | Some("call"))
}

fn activity_records(client: &Client, acts: Vec<Obj>) -> Result<Vec<Record>, Error> {
    let contact_ids = acts
        .iter()
        .filter(|a| is_touchpoint(a) && !a.deleted())
        .filter_map(|a| a.f.contact_id.as_deref());
    let contacts = contacts_by_id(client, contact_ids)?;
    let users = users(
        client,
        acts.iter().any(|a| is_touchpoint(a) && has_owner(a)),
    )?;
    acts.iter()
        .map(|a| {
            let id = required(a, &a.f.id, "id", "an activity")?;
            required(a, &a.f.updated_at, "updated_at", &format!("activity {id}"))?;
            let version =
                obj::newest_version([a]).map_err(|e| invalid(format!("activity {id}: {e}")))?;
            let contact =
                a.f.contact_id
                    .as_deref()
                    .filter(|_| is_touchpoint(a))
                    .and_then(|c| contacts.get(c));
            let body = ActivityBody {
                activity: a.raw(),
                contact: contact.map(|c| c.raw()),
                owner: owner_of(&users, a.f.owner_id.as_deref().unwrap_or("")),
            };
            Ok(record_of(a, id, "activity", version, &body))
        })
        .collect()
}

/// The appointments the index holds for `contact`.
fn indexed(contact: &Obj) -> Vec<String> {
    contact
        .f
        .id
        .as_deref()
        .map(index::appointments)
        .unwrap_or_default()
}

/// The appointments of a changed contact (`ids`, from [`indexed`]), re-read
/// and enriched with it.
///
/// A deleted contact is still listed by Acme with its fields: the events of
/// its appointments keep those last known details (a change made just
/// before the deletion still arrives). With `deleted_contacts =
/// "dead-letter"`, appointments changed after the deletion are left to the
/// `appointments` stream, which dead-letters them (their contact no longer
/// exists); with `"last-known"` they are re-read with those details too.
fn contact_changed(client: &Client, contact: &Obj, ids: Vec<String>) -> Result<Vec<Record>, Error> {
    let cid = required(contact, &contact.f.id, "id", "a contact")?;
    let deleted_at = match contact.f.deleted_at.as_ref().and_then(Value::as_str) {
        Some(d) => Some(instant(d).map_err(|e| invalid(format!("contact {cid}: {e}")))?),
        None => None,
    };
    let mut apts = Vec::new();
    for id in ids {
        let Some(a) = read_now(client, "appointments", &id)? else {
            continue;
        };
        // The index may be stale: keep only appointments still pointing here.
        let before_deletion = match (deleted_at, a.f.updated_at.as_deref()) {
            _ if client.deleted_contacts == DeletedContacts::LastKnown => true,
            (Some(d), Some(u)) => instant(u).is_ok_and(|u| u <= d),
            _ => true,
        };
        if a.f.contact_id.as_deref() == Some(cid) && before_deletion {
            apts.push(a);
        }
    }
    index::add(&apts);
    appointment_records(client, apts, Some(contact))
}

/// `GET /{resource}/{id}`: the object as Acme holds it now, `None` when
/// Acme answers `404` (it is gone).
fn read_now(client: &Client, resource: &str, id: &str) -> Result<Option<Obj>, Error> {
    let query = format!("/{resource}/{}", enc(id));
    let resp = client.get(&query)?;
    if resp.status == 404 {
        return Ok(None);
    }
    let what = format!("GET /{resource}/{id}");
    let resp = resp.error_for_status(&what)?;
    read_or_ask_again(client, &resp, &query, &what, Obj::parse).map(Some)
}

/// Of a webhook's object and the same object read now, the one whose
/// `updated_at` is the later instant (the webhook's when Acme no longer
/// has it, or when either instant is unreadable: its record then says why).
fn newer_of(webhook: Obj, now: Option<Obj>) -> Obj {
    match now {
        Some(now)
            if matches!(
                (now.updated(), webhook.updated()),
                (Some(Ok(n)), Some(Ok(w))) if n > w
            ) =>
        {
            now
        }
        _ => webhook,
    }
}

/// The appointment of an `appointment.*` webhook, read again from Acme
/// when its customer changed after it: a late event's appointment, with its
/// customer as Acme holds it now, would be versioned by the customer's
/// change and win over the appointment's own later states (a reassignment,
/// a cancellation) already delivered. Read again, it is the appointment as
/// it is now. Otherwise the object is used as it came: its own `updated_at`
/// is the newest instant of its record, and newer states of the appointment
/// outrank it.
fn appointment_of_webhook(client: &Client, a: Obj) -> Result<Obj, Error> {
    let (Some(id), Some(cid)) = (a.f.id.clone(), a.f.contact_id.clone()) else {
        return Ok(a);
    };
    let contact_later = contacts_by_id(client, [cid.as_str()])?
        .get(cid.as_str())
        .is_some_and(|c| match (c.updated(), a.updated()) {
            (Some(Ok(c)), Some(Ok(a))) => c > a,
            _ => false,
        });
    if !contact_later {
        return Ok(a);
    }
    let now = read_now(client, "appointments", &id)?;
    Ok(newer_of(a, now))
}

/// A webhook event: `{"type": ..., "data": {"object": {...}}}`.
#[derive(serde::Deserialize)]
struct Event {
    #[serde(default, rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(serde::Deserialize)]
struct EventData {
    #[serde(default)]
    object: Option<Box<RawValue>>,
}

impl Metadata for AcmeCrm {
    fn describe() -> ConnectorInfo {
        let stream = |name: &str, description: &str| StreamInfo {
            name: name.into(),
            description: description.into(),
        };
        ConnectorInfo {
            description:
                "Acme CRM REST API v1: appointments, email and call activities, contact changes"
                    .into(),
            streams: vec![
                stream("appointments", "Appointments with their contact and owner"),
                stream(
                    "activities",
                    "Email and call activities with their contact and owner",
                ),
                stream(
                    "contacts",
                    "Appointments re-read when their contact changes",
                ),
            ],
            config_schema: weft_sdk::config_schema(
                &["base_url"],
                json!({
                    "base_url": { "type": "string", "pattern": "^https?://", "description": "The tenant's Acme API base URL, ending in /api/v1" },
                    "page_size": { "type": "integer", "minimum": 1, "maximum": 200, "default": 100, "description": "Records per list page (Acme allows 1 to 200)" },
                    "reads_per_call": { "type": "integer", "minimum": 1, "default": 100, "description": "contacts stream: at most this many appointment re-reads per call (keep below the Acme rate times the call deadline)" },
                    "deleted_contacts": { "type": "string", "enum": ["dead-letter", "last-known"], "default": "dead-letter", "description": "Records of a contact Acme lists as deleted: dead-letter (statement 10: its appointments changed after the deletion are dead-lettered, its activities count without contact details) or last-known (they carry its last fields, which Acme lists for 30 days, so the calendar does not depend on when the tenant was activated)" }
                }),
            ),
            // The base URL is per tenant: the tenant's grant decides.
            outbound_hosts: vec!["*".into()],
            ..weft_sdk::package_info!()
        }
    }
}

impl Source for AcmeCrm {
    fn fetch(stream: String, cursor: Option<String>) -> Result<Page, Error> {
        index::new_call();
        let cfg: Config = tenant_config()?;
        let client = Client::new(&cfg);
        let mut cursor = Cursor::parse(cursor.as_deref())?;
        let path = match stream.as_str() {
            "appointments" => "/appointments",
            // Every type: an activity whose type changes away from email or
            // call must reach the mapper to leave the dashboard.
            "activities" => "/activities",
            "contacts" => "/contacts",
            other => return Err(Error::Config(format!("acme-crm has no stream {other:?}"))),
        };
        let full_sync = cursor.since.is_none() && cursor.acme.is_none();
        if full_sync {
            // Appointments carry their contact as it is when they are read,
            // so the contacts stream needs the changes from the tenant's
            // first sync on: that instant is fixed by the first stream to
            // start, and kept.
            let start = contacts_start()?;
            if stream == "contacts" {
                cursor.since = Some(start);
            }
            if stream == "activities" && kv::get(ACTIVITIES_LISTED).ok().flatten().is_none() {
                // The tenant's very first listing of activities: nothing was
                // delivered yet, so emails and calls are all it needs.
                cursor.touchpoints_only = true;
                kv::set(ACTIVITIES_LISTED, b"1").map_err(|e| {
                    weft_sdk::transient(format!("remembering the first activities listing: {e:?}"))
                })?;
            }
        }
        let (items, next, more) = list_page(&client, path, &cursor, cfg.page_size.clamp(1, 200))?;
        if full_sync && stream != "contacts" && !items.is_empty() {
            // A full sync touches most contacts: list them all (200 a page)
            // rather than look them up 50 at a time.
            list_all_contacts(&client)?;
        }
        let page = |records, next: &Cursor, has_more| -> Result<Page, Error> {
            Ok(Page {
                records,
                next_cursor: Some(serde_json::to_string(next).map_err(|e| invalid(e.to_string()))?),
                has_more,
            })
        };
        match stream.as_str() {
            "appointments" => {
                index::page(&items, !more);
                page(appointment_records(&client, items, None)?, &next, more)
            }
            "activities" => page(activity_records(&client, items)?, &next, more),
            _ => {
                let mut out = Vec::new();
                let mut reads = 0usize;
                let budget = cfg.reads_per_call.max(1) as usize;
                for (i, c) in items.iter().enumerate() {
                    let ids = indexed(c);
                    let n = ids.len();
                    if i > 0 && reads + n > budget {
                        // Out of reads for this call: the next one lists
                        // again from the last contact handled
                        // (`updated_since` is inclusive) and skips up to
                        // it, so it always moves forward, even through
                        // many contacts changed at one instant.
                        let last = &items[i - 1];
                        let at = required(last, &last.f.updated_at, "updated_at", "a contact")?;
                        let id = required(last, &last.f.id, "id", "a contact")?;
                        let next = Cursor {
                            since: Some(at.to_owned()),
                            after: Some(id.to_owned()),
                            ..Cursor::default()
                        };
                        return page(out, &next, true);
                    }
                    reads += n;
                    out.extend(contact_changed(&client, c, ids)?);
                }
                page(out, &next, more)
            }
        }
    }

    fn on_webhook(delivery: Webhook) -> Result<Vec<Record>, Error> {
        index::new_call();
        let cfg: Config = tenant_config()?;
        let client = Client::new(&cfg);
        let event: Event = serde_json::from_slice(&delivery.body)
            .map_err(|e| invalid(format!("webhook body is not JSON: {e}")))?;
        let Some(kind) = event.kind.as_ref().and_then(Value::as_str) else {
            return Err(invalid(format!(
                "the webhook event has no string `type`: {}",
                obj::truncate(&String::from_utf8_lossy(&delivery.body))
            )));
        };
        let object = event
            .data
            .filter(|d| d.get().starts_with('{'))
            .and_then(|d| serde_json::from_str::<EventData>(d.get()).ok())
            .and_then(|d| d.object)
            .filter(|o| o.get().starts_with('{'))
            .ok_or_else(|| invalid(format!("webhook event {kind} has no data.object")))?;
        let object =
            Obj::from_raw(object).map_err(|e| invalid(format!("webhook event {kind}: {e:?}")))?;
        match kind.split('.').next() {
            Some("appointment") => {
                let object = appointment_of_webhook(&client, object)?;
                index::add(std::slice::from_ref(&object));
                appointment_records(&client, vec![object], None)
            }
            Some("activity") => activity_records(&client, vec![object]),
            Some("contact") => {
                // The customer as Acme holds it now: a late event's would
                // replace newer details in the events it re-reads (they
                // are read now, and versioned by their own later changes).
                let now = match object.f.id.as_deref() {
                    Some(id) => read_now(&client, "contacts", id)?,
                    None => None,
                };
                let contact = newer_of(object, now);
                contact_changed(&client, &contact, indexed(&contact))
            }
            _ => {
                weft_sdk::log_line(
                    log::Level::Info,
                    "ignoring webhook event",
                    &[("type", kind)],
                );
                Ok(vec![])
            }
        }
    }
}

export!(AcmeCrm);

/// The optional webhook-registration capability (`wit/webhooks-v0.1.0`):
/// how the host subscribes a stream's flow to Acme's webhooks. Acme signs
/// with the old and the new secret for 24 hours after a rotation.
mod hooks {
    weft_sdk::webhook_bindings!();

    use super::{AcmeCrm, Config};
    use exports::weft::webhooks::registration::{Guest, HttpCall, Setup};

    /// The Acme events that change what each stream yields.
    fn events(stream: &str) -> Option<&'static [&'static str]> {
        match stream {
            "appointments" => Some(&[
                "appointment.created",
                "appointment.updated",
                "appointment.deleted",
                "contact.updated",
                "contact.deleted",
            ]),
            "activities" => Some(&["activity.created", "activity.updated", "activity.deleted"]),
            "contacts" => Some(&["contact.updated", "contact.deleted"]),
            _ => None,
        }
    }

    impl Guest for AcmeCrm {
        fn webhook_setup(stream: String) -> Result<Option<Setup>, String> {
            let Some(events) = events(&stream) else {
                return Ok(None);
            };
            let cfg: Config = weft_sdk::tenant_config().map_err(|e| format!("{e:?}"))?;
            let base = cfg.base_url.trim_end_matches('/');
            let body = serde_json::json!({ "url": "{url}", "events": events }).to_string();
            Ok(Some(Setup {
                create: HttpCall {
                    method: "POST".into(),
                    url: format!("{base}/webhooks"),
                    body: Some(body),
                },
                id_pointer: "/id".into(),
                secret_pointer: "/secret".into(),
                rotate: Some(HttpCall {
                    method: "POST".into(),
                    url: format!("{base}/webhooks/{{id}}/rotate"),
                    body: None,
                }),
                delete: Some(HttpCall {
                    method: "DELETE".into(),
                    url: format!("{base}/webhooks/{{id}}"),
                    body: None,
                }),
                rotation_overlap_secs: 24 * 3600,
            }))
        }
    }

    export!(AcmeCrm);
}
