/**
 * weft console: a client of the admin API (`/v1`) and nothing else.
 *
 * The token it was given (pasted on the sign-in page, or carried by a link's
 * fragment: `/#token=…&brand=…&color=%23…&next=/tenants/t1`) stays in this
 * tab's sessionStorage and goes to `/v1` as `Authorization: Bearer`. Every
 * page does only what that token may do through the API: a tenant token
 * sees its own tenant and nothing else, whatever the address bar says.
 *
 * Pages are hash routes (`#/tenants/t1`), rendered with `h()`, which makes
 * DOM nodes and puts every value in as text, never as HTML.
 */

const TOKEN_KEY = 'weft.console.token';
const THEME_KEY = 'weft.console.theme';

/** @type {{ token: string | null, who: { operator: boolean, tenant: string | null } | null }} */
const session = { token: sessionStorage.getItem(TOKEN_KEY), who: null };

// ---------------------------------------------------------------------------
// DOM helpers

/**
 * An element with attributes (`on…` are listeners) and children (strings
 * become text nodes).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...any} children
 * @returns {HTMLElement}
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG. */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const $main = () => /** @type {HTMLElement} */ (document.getElementById('main'));
const enc = encodeURIComponent;

/** Says `text` in the polite live region for a while. */
function say(text) {
  const box = document.getElementById('status');
  if (!box) return;
  box.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { box.textContent = ''; }, 8000);
}
say.timer = 0;

// ---------------------------------------------------------------------------
// The API

class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Calls the admin API with the session's token.
 * @param {string} method
 * @param {string} path
 * @param {any} [body] JSON, or a Blob sent as bytes
 */
async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Authorization: `Bearer ${session.token ?? ''}` };
  let payload;
  if (body instanceof Blob) {
    headers['Content-Type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const why = (data && typeof data === 'object' && data.error) || text || res.statusText;
    if (res.status === 401 && path !== '/v1/whoami' && path !== '/v1/tokens/exchange') signOut(`Signed out: ${why}`);
    throw new ApiError(res.status, why);
  }
  return data;
}

// ---------------------------------------------------------------------------
// Session, theme and navigation

/**
 * Takes a token (and theme) from a link's fragment, then forgets the
 * fragment. A one-time activation link (`&link=1`) is exchanged for a
 * session first: the link stops working, the session stays in this tab.
 */
async function takeLink() {
  if (!location.hash.startsWith('#token=')) return;
  const p = new URLSearchParams(location.hash.slice(1));
  const next = p.get('next');
  history.replaceState(null, '', `${location.pathname}#${next && next.startsWith('/') ? next : '/'}`);
  const theme = { brand: p.get('brand') ?? '', color: p.get('color') ?? '' };
  if (theme.brand || theme.color) sessionStorage.setItem(THEME_KEY, JSON.stringify(theme));
  let token = p.get('token');
  if (!token) return;
  if (p.get('link') === '1') {
    session.token = token;
    try {
      token = (await api('POST', '/v1/tokens/exchange')).token;
    } catch (e) {
      session.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      say(`This link does not work: ${e instanceof Error ? e.message : e}`);
      return;
    }
  }
  session.token = token;
  session.who = null;
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** The platform's name and colour, when a link brought them. */
function applyTheme() {
  let theme = { brand: '', color: '' };
  try {
    theme = JSON.parse(sessionStorage.getItem(THEME_KEY) ?? '{}');
  } catch { /* no theme */ }
  const brand = document.getElementById('brand');
  if (brand) brand.textContent = theme.brand ? `${theme.brand} integrations` : 'weft';
  if (/^#[0-9a-fA-F]{6}$/.test(theme.color ?? '')) {
    const root = document.documentElement.style;
    root.setProperty('--accent', theme.color);
    // Text on the accent stays readable (black on light colours), and links
    // and outlines on white use the colour darkened until they read (4.5:1).
    root.setProperty('--accent-text', luminance(theme.color) > 0.179 ? '#000000' : '#ffffff');
    root.setProperty('--link', readableOnWhite(theme.color));
  }
}

/** `hex`, darkened until it has 4.5:1 contrast on white and on the grey of panels. */
function readableOnWhite(hex) {
  let [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const toHex = () => `#${[r, g, b].map((c) => Math.round(c).toString(16).padStart(2, '0')).join('')}`;
  while (luminance(toHex()) > 0.15) {
    [r, g, b] = [r * 0.9, g * 0.9, b * 0.9];
  }
  return toHex();
}

function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function signOut(why) {
  session.token = null;
  session.who = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (why) say(why);
  location.hash = '#/signin';
}

function renderNav(path) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!nav || !who) return;
  const links = [];
  if (session.who?.operator) {
    links.push(['/tenants', 'Tenants'], ['/connectors', 'Connectors']);
  }
  // A tenant admin's pages are one tenant's: their tabs are on the page.
  nav.replaceChildren(
    ...links.map(([href, text]) =>
      h('a', { href: `#${href}`, 'aria-current': path === href ? 'page' : false }, text)),
  );
  who.replaceChildren(
    ...(session.who
      ? [
        session.who.operator ? 'Operator' : `Tenant ${session.who.tenant}`,
        h('button', { class: 'secondary', type: 'button', onclick: () => signOut('Signed out.') }, 'Sign out'),
      ]
      : []),
  );
}

const ROUTES = [
  [/^\/signin$/, signinPage],
  [/^\/$/, homePage],
  [/^\/tenants$/, tenantsPage],
  [/^\/tenants\/([^/]+)$/, tenantPage],
  [/^\/tenants\/([^/]+)\/runs$/, runsPage],
  [/^\/tenants\/([^/]+)\/dead-letters$/, deadLettersPage],
  [/^\/tenants\/([^/]+)\/activate$/, activatePage],
  [/^\/connectors$/, connectorsPage],
];

let rendering = 0;

