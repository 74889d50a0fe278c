// Drives Debian's chromium (playwright-core) through the dashboard: one JSON line per check.
import { chromium } from 'playwright-core';
const [base, out, adminEmail, adminPw, viewerEmail, viewerPw, callId] = process.argv.slice(2);
const res = {};
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
async function session(email, pw) {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  // script errors only: a 404 of a route not on this server yet (leads, campaigns, stats) or
  // the viewer's refused POST or the bad form input (400, checked apart) are the network
  // panel's, not the page's
  page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource: .* (400|403|404)/.test(m.text())) errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base + '/live');
  res.signin_page = (await page.locator('form#signin').count()) === 1;
  await page.fill('#email', email);
  await page.fill('#password', pw);
  await Promise.all([page.waitForURL(base + '/'), page.click('button[type=submit]')]);
  await page.waitForSelector('#who:not(:empty)');
  return { ctx, page, errors };
}
try {
  // a wrong password shows the error on the sign-in page
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(base + '/');
    await p.fill('#email', adminEmail);
    await p.fill('#password', 'wrong-password-123');
    await p.click('button[type=submit]');
    await p.waitForSelector('#error:not(:empty)');
    res.bad_login_message = await p.textContent('#error');
    await ctx.close();
  }
  const a = await session(adminEmail, adminPw);
  res.signed_in_as = await a.page.textContent('#who');
  for (const v of ['live', 'calls', 'leads', 'campaigns', 'analytics', 'users']) {
    await a.page.click(`#nav a[href="/${v}"]`);
    await a.page.waitForSelector(`#view[data-view="${v}"] h1`);
    res[`view_${v}`] = await a.page.textContent('#view h1');
    if (res[`view_${v}`] === 'Error') res[`error_${v}`] = await a.page.textContent('#view');
    await a.page.screenshot({ path: `${out}/${v}.png`, fullPage: true });
  }
  await a.page.goto(base + '/analytics');
  await a.page.waitForSelector('#view[data-view="analytics"] .kpi');
  res.kpi_answer = await a.page.textContent('.kpi:nth-child(2) b');
  res.kpi_transferred = await a.page.textContent('.kpi:nth-child(4) b');
  await a.page.screenshot({ path: `${out}/analytics.png`, fullPage: true });
  // per-group rows: "<first cell> <leads>"
  const groupRows = (sel) => a.page.$$eval(`${sel} tbody tr`, (trs) => trs.map((tr) => `${tr.cells[0].textContent} ${tr.cells[1].textContent}`));
  await a.page.waitForSelector('#by-source');
  res.by_source = await groupRows('#by-source');
  res.by_ad = await groupRows('#by-ad');
  res.by_source_bars = await a.page.locator('#by-source-chart .grow').count();
  await a.page.locator('#by-source-chart').screenshot({ path: `${out}/analytics-by-source.png` });
  await a.page.goto(base + '/leads?ad_id=ad-77');
  await a.page.waitForSelector('#view[data-view="leads"] table');
  res.leads_by_ad = (await a.page.$$eval('#view table tbody tr', (trs) => trs.map((tr) => tr.cells[0].textContent))).join(',');
  await a.page.screenshot({ path: `${out}/leads-by-ad.png`, fullPage: true });
  await a.page.goto(base + '/leads?source=csv');
  await a.page.waitForSelector('#view[data-view="leads"] table');
  res.leads_by_source = (await a.page.$$eval('#view table tbody tr', (trs) => trs.map((tr) => tr.cells[0].textContent))).join(',');
  res.calls_rows = await a.page.evaluate(async () => (await (await fetch('/v1/calls')).json()).calls.length);
  await a.page.goto(base + `/calls/${encodeURIComponent(callId)}`);
  await a.page.waitForSelector('#view[data-view="calls"] h1');
  res.view_call = await a.page.textContent('#view h1');
  res.call_timeline_rows = await a.page.locator('#view table tbody tr').count();
  await a.page.waitForSelector('#recording audio, #recording .empty');
  await a.page.waitForTimeout(300);
  res.recording_player = await a.page.locator('#recording audio').count();
  res.recording_wave = await a.page.locator('#recording canvas.wave').count();
  await a.page.screenshot({ path: `${out}/call-detail.png`, fullPage: true });
  await a.page.goto(base + '/leads/lead-wa-1');
  await a.page.waitForSelector('#view[data-view="leads"] #wa-thread');
  res.lead_thread = await a.page.textContent('#wa-thread');
  res.lead_discovery = await a.page.textContent('#discovery');
  res.lead_calls = await a.page.locator('#view table tbody tr').count();
  await a.page.screenshot({ path: `${out}/lead.png`, fullPage: true });
  // bad input: the server's error next to the field
  await a.page.goto(base + '/users');
  await a.page.waitForSelector('#user-form');
  await a.page.fill('#user-form-email', 'not-an-email');
  await a.page.fill('#user-form-password', 'long-enough-password');
  await a.page.click('#user-form button[type=submit]');
  await a.page.waitForSelector('#user-form .field-error[data-field=email]:not(:empty)');
  res.field_error = await a.page.textContent('#user-form .field-error[data-field=email]');
  await a.page.screenshot({ path: `${out}/users-bad-input.png`, fullPage: true });
  // live: the page is on /live while the test places a call
  await a.page.goto(base + '/live');
  await a.page.waitForSelector('#live-calls');
  res.admin_console_errors = a.errors;
  // live: the test places a call once the page is on /live
  await a.page.goto(base + '/live');
  await a.page.waitForSelector('#view[data-view="live"] #live-calls');
  res.admin_console_errors = a.errors;
  if (process.env.LIVE_READY) {
    const fs = await import('node:fs');
    fs.writeFileSync(process.env.LIVE_READY, 'ready\n');
    try {
      await a.page.waitForSelector('#live-calls tbody tr', { timeout: 20000 });
      res.live_row = await a.page.textContent('#live-calls tbody tr');
      try {
        await a.page.waitForSelector('#live-calls .quality', { timeout: 8000 });
        res.live_quality = await a.page.textContent('#live-calls .quality');
      } catch (e) {
        res.live_quality = null;
      }
      await a.page.screenshot({ path: `${out}/live-call.png`, fullPage: true });
      await a.page.waitForSelector('#live-calls .empty', { timeout: 30000 });
      res.live_gone = true;
    } catch (e) {
      res.live_error = String(e);
    }
  }
  res.admin_console_errors = a.errors;
  // campaigns: bad input shows the server's error next to the field; then create and start
  await a.page.goto(base + '/campaigns');
  await a.page.waitForSelector('#view[data-view="campaigns"] #campaign-form');
  await a.page.fill('#campaign-form-name', 'Spring push');
  await a.page.fill('#campaign-form-caller_id', 'not-a-number');
  await a.page.click('#campaign-form button[type=submit]');
  await a.page.waitForSelector('#campaign-form .field-error[data-field=caller_id]:not(:empty)');
  res.campaign_field_error = await a.page.textContent('#campaign-form .field-error[data-field=caller_id]');
  await a.page.screenshot({ path: `${out}/campaign-bad-input.png`, fullPage: true });
  await a.page.fill('#campaign-form-caller_id', '+525512340000');
  await a.page.fill('#campaign-form-hours', 'mon-sun 00:00-24:00');
  await a.page.click('#campaign-form button[type=submit]');
  await a.page.waitForSelector('#view button.start');
  res.campaign_status_before = await a.page.textContent('#view span.status');
  res.campaign_id = await a.page.getAttribute('#view span.status', 'data-id');
  // its page: upload the leads (CSV), then start it there
  await a.page.click('#view td a[href^="/campaigns/"]');
  await a.page.waitForSelector('#view[data-view="campaigns"] #csv-form');
  await a.page.setInputFiles('#csv-file', { name: 'leads.csv', mimeType: 'text/csv', buffer: Buffer.from('phone,name\n+525511110003,Ana\n+52551111000x,Bad\n') });
  await a.page.click('#csv-form button[type=submit]');
  await a.page.waitForSelector('#csv-result:not(:empty)');
  res.csv_result = JSON.parse(await a.page.textContent('#csv-result'));
  await a.page.screenshot({ path: `${out}/campaign-upload.png`, fullPage: true });
  if (process.env.UAS_READY) {
    const fs = await import('node:fs');
    for (let i = 0; i < 300 && !fs.existsSync(process.env.UAS_READY); i++) await a.page.waitForTimeout(100);
  }
  await a.page.click('#view button.start');
  await a.page.waitForSelector('#view button.pause');
  res.campaign_status_after = await a.page.textContent('#view span.status');
  await a.page.screenshot({ path: `${out}/campaign-started.png`, fullPage: true });
  // the dialer's call shows on Live with the assistant's words, then goes
  await a.page.goto(base + '/live');
  await a.page.waitForSelector('#view[data-view="live"] #live-calls');
  try {
    await a.page.waitForSelector('#live-calls tbody tr:has-text("+525511110003")', { timeout: 25000 });
    await a.page.waitForSelector('#live-calls tbody tr:has-text("Hola Ana")', { timeout: 10000 });
    res.dialer_row = await a.page.textContent('#live-calls tbody tr');
    await a.page.screenshot({ path: `${out}/live-dialer-call.png`, fullPage: true });
    // a forced transfer to a queue that does not exist: the server's error by the field
    await a.page.click('#live-calls button.transfer');
    await a.page.fill('#xfer-form-queue', 'no-such-queue');
    await a.page.click('#xfer-form button[type=submit]');
    await a.page.waitForSelector('#xfer-form .field-error[data-field=queue]:not(:empty)', { timeout: 5000 });
    res.transfer_error = await a.page.textContent('#xfer-form .field-error[data-field=queue]');
    await a.page.screenshot({ path: `${out}/live-transfer-error.png`, fullPage: true });
    await a.page.click('#xfer-dialog button[type=button]');
    // the supervisor hangs it up (the assistant would end it 10 s after it connected)
    const t0 = Date.now();
    await a.page.click('#live-calls button.hangup');
    await a.page.waitForSelector('#live-calls .empty', { timeout: 30000 });
    res.dialer_gone = true;
    res.hangup_ms = Date.now() - t0;
  } catch (e) {
    res.dialer_error = String(e);
  }
  // a wall screen: the same Live view at 2560x1440
  await a.page.setViewportSize({ width: 2560, height: 1440 });
  await a.page.screenshot({ path: `${out}/live-wall.png`, fullPage: true });
  await a.ctx.close();
  // a viewer: read only
  const v = await session(viewerEmail, viewerPw);
  res.viewer_hangup_buttons = await v.page.locator('button.hangup').count();
  res.viewer_post = await v.page.evaluate(async () => {
    const me = await (await fetch('/auth/me')).json();
    const r = await fetch('/v1/users', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf }, body: '{"email":"x@y.z","role":"admin","password":"0123456789ab"}' });
    return r.status;
  });
  res.viewer_start_buttons = await v.page.evaluate(async () => { history.pushState(null, '', '/campaigns'); dispatchEvent(new PopStateEvent('popstate')); await new Promise((r) => setTimeout(r, 800)); return document.querySelectorAll('button.start, button.pause').length; });
  res.viewer_start = await v.page.evaluate(async (id) => {
    const me = await (await fetch('/auth/me')).json();
    return (await fetch(`/v1/campaigns/${encodeURIComponent(id)}/pause`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf }, body: '{}' })).status;
  }, res.campaign_id);
  res.viewer_console_errors = v.errors;
  await v.ctx.close();
} catch (e) {
  res.exception = String(e);
}
await browser.close();
console.log(JSON.stringify(res));
