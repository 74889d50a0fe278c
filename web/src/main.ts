// The VACS dashboard: a small SPA over the public REST API and the event stream.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

type J = any;
let me: { email: string; role: string; csrf: string } | null = null;
const view = document.getElementById('view')!;
const live = new Map<string, J>();

function h(tag: string, attrs: Record<string, string> = {}, ...kids: (Node | string | null)[]) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const k of kids) if (k !== null) e.append(k);
  return e;
}
const fmtTs = (v: J) => (v ? new Date(v).toLocaleString() : '-');
const secs = (ms: number) => `${Math.floor(ms / 60000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}`;

export class ApiError extends Error {
  constructor(public status: number, public code: string, msg: string, public field?: string) { super(msg); }
}
async function api(method: string, path: string, body?: J): Promise<J> {
  const hd: Record<string, string> = {};
  if (body !== undefined) hd['Content-Type'] = 'application/json';
  if (method !== 'GET' && me) hd['X-CSRF-Token'] = me.csrf;
  const r = await fetch(path, { method, headers: hd, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  if (r.status === 401) { location.href = '/'; throw new ApiError(401, 'unauthorized', 'signed out'); }
  const t = await r.text();
  const j = t ? JSON.parse(t) : null;
  if (!r.ok) throw new ApiError(r.status, j?.error?.code ?? 'error', j?.error?.message ?? r.statusText, j?.error?.field);
  return j;
}
// GET that answers null when the route is not on this server (404 no route).
async function optional(path: string): Promise<J> {
  try { return await api('GET', path); } catch (e) { if (e instanceof ApiError && e.status === 404) return null; throw e; }
}
function table(cols: [string, (r: J) => Node | string][], rows: J[]) {
  return h('table', {}, h('thead', {}, h('tr', {}, ...cols.map(([t]) => h('th', {}, t)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...cols.map(([, f]) => h('td', {}, f(r)))))));
}
function link(href: string, text: string) { const a = h('a', { href }, text); return a; }
function missing(what: string) { return h('p', { class: 'missing' }, `${what} is not available on this server yet.`); }

// A form whose server errors land next to the field the error names.
function form(id: string, fields: [string, string, string][], submit: string, send: (v: Record<string, string>) => Promise<void>) {
  const f = h('form', { id, class: 'form' });
  for (const [name, label, type] of fields) {
    const inp = type === 'role' ? h('select', { name }, h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'admin' }, 'admin'))
      : h('input', { name, type, id: `${id}-${name}` });
    f.append(h('label', { for: `${id}-${name}` }, label), inp, h('span', { class: 'field-error', 'data-field': name }));
  }
  const msg = h('div', { class: 'form-error', role: 'alert' });
  f.append(h('button', { type: 'submit' }, submit), msg);
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    f.querySelectorAll('.field-error').forEach((s) => (s.textContent = ''));
    msg.textContent = '';
    const v: Record<string, string> = {};
    new FormData(f as HTMLFormElement).forEach((x, k) => (v[k] = String(x)));
    try { await send(v); } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const slot = e.field && f.querySelector(`.field-error[data-field="${e.field}"]`);
      if (slot) slot.textContent = e.message; else msg.textContent = e.message;
    }
  });
  return f;
}

