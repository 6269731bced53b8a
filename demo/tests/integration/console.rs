//! The console (`weft serve` at `/`) in a real headless Chromium, driven
//! over WebDriver (Debian's `chromium` and `chromium-driver`, installed by
//! `make setup`), with axe-core (pinned in `js/package.json`, installed by
//! `make guests-js`) run on every page: a serious or critical accessibility
//! violation fails the test. Screenshots of each step go to
//! `target/console/`.

use crate::support::*;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_demo::{DemoEnv, TenantSetup};

/// A chromedriver on a port it picked, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (`make setup` installs chromium-driver)");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver says its port")
                .expect("chromedriver's output");
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().to_owned();
            }
        };
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new browser (its own profile, so its own sessionStorage).
    async fn browser(&self, width: u32, height: u32) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the steps' screenshots go.
fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// Runs axe-core on the page; panics listing every serious or critical
/// violation.
async fn axe(c: &Client, page: &str) {
    static AXE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../js/node_modules/axe-core/axe.min.js"
        );
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (`make guests-js` installs axe-core)"))
    });
    c.execute(&AXE, vec![]).await.expect("axe-core loads");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.map((n) => n.target.join(' ')) }))))
               .catch((e) => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    let bad: Vec<&Value> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        bad.is_empty(),
        "accessibility violations on {page}: {bad:#?}"
    );
}

/// Waits until the page's `<h1>` contains `text`; returns it.
async fn heading(c: &Client, text: &str) -> String {
    wait_for(c, "h1", text).await
}

/// How long a step may take to show: a bound for a stuck page, not a
/// speed target (a run under a loaded machine's whole suite, at Acme's
/// rate, took over 20 s).
const STEP: Duration = Duration::from_secs(90);

