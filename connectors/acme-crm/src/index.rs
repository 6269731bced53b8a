//! The contact → appointments index in kv, which lets a changed contact
//! re-emit the appointments that reference it (Acme cannot list
//! appointments by contact).
//!
//! `contact:{id}` holds the IDs of the appointments known to reference
//! contact `id` (a JSON list). A page of the appointments stream does not
//! update those keys one contact at a time (a read and a write per contact
//! per page were a tenth of a first sync's CPU in issue 10's profile): it
//! writes the page's pairs to one journal key, `contact-journal:…`, and the
//! journal is folded into the `contact:` keys every [`FOLD_PAGES`] pages and
//! when the listing ends. Lookups read both, so a journaled page is found as
//! soon as its fetch returns, and a run that stops before its fold leaves
//! its journal to the next one.

use crate::obj::Obj;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;
use weft_sdk::{kv, log};

/// The prefix of the per-contact keys.
const CONTACT: &str = "contact:";
/// The prefix of the journal's keys (one per journaled page).
const JOURNAL: &str = "contact-journal:";
/// Pages journaled by one instance before it folds the journal. A fold
/// reads and writes every contact the journal names (with 64, a fold was
/// 5% of a 100-page first sync's CPU, twice), so a listing of up to 51,200
/// appointments folds once, at its end; until then a lookup reads at most
/// this many journal keys (about 5 KB each).
pub const FOLD_PAGES: usize = 256;
/// The most journal keys one fold (or lookup) reads.
const MAX_JOURNAL_KEYS: u32 = 10_000;

/// Contact → appointment IDs.
type Pairs = BTreeMap<String, BTreeSet<String>>;

thread_local! {
    /// Pages this instance journaled since its last fold.
    static JOURNALED: Cell<usize> = const { Cell::new(0) };
    /// The journal as read by this call's first lookup.
    static VIEW: RefCell<Option<Rc<Pairs>>> = const { RefCell::new(None) };
}

/// Forgets the journal read by an earlier call: each call reads it again
/// (another instance may have folded or added to it meanwhile).
pub fn new_call() {
    VIEW.with(|v| *v.borrow_mut() = None);
}

/// The (contact, appointment) pairs of `apts`.
fn pairs(apts: &[Obj]) -> BTreeMap<&str, Vec<&str>> {
    let mut by_contact: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in apts {
        if let (Some(c), Some(id)) = (a.f.contact_id.as_deref(), a.f.id.as_deref()) {
            by_contact.entry(c).or_default().push(id);
        }
    }
    by_contact
}

fn warn(message: &str, error: impl std::fmt::Debug) {
    weft_sdk::log_line(
        log::Level::Warn,
        message,
        &[("error", &format!("{error:?}"))],
    );
}

/// The appointments in contact `contact`'s key.
fn known(contact: &str) -> BTreeSet<String> {
    kv::get(&format!("{CONTACT}{contact}"))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Adds `ids` to contact `contact`'s key.
fn merge_into<'a>(contact: &str, ids: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut known = known(contact);
    let before = known.len();
    known.extend(ids.into_iter().map(str::to_owned));
    if known.len() == before {
        return Ok(());
    }
    let bytes = serde_json::to_vec(&known).map_err(|e| e.to_string())?;
    kv::set(&format!("{CONTACT}{contact}"), &bytes).map_err(|e| format!("contact {contact}: {e:?}"))
}

/// Remembers which appointments reference each contact, in the contacts'
/// keys (webhook events, re-read appointments: a few at a time).
pub fn add(apts: &[Obj]) {
    for (contact, ids) in pairs(apts) {
        if let Err(e) = merge_into(contact, ids) {
            warn("could not index appointments", e);
        }
    }
}

/// Remembers which appointments of a listing's page reference each contact:
/// in one journal key, folded every [`FOLD_PAGES`] pages and when the
/// listing ends (`last`).
pub fn page(apts: &[Obj], last: bool) {
    let journaled = JOURNALED.get();
    if last && journaled == 0 {
        // A listing of one page (an incremental sync): straight into the
        // contacts' keys, and whatever an interrupted run left is folded.
        add(apts);
        fold();
        return;
    }
    let pairs = pairs(apts);
    if !pairs.is_empty() {
        let written = serde_json::to_vec(&pairs)
            .map_err(|e| e.to_string())
            .and_then(|bytes| kv::set(&journal_key(), &bytes).map_err(|e| format!("{e:?}")));
        match written {
            Ok(()) => JOURNALED.set(journaled + 1),
            Err(e) => {
                warn("could not journal the page's index, adding it directly", e);
                add(apts);
            }
        }
    }
    if last || JOURNALED.get() >= FOLD_PAGES {
        fold();
    }
}

/// A journal key no other page has: the time, and 64 random bits.
fn journal_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let salt = RandomState::new().hash_one(nanos);
    format!("{JOURNAL}{nanos:020}-{salt:016x}")
}

/// The journal's keys and pairs.
fn read_journal() -> (Vec<String>, Pairs) {
    let keys = kv::list_keys(JOURNAL, MAX_JOURNAL_KEYS).unwrap_or_else(|e| {
        warn("could not list the index journal", e);
        vec![]
    });
    let mut pairs = Pairs::new();
    for key in &keys {
        let page: BTreeMap<String, Vec<String>> = match kv::get(key) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => continue, // folded by another instance meanwhile
            Err(e) => {
                warn("could not read the index journal", e);
                continue;
            }
        };
        for (contact, ids) in page {
            pairs.entry(contact).or_default().extend(ids);
        }
    }
    (keys, pairs)
}

/// Folds the journal into the contacts' keys, then deletes the journal keys
/// it folded (all of them are kept if a contact's key could not be
/// written: folding again adds nothing twice).
fn fold() {
    JOURNALED.set(0);
    let (keys, pairs) = read_journal();
    let mut complete = true;
    for (contact, ids) in &pairs {
        if let Err(e) = merge_into(contact, ids.iter().map(String::as_str)) {
            warn("could not fold the index journal", e);
            complete = false;
        }
    }
    if complete {
        for key in keys {
            if let Err(e) = kv::delete(&key) {
                warn("could not delete a folded journal key", e);
            }
        }
    }
    new_call();
}

/// The appointments known to reference contact `cid`.
pub fn appointments(cid: &str) -> Vec<String> {
    let mut ids = known(cid);
    let journal = VIEW.with(|v| {
        v.borrow_mut()
            .get_or_insert_with(|| Rc::new(read_journal().1))
            .clone()
    });
    if let Some(more) = journal.get(cid) {
        ids.extend(more.iter().cloned());
    }
    ids.into_iter().collect()
}