// ---- views ----------------------------------------------------------------------------
async function viewLive() {
  const [snap, trunks, stats] = await Promise.all([api('GET', '/v1/live'), optional('/v1/trunks'), optional('/v1/stats/dialer')]);
  live.clear();
  for (const c of snap.calls) live.set(c.call_id, c);
  const box = h('div', { id: 'live-calls' });
  view.replaceChildren(h('h1', {}, 'Live'), box, h('h2', {}, 'Trunks'), trunksTable(trunks),
    h('h2', {}, 'Dialer'), stats ? h('pre', {}, JSON.stringify(stats, null, 1)) : missing('Dialer status'));
  drawLive();
}
function trunksTable(t: J) {
  if (!t) return missing('Trunk status');
  const rows = Array.isArray(t) ? t : t.trunks ?? [];
  return table([['Trunk', (r) => r.name ?? '-'], ['State', (r) => r.registration ?? r.state ?? JSON.stringify(r.nodes ?? '')], ['Active', (r) => String(r.active_calls ?? '-')]], rows);
}
function drawLive() {
  const box = document.getElementById('live-calls');
  if (!box) return;
  const now = Date.now();
  const rows = [...live.values()];
  box.replaceChildren(rows.length ? table([
    ['Call', (r) => link(`/calls/${encodeURIComponent(r.call_id)}`, r.call_id)],
    ['Dir', (r) => r.direction], ['From', (r) => r.caller], ['To', (r) => r.called],
    ['State', (r) => h('span', { class: `state ${r.state}` }, r.state)],
    ['Legs', (r) => ['lead', r.state !== 'ringing' ? 'AI' : null, r.agent ? `agent ${r.agent}` : null].filter(Boolean).join(' + ')],
    ['Duration', (r) => secs(now - (r.answered_ms ?? r.started_ms))],
    ['Transcript', (r) => h('div', { class: 'tx' }, ...(r.transcript ?? []).slice(-3).map((l: J) => h('div', {}, `${l.role}: ${l.text}`)))],
    ['', (r) => supervisor(r.call_id)],
  ], rows) : h('p', { class: 'empty' }, 'No calls in progress.'));
}
function supervisor(id: string) {
  const d = h('span', { class: 'actions' });
  if (me?.role !== 'admin') return d;
  const hang = h('button', { class: 'hangup' }, 'Hang up');
  hang.onclick = () => api('POST', `/v1/calls/${encodeURIComponent(id)}/hangup`, {}).catch((e) => alert(e.message));
  const xfer = h('button', { class: 'transfer' }, 'Transfer');
  xfer.onclick = () => { const q = prompt('Queue'); if (q) api('POST', `/v1/calls/${encodeURIComponent(id)}/transfer`, { queue: q }).catch((e) => alert(e.message)); };
  d.append(hang, xfer);
  return d;
}

async function viewCalls() {
  const j = await api('GET', '/v1/calls?limit=100');
  view.replaceChildren(h('h1', {}, 'Calls'), table([
    ['Call', (r) => link(`/calls/${encodeURIComponent(r.call_id)}`, r.call_id)], ['Start', (r) => fmtTs(r.start)],
    ['Dir', (r) => r.direction], ['From', (r) => r.caller ?? '-'], ['To', (r) => r.called ?? '-'],
    ['SIP', (r) => String(r.sip_code ?? '-')], ['Duration', (r) => (r.duration_ms != null ? secs(r.duration_ms) : '-')],
    ['End', (r) => r.end_reason ?? '-'], ['Lead', (r) => (r.lead_id ? link(`/leads/${r.lead_id}`, r.lead_id) : '-')],
  ], j.calls));
}
async function viewCall(id: string) {
  const j = await api('GET', `/v1/calls/${encodeURIComponent(id)}`);
  const rec = j.record ?? j;
  const ai = rec.ai ?? {};
  const recs: J[] = j.recordings ?? [];
  view.replaceChildren(h('h1', {}, `Call ${id}`),
    h('dl', {}, ...['direction', 'caller', 'called', 'sip_code', 'end_reason', 'duration_ms', 'hangup_side'].flatMap((k) => [h('dt', {}, k), h('dd', {}, String(rec[k] ?? '-'))])),
    h('h2', {}, 'Timeline'), table([['#', (e) => String(e.seq)], ['Time', (e) => fmtTs(e.ts)], ['Event', (e) => e.event], ['Detail', (e) => JSON.stringify(e.detail ?? '')]], j.events ?? []),
    h('h2', {}, 'Transcript'), h('div', { class: 'tx' }, ...(ai.transcript ?? []).map((l: J) => h('div', {}, `${l.role}: ${l.text}`))),
    h('h2', {}, 'Transfer'), h('pre', {}, JSON.stringify(rec.transfer ?? rec.transfers ?? 'none', null, 1)),
    h('h2', {}, 'Quality'), h('pre', {}, JSON.stringify(rec.quality ?? rec.legs ?? '-', null, 1)),
    h('h2', {}, 'Recording'), recs.length ? h('div', {}, ...recs.map((r) => h('div', {}, `${r.path} (${r.bytes} bytes, ${r.result})`))) : h('p', {}, 'No recording.'));
}

