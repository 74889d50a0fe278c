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
// "?a=b" or "" (an empty "?" is refused by some routes)
const qs = (q: URLSearchParams) => (q.toString() ? `?${q}` : '');
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
  const [snap, trunks] = await Promise.all([api('GET', '/v1/live'), optional('/v1/trunks')]);
  live.clear();
  for (const c of snap.calls) live.set(c.call_id, c);
  const box = h('div', { id: 'live-calls' });
  view.replaceChildren(h('h1', {}, 'Live'), box, h('h2', {}, 'Trunks'), h('div', { id: 'trunks' }, trunksTable(trunks)),
    h('h2', {}, 'Dialer'), h('div', { id: 'dialer' }));
  drawLive();
  await drawDialer();
}
// The running campaigns and their progress; redrawn when a call starts or ends (no polling).
async function drawDialer() {
  const running = await api('GET', '/v1/campaigns?status=running');
  const dialer: J[] = await Promise.all((running.campaigns ?? []).slice(0, 20).map((c: J) => api('GET', `/v1/campaigns/${encodeURIComponent(c.id)}`)));
  document.getElementById('dialer')?.replaceChildren(dialer.length ? table([['Campaign', (c) => link(`/campaigns/${encodeURIComponent(c.id)}`, c.name)], ['Pacing', (c) => `${c.calls_per_second}/s, ${c.max_concurrent} at once`], ['Progress', (c) => progress(c.progress)]], dialer) : h('p', { class: 'empty' }, 'No campaign is running.'));
}
function trunksTable(t: J) {
  if (!t) return missing('Trunk status');
  return table([
    ['Trunk', (r) => `${r.name} (${r.type})`], ['Status', (r) => h('span', { class: `trunk ${r.status}` }, r.status)],
    ['Registration', (r) => (r.registration ? (r.registration.registered ? 'registered' : `not registered (${r.registration.failures} failures)`) : '-')],
    ['Nodes', (r) => h('span', {}, ...(r.nodes ?? []).map((n: J) => h('span', { class: `node ${n.up ? 'up' : 'down'}` }, `${n.host}:${n.port} ${n.up ? 'up' : 'down'} `)))],
    ['Calls', (r) => `${r.active_calls}${r.max_calls ? ` / ${r.max_calls}` : ''}`],
  ], t.trunks ?? []);
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
    ['Legs', (r) => [r.direction === 'outbound' ? 'lead' : 'caller', r.state !== 'ringing' ? (r.direction === 'outbound' ? 'AI' : 'callee') : null, r.agent ? `agent ${r.agent}` : null].filter(Boolean).join(' + ')],
    ['Duration', (r) => secs(now - (r.answered_ms ?? r.started_ms))],
    ['Quality', (r) => quality(r.quality)],
    ['Transcript', (r) => h('div', { class: 'tx' }, ...(r.transcript ?? []).slice(-3).map((l: J) => h('div', {}, `${l.role}: ${l.text}`)))],
    ['', (r) => supervisor(r.call_id)],
  ], rows) : h('p', { class: 'empty' }, 'No calls in progress.'));
}
function quality(q: J) {
  if (!q) return '-';
  return h('span', { class: 'quality' }, ...Object.entries(q).map(([leg, v]: [string, J]) => h('div', {}, `${leg}: loss ${v.lost}/${v.remote_lost}, jitter ${v.jitter_ms}/${v.remote_jitter_ms} ms`)));
}
// Force a transfer: a dialog outside the live table (which redraws every second).
function transferDialog(id: string) {
  document.getElementById('xfer-dialog')?.remove();
  const f = form('xfer-form', [['queue', 'Queue', 'text'], ['summary', 'Whisper to the agent', 'text']], 'Transfer', async (v) => {
    await api('POST', `/v1/calls/${encodeURIComponent(id)}/transfer`, { queue: v.queue, summary: v.summary || undefined, reason: 'supervisor' });
    d.close();
    d.remove();
  });
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const d = h('dialog', { id: 'xfer-dialog' }, h('h2', {}, `Transfer ${id}`), f, cancel) as HTMLDialogElement;
  cancel.onclick = () => { d.close(); d.remove(); };
  document.body.append(d);
  d.showModal();
}
function supervisor(id: string) {
  const d = h('span', { class: 'actions' });
  if (me?.role !== 'admin') return d;
  const hang = h('button', { class: 'hangup' }, 'Hang up');
  hang.onclick = () => api('POST', `/v1/calls/${encodeURIComponent(id)}/hangup`, {}).catch((e) => alert(e.message));
  const xfer = h('button', { class: 'transfer' }, 'Transfer');
  xfer.onclick = () => transferDialog(id);
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
  const xf = rec.transfer;
  const dl = (o: J, keys: string[]) => h('dl', {}, ...keys.flatMap((k) => [h('dt', {}, k), h('dd', {}, String(o?.[k] ?? '-'))]));
  const player = h('div', { id: 'recording' }, h('p', { class: 'empty' }, 'Loading the recording...'));
  view.replaceChildren(h('h1', {}, `Call ${id}`),
    dl(rec, ['direction', 'caller', 'called', 'route', 'from_trunk', 'to_trunk', 'start', 'answer', 'end', 'sip_code', 'end_reason', 'hangup_side', 'ring_ms']),
    h('h2', {}, 'Timeline'), table([['#', (e) => String(e.seq)], ['Time', (e) => fmtTs(e.ts)], ['Event', (e) => e.event], ['Detail', (e) => JSON.stringify(e.detail ?? '')]], j.events ?? []),
    h('h2', {}, 'Transcript'), h('div', { class: 'tx', id: 'transcript' }, ...(ai.transcript ?? []).map((l: J) => h('div', {}, `${l.role}: ${l.text}`))),
    ai.summary ? h('p', {}, `Summary: ${ai.summary}`) : h('span'),
    h('h2', {}, 'Transfer'), xf ? dl(xf, ['queue', 'agent', 'result', 'why', 'summary', 'agent_sip_code', 'bridge_ms', 'ai_part_ms', 'human_part_ms']) : h('p', { class: 'empty' }, 'No transfer.'),
    h('h2', {}, 'Legs and quality'), table([['Side', (l) => l.side ?? '-'], ['Trunk', (l) => l.trunk ?? '-'], ['Codec', (l) => l.codec ?? '-'], ['SIP', (l) => String(l.final_status ?? '-')], ['Lost (in/out)', (l) => `${l.lost ?? 0} / ${l.remote_lost ?? 0}`], ['Jitter ms (in/out)', (l) => `${l.jitter_ms ?? 0} / ${l.remote_jitter_ms ?? 0}`], ['Packets in/out', (l) => `${l.pkts_in ?? 0} / ${l.pkts_out ?? 0}`]], Array.isArray(rec.legs) ? rec.legs : Object.values(rec.legs ?? {})),
    h('h2', {}, 'Recording'), player);
  loadRecording(id, player);
}