/** Renders the page of the address; `quiet` (a live refresh) keeps focus where it is. */
async function render(quiet = false) {
  liveAbort?.abort();
  await takeLink();
  applyTheme();
  // `#/tenants/t1/dead-letters?flow=x`: the page reads its own query.
  const path = (location.hash.replace(/^#/, '') || '/').split('?')[0];
  const ticket = ++rendering;
  if (!session.token && path !== '/signin') {
    location.hash = '#/signin';
    return;
  }
  if (session.token && !session.who) {
    try {
      session.who = await api('GET', '/v1/whoami');
    } catch (e) {
      signOut(e instanceof ApiError && e.status === 401 ? `Signed out: ${e.message}` : String(e));
      return;
    }
  }
  renderNav(path);
  const route = ROUTES.find(([re]) => re.test(path));
  const main = $main();
  // A live refresh keeps a keyboard user where they were.
  const focused = quiet ? focusKey(main) : null;
  main.setAttribute('aria-busy', 'true');
  try {
    if (!route) throw new ApiError(404, 'There is no such page.');
    const [re, page] = route;
    const args = /** @type {RegExpExecArray} */ (re.exec(path)).slice(1).map(decodeURIComponent);
    const content = await page(...args);
    if (ticket !== rendering) return; // a newer navigation won
    main.replaceChildren(...content.flat(Infinity).filter((c) => c !== null && c !== undefined));
  } catch (e) {
    if (ticket !== rendering) return;
    main.replaceChildren(...errorPage(e));
  } finally {
    main.removeAttribute('aria-busy');
  }
  const heading = main.querySelector('h1');
  document.title = `${heading?.textContent ?? 'weft'} · weft console`;
  if (heading) heading.tabIndex = -1;
  if (heading && !quiet) heading.focus();
  if (focused) refocus(main, focused);
  // How many times the page was drawn: tests wait on it, not on time.
  main.dataset.renders = String(Number(main.dataset.renders ?? 0) + 1);
}

/** What has the focus inside `main`: its ID, or its tag and text. */
function focusKey(main) {
  const el = document.activeElement;
  if (!el || el === main || !main.contains(el)) return null;
  return { id: el.id, tag: el.tagName, text: el.textContent ?? '' };
}

/** Gives the focus back to the element like `key` after a re-render. */
function refocus(main, key) {
  const same = key.id
    ? document.getElementById(key.id)
    : [...main.querySelectorAll(key.tag)].find((e) => (e.textContent ?? '') === key.text);
  if (same instanceof HTMLElement) same.focus();
}

function errorPage(e) {
  const status = e instanceof ApiError ? e.status : 0;
  const title = status === 404 ? 'Not found' : status === 403 ? 'Not allowed' : 'Something went wrong';
  return [h('h1', {}, title), h('p', { class: 'error-box' }, e instanceof Error ? e.message : String(e))];
}

/** The page again after an action: quiet, so the focus stays where it was. */
async function reload() {
  await render(true);
}

// ---------------------------------------------------------------------------
// Live run progress: `GET /v1/events` (server-sent events), read with fetch
// so that the token goes in a header, not in the address.

/** @type {AbortController | null} */
let liveAbort = null;

/**
 * Calls `onRun(record)` for each run record of `tenant` as it is saved
 * (`null` when some were missed), until the page changes.
 */
function listen(tenant, onRun) {
  const ctrl = new AbortController();
  liveAbort = ctrl;
  // The service ends a stream after a while (and checks the token again
  // when it is opened): open it again while the page is the same.
  const again = () => setTimeout(() => {
    if (!ctrl.signal.aborted) listen(tenant, onRun);
  }, 1000);
  (async () => {
    const res = await fetch(`/v1/events?tenant=${enc(tenant)}`, {
      headers: { Authorization: `Bearer ${session.token ?? ''}` },
      signal: ctrl.signal,
    });
    if (!res.ok || !res.body) return;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        again();
        return;
      }
      buf += value;
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (event === 'run' && data) onRun(JSON.parse(data));
        else if (event === 'lagged') onRun(null);
      }
    }
  })().catch(() => { /* the page changed, or the service stopped */ });
}

let refreshTimer = 0;

/** Renders the page again soon (once, however many events ask). */
function refreshSoon() {
  clearTimeout(refreshTimer);
  const at = location.hash;
  refreshTimer = setTimeout(() => {
    if (location.hash === at) render(true);
  }, 1000);
}

// ---------------------------------------------------------------------------
// Formatting

function when(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

function ago(ms) {
  if (!ms) return 'never';
  const secs = Math.round((Date.now() - ms) / 1000);
  const fmt = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  const abs = Math.abs(secs);
  const text = abs < 60 ? fmt(abs, 'second') : abs < 3600 ? fmt(Math.round(abs / 60), 'minute')
    : abs < 86400 ? fmt(Math.round(abs / 3600), 'hour') : fmt(Math.round(abs / 86400), 'day');
  return secs >= 0 ? `${text} ago` : `in ${text}`;
}

/** Milliseconds of a duration like `5m`, `30s`, `1h 30m`. */
function durationMs(text) {
  const units = { ms: 1, s: 1000, sec: 1000, m: 60000, min: 60000, h: 3600000, d: 86400000 };
  let total = 0;
  for (const [, n, u] of String(text).matchAll(/(\d+)\s*(ms|sec|min|s|m|h|d)/g)) total += Number(n) * units[u];
  return total;
}

function outcomeBadge(outcome) {
  const cls = outcome === 'succeeded' ? 'ok' : outcome === 'running' ? 'warn' : 'bad';
  return h('span', { class: `badge ${cls}` }, String(outcome).replace(/_/g, ' '));
}

/**
 * The badge of a flow's health line (`ok`, `FAILING` or `NEEDS ATTENTION: …`,
 * then tab-separated details).
 */
function healthBadge(health) {
  const head = String(health).split('\t')[0];
  if (head === 'ok') return h('span', { class: 'badge ok' }, 'ok');
  return h('span', { class: 'badge bad' }, head.startsWith('NEEDS ATTENTION') ? 'needs attention' : head.toLowerCase());
}

/** The message of a connector error (`{ class, detail }`). */
function errorText(e) {
  if (!e) return '';
  return typeof e.detail === 'string' ? e.detail : (e.detail?.message ?? '');
}

/** What a person can do about a flow's attention reason. */
function whatToDo(reason) {
  if (/401|403|credential|token|unauthori|forbidden|api key|config/i.test(reason)) {
    return 'Check the credentials and settings this flow uses, correct them, then resume the flow or run it now.';
  }
  if (/cursor|expired|410/i.test(reason)) {
    return 'The source no longer knows where this flow was: reset the flow to read everything again.';
  }
  return 'Fix the cause named above (at the vendor or in the settings), then run the flow again.';
}

function stageName(stage) {
  return stage ? `${stage.connector}` : '—';
}

// ---------------------------------------------------------------------------
// Pages

async function signinPage() {
  const field = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'token-hint token-error' });
  const error = h('p', { id: 'token-error', class: 'field-error' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const token = /** @type {HTMLInputElement} */ (field).value.trim();
      if (!token) {
        error.textContent = 'Enter a token.';
        field.focus();
        return;
      }
      session.token = token;
      try {
        session.who = await api('GET', '/v1/whoami');
      } catch (e) {
        session.token = null;
        error.textContent = e instanceof Error ? e.message : String(e);
        field.setAttribute('aria-invalid', 'true');
        field.focus();
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      location.hash = '#/';
    },
  },
  h('label', { for: 'token' }, 'Token'),
  h('p', { id: 'token-hint', class: 'hint' }, 'An operator token, or a token for your tenant. It stays in this browser tab only.'),
  field,
  error,
  h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Sign in')));
  renderNav('/signin');
  return [h('h1', {}, 'Sign in'), form];
}