async function viewLeads(id?: string) {
  if (id) {
    const [lead, msgs, calls] = await Promise.all([optional(`/v1/leads/${id}`), optional(`/v1/leads/${id}/messages`), api('GET', `/v1/calls?lead_id=${encodeURIComponent(id)}`)]);
    view.replaceChildren(h('h1', {}, `Lead ${id}`), lead ? h('pre', {}, JSON.stringify(lead, null, 1)) : missing('The lead record'),
      h('h2', {}, 'WhatsApp'), msgs ? h('div', { class: 'tx' }, ...(msgs.messages ?? []).map((m: J) => h('div', {}, `${m.direction}: ${m.text ?? m.type}`))) : missing('The WhatsApp thread'),
      h('h2', {}, 'Calls'), table([['Call', (r) => link(`/calls/${encodeURIComponent(r.call_id)}`, r.call_id)], ['Start', (r) => fmtTs(r.start)], ['End', (r) => r.end_reason ?? '-']], calls.calls));
    return;
  }
  const p = new URLSearchParams(location.search);
  const [leads, funnel] = await Promise.all([optional(`/v1/leads?${p}`), optional(`/v1/stats/funnel?${p}`)]);
  const filters = h('form', { class: 'filters', method: 'get' }, h('input', { name: 'campaign_id', placeholder: 'campaign' }), h('input', { name: 'ad_source', placeholder: 'ad source' }), h('input', { name: 'since', type: 'date' }), h('button', {}, 'Filter'));
  view.replaceChildren(h('h1', {}, 'Leads'), filters, funnel ? h('pre', {}, JSON.stringify(funnel, null, 1)) : missing('The funnel'),
    leads ? table([['Lead', (r) => link(`/leads/${r.id}`, String(r.id))], ['Name', (r) => r.name ?? '-'], ['Phone', (r) => r.phone_e164 ?? '-'], ['Status', (r) => r.status ?? '-'], ['Source', (r) => r.ad_source ?? r.source ?? '-']], leads.leads ?? leads) : missing('The lead list'));
}

async function viewCampaigns() {
  const list = await optional('/v1/campaigns');
  const admin = me?.role === 'admin';
  const make = form('campaign-form', [['name', 'Name', 'text'], ['caller_id', 'Caller ID', 'text'], ['pacing', 'Calls per minute', 'number'], ['max_attempts', 'Retries', 'number']], 'Create campaign', async (v) => {
    await api('POST', '/v1/campaigns', { name: v.name, caller_id: v.caller_id, pacing: Number(v.pacing), max_attempts: Number(v.max_attempts) });
    route();
  });
  const rows: J[] = list ? list.campaigns ?? list : [];
  view.replaceChildren(h('h1', {}, 'Campaigns'), list ? table([
    ['Campaign', (r) => String(r.name ?? r.id)], ['Status', (r) => h('span', { class: 'status' }, r.status ?? '-')],
    ['Progress', (r) => JSON.stringify(r.progress ?? r.counts ?? '-')],
    ['', (r) => { const b = h('button', { class: 'start' }, r.status === 'running' ? 'Pause' : 'Start'); b.onclick = () => api('POST', `/v1/campaigns/${r.id}/${r.status === 'running' ? 'pause' : 'start'}`, {}).then(route, (e) => alert(e.message)); return b; }],
  ], rows) : missing('Campaigns'), admin && list ? make : h('span'));
}