// The recording with a player and its waveform (peaks per pixel column).
async function loadRecording(id: string, box: HTMLElement) {
  const r = await fetch(`/v1/recordings/${encodeURIComponent(id)}`, { credentials: 'same-origin' });
  if (!r.ok) { box.replaceChildren(h('p', { class: 'empty' }, 'No recording on this node.')); return; }
  const buf = await r.arrayBuffer();
  const audio = h('audio', { controls: '', src: URL.createObjectURL(new Blob([buf], { type: 'audio/wav' })) });
  const canvas = h('canvas', { width: '900', height: '80', class: 'wave' }) as HTMLCanvasElement;
  box.replaceChildren(audio, canvas);
  try {
    const pcm = (await new AudioContext().decodeAudioData(buf.slice(0))).getChannelData(0);
    const g = canvas.getContext('2d')!;
    const step = Math.max(1, Math.floor(pcm.length / canvas.width));
    g.fillStyle = '#38bdf8';
    for (let x = 0; x < canvas.width; x++) {
      let peak = 0;
      for (let i = x * step; i < Math.min(pcm.length, (x + 1) * step); i++) peak = Math.max(peak, Math.abs(pcm[i]));
      const hgt = Math.max(1, peak * canvas.height);
      g.fillRect(x, (canvas.height - hgt) / 2, 1, hgt);
    }
  } catch { /* the player still works without the waveform */ }
}

