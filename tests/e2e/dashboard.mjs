// SPDX-License-Identifier: MIT
// Loads tiergate's /dashboard in headless Chromium (Debian's chromium, driven
// by playwright-core) and prints what the page rendered as JSON, for
// tests/integration/test_dashboard.py to compare with /metrics:
//
//   node dashboard.mjs URL SCRAPES [CANNED.json]
//
// URL: the page, with its fragment (#interval=1&token=...). SCRAPES: wait
// until the page has read /metrics that many times (or shows an error).
// CANNED: optional JSON array of {"status", "body"} served in turn instead of
// the gateway's /metrics (the last one repeats), to drive the page through
// states the gateway cannot be put in yet (shadow comparisons, 401).
// Output: {"values": {id: data-value}, "texts": {id: text}, "status": {...},
// "charts": {id: {"points", "series": {name: last}, "text"}}, "metrics_requests":
// [{"url", "authorization"}], "other_requests": [...], "errors": [...]}.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [url, wantArg, cannedPath] = process.argv.slice(2);
const want = Number(wantArg || 2);
const canned = cannedPath ? JSON.parse(readFileSync(cannedPath, 'utf8')) : null;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The flags Chromium needs as root on a machine without outside network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const report = { metrics_requests: [], other_requests: [], errors: [] };
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => report.errors.push('pageerror: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') report.errors.push('console: ' + m.text()); });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.endsWith('/metrics'))
      report.metrics_requests.push({ url: r.url(), authorization: r.headers()['authorization'] || null });
    else if (!u.pathname.endsWith('/dashboard'))
      report.other_requests.push(r.url());
  });
  if (canned) {
    let i = 0;
    await page.route('**/metrics', (route) => {
      const c = canned[Math.min(i++, canned.length - 1)];
      route.fulfill({ status: c.status || 200, contentType: 'text/plain; version=0.0.4', body: c.body || '' });
    });
  }
  const resp = await page.goto(url);
  report.page = { status: resp.status(), headers: resp.headers() };
  await page.waitForFunction((n) => {
    const s = document.getElementById('status');
    return s && (Number(s.dataset.scrapes) >= n || s.dataset.error);
  }, want, { timeout: 30000 });
  Object.assign(report, await page.evaluate(() => {
    const values = {}, texts = {};
    document.querySelectorAll('[data-value]').forEach((e) => { values[e.id] = e.dataset.value; texts[e.id] = e.textContent; });
    const s = document.getElementById('status');
    const charts = {};
    document.querySelectorAll('svg[id^="chart-"]').forEach((svg) => {
      const series = {};
      svg.querySelectorAll('text[data-series]').forEach((t) => { series[t.dataset.series] = t.dataset.last; });
      charts[svg.id] = { points: Number(svg.dataset.points || 0), series, text: svg.textContent,
                         paths: svg.querySelectorAll('path').length };
    });
    return { values, texts, charts,
             status: { text: s.textContent, scrapes: Number(s.dataset.scrapes), error: s.dataset.error || '' } };
  }));
} catch (e) {
  report.errors.push('driver: ' + e.message);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + '\n');