/// Waits until an element matching `css` contains `text`; returns its text.
async fn wait_for(c: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + STEP;
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(found) = c.find_all(Locator::Css(css)).await {
            for e in found {
                if let Ok(t) = e.text().await {
                    if t.contains(text) {
                        return t;
                    }
                    seen = t;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {css} with {text:?} (last seen: {seen:?})");
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn click_button(c: &Client, text: &str) {
    let xpath = format!("//button[normalize-space(.)={text:?}]");
    c.wait()
        .at_most(STEP)
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("a button {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Opens `path` (`/#/tenants/t1`) of the service at `svc`.
async fn open(c: &Client, svc: &Service, path: &str) {
    c.goto(&format!("{}{path}", svc.url)).await.unwrap();
}

/// Clicks the element `at`.
async fn click(c: &Client, at: Locator<'_>) {
    c.find(at)
        .await
        .unwrap_or_else(|e| panic!("{at:?}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Types `text` into the element `at` (what it holds stays).
async fn type_into(c: &Client, at: Locator<'_>, text: &str) {
    let e = c.find(at).await.unwrap_or_else(|e| panic!("{at:?}: {e}"));
    e.send_keys(text).await.unwrap();
}

/// Waits for the error shown at the input `id` to say `text`.
async fn field_error(c: &Client, id: &str, text: &str) {
    wait_for(c, &format!("#{id}-error"), text).await;
}

/// Clicks the button `label` of the table row that mentions `key`.
async fn row_button(c: &Client, key: &str, label: &str) {
    let xpath = format!("//tr[contains(., {key:?})]//button[normalize-space(.)={label:?}]");
    click(c, Locator::XPath(&xpath)).await;
}

/// An appointment whose contact does not exist: the mapper refuses it.
async fn orphan_appointment(env: &DemoEnv) -> String {
    let users = env.acme_get("/users").await.unwrap()["data"].clone();
    let apt = env
        .acme_control(
            "POST",
            "/appointments",
            json!({
                "owner_id": users[0]["id"], "contact_id": "con_missing", "title": "Lost customer",
                "starts_at": "2026-12-02T14:30:00Z", "ends_at": "2026-12-02T15:00:00Z",
                "timezone": "UTC",
            }),
        )
        .await
        .unwrap();
    apt["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_and_tenant_admins_see_status_and_handle_dead_letters_in_the_console() {
    let env = DemoEnv::start(acme(), vec![TenantSetup::new("t1"), TenantSetup::new("t2")])
        .await
        .unwrap();
    let orphan = orphan_appointment(&env).await;
    for t in ["t1", "t2"] {
        env.sync(t).await.unwrap();
    }
    let svc = Service::start(&env).await;
    let minted = svc
        .mint(json!({ "name": "t1 admin", "tenant": "t1", "expires_in": "1h" }))
        .await;
    let t1_token = minted["token"].as_str().unwrap().to_owned();
    let driver = Driver::start();

    // The operator, by link: the token rides in the fragment and leaves it.
    let c = driver.browser(1280, 900).await;
    open(&c, &svc, &format!("/#token={OPERATOR}")).await;
    heading(&c, "Tenants").await;
    assert!(
        !c.current_url().await.unwrap().as_str().contains(OPERATOR),
        "the token is taken out of the address"
    );
    let text = body_text(&c).await;
    assert!(text.contains("t1") && text.contains("t2"), "{text}");
    axe(&c, "tenants").await;
    screenshot(&c, "01-operator-tenants").await;

    click(&c, Locator::LinkText("t1")).await;
    heading(&c, "t1").await;
    wait_for(&c, ".card", "appointments").await;
    let text = body_text(&c).await;
    for flow in ["appointments", "contacts", "touchpoints"] {
        assert!(text.contains(flow), "{text}");
    }
    assert!(text.contains("Records per day"), "{text}");
    axe(&c, "tenant status").await;
    screenshot(&c, "02-tenant-status").await;

    // Runs, newest first.
    open(&c, &svc, "/#/tenants/t1/runs").await;
    heading(&c, "Runs of t1").await;
    wait_for(&c, "tbody", "manual").await;
    axe(&c, "runs").await;

    // Dead letters: the orphan's, with the mapper's reason.
    open(&c, &svc, "/#/tenants/t1/dead-letters").await;
    heading(&c, "Dead letters of t1").await;
    let row = wait_for(&c, "tbody tr", &orphan).await;
    assert!(row.contains("con_missing"), "{row}");
    axe(&c, "dead letters").await;
    row_button(&c, &orphan, "Show").await;
    let detail = wait_for(&c, ".side-by-side", "Lost customer").await;
    assert!(
        detail.contains("A replay now uses acme-calendar@"),
        "{detail}"
    );
    axe(&c, "a dead letter's record and error").await;
    screenshot(&c, "03-dead-letter").await;

    // A replay fails again (the record is the same), and says so.
    row_button(&c, &orphan, "Replay").await;
    wait_for(&c, "#status", "Replayed 1: 0 delivered, 1 failed again.").await;

    // Discarding asks why, and an empty reason is refused at the field.
    row_button(&c, &orphan, "Discard").await;
    let submit = "//form//button[normalize-space(.)='Discard']";
    click(&c, Locator::XPath(submit)).await;
    wait_for(&c, ".field-error", "Say why").await;
    let why = "the customer was deleted on purpose";
    type_into(&c, Locator::Css("textarea"), why).await;
    click(&c, Locator::XPath(submit)).await;
    wait_for(&c, "#status", "Discarded").await;
    let (_, left) = svc
        .operator("GET", "/v1/dead-letters?tenant=t1", None)
        .await;
    assert!(
        !left.to_string().contains(&orphan),
        "the dead letter is gone: {left}"
    );

    open(&c, &svc, "/#/connectors").await;
    heading(&c, "Connectors").await;
    wait_for(&c, "main", "acme-calendar").await;
    axe(&c, "connectors").await;
    screenshot(&c, "04-connectors").await;

    // Pin t1's flows to the calendar mapper's one version, then unpin.
    let pin_scope = c.find(Locator::Id("pin-scope")).await.unwrap();
    pin_scope.select_by_value("t1").await.unwrap();
    click_button(&c, "Use 1.0.0").await;
    wait_for(&c, "#status", "t1/appointments acme-calendar@=1.0.0").await;
    let calendar_req = |t: Value| t["flows"]["appointments"]["mappers"][0]["connector"].clone();
    assert_eq!(calendar_req(svc.tenant("t1").await), "acme-calendar@=1.0.0");
    assert_eq!(calendar_req(svc.tenant("t2").await), "acme-calendar@^1");
    click_button(&c, "Unpin acme-calendar").await;
    wait_for(&c, "#status", "acme-calendar@^1").await;
    assert_eq!(calendar_req(svc.tenant("t1").await), "acme-calendar@^1");
    c.close().await.unwrap();

    // A tenant admin at phone width: their own tenant, nothing else.
    let c = driver.browser(390, 844).await;
    c.goto(&format!(
        "{}/#token={t1_token}&brand=Calendly%20Pro&color=%23f5b400",
        svc.url
    ))
    .await
    .unwrap();
    heading(&c, "t1").await;
    let nav = c
        .find(Locator::Css("header"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(nav.contains("Calendly Pro integrations"), "{nav}");
    assert!(
        nav.contains("Tenant t1") && !nav.contains("Tenants"),
        "{nav}"
    );
    axe(&c, "tenant status at phone width, themed").await;
    screenshot(&c, "05-tenant-admin-phone").await;
    for page in [
        "/tenants/t2",
        "/tenants/t2/dead-letters",
        "/tenants/t2/runs",
    ] {
        open(&c, &svc, &format!("/#{page}")).await;
        heading(&c, "Not found").await;
        let text = body_text(&c).await;
        assert!(!text.contains("appointments"), "{page}: {text}");
    }
    open(&c, &svc, "/#/tenants").await;
    heading(&c, "Tenants").await;
    let text = body_text(&c).await;
    assert!(text.contains("1 tenant.") && !text.contains("t2"), "{text}");
    c.close().await.unwrap();

    // A wrong token is refused at the field, in the API's words.
    let c = driver.browser(1280, 900).await;
    open(&c, &svc, "/#/signin").await;
    heading(&c, "Sign in").await;
    type_into(&c, Locator::Id("token"), "not-a-token").await;
    click_button(&c, "Sign in").await;
    field_error(&c, "token", "unknown token").await;
    axe(&c, "sign in with an error").await;
    screenshot(&c, "06-sign-in-refused").await;
    c.close().await.unwrap();
    svc.stop().await;
}

/// Clears the input `id` and types `text` into it.
async fn fill(c: &Client, id: &str, text: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_activates_the_integration_from_a_link_and_watches_its_first_sync() {
    let env = DemoEnv::start(
        acme(),
        vec![TenantSetup::new("t1"), TenantSetup::to_activate("t3")],
    )
    .await
    .unwrap();
    let svc = Service::start(&env).await;
    let driver = Driver::start();

    // The operator makes a one-time link for t3 in the console.
    let op = driver.browser(1280, 900).await;
    open(&op, &svc, &format!("/#token={OPERATOR}")).await;
    heading(&op, "Tenants").await;
    click(&op, Locator::Css("details > summary")).await;
    fill(&op, "invite-tenant", "t3").await;
    click_button(&op, "Create the link").await;
    let url = wait_for(&op, "pre", "#token=").await;
    axe(&op, "tenants with an invitation link").await;
    op.close().await.unwrap();

    let c = driver.browser(1280, 1000).await;
    // The link opens the activation form (the tenant does not exist yet).
    c.goto(&url).await.unwrap();
    heading(&c, "Set up an integration for t3").await;
    wait_for(&c, "form", "Acme CRM → calendar + dashboard").await;
    axe(&c, "activation form").await;
    screenshot(&c, "07-activation-form").await;

    // Checked in the browser first: a required field left empty.
    click_button(&c, "Activate").await;
    field_error(&c, "f-base_url", "Required").await;

    // A wrong secret: "Test connection" shows Acme's refusal.
    fill(&c, "f-base_url", &env.acme.base_url()).await;
    fill(&c, "f-credentials-client_id", weft_demo::CLIENT_ID).await;
    fill(&c, "f-credentials-client_secret", "not-the-secret").await;
    click_button(&c, "Test connection").await;
    let refused = wait_for(&c, ".result", "refused").await;
    assert!(refused.contains("invalid_client"), "{refused}");
    axe(&c, "activation form with Acme's refusal").await;
    screenshot(&c, "08-test-connection-refused").await;

    // Options from the connectors' schemas, checked as typed: a number
    // under its minimum, a map line without `=`.
    let reads = "f-options-acme-crm-reads_per_call";
    let user_map = "f-options-acme-touchpoints-user_map";
    fill(&c, reads, "0").await;
    fill(&c, user_map, "ann@acme.example").await;
    click_button(&c, "Activate").await;
    field_error(&c, reads, "At least 1").await;
    field_error(&c, user_map, "key = value").await;
    fill(&c, reads, "100").await;
    let map = c.find(Locator::Id(user_map)).await.unwrap();
    map.clear().await.unwrap();

    // The server's own check, shown at the field: an address without a host.
    fill(&c, "f-base_url", "http://").await;
    click_button(&c, "Activate").await;
    field_error(&c, "f-base_url", "http(s) address").await;

    // Fixed: the test connects, and activation starts the first sync.
    fill(&c, "f-base_url", &env.acme.base_url()).await;
    fill(&c, "f-credentials-client_secret", weft_demo::CLIENT_SECRET).await;
    click_button(&c, "Test connection").await;
    wait_for(&c, ".result", "Connected to Acme CRM").await;
    click_button(&c, "Activate").await;
    heading(&c, "Tenant t3").await;
    // The page follows the runs as they happen (server-sent events) until
    // every flow's first sync has succeeded, without a reload.
    for flow in ["appointments", "contacts", "touchpoints"] {
        wait_for(&c, &format!("#last-{flow}"), "succeeded").await;
    }
    // A run's end brings the rest of the page up to date: Acme's two
    // appointments without a start are dead letters waiting.
    wait_for(
        &c,
        "section[aria-labelledby='flow-appointments']",
        "2 waiting",
    )
    .await;
    crate::integrations::wait_for_first_sync(
        &env,
        "t3",
        &["appointments", "contacts", "touchpoints"],
    )
    .await;
    matches_acme(&env, "t3", "after activation").await;
    axe(&c, "status after activation").await;
    screenshot(&c, "09-first-sync-done").await;

    // A customer's appointment whose contact Acme lost: the next run
    // dead-letters it, and the tenant admin sees why.
    let orphan = orphan_appointment(&env).await;
    let run_now =
        "//section[@aria-labelledby='flow-appointments']//button[normalize-space(.)='Run now']";
    click(&c, Locator::XPath(run_now)).await;
    wait_for(
        &c,
        "section[aria-labelledby='flow-appointments']",
        "3 waiting",
    )
    .await;
    open(&c, &svc, "/#/tenants/t3/dead-letters").await;
    let row = wait_for(&c, "tbody tr", &orphan).await;
    assert!(row.contains("contact con_missing does not exist"), "{row}");
    wait_for(&c, "main", "3 of 3 shown.").await;
    axe(&c, "a tenant admin's dead letters").await;
    screenshot(&c, "10-tenant-dead-letters").await;

    // The operator uploads a fixed calendar mapper (1.0.1) in the console.
    let op = driver.browser(1280, 900).await;
    open(&op, &svc, &format!("/#token={OPERATOR}")).await;
    heading(&op, "Tenants").await;
    open(&op, &svc, "/#/connectors").await;
    heading(&op, "Connectors").await;
    let fixed = weft_test_artifacts::ACME_CALENDAR_FIXED;
    type_into(&op, Locator::Id("component"), fixed).await;
    click_button(&op, "Upload").await;
    wait_for(&op, "#status", "Registered acme-calendar@1.0.1").await;
    op.close().await.unwrap();

    // The tenant admin sees that a replay now uses it, and replays.
    c.refresh().await.unwrap();
    wait_for(&c, "tbody tr", &orphan).await;
    row_button(&c, &orphan, "Show").await;
    wait_for(&c, ".side-by-side", "A replay now uses acme-calendar@1.0.1").await;
    row_button(&c, &orphan, "Replay").await;
    wait_for(&c, "#status", "Replayed 1: 1 delivered, 0 failed again.").await;
    let (_, left) = svc
        .operator("GET", "/v1/dead-letters?tenant=t3", None)
        .await;
    assert!(!left.to_string().contains(&orphan), "{left}");
    assert_eq!(
        left.as_array().unwrap().len(),
        2,
        "the other two stay: {left}"
    );

    // Its pages only: t1's answer "not found".
    open(&c, &svc, "/#/tenants/t1").await;
    heading(&c, "Not found").await;
    c.close().await.unwrap();
    svc.stop().await;
}

/// How many times the console drew its page (`main[data-renders]`).
async fn renders(c: &Client) -> u64 {
    let main = c.find(Locator::Css("main")).await.unwrap();
    main.attr("data-renders")
        .await
        .unwrap()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Tabs from the focused element until one whose text is `text` has the
/// focus (at most 60 steps); returns it.
async fn tab_to(c: &Client, text: &str) -> fantoccini::elements::Element {
    for _ in 0..60 {
        let here = c.active_element().await.unwrap();
        if here.text().await.unwrap_or_default().trim() == text {
            return here;
        }
        here.send_keys(&Key::Tab).await.unwrap();
    }
    panic!("no focusable {text:?} within 60 tabs");
}

/// Everything a tenant admin does daily, from the keyboard alone: sign in,
/// run a flow, open the dead letters, show one.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_admin_can_do_it_all_from_the_keyboard() {
    let env = DemoEnv::start(acme(), vec![TenantSetup::new("t1")])
        .await
        .unwrap();
    env.sync("t1").await.unwrap();
    let svc = Service::start(&env).await;
    let minted = svc
        .mint(json!({ "name": "t1 admin", "tenant": "t1" }))
        .await;
    let token = minted["token"].as_str().unwrap().to_owned();
    let driver = Driver::start();
    let c = driver.browser(1280, 900).await;
    open(&c, &svc, "/#/signin").await;
    heading(&c, "Sign in").await;
    // The page's heading has the focus; the token field is the next stop.
    let here = c.active_element().await.unwrap();
    assert_eq!(here.text().await.unwrap(), "Sign in");
    here.send_keys(&Key::Tab).await.unwrap();
    let field = c.active_element().await.unwrap();
    assert_eq!(field.attr("id").await.unwrap().as_deref(), Some("token"));
    field
        .send_keys(&format!("{token}{}", Key::Enter))
        .await
        .unwrap();
    heading(&c, "Tenant t1").await;
    let run_now = tab_to(&c, "Run now").await;
    let drawn = renders(&c).await;
    run_now.send_keys(&Key::Enter).await.unwrap();
    wait_for(&c, "#status", "Run appointments: done.").await;
    // The page is drawn again after the action and once more when the run
    // has ended: the focus stays on the button that started it.
    crate::integrations::wait_for_runs(&env, "t1", "appointments", 2).await;
    let deadline = Instant::now() + STEP;
    while renders(&c).await < drawn + 2 {
        assert!(
            Instant::now() < deadline,
            "the page did not refresh after the run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let here = c.active_element().await.unwrap();
    assert_eq!(here.text().await.unwrap(), "Run now");
    // The tenant's dead letters: the tabs are above the cards.
    c.refresh().await.unwrap();
    heading(&c, "Tenant t1").await;
    tab_to(&c, "Dead letters")
        .await
        .send_keys(&Key::Enter)
        .await
        .unwrap();
    heading(&c, "Dead letters of t1").await;
    let show = tab_to(&c, "Show").await;
    show.send_keys(&Key::Enter).await.unwrap();
    assert_eq!(
        show.attr("aria-expanded").await.unwrap().as_deref(),
        Some("true")
    );
    wait_for(&c, ".side-by-side", "Record").await;
    c.close().await.unwrap();
    svc.stop().await;
}