async function viewLeads(id?: string) {
  if (id) {
    const [lead, calls] = await Promise.all([api('GET', `/v1/leads/${encodeURIComponent(id)}`), api('GET', `/v1/calls?lead_id=${encodeURIComponent(id)}`)]);
    const wa = await api('GET', `/v1/whatsapp/thread?lead_id=${encodeURIComponent(id)}`);
    view.replaceChildren(h('h1', {}, `Lead ${lead.name ?? id}`),
      h('dl', {}, ...['phone', 'status', 'source', 'campaign_id', 'language', 'created_at'].flatMap((k) => [h('dt', {}, k), h('dd', {}, String(lead[k] ?? '-'))])),
      h('h2', {}, 'Discovery'), wa.conversation ? h('pre', { id: 'discovery' }, JSON.stringify({ state: wa.conversation.state, lang: wa.conversation.lang, ...wa.conversation.fields }, null, 1)) : h('p', { class: 'empty' }, 'No WhatsApp conversation.'),
      h('pre', {}, JSON.stringify(lead.attributes ?? {}, null, 1)),
      h('h2', {}, 'WhatsApp'), h('div', { class: 'thread', id: 'wa-thread' }, ...(wa.messages ?? []).map((m: J) => h('div', { class: `msg ${m.direction}` }, h('small', {}, `${fmtTs(m.ts)} ${m.status ?? ''}`), h('div', {}, m.body ?? `[${m.type}]`)))),
      h('h2', {}, 'Calls'), table([['Call', (r) => link(`/calls/${encodeURIComponent(r.call_id)}`, r.call_id)], ['Start', (r) => fmtTs(r.start)], ['End', (r) => r.end_reason ?? '-']], calls.calls));
    return;
  }
  const p = new URLSearchParams(location.search);
  const q = new URLSearchParams();
  for (const k of ['campaign_id', 'status', 'source', 'ad_id']) if (p.get(k)) q.set(k, p.get(k)!);
  const sq = new URLSearchParams();
  if (p.get('campaign_id')) sq.set('campaign_id', p.get('campaign_id')!);
  if (p.get('from')) sq.set('from', new Date(p.get('from')!).toISOString());
  const [leads, stats] = await Promise.all([api('GET', `/v1/leads${qs(q)}`), api('GET', `/v1/stats${qs(sq)}`)]);
  const src = p.get('source') ?? '';
  const rows: J[] = leads.leads ?? [];
  const f = stats.funnel ?? {};
  const steps = ['leads', 'engaged', 'qualified', 'called', 'connected', 'transferred', 'converted'];
  const top = Math.max(1, f.leads ?? 0);
  const filters = h('form', { class: 'filters', method: 'get' },
    h('input', { name: 'campaign_id', placeholder: 'campaign id', value: p.get('campaign_id') ?? '' }),
    h('input', { name: 'source', placeholder: 'source (csv, api, whatsapp)', value: src }),
    h('input', { name: 'ad_id', placeholder: 'ad id (Click-to-WhatsApp)', value: p.get('ad_id') ?? '' }),
    h('input', { name: 'status', placeholder: 'status', value: p.get('status') ?? '' }),
    h('input', { name: 'from', type: 'date', value: p.get('from') ?? '' }), h('button', {}, 'Filter'));
  view.replaceChildren(h('h1', {}, 'Leads'), filters,
    h('div', { class: 'funnel' }, ...steps.map((k) => h('div', { class: 'step' }, h('span', {}, k), h('div', { class: 'bar', style: `width:${(100 * (f[k] ?? 0)) / top}%` }), h('b', {}, String(f[k] ?? 0))))),
    table([['Lead', (r) => link(`/leads/${encodeURIComponent(r.id)}`, r.name ?? r.id)], ['Phone', (r) => r.phone ?? '-'], ['Status', (r) => r.status ?? '-'], ['Source', (r) => r.source ?? '-'], ['Ad', (r) => r.attributes?.referral?.headline ?? r.attributes?.referral?.source_id ?? '-'], ['Campaign', (r) => r.campaign_id ?? '-'], ['Created', (r) => fmtTs(r.created_at)]], rows));
}

