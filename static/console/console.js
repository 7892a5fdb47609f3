// The Portcullis console: one page over the admin API. Everything it shows goes into the page as
// text nodes (never as HTML), the URLs people clicked are never made into links, and the page
// loads nothing but this file, its style sheet and its logo (the CSP allows nothing else).
'use strict';

const API = '/api/v1';
const session = { user: null, role: null, csrf: null };
const ROLES = ['viewer', 'operator', 'admin'];

// ---- DOM helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function link(href, text) {
  return el('a', { href }, text);
}

function pill(text) {
  return el('span', { class: 'pill ' + String(text || '').replace(/[^a-z_-]/gi, '') }, text || '—');
}

function toast(text, bad) {
  const note = el('div', { class: bad ? 'bad' : '' }, text);
  document.getElementById('toast').append(note);
  setTimeout(() => note.remove(), 6000);
}

function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/:00Z$/, 'Z');
}

function table(columns, rows, empty) {
  if (!rows.length) return el('p', { class: 'muted' }, empty || 'Nothing found.');
  return el('table', {},
    el('thead', {}, el('tr', {}, columns.map(c => el('th', { class: c.num ? 'num' : '', scope: 'col' }, c.title)))),
    el('tbody', {}, rows.map(row => el('tr', {}, columns.map(c => {
      const value = c.value(row);
      return el('td', { class: c.num ? 'num' : (c.wrap ? 'wrap' : '') }, value === undefined || value === null || value === '' ? '—' : value);
    })))));
}

function facts(pairs) {
  return el('dl', { class: 'facts' }, pairs.filter(p => p).map(([name, value]) => [el('dt', {}, name),
    el('dd', {}, value === undefined || value === null || value === '' ? '—' : value)]));
}

function may(role) {
  return ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

// ---- The API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const answer = await fetch(API + path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!answer.ok) {
    const error = (data && data.error) || {};
    if (answer.status === 401 && path !== '/session') {
      session.user = null;
      render();
    }
    throw new ApiError(answer.status, error.code || String(answer.status), error.message || answer.statusText);
  }
  return data;
}

function query(params) {
  const parts = [];
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') parts.push(encodeURIComponent(name) + '=' + encodeURIComponent(value));
  }
  return parts.length ? '?' + parts.join('&') : '';
}

// ---- Routing: #/page/argument?filters -----------------------------------------------------

// The page's address: the last hash that was a route (the skip link's `#view` is not one).
let routed = '/';

function decoded(part) {
  try { return decodeURIComponent(part); } catch (_) { return part; }
}

function route() {
  if (!location.hash || location.hash.startsWith('#/')) routed = location.hash.replace(/^#/, '') || '/';
  const [path, search] = routed.split('?');
  const parts = path.split('/').filter(Boolean).map(decoded);
  const params = {};
  for (const [name, value] of new URLSearchParams(search || '')) params[name] = value;
  return { page: parts[0] || 'dashboard', arg: parts[1], params };
}

function go(page, params) {
  location.hash = '#/' + (page === 'dashboard' ? '' : page) + query(params || {});
}

const PAGES = {
  dashboard: dashboardPage,
  clicks: clicksPage,
  messages: messagesPage,
  quarantine: quarantinePage,
  threats: threatsPage,
  reports: reportsPage,
  'at-risk': atRiskPage,
  audit: auditPage,
  settings: settingsPage,
};

async function render() {
  const view = document.getElementById('view');
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session.user) {
    nav.hidden = true;
    who.replaceChildren();
    view.replaceChildren(signInForm());
    return;
  }
  nav.hidden = false;
  who.replaceChildren(el('span', { id: 'whoami' }, session.user + ' (' + session.role + ')'),
    el('button', { type: 'button', id: 'sign-out', onclick: signOut }, 'Sign out'));
  const { page, arg, params } = route();
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const build = Object.hasOwn(PAGES, page) ? PAGES[page] : null;
  view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  if (!build) {
    view.replaceChildren(el('h1', {}, 'Not found'), el('p', {}, 'No such page.'));
    return;
  }
  try {
    const content = await build(arg, params);
    view.replaceChildren(...[].concat(content));
    view.dataset.page = page;
  } catch (error) {
    if (!session.user) return;
    view.replaceChildren(el('h1', {}, 'Something went wrong'), el('p', { class: 'error', id: 'page-error' }, error.message));
  }
}

// ---- Sign-in ------------------------------------------------------------------------------