async function homePage() {
  if (session.who?.tenant) {
    const t = session.who.tenant;
    // A tenant not set up yet starts with activation.
    const exists = await api('GET', `/v1/tenants/${enc(t)}`).then(() => true, (e) => {
      if (e instanceof ApiError && e.status === 404) return false;
      throw e;
    });
    location.replace(`#/tenants/${enc(t)}${exists ? '' : '/activate'}`);
    return [h('h1', {}, 'Your integration')];
  }
  location.replace('#/tenants');
  return [h('h1', {}, 'Tenants')];
}

async function tenantsPage() {
  const tenants = await api('GET', '/v1/tenants');
  const ids = Object.keys(tenants);
  const rows = ids.map((id) => {
    const t = tenants[id];
    return h('tr', {},
      h('td', {}, h('a', { href: `#/tenants/${enc(id)}` }, id)),
      h('td', {}, t.name ?? ''),
      h('td', {}, t.active ? h('span', { class: 'badge ok' }, 'active') : h('span', { class: 'badge warn' }, 'inactive')),
      h('td', {}, t.flows.join(', ')));
  });
  return [
    h('h1', {}, 'Tenants'),
    h('p', { class: 'muted' }, `${ids.length} tenant${ids.length === 1 ? '' : 's'}.`),
    session.who?.operator ? inviteForm() : null,
    h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, 'Tenants'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'ID'), h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Flows'))),
      h('tbody', {}, rows))),
  ];
}

/** An activation link for a tenant to set itself up (operator). */
function inviteForm() {
  const id = h('input', { id: 'invite-tenant', type: 'text', autocomplete: 'off', 'aria-describedby': 'invite-hint invite-error' });
  const error = h('p', { id: 'invite-error', class: 'field-error' });
  const out = h('div', { role: 'status', 'aria-live': 'polite' });
  return h('details', {}, h('summary', {}, 'Invite a tenant'),
    h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        const tenant = /** @type {HTMLInputElement} */ (id).value.trim();
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(tenant)) {
          error.textContent = 'A tenant ID is 1 to 64 letters, digits, - or _.';
          id.setAttribute('aria-invalid', 'true');
          id.focus();
          return;
        }
        try {
          const link = await api('POST', '/v1/tokens', { name: `${tenant} activation`, tenant, link: true });
          const expires = link.expires_ms ? ` It works once, until ${when(link.expires_ms)}.` : '';
          out.replaceChildren(h('p', {}, `Send this link to ${tenant}'s admin.${expires}`),
            h('pre', { tabindex: 0, 'aria-label': 'Activation link' }, link.url));
        } catch (e) {
          error.textContent = e instanceof Error ? e.message : String(e);
        }
      },
    },
    h('label', { for: 'invite-tenant' }, 'Tenant ID'),
    h('p', { id: 'invite-hint', class: 'hint' }, 'A one-time link: the tenant\'s admin opens it, enters their vendor account and activates an integration.'),
    id, error,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Create the link')),
    out));
}

function tenantTabs(t, current) {
  const tabs = [[`/tenants/${enc(t)}`, 'Status'], [`/tenants/${enc(t)}/runs`, 'Runs'], [`/tenants/${enc(t)}/dead-letters`, 'Dead letters'], [`/tenants/${enc(t)}/activate`, 'Set up']];
  return h('nav', { 'aria-label': 'Tenant', class: 'row' },
    tabs.map(([href, text]) => h('a', { href: `#${href}`, 'aria-current': href === current ? 'page' : false }, text)));
}

async function tenantPage(t) {
  // Runs in progress show their pages as they commit; a run that ends
  // brings the page up to date (health, dead letters, the chart). Heard
  // from before the page's data is read, so that no run ends unseen
  // between the two.
  listen(t, (r) => {
    const cell = r && r.trigger !== 'replay' ? document.getElementById(`last-${r.flow}`) : null;
    if (cell) cell.replaceChildren(...lastRun(r));
    if (!r || r.outcome !== 'running') refreshSoon();
  });
  const [cfg, runs, dead] = await Promise.all([
    api('GET', `/v1/tenants/${enc(t)}`),
    api('GET', `/v1/runs?tenant=${enc(t)}&limit=1000`),
    api('GET', `/v1/dead-letters?tenant=${enc(t)}`),
  ]);
  const flows = Object.keys(cfg.flows ?? {});
  const states = await Promise.all(flows.map((f) => api('GET', `/v1/tenants/${enc(t)}/flows/${enc(f)}/state`)));
  const cards = flows.map((f, i) => flowCard(t, f, cfg.flows[f], states[i], runs, dead));
  return [
    h('h1', {}, cfg.name ? `${cfg.name} (${t})` : `Tenant ${t}`),
    tenantTabs(t, `/tenants/${enc(t)}`),
    h('p', {}, cfg.active === false ? h('span', { class: 'badge warn' }, 'inactive: nothing runs') : h('span', { class: 'badge ok' }, 'active')),
    h('h2', {}, 'Flows'),
    flows.length ? h('div', { class: 'cards' }, cards) : h('p', {}, 'This tenant has no flows yet.'),
    h('h2', { id: 'chart-title' }, 'Records per day'),
    chart(runs),
  ];
}