function progress(p: J) {
  if (!p) return '-';
  const parts = (o: J) => Object.entries(o ?? {}).map(([k, v]) => `${k} ${v}`).join(', ');
  return `${p.leads_total ?? 0} leads (${parts(p.leads) || 'none'}); jobs: ${parts(p.jobs) || 'none'}`;
}
function campaignButton(c: J) {
  const running = c.status === 'running';
  const b = h('button', { class: running ? 'pause' : 'start', 'data-id': c.id }, running ? 'Pause' : 'Start');
  if (c.status === 'done' || me?.role !== 'admin') return h('span');
  b.onclick = () => api('POST', `/v1/campaigns/${encodeURIComponent(c.id)}/${running ? 'pause' : 'start'}`, {}).then(route, (e) => alert(e.message));
  return b;
}

async function viewCampaigns(id?: string) {
  const admin = me?.role === 'admin';
  if (id) {
    const c = await api('GET', `/v1/campaigns/${encodeURIComponent(id)}`);
    const up = h('form', { id: 'csv-form', class: 'form' }, h('label', { for: 'csv-file' }, 'Leads (CSV)'), h('input', { id: 'csv-file', name: 'file', type: 'file', accept: '.csv,text/csv' }), h('button', { type: 'submit' }, 'Upload'));
    const res = h('pre', { id: 'csv-result' });
    up.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const file = (up.querySelector('#csv-file') as HTMLInputElement).files?.[0];
      if (!file) return;
      const r = await fetch(`/v1/campaigns/${encodeURIComponent(id)}/leads`, { method: 'POST', headers: { 'Content-Type': 'text/csv', 'X-CSRF-Token': me!.csrf }, body: await file.text() });
      res.textContent = JSON.stringify(await r.json(), null, 1);
    });
    view.replaceChildren(h('h1', {}, `Campaign ${c.name}`), h('p', {}, 'Status: ', h('span', { class: 'status' }, c.status), ' ', campaignButton(c)),
      h('dl', {}, ...['caller_id', 'max_concurrent', 'calls_per_second', 'max_attempts', 'timezone', 'trunk', 'assistant'].flatMap((k) => [h('dt', {}, k), h('dd', {}, String(c[k] ?? '-'))])),
      h('h2', {}, 'Calling hours'), h('pre', {}, JSON.stringify(c.calling_hours ?? [], null, 1)),
      h('h2', {}, 'Progress'), h('p', { id: 'progress' }, progress(c.progress)),
      admin ? up : h('span'), res);
    return;
  }
  const list = await api('GET', '/v1/campaigns');
  const make = form('campaign-form', [['name', 'Name', 'text'], ['caller_id', 'Caller ID', 'text'], ['calls_per_second', 'Calls per second', 'text'], ['max_concurrent', 'Max concurrent', 'text'], ['max_attempts', 'Attempts per lead', 'text'], ['timezone', 'Time zone', 'text'], ['hours', 'Hours (mon-fri 09:00-19:00)', 'text']], 'Create campaign', async (v) => {
    const body: J = { name: v.name };
    if (v.caller_id) body.caller_id = v.caller_id;
    for (const k of ['calls_per_second', 'max_concurrent', 'max_attempts']) if (v[k]) body[k] = Number.isNaN(Number(v[k])) ? v[k] : Number(v[k]);
    if (v.timezone) body.timezone = v.timezone;
    const m = /^(\w{3})-(\w{3})\s+(\d\d:\d\d)-(\d\d:\d\d)$/.exec(v.hours.trim());
    if (m) {
      const all = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
      body.calling_hours = [{ days: all.slice(all.indexOf(m[1]), all.indexOf(m[2]) + 1), start: m[3], end: m[4] }];
    } else if (v.hours.trim()) throw new ApiError(400, 'invalid_field', 'write hours as mon-fri 09:00-19:00', 'hours');
    await api('POST', '/v1/campaigns', body);
    route();
  });
  view.replaceChildren(h('h1', {}, 'Campaigns'), table([
    ['Campaign', (r) => link(`/campaigns/${encodeURIComponent(r.id)}`, r.name)], ['Status', (r) => h('span', { class: 'status', 'data-id': r.id }, r.status)],
    ['Pacing', (r) => `${r.calls_per_second}/s, ${r.max_concurrent} at once`], ['Hours', (r) => (r.calling_hours ?? []).map((w: J) => `${w.days.join(',')} ${w.start}-${w.end}`).join('; ') || 'any'],
    ['Caller ID', (r) => r.caller_id ?? '-'], ['', (r) => campaignButton(r)],
  ], list.campaigns ?? []), admin ? h('h2', {}, 'New campaign') : h('span'), admin ? make : h('span'));
}

