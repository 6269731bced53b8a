//! Radicale, the real CalDAV server the calendar tests use: starts on a free
//! loopback port, takes a calendar and an event, and gives them back over
//! CalDAV (`REPORT` and `GET`), with and without HTTP Basic auth.

use crate::common::*;
use base64::Engine as _;
use weft_sandbox::radicale::Radicale;

const EVENT: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//weft//test//EN\r\nBEGIN:VEVENT\r\nUID:weft-test-apt_1\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261102T203000Z\r\nDTEND:20261102T210000Z\r\nSUMMARY:Renewal review with Zoë\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

const QUERY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><d:getetag/><c:calendar-data/></d:prop>
  <c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter></c:filter>
</c:calendar-query>"#;

/// `PUT`s [`EVENT`] at `url`.
async fn put_event(url: &str, auth: &[(&str, String)]) -> Resp {
    let body = ("text/calendar; charset=utf-8", EVENT.into());
    request("PUT", url, auth, Some(body)).await
}

async fn round_trip(base: &str, user: &str, auth: Vec<(&str, String)>) {
    let cal = format!("{base}/{user}/acme/");
    let r = request("MKCALENDAR", &cal, &auth, None).await;
    if r.status == 409 {
        // Without a login Radicale has not made the user's home collection:
        // a MKCALENDAR whose parent does not exist is a conflict, as the
        // caldav connector must expect. Make the parent, then the calendar.
        assert!(
            auth.is_empty(),
            "an authenticated user has a home collection"
        );
        let parent = request("MKCOL", &format!("{base}/{user}/"), &auth, None).await;
        assert_eq!(parent.status, 201, "MKCOL: {}", parent.text);
        let r = request("MKCALENDAR", &cal, &auth, None).await;
        assert_eq!(r.status, 201, "MKCALENDAR: {}", r.text);
    } else {
        assert_eq!(r.status, 201, "MKCALENDAR: {}", r.text);
    }
    let ev = format!("{cal}apt_1.ics");
    let r = put_event(&ev, &auth).await;
    assert_eq!(r.status, 201, "PUT: {}", r.text);
    assert!(r.header("etag").is_some());
    let mut h = auth.clone();
    h.push(("depth", "1".into()));
    let r = request(
        "REPORT",
        &cal,
        &h,
        Some(("application/xml; charset=utf-8", QUERY.into())),
    )
    .await;
    assert_eq!(r.status, 207, "REPORT: {}", r.text);
    assert!(
        r.text.contains("UID:weft-test-apt_1") && r.text.contains("Zoë"),
        "{}",
        r.text
    );
    let r = request("GET", &ev, &auth, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("SUMMARY:Renewal review with Zoë"));
    // The same UID under a second name in one collection is refused.
    let r = put_event(&format!("{cal}other.ics"), &auth).await;
    assert!(r.status >= 400, "duplicate UID accepted: {}", r.status);
    let r = request("DELETE", &ev, &auth, None).await;
    assert!(r.status == 200 || r.status == 204);
    assert_eq!(request("GET", &ev, &auth, None).await.status, 404);
}

#[tokio::test]
async fn radicale_without_auth_stores_and_returns_events() {
    let r = Radicale::start().unwrap();
    let missing_parent = request(
        "MKCALENDAR",
        &format!("{}/nobody/acme/", r.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(missing_parent.status, 409, "the documented conflict");
    round_trip(&r.url(), "dana@northwind.example", vec![]).await;
}

#[tokio::test]
async fn radicale_with_basic_auth() {
    let r = Radicale::start_with_basic_auth(&[("dana", "s3cret")]).unwrap();
    let no = request("PROPFIND", &format!("{}/dana/", r.url()), &[], None).await;
    assert_eq!(no.status, 401);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("dana:s3cret")
    );
    round_trip(&r.url(), "dana", vec![("authorization", auth)]).await;
}