function flowCard(t, f, flow, state, runs, dead) {
  // Replays are runs of their own; the flow's last run is its last sync.
  const mine = runs.filter((r) => r.flow === f && r.trigger !== 'replay');
  const last = mine[0];
  const lastPoll = mine.find((r) => r.trigger === 'schedule' || r.trigger === 'manual' || r.trigger === 'backfill');
  const every = durationMs(flow.schedule ?? '5m');
  const next = state.paused || !lastPoll ? null : lastPoll.started_ms + every;
  const lag = next && next < Date.now() - 1000 ? Date.now() - next : 0;
  const deadHere = dead.filter((d) => d.flow === f).length;
  const act = async (what, path, body) => {
    try {
      await api('POST', path, body);
      say(`${what}: done.`);
      await reload();
    } catch (e) {
      say(`${what} failed: ${e instanceof Error ? e.message : e}`);
    }
  };
  const base = `/v1/tenants/${enc(t)}/flows/${enc(f)}`;
  return h('section', { class: 'card', 'aria-labelledby': `flow-${f}` },
    h('h3', { id: `flow-${f}` }, f, ' ', healthBadge(state.health), state.paused ? h('span', { class: 'badge warn' }, ' paused') : null),
    state.attention
      ? h('div', { class: 'attention' },
        h('p', {}, h('strong', {}, 'Needs attention: '), state.attention),
        h('p', {}, h('strong', {}, 'What to do: '), whatToDo(state.attention)))
      : null,
    h('dl', {},
      h('dt', {}, 'From'), h('dd', {}, `${stageName(flow.source)} (${flow.source?.stream ?? ''})`),
      h('dt', {}, 'To'), h('dd', {}, stageName(flow.destination)),
      h('dt', {}, 'Schedule'), h('dd', {}, `every ${flow.schedule ?? '5m'}`),
      h('dt', {}, 'Last run'), h('dd', { id: `last-${f}` }, last ? lastRun(last) : 'not yet'),
      last?.error ? [h('dt', {}, 'Error'), h('dd', {}, last.error)] : null,
      streak(state.health) ? [h('dt', {}, 'Failing'), h('dd', {}, streak(state.health))] : null,
      h('dt', {}, 'Next poll'), h('dd', {}, next ? `${ago(next)}${lag ? ` (late by ${Math.round(lag / 1000)} s)` : ''}` : state.paused ? 'paused' : 'after the first run'),
      h('dt', {}, 'Dead letters'), h('dd', {}, deadHere ? h('a', { href: `#/tenants/${enc(t)}/dead-letters?flow=${enc(f)}` }, `${deadHere} waiting`) : 'none')),
    h('div', { class: 'row' },
      h('button', { type: 'button', onclick: () => act(`Run ${f}`, `${base}/runs`) }, 'Run now'),
      state.paused
        ? h('button', { type: 'button', class: 'secondary', onclick: () => act(`Resume ${f}`, `${base}/resume`) }, 'Resume')
        : h('button', { type: 'button', class: 'secondary', onclick: () => act(`Pause ${f}`, `${base}/pause`) }, 'Pause')));
}

/** `N run(s) in a row not succeeded` from a health line, if there. */
function streak(health) {
  const m = /(\d+) run\(s\) in a row not succeeded/.exec(String(health));
  return m ? `${m[1]} run${m[1] === '1' ? '' : 's'} in a row` : '';
}


/** A run's outcome and counts (running: its progress so far). */
function lastRun(r) {
  const counts = `${r.pages} page${r.pages === 1 ? '' : 's'}, ${r.fetched} fetched, ${r.emitted} delivered, ${r.dead_lettered} dead-lettered${r.retries ? `, ${r.retries} retried` : ''}`;
  return [outcomeBadge(r.outcome), ` ${ago(r.started_ms)} (${r.trigger}): ${counts}`];
}

/** Records delivered and failures per day over the last 14 days, from run records. */
function chart(runs) {
  const DAYS = 14;
  const day = 86400000;
  const today = Math.floor(Date.now() / day);
  const buckets = Array.from({ length: DAYS }, (_, i) => ({ day: today - DAYS + 1 + i, emitted: 0, failed: 0 }));
  for (const r of runs) {
    const b = buckets[Math.floor(r.started_ms / day) - (today - DAYS + 1)];
    if (!b) continue;
    b.emitted += r.emitted;
    b.failed += r.dead_lettered + (r.outcome === 'failed' || r.outcome === 'needs_attention' ? 1 : 0);
  }
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.emitted, b.failed)));
  const W = 700, H = 200, pad = 28, bw = (W - pad) / DAYS;
  const label = (b) => new Date(b.day * day).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  const bars = buckets.map((b, i) => {
    const x = pad + i * bw;
    const he = (b.emitted / max) * (H - 40);
    const hf = (b.failed / max) * (H - 40);
    return s('g', {},
      s('rect', { x: x + 2, y: H - 20 - he, width: bw / 2 - 3, height: he, fill: '#1d4ed8' }, s('title', {}, `${label(b)}: ${b.emitted} delivered`)),
      s('rect', { x: x + bw / 2, y: H - 20 - hf, width: bw / 2 - 3, height: hf, fill: '#b91c1c' }, s('title', {}, `${label(b)}: ${b.failed} failures`)),
      i % 2 === 0 ? s('text', { x: x + 2, y: H - 4, 'font-size': 11, fill: '#374151' }, label(b)) : null);
  });
  const total = buckets.reduce((a, b) => ({ e: a.e + b.emitted, f: a.f + b.failed }), { e: 0, f: 0 });
  return h('figure', { class: 'chart' },
    s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-summary' },
      s('text', { x: 0, y: 12, 'font-size': 11, fill: '#374151' }, String(max)),
      s('line', { x1: pad, y1: H - 20, x2: W, y2: H - 20, stroke: '#6b7280' }),
      bars),
    h('figcaption', {},
      h('p', { id: 'chart-summary' }, `Last ${DAYS} days: ${total.e} records delivered, ${total.f} failures (dead letters and failed runs).`),
      h('div', { class: 'legend' },
        h('span', {}, h('span', { class: 'swatch', style: 'background:#1d4ed8' }), 'delivered'),
        h('span', {}, h('span', { class: 'swatch', style: 'background:#b91c1c' }), 'failures')),
      h('details', {}, h('summary', {}, 'The same as a table'),
        h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col', class: 'num' }, 'Delivered'), h('th', { scope: 'col', class: 'num' }, 'Failures'))),
          h('tbody', {}, buckets.map((b) => h('tr', {}, h('td', {}, label(b)), h('td', { class: 'num' }, b.emitted), h('td', { class: 'num' }, b.failed)))))))));
}