async function viewAnalytics() {
  const p = new URLSearchParams(location.search);
  const days = Number(p.get('days') ?? 7);
  const from = new Date(Date.now() - days * 86400000).toISOString();
  const cq = p.get('campaign_id') ? `&campaign_id=${encodeURIComponent(p.get('campaign_id')!)}` : '';
  const [j, st] = await Promise.all([api('GET', `/v1/calls?limit=200&since=${encodeURIComponent(from)}`), api('GET', `/v1/stats?from=${encodeURIComponent(from)}${cq}`)]);
  const calls: J[] = j.calls;
  const c = st.calls ?? {};
  const f = st.funnel ?? {};
  const hours = new Map<number, number>();
  for (const x of calls) { const t = Math.floor(new Date(x.start).getTime() / 3600000) * 3600; hours.set(t, (hours.get(t) ?? 0) + 1); }
  const xs = [...hours.keys()].sort((a, b) => a - b);
  const pct = (a: number, b: number) => (b ? `${Math.round((100 * a) / b)}%` : '-');
  const chart = h('div', { id: 'chart' });
  // One funnel + outcomes row per group (GET /v1/stats?group_by=), a table and a bar chart.
  const grouped = (g: string) => api('GET', `/v1/stats?from=${encodeURIComponent(from)}${cq}&group_by=${g}`).then((r: J) => r.groups ?? []);
  const [byCamp, bySource, byAd] = await Promise.all([grouped('campaign'), grouped('source'), grouped('ad')]);
  const name = (r: J) => r.label ?? r.key ?? '(none)';
  const groupTable = (id: string, first: string, rows: J[], filter?: (r: J) => string) => {
    const t = table([[first, (r) => (filter && r.key != null ? link(filter(r), name(r)) : name(r))], ['Leads', (r) => String(r.funnel?.leads ?? 0)], ['Engaged', (r) => String(r.funnel?.engaged ?? 0)], ['Called', (r) => String(r.funnel?.called ?? 0)], ['Calls', (r) => String(r.calls?.total ?? 0)], ['Answered', (r) => pct(r.calls?.answered ?? 0, r.calls?.total ?? 0)], ['AI only', (r) => String(r.calls?.ai_only ?? 0)], ['Transferred', (r) => String(r.calls?.transferred ?? 0)], ['Converted', (r) => String(r.funnel?.converted ?? 0)]], rows);
    t.id = id;
    return rows.length ? t : h('p', { class: 'empty', id }, 'No leads or calls in this period.');
  };
  // Leads, calls and conversions per group as horizontal bars, scaled to the largest group.
  const groupChart = (id: string, rows: J[]) => {
    const top = Math.max(1, ...rows.map((r) => Math.max(r.funnel?.leads ?? 0, r.calls?.total ?? 0)));
    const bar = (cls: string, v: number, what: string) => h('div', { class: `gbar ${cls}`, style: `width:${(100 * v) / top}%`, title: `${v} ${what}` });
    return h('div', { class: 'gchart', id }, ...rows.map((r) => h('div', { class: 'grow' }, h('span', {}, name(r)),
      h('div', {}, bar('leads', r.funnel?.leads ?? 0, 'leads'), bar('calls', r.calls?.total ?? 0, 'calls'), bar('conv', r.funnel?.converted ?? 0, 'converted')))),
      h('p', { class: 'legend' }, h('i', { class: 'gbar leads' }), ' leads ', h('i', { class: 'gbar calls' }), ' calls ', h('i', { class: 'gbar conv' }), ' converted'));
  };
  view.replaceChildren(h('h1', {}, 'Analytics'),
    h('form', { class: 'filters', method: 'get' }, h('label', {}, 'Days '), h('input', { name: 'days', type: 'number', value: String(days) }), h('input', { name: 'campaign_id', placeholder: 'campaign id', value: p.get('campaign_id') ?? '' }), h('button', {}, 'Show')),
    h('div', { class: 'kpis' }, ...[['Calls', String(c.total ?? 0)], ['Answer rate', pct(c.answered ?? 0, c.total ?? 0)], ['AI only', String(c.ai_only ?? 0)], ['Transferred', String(c.transferred ?? 0)], ['Transfer success', pct(f.transferred ?? 0, f.connected ?? 0)], ['Avg handle time', c.avg_handle_ms != null ? secs(c.avg_handle_ms) : '-'], ['WhatsApp to call', pct(f.called ?? 0, f.engaged ?? 0)]].map(([k, v]) => h('div', { class: 'kpi' }, h('b', {}, v), h('span', {}, k)))),
    h('h2', {}, 'Calls per hour'), chart,
    h('h2', {}, 'By campaign'), groupTable('by-campaign', 'Campaign', byCamp),
    h('h2', {}, 'By source'), groupChart('by-source-chart', bySource), groupTable('by-source', 'Source', bySource, (r) => `/leads?source=${encodeURIComponent(r.key)}`),
    h('h2', {}, 'By ad (Click-to-WhatsApp)'), groupChart('by-ad-chart', byAd), groupTable('by-ad', 'Ad', byAd, (r) => `/leads?ad_id=${encodeURIComponent(r.key)}`));
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
      case 'leads': await viewLeads(parts[1] && decodeURIComponent(parts[1])); break;
      case 'campaigns': await viewCampaigns(parts[1] && decodeURIComponent(parts[1])); break;
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
    else if (ev.type === 'call.quality') { const c = live.get(d.call_id); if (c) c.quality = d.legs; }
    else if (ev.type === 'call.transcript') { const c = live.get(d.call_id); if (c) (c.transcript ??= []).push(d); }
    else live.set(d.call_id, { ...live.get(d.call_id), ...d, transcript: live.get(d.call_id)?.transcript ?? [] });
    drawLive();
    if ((ev.type === 'call.started' || ev.type === 'call.ended') && document.getElementById('dialer')) {
      drawDialer().catch(() => {});
      optional('/v1/trunks').then((t) => document.getElementById('trunks')?.replaceChildren(trunksTable(t)), () => {});
    }
  };
  for (const t of ['call.started', 'call.answered', 'call.transferred', 'call.ended', 'call.transcript', 'call.quality']) es.addEventListener(t, up as EventListener);
  es.addEventListener('trunk.status', async () => {
    const box = document.getElementById('trunks');
    if (box) box.replaceChildren(trunksTable(await optional('/v1/trunks')));
  });
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