function signInForm() {
  const problem = el('p', { class: 'error', id: 'signin-error', role: 'alert' });
  const form = el('form', { class: 'stack', id: 'signin' },
    el('label', {}, 'Name', el('input', { name: 'name', id: 'signin-name', autocomplete: 'username', required: true, autofocus: true })),
    el('label', {}, 'Password', el('input', { name: 'password', id: 'signin-password', type: 'password', autocomplete: 'current-password', required: true })),
    el('button', { class: 'primary', type: 'submit', id: 'signin-submit' }, 'Sign in'),
    problem);
  form.addEventListener('submit', async event => {
    event.preventDefault();
    problem.textContent = '';
    try {
      const answer = await call('POST', '/session', { name: form.elements.name.value, password: form.elements.password.value });
      Object.assign(session, answer);
      render();
    } catch (error) {
      problem.textContent = error.status === 401 ? 'Wrong name or password.' : error.message;
    }
  });
  return el('div', { class: 'card signin' }, el('h1', {}, 'Sign in to Portcullis'), form);
}

async function signOut() {
  try { await call('DELETE', '/session'); } catch (_) { /* signed out either way */ }
  session.user = null;
  session.csrf = null;
  render();
}

// ---- Charts -------------------------------------------------------------------------------

// A stacked bar per hour; each bar carries its figures in a <title> and the data stays readable
// in the table under the chart.
function stackedBars(id, counted, series, since, until) {
  const hours = everyHour(counted, since, until);
  const width = 900, height = 200, left = 40, bottom = 20;
  const totals = hours.map(h => series.reduce((sum, s) => sum + (h[s.key] || 0), 0));
  const peak = Math.max(1, ...totals);
  const step = (width - left) / Math.max(1, hours.length);
  const chart = svg('svg', { class: 'chart', id, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': series.map(s => s.title).join(', ') + ' per hour' });
  chart.append(svg('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: '#9aa3b2' }));
  chart.append(svg('text', { x: 0, y: 10 }, String(peak)), svg('text', { x: 0, y: height - bottom }, '0'));
  hours.forEach((hour, i) => {
    let y = height - bottom;
    for (const s of series) {
      const value = hour[s.key] || 0;
      if (!value) continue;
      const h = Math.max(1, (value / peak) * (height - bottom - 10));
      y -= h;
      const bar = svg('rect', { class: 'bar s-' + s.key, x: left + i * step, y, width: Math.max(1, step - 1), height: h },
        svg('title', {}, `${when(hour.time)}: ${value} ${s.title.toLowerCase()}`));
      chart.append(bar);
    }
  });
  const labels = Math.min(6, hours.length);
  for (let n = 0; n < labels; n++) {
    const i = Math.floor((n * (hours.length - 1)) / Math.max(1, labels - 1));
    if (hours[i]) chart.append(svg('text', { x: left + i * step, y: height - 5 }, when(hours[i].time).slice(5, 16)));
  }
  const legend = el('div', { class: 'legend' }, series.map(s => el('span', {}, el('i', { class: 's-' + s.key }), s.title)));
  const data = el('details', {}, el('summary', {}, 'As a table'),
    table([{ title: 'Hour', value: h => when(h.time) }].concat(series.map(s => ({ title: s.title, num: true, value: h => h[s.key] || 0 }))),
      hours.filter((_, i) => totals[i] > 0), 'Nothing in this period.'));
  return [chart, legend, data];
}

// The period hour by hour, with the hours nothing happened in as zeros.
function everyHour(counted, since, until) {
  const byTime = new Map(counted.map(h => [new Date(h.time).getTime(), h]));
  const hour = 3600 * 1000;
  const first = Math.floor(new Date(since).getTime() / hour) * hour;
  const last = new Date(until).getTime();
  if (!(first <= last) || (last - first) / hour > 24 * 92) return counted;
  const hours = [];
  for (let t = first; t < last; t += hour) {
    hours.push(byTime.get(t) || { time: new Date(t).toISOString() });
  }
  return hours;
}

function topTable(title, rows, searchFor) {
  return el('div', { class: 'card' }, el('h2', {}, title), table([
    { title: 'Key', wrap: true, value: r => searchFor ? link('#/clicks' + query({ [searchFor]: r.key }), r.key) : r.key },
    { title: 'Clicks', num: true, value: r => r.clicks },
    { title: 'Blocked', num: true, value: r => r.blocked },
  ], rows));
}

// ---- Pages --------------------------------------------------------------------------------

const PERIODS = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30 };

function periodStart(name) {
  const hours = PERIODS[name] || PERIODS['7d'];
  return new Date(Date.now() - hours * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

async function dashboardPage(_, params) {
  const period = PERIODS[params.period] ? params.period : '7d';
  const summary = await call('GET', '/reports/summary' + query({ since: periodStart(period), top: 10 }));
  const t = summary.totals;
  const choose = el('div', { class: 'actions', role: 'group', 'aria-label': 'Period' },
    Object.keys(PERIODS).map(p => el('button', { type: 'button', 'aria-pressed': String(p === period), class: p === period ? 'primary' : '',
      onclick: () => go('dashboard', { period: p }) }, 'Last ' + p)));
  const figure = (value, label) => el('div', { class: 'figure' }, el('b', {}, value), el('span', {}, label));
  const ratio = t.cache_hit_ratio === null || t.cache_hit_ratio === undefined ? '—' : Math.round(t.cache_hit_ratio * 100) + '%';
  return [
    el('h1', {}, 'Dashboard'), choose,
    el('div', { class: 'figures', id: 'totals' },
      figure(t.clicks, 'clicks'), figure(t.blocked, 'blocked'), figure(t.warned, 'warned'),
      figure(t.clicked_through, 'clicked through'), figure(t.messages, 'messages'),
      figure(t.delivered, 'delivered'), figure(t.quarantined, 'quarantined'), figure(t.rejected_messages, 'refused'),
      figure(ratio, 'reputation from cache')),
    el('div', { class: 'grid' },
      el('div', { class: 'card' }, el('h2', {}, 'Clicks per hour'), stackedBars('clicks-chart', summary.clicks_by_hour, [
        { key: 'permitted', title: 'Permitted' }, { key: 'blocked', title: 'Blocked' },
        { key: 'warned', title: 'Warned' }, { key: 'clicked_through', title: 'Clicked through' }], summary.since, summary.until)),
      el('div', { class: 'card' }, el('h2', {}, 'Messages per hour'), stackedBars('verdicts-chart', summary.verdicts_by_hour, [
        { key: 'delivered', title: 'Delivered' }, { key: 'quarantined', title: 'Quarantined' },
        { key: 'rejected', title: 'Rejected' }, { key: 'discarded', title: 'Discarded' }], summary.since, summary.until))),
    el('div', { class: 'grid' },
      topTable('Most clicked URLs', summary.top_urls, 'url'),
      topTable('Most clicked domains', summary.top_domains, 'domain'),
      topTable('Top clickers', summary.top_clickers, 'recipient'),
      el('div', { class: 'card' }, el('h2', {}, 'Quarantined by category'),
        table([{ title: 'Category', value: r => link('#/quarantine' + query({ category: r[0] }), r[0]) }, { title: 'Messages', num: true, value: r => r[1] }],
          Object.entries(summary.quarantined_by_category))),
      el('div', { class: 'card' }, el('h2', {}, 'Reputation providers'),
        table([{ title: 'Provider', value: r => r.provider }, { title: 'Lookups', num: true, value: r => r.lookups },
          { title: 'Errors', num: true, value: r => r.errors }, { title: 'Mean ms', num: true, value: r => Number(r.mean_ms).toFixed(1) }],
        summary.providers, 'No provider has been asked since the server started.'))),
  ];
}

// A filter form whose fields are the page's query; submitting it puts them in the address.
function filterForm(page, params, fields) {
  const form = el('form', { class: 'filters', id: page + '-filters' },
    fields.map(f => el('label', {}, f.title, f.options
      ? el('select', { name: f.name }, [''].concat(f.options).map(o => el('option', { value: o, selected: params[f.name] === o }, o || 'any')))
      : el('input', { name: f.name, value: params[f.name] || '', placeholder: f.placeholder || '', size: f.size || 18 }))),
    el('button', { class: 'primary', type: 'submit' }, 'Search'));
  form.addEventListener('submit', event => {
    event.preventDefault();
    const values = {};
    for (const f of fields) values[f.name] = form.elements[f.name].value.trim();
    go(page, values);
  });
  return form;
}

// A list that pages on with the API's cursor.
function pagedList(load, render, empty) {
  const holder = el('div', {});
  const more = el('button', { type: 'button', class: 'more' }, 'More');
  let cursor = null;
  const rows = [];
  async function next() {
    more.disabled = true;
    const page = await load(cursor);
    rows.push(...page.items);
    cursor = page.next_cursor;
    holder.replaceChildren(render(rows, empty));
    if (cursor) holder.append(el('div', { class: 'actions' }, more));
    more.disabled = false;
  }
  more.addEventListener('click', () => next().catch(error => toast(error.message, true)));
  return next().then(() => holder);
}

const TIME_HINT = '2026-11-29T00:00:00Z';

function clickTable(rows, empty) {
  return table([
    { title: 'Time', value: c => when(c.time) },
    { title: 'Recipient', value: c => c.recipient || c.recipient_ref },
    { title: 'URL', wrap: true, value: c => c.url },
    { title: 'Action', value: c => pill(c.action) },
    { title: 'Verdict', value: c => pill(c.verdict) },
    { title: 'Message', value: c => c.message_ref ? link('#/messages/' + encodeURIComponent(c.message_ref), 'trace') : '' },
  ], rows, empty);
}

async function clicksPage(_, params) {
  const fields = [
    { name: 'since', title: 'Since', placeholder: TIME_HINT }, { name: 'until', title: 'Until', placeholder: TIME_HINT },
    { name: 'recipient', title: 'Recipient', placeholder: 'bob@example.com' },
    { name: 'url', title: 'URL starts with', placeholder: 'https://' }, { name: 'domain', title: 'Domain', placeholder: 'example.com' },
    { name: 'verdict', title: 'Verdict', options: ['clean', 'suspicious', 'malicious', 'unknown'] },
    { name: 'action', title: 'Action', options: ['permitted', 'blocked', 'warned', 'clicked-through', 'prefetch', 'rejected', 'expired', 'reported'] },
    { name: 'message', title: 'Message', placeholder: 'message reference', size: 12 },
  ];
  const list = await pagedList(async cursor => {
    const page = await call('GET', '/clicks' + query(Object.assign({}, params, { cursor, limit: 100 })));
    return { items: page.clicks, next_cursor: page.next_cursor };
  }, clickTable, 'No clicks match.');
  list.id = 'click-results';
  return [el('h1', {}, 'Clicks'), filterForm('clicks', params, fields), list];
}

function messageTable(rows, empty) {
  return table([
    { title: 'Received', value: m => when(m.received_at) },
    { title: 'From', wrap: true, value: m => m.from || m.sender },
    { title: 'To', wrap: true, value: m => (m.recipients || []).join(', ') },
    { title: 'Subject', wrap: true, value: m => link('#/messages/' + encodeURIComponent(m.message_ref), m.subject || '(no subject)') },
    { title: 'Verdict', value: m => pill(m.verdict) },
    { title: 'Category', value: m => m.category },
  ], rows, empty);
}

async function messagesPage(ref, params) {
  if (ref) return messagePage(ref);
  const fields = [
    { name: 'since', title: 'Since', placeholder: TIME_HINT }, { name: 'until', title: 'Until', placeholder: TIME_HINT },
    { name: 'message_id', title: 'Message-ID', placeholder: '<id@host>' }, { name: 'sender', title: 'Sender or From' },
    { name: 'recipient', title: 'Recipient' }, { name: 'subject', title: 'Subject contains' },
    { name: 'verdict', title: 'Verdict', options: ['deliver', 'quarantine', 'reject', 'discard', 'released'] },
    { name: 'category', title: 'Category', size: 10 },
  ];
  const list = await pagedList(async cursor => {
    const page = await call('GET', '/messages' + query(Object.assign({}, params, { cursor, limit: 100 })));
    return { items: page.messages, next_cursor: page.next_cursor };
  }, messageTable, 'No messages match.');
  list.id = 'message-results';
  return [el('h1', {}, 'Message trace'), filterForm('messages', params, fields), list];
}

function scores(s) {
  if (!s) return '—';
  return Object.entries(s).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => k + ' ' + v).join(' · ');
}

async function messagePage(ref) {
  const trace = await call('GET', '/messages/' + encodeURIComponent(ref));
  const m = trace.message;
  return [
    el('h1', { id: 'message-subject' }, m.subject || '(no subject)'),
    el('div', { class: 'card' }, facts([
      ['Verdict', pill(m.verdict)], ['Category', m.category], ['Rule', m.rule], ['Received', when(m.received_at)],
      ['Message-ID', m.message_id], ['Envelope sender', m.sender], ['From', m.from], ['Recipients', (m.recipients || []).join(', ')],
      ['Client', trace.client_ip], ['HELO', trace.helo], ['Scores', scores(m.scores)], ['Reference', m.message_ref],
    ])),
    el('h2', {}, 'Symbols'),
    table([{ title: 'Symbol', value: s => s.name }, { title: 'Group', value: s => s.group },
      { title: 'Weight', num: true, value: s => s.weight }, { title: 'Why', wrap: true, value: s => s.detail }], trace.symbols || [], 'No symbols.'),
    el('h2', {}, 'Delivery'),
    el('div', { id: 'delivery-attempts' }, table([{ title: 'Time', value: a => when(a.time) }, { title: 'Recipient', value: a => a.recipient },
      { title: 'Outcome', value: a => pill(a.outcome) }, { title: 'Reply', wrap: true, value: a => a.reply }], trace.delivery_attempts || [], 'No delivery attempts.')),
    el('h2', {}, 'Quarantine'),
    table([{ title: 'Hold', value: h => link('#/quarantine/' + h.id, '#' + h.id) }, { title: 'Category', value: h => h.category },
      { title: 'Reason', wrap: true, value: h => h.reason }, { title: 'Held', value: h => when(h.held_at) }], trace.quarantine || [], 'Not held.'),
    el('h2', {}, 'Links'),
    table([{ title: 'URL', wrap: true, value: u => typeof u === 'string' ? u : u.url }], trace.urls || [], 'No links.'),
    el('h2', {}, 'Clicks'),
    clickTable(trace.clicks || [], 'Nobody clicked its links.'),
  ];
}

async function quarantinePage(id, params) {
  if (id) return heldPage(id);
  const list = await pagedList(async cursor => {
    const page = await call('GET', '/quarantine' + query({ category: params.category, cursor, limit: 100 }));
    return { items: page.held, next_cursor: page.next_cursor };
  }, (rows, empty) => table([
    { title: 'Held', value: h => when(h.held_at) },
    { title: 'Category', value: h => pill(h.category) },
    { title: 'Sender', wrap: true, value: h => h.sender },
    { title: 'Recipients', wrap: true, value: h => (h.recipients || []).join(', ') },
    { title: 'Subject', wrap: true, value: h => link('#/quarantine/' + h.id, h.subject || '(no subject)') },
    { title: 'Reason', wrap: true, value: h => h.reason },
    { title: 'Expires', value: h => when(h.expires_at) },
  ], rows, empty), 'Nothing is held.');
  list.id = 'held-list';
  return [el('h1', {}, 'Quarantine'), await releaseRequests(),
    el('h2', {}, 'Held messages'),
    filterForm('quarantine', params, [{ name: 'category', title: 'Category', options: ['spam', 'bulk', 'phish', 'malware', 'impostor', 'transport', 'dlp'] }]),
    list];
}

// A button that runs `action` once (asking first when `confirmText` is given), showing its
// error as a toast and enabling itself again after one.
function actionButton(label, className, id, confirmText, action) {
  return el('button', { type: 'button', class: className, id,
    onclick: async event => {
      if (confirmText && !window.confirm(confirmText)) return;
      event.target.disabled = true;
      try {
        await action();
      } catch (error) {
        toast(error.message, true);
        event.target.disabled = false;
      }
    } }, label);
}

// Recipients' pending requests (from their digest) to release phish held for them, to approve
// or deny; and the digest sent on demand.
async function releaseRequests() {
  const pending = (await call('GET', '/quarantine/requests' + query({ status: 'pending', limit: 100 }))).requests;
  const section = el('section', { id: 'release-requests', 'aria-labelledby': 'release-requests-heading' },
    el('h2', { id: 'release-requests-heading' }, 'Release requests'),
    el('p', { class: 'muted' }, 'Recipients asked from their quarantine digest to receive these messages, held as phishing. Approving delivers the message to that recipient only.'));
  const decide = (r, decision) => async () => {
    await call('POST', '/quarantine/requests/' + r.id, { decision });
    toast(decision === 'approve' ? 'Approved: released to ' + r.recipient : 'Denied: it stays held.');
    render();
  };
  section.append(table([
    { title: 'Requested', value: r => when(r.requested_at) },
    { title: 'Recipient', wrap: true, value: r => r.recipient },
    { title: 'Sender', wrap: true, value: r => r.held ? r.held.sender : '' },
    { title: 'Subject', wrap: true, value: r => r.held ? link('#/quarantine/' + r.held.id, r.held.subject || '(no subject)') : '' },
    { title: 'Category', value: r => r.held ? pill(r.held.category) : '' },
    { title: 'Reason', wrap: true, value: r => r.held ? r.held.reason : '' },
    { title: '', value: r => may('operator') ? el('span', { class: 'actions' },
      actionButton('Approve', 'primary', 'request-approve-' + r.id, 'Release this message to ' + r.recipient + '?', decide(r, 'approve')),
      actionButton('Deny', 'danger', 'request-deny-' + r.id, null, decide(r, 'deny'))) : '' },
  ], pending, 'No requests are waiting.'));
  if (may('operator')) {
    section.append(el('div', { class: 'actions' }, actionButton('Send digests now', '', 'send-digests', null, async () => {
      const queued = (await call('POST', '/quarantine/digests', {})).queued;
      toast('Queued ' + queued.recipients + ' digests listing ' + queued.messages + ' messages.');
      document.getElementById('send-digests').disabled = false;
    })));
  }
  return section;
}

async function heldPage(id) {
  const review = await call('GET', '/quarantine/' + encodeURIComponent(id));
  const h = review.held;
  const act = (label, className, confirmText, action) =>
    actionButton(label, className, 'held-' + label.toLowerCase().replace(/[^a-z]+/g, '-'), confirmText, action);
  const actions = el('div', { class: 'actions' });
  if (may('operator') && (h.category !== 'malware' || may('admin'))) {
    actions.append(act('Release', 'primary', 'Release this message to its recipients?', async () => {
      await call('POST', '/quarantine/' + h.id + '/release');
      toast('Released: it is on its way to ' + (h.recipients || []).join(', '));
      go('quarantine');
    }));
  }
  if (may('operator')) {
    actions.append(
      act('Delete', 'danger', 'Delete this message for good?', async () => {
        await call('DELETE', '/quarantine/' + h.id);
        toast('Deleted.');
        go('quarantine');
      }),
      act('Allow sender', '', null, async () => {
        await call('POST', '/quarantine/' + h.id + '/sender', { list: 'allow' });
        toast('The sender is on the allow list.');
      }),
      act('Block sender', '', null, async () => {
        await call('POST', '/quarantine/' + h.id + '/sender', { list: 'block' });
        toast('The sender is on the block list.');
      }));
  }
  if (may('admin')) actions.append(el('a', { href: API + '/quarantine/' + h.id + '/message', download: 'held-' + h.id + '.eml' }, 'Download as received'));
  return [
    el('h1', { id: 'held-subject' }, h.subject || '(no subject)'),
    el('div', { class: 'card' }, facts([
      ['Category', pill(h.category)], ['Reason', h.reason], ['Sender', h.sender], ['Recipients', (h.recipients || []).join(', ')],
      ['Held', when(h.held_at)], ['Expires', when(h.expires_at)], ['Size', h.size + ' bytes'],
      ['Digest', h.self_service ? 'listed in its recipients\' digests' + (h.category === 'phish' ? ' (release on request)' : '') : 'not listed: the security team releases it'],
      ['Trace', link('#/messages/' + encodeURIComponent(h.message_ref), h.message_ref)],
    ]), actions),
    el('h2', {}, 'Header fields'),
    table([{ title: 'Field', value: f => f[0] }, { title: 'Value', wrap: true, value: f => f[1] }], review.headers || []),
    el('h2', {}, 'Text preview'),
    el('p', { class: 'muted' }, 'The visible text as the content detectors read it. Nothing of the message is rendered or fetched.'),
    el('pre', { class: 'preview', id: 'held-preview' }, review.preview || '(no text)'),
    el('h2', {}, 'Attachments'),
    table([{ title: 'Name', wrap: true, value: a => a.name || '(unnamed)' }, { title: 'Declared type', value: a => a.declared_type },
      { title: 'Type by content', value: a => a.detected_type }, { title: 'Bytes', num: true, value: a => a.size },
      { title: 'SHA-256', wrap: true, value: a => el('code', {}, a.sha256) }], review.attachments || [], 'No attachments.'),
  ];
}

async function threatsPage(_, params) {
  const status = params.status || 'active';
  const answer = await call('GET', '/threats' + query({ status }));
  const choose = el('div', { class: 'actions', role: 'group', 'aria-label': 'Status' },
    ['active', 'cleared', 'falsePositive'].map(s => el('button', { type: 'button', 'aria-pressed': String(s === status), class: s === status ? 'primary' : '',
      onclick: () => go('threats', { status: s }) }, s)));
  const rows = answer.threats.map(t => el('div', { class: 'card threat' },
    el('h2', {}, pill(t.status), ' ', t.scope === 'domain' ? 'the domain ' + t.url : t.url),
    facts([['Found', when(t.found_at)], ['Verdict', t.verdict + (t.category ? ' (' + t.category + ')' : '')], ['How', t.source + (t.reason ? ': ' + t.reason : '')],
      ['Delivered to', t.recipients.length ? t.recipients.join(', ') : 'nobody'], ['Status set by', t.changed_by + ', ' + when(t.changed_at)]]),
    el('h3', {}, 'Delivered messages that carried it'),
    table([{ title: 'Message', wrap: true, value: m => link('#/messages/' + encodeURIComponent(m.message_ref), m.subject || '(no subject)') },
      { title: 'Sender', wrap: true, value: m => m.sender },
      { title: 'Delivered to', wrap: true, value: m => (m.recipients || []).join(', ') }, { title: 'Received', value: m => when(m.received_at) }],
    t.messages, 'No delivered message carried it.'),
    el('h3', {}, 'Clicks'),
    table([{ title: 'Time', value: c => when(c.time) }, { title: 'Recipient', value: c => c.recipient }, { title: 'What happened', value: c => pill(c.action) },
      { title: 'URL', wrap: true, value: c => c.url }], t.clicks, 'Nobody clicked it.'),
    may('operator') ? el('div', { class: 'actions' },
      t.status !== 'cleared' ? el('button', { type: 'button', onclick: () => setThreat(t.id, 'cleared') }, 'Mark cleared') : null,
      t.status !== 'falsePositive' ? el('button', { type: 'button', onclick: () => setThreat(t.id, 'falsePositive') }, 'False positive') : null,
      t.status !== 'active' ? el('button', { type: 'button', onclick: () => setThreat(t.id, 'active') }, 'Active again') : null) : null));
  const declare = may('operator') ? declareThreatForm() : null;
  return [el('h1', {}, 'Post-delivery threats'),
    el('p', { class: 'muted' }, 'Links found bad after their messages were delivered: who got them and who clicked.'),
    choose, el('div', { id: 'threat-list' }, rows.length ? rows : el('p', { class: 'muted' }, 'None.')), declare];
}

function declareThreatForm() {
  const form = el('form', { class: 'filters', id: 'declare-threat' },
    el('label', {}, 'URL or domain', el('input', { name: 'target', required: true, size: 40, placeholder: 'https://… or evil.example' })),
    el('label', {}, 'Category', el('select', { name: 'category' }, ['phish', 'malware', 'spam', 'impostor'].map(c => el('option', { value: c }, c)))),
    el('label', {}, 'Why', el('input', { name: 'reason', size: 30 })),
    el('button', { class: 'primary', type: 'submit' }, 'Declare a threat'));
  form.addEventListener('submit', async event => {
    event.preventDefault();
    const target = form.elements.target.value.trim();
    const body = { category: form.elements.category.value, reason: form.elements.reason.value };
    if (target.includes('://')) body.url = target; else body.domain = target;
    try {
      await call('POST', '/threats', body);
      toast('Recorded: every delivered message that carried it is listed.');
      render();
    } catch (error) {
      toast(error.message, true);
    }
  });
  return el('div', { class: 'card' }, el('h2', {}, 'Declare a URL or domain bad'), form);
}

async function setThreat(id, status) {
  try {
    await call('POST', '/threats/' + encodeURIComponent(id), { status });
    toast('Marked ' + status + '.');
    render();
  } catch (error) {
    toast(error.message, true);
  }
}

async function reportsPage() {
  const list = await pagedList(async cursor => {
    const page = await call('GET', '/clicks' + query({ action: 'reported', cursor, limit: 100 }));
    return { items: page.clicks, next_cursor: page.next_cursor };
  }, clickTable, 'Nobody has reported a block as a mistake.');
  list.id = 'reported-list';
  return [el('h1', {}, 'Reported mistakes'),
    el('p', { class: 'muted' }, 'What people sent from the block page\'s "report a mistake": the link, who, and when.'), list];
}

async function atRiskPage(_, params) {
  const period = PERIODS[params.period] ? params.period : '30d';
  const summary = await call('GET', '/reports/summary' + query({ since: periodStart(period), top: 100 }));
  const threats = await call('GET', '/threats' + query({ status: 'active', limit: 100 }));
  const people = new Map();
  for (const t of threats.threats) {
    for (const r of t.recipients) {
      const person = people.get(r) || { address: r, threats: new Set(), clicked: false };
      person.threats.add(t.url);
      people.set(r, person);
    }
    for (const c of t.clicks) {
      if (c.action !== 'permitted' && c.action !== 'clicked-through') continue;
      const person = people.get(c.recipient) || { address: c.recipient, threats: new Set(), clicked: false };
      person.threats.add(t.url);
      person.clicked = true;
      people.set(c.recipient, person);
    }
  }
  const exposed = [...people.values()].sort((a, b) => Number(b.clicked) - Number(a.clicked) || b.threats.size - a.threats.size);
  return [el('h1', {}, 'Users at risk'),
    el('div', { class: 'card', id: 'exposed-list' }, el('h2', {}, 'Holding or clicking an active post-delivery threat'),
      table([{ title: 'Recipient', value: p => link('#/clicks' + query({ recipient: p.address }), p.address) },
        { title: 'Reached the link', value: p => p.clicked ? pill('clicked') : 'no' },
        { title: 'Threats', wrap: true, value: p => [...p.threats].join(', ') }], exposed, 'Nobody: no active threat was delivered.')),
    el('p', { class: 'muted' }, 'Recipients who clicked through a warning or were let through to a link judged malicious or suspicious, last ' + period + '.'),
    el('div', { id: 'at-risk-list' }, topTable('Users at risk', summary.users_at_risk, 'recipient')),
    topTable('Top clickers', summary.top_clickers, 'recipient')];
}

async function auditPage(_, params) {
  if (!may('operator')) return [el('h1', {}, 'Audit log'), el('p', {}, 'The audit log is for operators and admins.')];
  const fields = [
    { name: 'since', title: 'Since', placeholder: TIME_HINT }, { name: 'until', title: 'Until', placeholder: TIME_HINT },
    { name: 'actor', title: 'Actor' }, { name: 'action', title: 'Action', placeholder: 'quarantine.release' },
  ];
  const list = await pagedList(async cursor => {
    const page = await call('GET', '/audit' + query(Object.assign({}, params, { cursor, limit: 100 })));
    return { items: page.entries, next_cursor: page.next_cursor };
  }, (rows, empty) => table([
    { title: 'Time', value: e => when(e.time) }, { title: 'Actor', value: e => e.actor }, { title: 'Via', value: e => e.via },
    { title: 'Client', value: e => e.client_ip }, { title: 'Action', value: e => e.action }, { title: 'Target', wrap: true, value: e => e.target },
    { title: 'Detail', wrap: true, value: e => typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail) },
  ], rows, empty), 'Nothing recorded.');
  list.id = 'audit-list';
  return [el('h1', {}, 'Audit log'), filterForm('audit', params, fields), list];
}

function settingsValue(value) {
  if (value === null || value === undefined || value === '') return '—';
  if (Array.isArray(value)) return value.length ? value.map(v => typeof v === 'object' ? JSON.stringify(v) : String(v)).join(', ') : '—';
  if (typeof value === 'object') return facts(Object.entries(value).map(([k, v]) => [k, settingsValue(v)]));
  return String(value);
}

async function settingsPage() {
  const settings = await call('GET', '/settings');
  const senders = await call('GET', '/senders');
  const sections = Object.entries(settings.config).map(([name, value]) =>
    el('div', { class: 'card' }, el('h2', {}, name), settingsValue(value)));
  const people = settings.users ? [el('h2', {}, 'People'), table([{ title: 'Name', value: u => u.name }, { title: 'Role', value: u => u.role },
    { title: 'Created', value: u => when(u.created) }, { title: 'Last sign-in', value: u => when(u.last_login) }], settings.users)] : [];
  const tokens = settings.tokens ? [el('h2', {}, 'API tokens'), table([{ title: 'Name', value: t => t.name }, { title: 'Role', value: t => t.role },
    { title: 'Created', value: t => when(t.created) }, { title: 'Last used', value: t => when(t.last_used) }], settings.tokens)] : [];
  return [el('h1', {}, 'Settings'),
    el('p', { class: 'muted' }, 'What this gateway runs with. Change it in the configuration file (see docs/config.md) and restart; people and tokens with the portcullis command.'),
    el('div', { class: 'grid', id: 'settings' }, sections),
    el('h2', {}, 'Sender lists'),
    table([{ title: 'Address or domain', value: s => s.pattern }, { title: 'List', value: s => pill(s.list) }, { title: 'Note', value: s => s.note },
      { title: 'Added by', value: s => s.added_by }, { title: 'Added', value: s => when(s.added_at) }], senders.senders, 'Both lists are empty.'),
    people, tokens];
}

// ---- Start --------------------------------------------------------------------------------

async function start() {
  try {
    const answer = await call('GET', '/session');
    Object.assign(session, answer);
  } catch (_) {
    session.user = null;
  }
  window.addEventListener('hashchange', () => {
    // In-page anchors (the skip link) move the focus, not the page.
    if (location.hash && !location.hash.startsWith('#/')) return;
    render();
  });
  render();
}

start();