async function runsPage(t) {
  const runs = await api('GET', `/v1/runs?tenant=${enc(t)}&limit=200`);
  const rows = runs.map((r) => h('tr', {},
    h('td', {}, when(r.started_ms)),
    h('td', {}, r.flow),
    h('td', {}, r.trigger),
    h('td', {}, outcomeBadge(r.outcome)),
    h('td', { class: 'num' }, r.ended_ms ? `${((r.ended_ms - r.started_ms) / 1000).toFixed(1)} s` : '…'),
    h('td', { class: 'num' }, r.fetched),
    h('td', { class: 'num' }, r.emitted),
    h('td', { class: 'num' }, r.dead_lettered),
    h('td', { class: 'num' }, r.retries),
    h('td', {}, r.error ?? '')));
  return [
    h('h1', {}, `Runs of ${t}`),
    tenantTabs(t, `/tenants/${enc(t)}/runs`),
    runs.length
      ? h('div', { class: 'table-wrap' }, h('table', {},
        h('caption', { class: 'visually-hidden' }, 'Runs, newest first'),
        h('thead', {}, h('tr', {}, ['Started', 'Flow', 'Trigger', 'Outcome', 'Took', 'Fetched', 'Delivered', 'Dead-lettered', 'Retries', 'Error']
          .map((c, i) => h('th', { scope: 'col', class: i >= 4 && i <= 8 ? 'num' : false }, c)))),
        h('tbody', {}, rows)))
      : h('p', {}, 'No runs yet.'),
  ];
}

/** `name@version` of the connector a replay of `d` will use, from the registry's `used_by`. */
function replayVersion(d, connectors) {
  const name = d.connector.split('@')[0];
  const user = `${d.tenant}/${d.flow}`;
  const v = connectors.find((c) => c.name === name && (c.used_by ?? []).includes(user));
  return v ? `${v.name}@${v.version}` : null;
}