async function viewAnalytics() {
  const p = new URLSearchParams(location.search);
  const days = Number(p.get('days') ?? 7);
  const since = new Date(Date.now() - days * 86400000).toISOString();
  const j = await api('GET', `/v1/calls?limit=200&since=${encodeURIComponent(since)}`);
  const calls: J[] = j.calls;
  const answered = calls.filter((c) => c.answer);
  const xfer = calls.filter((c) => c.human_ms > 0);
  const aht = answered.length ? answered.reduce((s, c) => s + (c.duration_ms ?? 0), 0) / answered.length : 0;
  const hours = new Map<number, number>();
  for (const c of calls) { const t = Math.floor(new Date(c.start).getTime() / 3600000) * 3600; hours.set(t, (hours.get(t) ?? 0) + 1); }
  const xs = [...hours.keys()].sort((a, b) => a - b);
  const pct = (a: number, b: number) => (b ? `${Math.round((100 * a) / b)}%` : '-');
  const chart = h('div', { id: 'chart' });
  const stats = await optional(`/v1/stats?since=${encodeURIComponent(since)}`);
  view.replaceChildren(h('h1', {}, 'Analytics'),
    h('form', { class: 'filters', method: 'get' }, h('label', {}, 'Days '), h('input', { name: 'days', type: 'number', value: String(days) }), h('button', {}, 'Show')),
    h('div', { class: 'kpis' }, ...[['Calls', String(calls.length)], ['Answer rate', pct(answered.length, calls.length)], ['AI only', String(answered.length - xfer.length)], ['Transferred', String(xfer.length)], ['Avg handle time', secs(aht)]].map(([k, v]) => h('div', { class: 'kpi' }, h('b', {}, v), h('span', {}, k)))),
    h('h2', {}, 'Calls per hour'), chart,
    h('h2', {}, 'By campaign and ad source'), stats ? h('pre', {}, JSON.stringify(stats, null, 1)) : missing('Statistics by campaign, ad source and WhatsApp-to-call conversion'));
  if (xs.length) new uPlot({ width: Math.min(900, view.clientWidth || 900), height: 240, series: [{}, { label: 'calls', stroke: '#38bdf8', fill: 'rgba(56,189,248,.2)' }] }, [xs, xs.map((x) => hours.get(x)!)], chart);
}

async function viewUsers() {
  const j = await api('GET', '/v1/users');
  view.replaceChildren(h('h1', {}, 'Users'), table([['ID', (r) => String(r.id)], ['Email', (r) => r.email], ['Role', (r) => r.role], ['Created', (r) => fmtTs(r.created_at)], ['Disabled', (r) => fmtTs(r.disabled_at)]], j.users),
    h('h2', {}, 'New user'), form('user-form', [['email', 'Email', 'text'], ['role', 'Role', 'role'], ['password', 'Password', 'password']], 'Create user', async (v) => { await api('POST', '/v1/users', v); route(); }));
}

// ---- routing and the event stream --------------------------------------------------------
async function route() {
  const parts = location.pathname.split('/').filter(Boolean);
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('on', a.getAttribute('href') === `/${parts[0] ?? 'live'}`));
  view.dataset.view = '';
  try {
    switch (parts[0] ?? 'live') {
      case 'live': await viewLive(); break;
      case 'calls': await (parts[1] ? viewCall(decodeURIComponent(parts[1])) : viewCalls()); break;
      case 'leads': await viewLeads(parts[1]); break;
      case 'campaigns': await viewCampaigns(); break;
      case 'analytics': await viewAnalytics(); break;
      case 'users': await viewUsers(); break;
      default: view.replaceChildren(h('h1', {}, 'Not found'));
    }
  } catch (e) {
    if (e instanceof ApiError) view.replaceChildren(h('h1', {}, 'Error'), h('p', { class: 'form-error' }, `${e.status}: ${e.message}`));
    else throw e;
  }
  view.dataset.view = parts[0] ?? 'live';
}
document.addEventListener('click', (ev) => {
  const a = (ev.target as Element).closest('a');
  if (!a || a.origin !== location.origin || ev.ctrlKey || ev.metaKey) return;
  ev.preventDefault();
  history.pushState(null, '', a.href);
  route();
});
window.addEventListener('popstate', route);

function stream() {
  const es = new EventSource('/v1/events/stream');
  const up = (ev: MessageEvent) => {
    const d = JSON.parse(ev.data);
    if (ev.type === 'call.ended') live.delete(d.call_id);
    else if (ev.type === 'call.transcript') { const c = live.get(d.call_id); if (c) (c.transcript ??= []).push(d); }
    else live.set(d.call_id, { ...live.get(d.call_id), ...d, transcript: live.get(d.call_id)?.transcript ?? [] });
    drawLive();
  };
  for (const t of ['call.started', 'call.answered', 'call.transferred', 'call.ended', 'call.transcript']) es.addEventListener(t, up as EventListener);
}

async function start() {
  me = await api('GET', '/auth/me');
  document.getElementById('who')!.textContent = `${me!.email} (${me!.role})`;
  document.body.dataset.role = me!.role;
  document.getElementById('logout')!.onclick = async () => { await api('POST', '/auth/logout', {}); location.href = '/'; };
  stream();
  setInterval(drawLive, 1000);
  await route();
}
start();