async function deadLettersPage(t) {
  const [dead, cfg, connectors] = await Promise.all([
    api('GET', `/v1/dead-letters?tenant=${enc(t)}`),
    api('GET', `/v1/tenants/${enc(t)}`),
    api('GET', '/v1/connectors').catch(() => []),
  ]);
  const query = new URLSearchParams(location.hash.split('?')[1] ?? '');
  const filters = { flow: query.get('flow') ?? '', stage: '', connector: '', reason: '' };
  const distinct = (f) => [...new Set(dead.map(f))].sort();
  const select = (key, label, options) => {
    const id = `filter-${key}`;
    const el = h('select', {
      id,
      onchange: (ev) => { filters[key] = ev.target.value; draw(); },
    }, h('option', { value: '' }, 'All'), options.map((o) => h('option', { value: o, selected: o === filters[key] }, o)));
    return h('div', {}, h('label', { for: id }, label), el);
  };
  const list = h('div', {});
  const selected = new Set();
  const shown = () => dead.filter((d) =>
    (!filters.flow || d.flow === filters.flow) && (!filters.stage || d.stage === filters.stage)
    && (!filters.connector || d.connector === filters.connector) && (!filters.reason || d.error.class === filters.reason));

  const replay = async (ids) => {
    let delivered = 0;
    let failed = 0;
    for (const id of ids) {
      try {
        const r = await api('POST', `/v1/dead-letters/${enc(id)}/replay`);
        if (r.delivered) delivered += 1; else failed += 1;
      } catch (e) {
        failed += 1;
        say(`Replay of ${id} failed: ${e instanceof Error ? e.message : e}`);
      }
    }
    await reload();
    say(`Replayed ${ids.length}: ${delivered} delivered, ${failed} failed again.`);
  };

  const discardForm = (d, cell) => {
    const id = `reason-${d.id}`;
    const reason = h('textarea', { id, rows: 2, 'aria-required': 'true' });
    const err = h('p', { class: 'field-error', id: `${id}-error` });
    reason.setAttribute('aria-describedby', `${id}-error`);
    const form = h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const why = /** @type {HTMLTextAreaElement} */ (reason).value.trim();
        if (!why) {
          err.textContent = 'Say why this record is discarded.';
          reason.setAttribute('aria-invalid', 'true');
          reason.focus();
          return;
        }
        try {
          await api('DELETE', `/v1/dead-letters/${enc(d.id)}?reason=${enc(why)}`);
          say(`Discarded ${d.record.key}.`);
          await reload();
        } catch (e) {
          err.textContent = e instanceof Error ? e.message : String(e);
        }
      },
    }, h('label', { for: id }, `Why discard ${d.record.key}?`), reason, err,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'danger' }, 'Discard'),
      h('button', { type: 'button', class: 'secondary', onclick: () => draw() }, 'Cancel')));
    cell.replaceChildren(form);
    reason.focus();
  };

  const draw = () => {
    const items = shown();
    const rows = items.flatMap((d) => {
      const uses = replayVersion(d, connectors);
      const detail = h('tr', { hidden: true }, h('td', { colspan: 7 },
        h('div', { class: 'side-by-side' },
          h('div', {}, h('h3', {}, 'Record'), h('pre', { tabindex: 0, 'aria-label': 'Record body' }, pretty(d.record.body)),
            h('p', { class: 'hint' }, `${d.record.kind} ${d.record.key}, version ${d.record.version}, ${d.record.op}`)),
          h('div', {}, h('h3', {}, 'Error'), h('pre', { tabindex: 0, 'aria-label': 'Error' }, `${d.error.class}: ${errorText(d.error)}`),
            h('p', { class: 'hint' }, `Failed ${d.attempts} time${d.attempts === 1 ? '' : 's'}, first ${when(d.first_seen_ms)}, last ${when(d.last_seen_ms)}.`),
            h('p', { class: 'hint' }, uses ? `A replay now uses ${uses}.` : 'No registered version of this connector is used by the flow now.')))));
      const actions = h('td', {},
        h('div', { class: 'row' },
          h('button', {
            type: 'button', class: 'secondary', 'aria-expanded': 'false',
            onclick: (ev) => {
              detail.hidden = !detail.hidden;
              ev.currentTarget.setAttribute('aria-expanded', String(!detail.hidden));
            },
          }, 'Show'),
          h('button', { type: 'button', onclick: () => replay([d.id]) }, 'Replay'),
          h('button', { type: 'button', class: 'danger', onclick: () => discardForm(d, actions) }, 'Discard')));
      const box = h('input', {
        type: 'checkbox', id: `pick-${d.id}`, checked: selected.has(d.id),
        onchange: (ev) => { if (ev.target.checked) selected.add(d.id); else selected.delete(d.id); },
      });
      return [h('tr', {},
        h('td', {}, box, h('label', { for: `pick-${d.id}`, class: 'visually-hidden' }, `Select ${d.record.key}`)),
        h('td', {}, d.record.key),
        h('td', {}, d.flow),
        h('td', {}, d.stage),
        h('td', {}, d.connector),
        h('td', {}, h('strong', {}, d.error.class), ': ', errorText(d.error)),
        actions), detail];
    });
    list.replaceChildren(
      h('p', { class: 'muted' }, `${items.length} of ${dead.length} shown.`),
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => replay([...selected].filter((id) => items.some((d) => d.id === id))) }, 'Replay selected'),
        h('button', { type: 'button', class: 'secondary', onclick: () => replay(items.map((d) => d.id)) }, `Replay all ${items.length} shown`)),
      items.length
        ? h('div', { class: 'table-wrap' }, h('table', {},
          h('caption', { class: 'visually-hidden' }, 'Dead letters'),
          h('thead', {}, h('tr', {}, ['Select', 'Record', 'Flow', 'Stage', 'Connector', 'Reason', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows)))
        : h('p', {}, 'No dead letters.'));
  };
  draw();
  return [
    h('h1', {}, `Dead letters of ${t}`),
    tenantTabs(t, `/tenants/${enc(t)}/dead-letters`),
    h('div', { class: 'row', role: 'group', 'aria-label': 'Filters' },
      select('flow', 'Flow', Object.keys(cfg.flows ?? {})),
      select('stage', 'Stage', distinct((d) => d.stage)),
      select('connector', 'Connector version', distinct((d) => d.connector)),
      select('reason', 'Reason', distinct((d) => d.error.class))),
    list,
  ];
}

function pretty(body) {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return String(body);
  }
}

/** A label from a property name: `keep_cancelled` → `Keep cancelled`. */
function humanize(key) {
  const words = String(key).replace(/[_-]+/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * One form field for a JSON Schema property: a select for an enum, a
 * checkbox for a boolean, a number input for numbers, else text. Returns
 * the element and a `read()` that gives its value (undefined: not set) or
 * throws the message to show next to it.
 */
function schemaField(id, key, prop, required) {
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const describedBy = `${prop.description ? hintId : ''} ${errorId}`.trim();
  const label = `${prop.title ?? humanize(key)}${required ? ' (required)' : ''}`;
  const hint = prop.description ? h('p', { id: hintId, class: 'hint' }, prop.description) : null;
  const error = h('p', { id: errorId, class: 'field-error' });
  let input;
  let read;
  if (Array.isArray(prop.enum)) {
    input = h('select', { id, 'aria-describedby': describedBy, 'aria-required': required ? 'true' : false },
      required && prop.default !== undefined ? null : h('option', { value: '' }, required ? 'Choose…' : '(the default)'),
      prop.enum.map((v) => h('option', { value: String(v), selected: v === prop.default }, String(v))));
    read = () => {
      const v = input.value;
      if (!v) {
        if (required) throw new Error('Choose one.');
        return undefined;
      }
      return prop.enum.find((e) => String(e) === v);
    };
  } else if (prop.type === 'array' || prop.type === 'object' || prop.type === undefined) {
    // Lists: one item a line. Maps of text: `key = value` a line. Anything
    // else: JSON.
    const list = prop.type === 'array' && ['string', undefined].includes(prop.items?.type);
    const map = prop.type === 'object' && (prop.additionalProperties?.type === 'string');
    const shown = prop.default === undefined ? ''
      : list ? prop.default.join('\n')
        : map ? Object.entries(prop.default).map(([k, v]) => `${k} = ${v}`).join('\n')
          : JSON.stringify(prop.default, null, 2);
    const how = list ? 'One a line.' : map ? 'One `key = value` a line.' : 'JSON.';
    hint?.append(` ${how}`);
    input = h('textarea', { id, rows: 3, 'aria-describedby': describedBy, 'aria-required': required ? 'true' : false }, shown);
    read = () => {
      const text = input.value.trim();
      if (!text) {
        if (required) throw new Error('Required.');
        return undefined;
      }
      const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
      if (list) {
        if (prop.minItems !== undefined && lines.length < prop.minItems) throw new Error(`At least ${prop.minItems}.`);
        return lines;
      }
      if (map) {
        const out = {};
        for (const l of lines) {
          const at = l.indexOf('=');
          if (at < 1) throw new Error(`"${l}" is not \`key = value\`.`);
          out[l.slice(0, at).trim()] = l.slice(at + 1).trim();
        }
        return out;
      }
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new Error(`Not JSON: ${e instanceof Error ? e.message : e}`);
      }
    };
    if (!hint) {
      input.setAttribute('aria-describedby', `${hintId} ${errorId}`);
      return {
        el: h('div', { class: 'field' }, h('label', { for: id }, label), h('p', { id: hintId, class: 'hint' }, how), input, error),
        read, input, error,
      };
    }
  } else if (prop.type === 'boolean') {
    input = h('input', { id, type: 'checkbox', checked: prop.default === true, 'aria-describedby': describedBy });
    read = () => input.checked;
    return {
      el: h('div', { class: 'field' }, h('div', { class: 'row' }, input, h('label', { for: id }, label)), hint, error),
      read, input, error,
    };
  } else if (prop.type === 'integer' || prop.type === 'number') {
    input = h('input', {
      id, type: 'number', inputmode: prop.type === 'integer' ? 'numeric' : 'decimal', step: prop.type === 'integer' ? 1 : 'any',
      min: prop.minimum, max: prop.maximum, value: prop.default, 'aria-describedby': describedBy, 'aria-required': required ? 'true' : false,
    });
    read = () => {
      const text = input.value.trim();
      if (!text) {
        if (required) throw new Error('Enter a number.');
        return undefined;
      }
      const n = Number(text);
      if (!Number.isFinite(n) || (prop.type === 'integer' && !Number.isInteger(n))) throw new Error(prop.type === 'integer' ? 'Enter a whole number.' : 'Enter a number.');
      if (prop.minimum !== undefined && n < prop.minimum) throw new Error(`At least ${prop.minimum}.`);
      if (prop.maximum !== undefined && n > prop.maximum) throw new Error(`At most ${prop.maximum}.`);
      return n;
    };
  } else {
    input = h('input', { id, type: 'text', value: prop.default, 'aria-describedby': describedBy, 'aria-required': required ? 'true' : false });
    read = () => {
      const v = input.value.trim();
      if (!v) {
        if (required) throw new Error('Required.');
        return undefined;
      }
      if (prop.pattern && !new RegExp(prop.pattern, 'u').test(v)) throw new Error(`Does not have the expected form (${prop.pattern}).`);
      if (prop.minLength !== undefined && v.length < prop.minLength) throw new Error(`At least ${prop.minLength} characters.`);
      return v;
    };
  }
  return { el: h('div', { class: 'field' }, h('label', { for: id }, label), hint, input, error), read, input, error };
}

/** The element ID of an answer's field (`options.acme-crm.page_size`). */
function fieldId(field) {
  return `f-${field.replace(/[^A-Za-z0-9_-]/g, '-')}`;
}

async function activatePage(t) {
  const forms = await api('GET', '/v1/integrations');
  const title = h('h1', {}, `Set up an integration for ${t}`);
  if (!forms.length) return [title, h('p', {}, 'No integrations are on offer yet: the operator adds them to weft.toml.')];
  const holder = h('div', {});
  const choose = (form) => holder.replaceChildren(integrationForm(t, form));
  const picker = h('fieldset', {}, h('legend', {}, 'Integration'),
    forms.map((f, i) => h('div', { class: 'row' },
      h('input', { type: 'radio', name: 'integration', id: `pick-${f.id}`, value: f.id, checked: i === 0, onchange: () => choose(f) }),
      h('label', { for: `pick-${f.id}` }, f.title, ' ', h('span', { class: 'muted' }, f.description)))));
  choose(forms[0]);
  return [title, tenantTabs(t, `/tenants/${enc(t)}/activate`), picker, holder];
}

function integrationForm(t, form) {
  /** @type {Map<string, { read: () => any, input: HTMLElement, error: HTMLElement }>} */
  const fields = new Map();
  const add = (field, f) => {
    fields.set(field, f);
    return f.el;
  };
  const connection = h('fieldset', {}, h('legend', {}, `Your ${form.vendor} account`),
    add('base_url', schemaField(fieldId('base_url'), 'base_url', {
      title: `${form.vendor} address`, type: 'string', pattern: '^https?://',
      description: `The address of your ${form.vendor} API, like https://yourcompany.example/api/v1`,
    }, true)),
    form.credentials.map((c) => {
      const f = schemaField(fieldId(`credentials.${c.name}`), c.name, { title: c.label, type: 'string', description: c.secret ? 'Stored encrypted; never shown again.' : undefined }, true);
      if (c.secret) {
        f.input.setAttribute('type', 'password');
        f.input.setAttribute('autocomplete', 'off');
      }
      return add(`credentials.${c.name}`, f);
    }));
  const options = Object.entries(form.options).map(([connector, schema]) => h('fieldset', {},
    h('legend', {}, `Options: ${connector}`),
    Object.entries(schema.properties ?? {}).map(([key, prop]) =>
      add(`options.${connector}.${key}`, schemaField(fieldId(`options.${connector}.${key}`), key, prop, (schema.required ?? []).includes(key))))));
  const result = h('div', { class: 'result', role: 'status', 'aria-live': 'polite' });

  /** The answers, or null after marking every field that is wrong. */
  const collect = () => {
    const answers = { base_url: '', credentials: {}, options: {} };
    let firstBad = null;
    for (const [field, f] of fields) {
      f.error.textContent = '';
      f.input.removeAttribute('aria-invalid');
      let v;
      try {
        v = f.read();
      } catch (e) {
        f.error.textContent = e instanceof Error ? e.message : String(e);
        f.input.setAttribute('aria-invalid', 'true');
        firstBad ??= f.input;
        continue;
      }
      if (v === undefined) continue;
      const [head, a, b] = field.split('.');
      if (head === 'base_url') answers.base_url = v;
      else if (head === 'credentials') answers.credentials[a] = v;
      else (answers.options[a] ??= {})[b] = v;
    }
    if (firstBad) {
      firstBad.focus();
      return null;
    }
    return answers;
  };
  /** Shows the server's field errors next to their fields. */
  const showServerErrors = (e) => {
    const fieldsFromServer = e.fields ?? {};
    let first = null;
    for (const [field, why] of Object.entries(fieldsFromServer)) {
      const f = fields.get(field) ?? fields.get(field.split('.').slice(0, 2).join('.'));
      if (!f) continue;
      f.error.textContent = why;
      f.input.setAttribute('aria-invalid', 'true');
      first ??= f.input;
    }
    result.replaceChildren(h('p', { class: 'error-box' }, e.message));
    first?.focus();
  };
  const send = async (path, answers) => {
    const res = await fetch(path, {
      method: 'POST',
      headers: { Authorization: `Bearer ${session.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(answers),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new ApiError(res.status, data.error ?? res.statusText), { fields: data.fields });
    return data;
  };
  const base = `/v1/tenants/${enc(t)}/integrations/${enc(form.id)}`;
  const test = async () => {
    const answers = collect();
    if (!answers) return;
    result.replaceChildren(h('p', {}, 'Calling the vendor…'));
    try {
      const r = await send(`${base}/test`, answers);
      result.replaceChildren(h('p', { class: r.ok ? 'ok-box' : 'error-box' }, r.message));
    } catch (e) {
      showServerErrors(e);
    }
  };
  const activate = async (ev) => {
    ev.preventDefault();
    const answers = collect();
    if (!answers) return;
    result.replaceChildren(h('p', {}, 'Activating…'));
    try {
      const r = await send(base, answers);
      say(`Activated ${form.title}: the first sync of ${r.runs.join(', ')} has started.`);
      location.hash = `#/tenants/${enc(t)}`;
    } catch (e) {
      showServerErrors(e);
    }
  };
  return h('form', { onsubmit: activate, novalidate: true },
    h('h2', {}, form.title),
    form.description ? h('p', {}, form.description) : null,
    h('p', { class: 'muted' }, `Flows: ${form.flows.join(', ')}.`),
    connection, options, result,
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'secondary', onclick: test }, 'Test connection'),
      h('button', { type: 'submit' }, 'Activate')));
}

async function connectorsPage() {
  const versions = await api('GET', '/v1/connectors');
  const operator = session.who?.operator === true;
  const tenants = operator ? Object.keys(await api('GET', '/v1/tenants')) : [];
  const byName = new Map();
  for (const v of versions) byName.set(v.name, [...(byName.get(v.name) ?? []), v]);
  // Pins apply to every tenant's flows, or to one tenant's.
  const scope = h('select', { id: 'pin-scope' }, h('option', { value: '' }, 'every tenant'),
    tenants.map((t) => h('option', { value: t }, t)));
  const pin = async (name, version) => {
    const tenant = /** @type {HTMLSelectElement} */ (scope).value || undefined;
    try {
      const r = await api('POST', `/v1/connectors/${enc(name)}/pin`, { version, tenant });
      await reload();
      const refused = Object.entries(r.refused ?? {}).map(([t, why]) => `${t} refused: ${why}`);
      say([r.flows.length ? `Now: ${r.flows.join('; ')}.` : 'No flow\'s requirement changed.', ...refused].join(' '));
    } catch (e) {
      say(`Pinning ${name} failed: ${e instanceof Error ? e.message : e}`);
    }
  };
  const tables = [...byName.entries()].map(([name, vs]) => h('section', { 'aria-labelledby': `c-${name}` },
    h('h2', { id: `c-${name}` }, name, ' ', h('span', { class: 'muted' }, `(${vs[0].world})`)),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Version', 'Added', 'Digest', 'Used by', operator ? 'Pin' : null]
        .filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, vs.map((v) => h('tr', {},
        h('td', {}, v.version),
        h('td', {}, when(v.added_ms)),
        h('td', {}, h('code', {}, v.digest.slice(0, 12))),
        h('td', {}, v.used_by.length ? v.used_by.join(', ') : h('span', { class: 'muted' }, 'no flow')),
        operator ? h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: () => pin(name, v.version) }, `Use ${v.version}`)) : null))))),
    operator ? h('div', { class: 'row' }, h('button', { type: 'button', class: 'secondary', onclick: () => pin(name, undefined) }, `Unpin ${name}`)) : null));
  return [
    h('h1', {}, 'Connectors'),
    operator ? uploadForm() : null,
    operator ? h('div', { class: 'row' }, h('label', { for: 'pin-scope' }, 'Pins apply to'), scope) : null,
    tables.length ? tables : h('p', {}, 'No connectors registered.'),
  ];
}

function uploadForm() {
  const file = h('input', { id: 'component', type: 'file', accept: '.wasm,application/wasm', required: true, 'aria-describedby': 'component-hint component-error' });
  const error = h('p', { id: 'component-error', class: 'field-error' });
  return h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const f = /** @type {HTMLInputElement} */ (file).files?.[0];
      if (!f) {
        error.textContent = 'Choose a component file (.wasm).';
        file.focus();
        return;
      }
      try {
        const r = await api('POST', '/v1/connectors', f);
        say(r.added ? `Registered ${r.connector.name}@${r.connector.version}.` : `${r.connector.name}@${r.connector.version} was registered already.`);
        await reload();
      } catch (e) {
        error.textContent = e instanceof Error ? e.message : String(e);
        file.setAttribute('aria-invalid', 'true');
        file.focus();
      }
    },
  },
  h('label', { for: 'component' }, 'Upload a connector version'),
  h('p', { id: 'component-hint', class: 'hint' }, 'A WebAssembly component. The next run of every flow whose requirement matches it uses it.'),
  file, error,
  h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Upload')));
}

window.addEventListener('hashchange', () => render());
render();
