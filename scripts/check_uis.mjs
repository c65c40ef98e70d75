#!/usr/bin/env node
// Headless-browser check that the MLflow and lakeFS web UIs show a training run's lineage, looked
// at the way a person would: the MLflow run page (its parameters, optionally its tags), the run's
// lineage card in the artifacts view, and, after logging in to lakeFS, the repository's commits
// page, the commit's own page and (optionally) the tags page. One screenshot per page into --out.
//
// usage: node scripts/check_uis.mjs --mlflow-run-url URL [--expect-param KEY=VALUE]...
//          [--expect-tag KEY=VALUE]... [--artifact PATH] --lakefs-url BASE --repository NAME
//          --commit ID [--ref REF] [--tag NAME] --out DIR
// lakeFS credentials come only from MLV_LAKEFS_ACCESS_KEY_ID / MLV_LAKEFS_SECRET_ACCESS_KEY.
// Needs playwright-core (in .cache/node, or on NODE_PATH) and Chromium (/usr/bin/chromium or
// MLV_CHROMIUM): `make browser` installs both.
//
// Progress goes to stderr; stdout gets exactly one JSON line at the end:
//   {"ok": bool, "checks": {name: {ok, found, screenshot, url, seconds, error?, page_showed?}},
//    "screenshots": [...], "seconds": total}
// Exit status: 0 every check passed, 1 a check failed (or the browser could not start), 2 bad usage.

import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const STEP_MS = 30_000;        // the longest any single wait may take
const BUDGET_MS = 110_000;     // the whole run, browser start included
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const started = Date.now();
const deadline = started + BUDGET_MS;
const checks = {};
const screenshots = [];
let secret = '';               // only ever used to scrub output, never printed

// ---------------------------------------------------------------------------------------------
// output

function scrub(value) {
  if (typeof value === 'string') return secret ? value.split(secret).join('***') : value;
  if (Array.isArray(value)) return value.map(scrub);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrub(v)]));
  return value;
}

function say(line) { process.stderr.write(scrub(line) + '\n'); }

let finished = false;
function finish(extra = {}) {
  if (finished) return;
  finished = true;
  const ok = Object.keys(checks).length > 0 && Object.values(checks).every(c => c.ok) && !extra.error;
  for (const [name, c] of Object.entries(checks)) {
    if (!c.ok) say(`FAIL ${name}: ${c.error}${c.page_showed ? `\n     the page showed instead: ${c.page_showed}` : ''}`);
  }
  const result = { ok, ...extra, checks, screenshots, seconds: secs(started) };
  process.stdout.write(JSON.stringify(scrub(result)) + '\n');
  process.exitCode = ok ? 0 : 1;
}

function setupFailure(message, code = 1) {
  say(`error: ${message}`);
  finish({ error: message });
  process.exit(code);
}

const secs = t0 => Math.round((Date.now() - t0) / 100) / 10;
const firstLine = e => String(e && e.message ? e.message : e).split('\n')[0].replace(/^\w*Error: /, '');
const squash = text => String(text || '').replace(/\s+/g, ' ').trim();
const remaining = () => Math.max(1_000, Math.min(STEP_MS, deadline - Date.now()));

class CheckFailed extends Error {}
const fail = message => { throw new CheckFailed(message); };

// ---------------------------------------------------------------------------------------------
// arguments

function usage(message) {
  process.stdout.write(JSON.stringify({ ok: false, error: `usage: ${message}`, checks: {}, screenshots: [], seconds: 0 }) + '\n');
  process.stderr.write(`error: ${message}\n` +
    'usage: node scripts/check_uis.mjs --mlflow-run-url URL [--expect-param KEY=VALUE]... ' +
    '[--expect-tag KEY=VALUE]... [--artifact PATH] --lakefs-url BASE --repository NAME --commit ID ' +
    '[--ref REF] [--tag NAME] --out DIR\n');
  process.exit(2);
}

function pairs(values, flag) {
  const out = [];
  for (const v of values || []) {
    const i = v.indexOf('=');
    if (i <= 0) usage(`${flag} takes KEY=VALUE, got ${JSON.stringify(v)}`);
    out.push([v.slice(0, i), v.slice(i + 1)]);
  }
  return out;
}

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      'mlflow-run-url': { type: 'string' },
      'expect-param': { type: 'string', multiple: true },
      'expect-tag': { type: 'string', multiple: true },
      'artifact': { type: 'string', default: 'lineage/lineage_card.html' },
      'lakefs-url': { type: 'string' },
      'repository': { type: 'string' },
      'commit': { type: 'string' },
      'ref': { type: 'string', default: 'main' },
      'tag': { type: 'string' },
      'out': { type: 'string' },
    },
    strict: true, allowPositionals: false,
  }));
} catch (e) { usage(firstLine(e)); }

for (const flag of ['mlflow-run-url', 'lakefs-url', 'repository', 'commit', 'out']) {
  if (!opts[flag]) usage(`--${flag} is required`);
}
const expectParams = pairs(opts['expect-param'], '--expect-param');
const expectTags = pairs(opts['expect-tag'], '--expect-tag');
const commit = opts.commit.trim().toLowerCase();
if (!/^[0-9a-f]{6,64}$/.test(commit)) usage(`--commit must be a (short or full) hex commit id, got ${JSON.stringify(opts.commit)}`);
const runMatch = /^(.*#\/experiments\/([^/?#]+)\/runs\/([0-9a-f]{32}))(?:[/?].*)?$/.exec(opts['mlflow-run-url']);
if (!runMatch) usage(`--mlflow-run-url must look like http://HOST/#/experiments/ID/runs/RUN_ID, got ${opts['mlflow-run-url']}`);
const [, runUrl, , runId] = runMatch;
const lakefsBase = opts['lakefs-url'].replace(/\/+$/, '');
const repo = opts.repository;
const outDir = resolve(opts.out);
const accessKey = process.env.MLV_LAKEFS_ACCESS_KEY_ID || '';
secret = process.env.MLV_LAKEFS_SECRET_ACCESS_KEY || '';

// A hard stop: whatever hangs, the run ends (with its JSON line) shortly after the budget.
setTimeout(() => {
  say(`error: the UI checks did not finish within ${(BUDGET_MS + 15_000) / 1000} s`);
  finish({ error: 'overall time budget exceeded' });
  process.exit(1);
}, BUDGET_MS + 15_000).unref();

// ---------------------------------------------------------------------------------------------
// browser

function loadPlaywright() {
  // ES modules ignore NODE_PATH, so resolve through a CommonJS require rooted at .cache/node
  // (which also honours NODE_PATH).
  const require = createRequire(join(ROOT, '.cache', 'node', 'package.json'));
  try {
    return require('playwright-core');
  } catch (e) {
    return setupFailure(`playwright-core is not installed (looked in ${join(ROOT, '.cache', 'node')} and NODE_PATH): run \`make browser\``);
  }
}

async function pageText(page, limit = 600) {
  try {
    // the main region when the page has one (MLflow does; that skips its navigation sidebar)
    const text = await page.evaluate(() => (document.querySelector('main') || document.body || {}).innerText || '');
    return squash(text).slice(0, limit) || '(an empty page)';
  } catch (e) {
    return `(could not read the page: ${firstLine(e)})`;
  }
}

async function shoot(page, name) {
  const path = join(outDir, `${name}.png`);
  try {
    await page.screenshot({ path, timeout: 10_000 });
    screenshots.push(path);
    return path;
  } catch (e) {
    say(`warning: no screenshot of ${name}: ${firstLine(e)}`);
    return null;
  }
}

/** Run one check: `fn` returns what it found or throws; a screenshot of the page either way. */
async function check(name, page, fn) {
  const t0 = Date.now();
  const rec = { ok: false };
  checks[name] = rec;
  try {
    if (Date.now() > deadline) fail('not run: the time budget was used up by the checks before it');
    rec.found = await fn(rec);
    rec.ok = true;
  } catch (e) {
    rec.error = e instanceof CheckFailed ? e.message : firstLine(e);
    rec.page_showed = await pageText(page);
  }
  rec.url = page.url();
  rec.screenshot = await shoot(page, name.replace(/_/g, '-'));
  rec.seconds = secs(t0);
  say(`${rec.ok ? 'ok  ' : 'FAIL'} ${name} (${rec.seconds} s)`);
  return rec.ok;
}

function skipped(name, why) {
  checks[name] = { ok: false, error: `not run: ${why}`, screenshot: null, seconds: 0 };
  say(`FAIL ${name} (not run)`);
}

/** Wait for `locator`; on timeout fail with `what` instead of Playwright's call log. */
async function waitFor(locator, what, state = 'visible') {
  const timeout = remaining();
  try {
    await locator.first().waitFor({ state, timeout });
  } catch (e) {
    fail(`${what} (waited ${Math.round(timeout / 1000)} s)`);
  }
}

// ---------------------------------------------------------------------------------------------
// MLflow

async function openRun(page) {
  await page.goto(runUrl, { waitUntil: 'domcontentloaded', timeout: remaining() });
  // The overview tab has rendered once the parameters table (with its search box) is there; an
  // unknown run renders "Page Not Found … Run ID … does not exist" instead.
  const search = page.getByPlaceholder('Search parameters');
  const notFound = page.getByText(/does not exist|Page Not Found/);
  await waitFor(search.or(notFound), 'the MLflow run page did not render its parameters table');
  if (!(await search.count())) fail(`MLflow shows no run there: ${squash(await notFound.first().innerText())}`);
  // The assistant side panel (MLflow 3.x) only narrows the page: close it when it is open.
  await page.getByRole('button', { name: 'Close', exact: true }).first().click({ timeout: 2_000 }).catch(() => {});
}

async function checkMlflowRun(page) {
  await openRun(page);
  const found = { run_id: null, params: {}, tags: {} };
  await waitFor(page.getByText(runId, { exact: true }), `the run page does not show the run id ${runId}`);
  found.run_id = runId;
  found.run_name = squash(await page.locator('h2').first().innerText({ timeout: 2_000 }).catch(() => '')) || null;

  // The parameters table is the innermost block holding both its search box and a table; use the
  // search box like a person would (the table lists every param, but this also scales to runs
  // with hundreds), then read the row whose key cell is exactly the key.
  const search = page.getByPlaceholder('Search parameters');
  const table = page.locator('div').filter({ has: search }).filter({ has: page.getByRole('table') }).last();
  for (const [key, value] of expectParams) {
    await search.fill(key);
    const row = table.getByRole('row').filter({ has: page.getByRole('cell', { name: key, exact: true }) });
    try {
      // the table is rendered already: filtering it takes a moment, not a page load
      await row.first().waitFor({ state: 'visible', timeout: Math.min(remaining(), 10_000) });
    } catch (e) {
      const shown = squash((await table.innerText().catch(() => ''))).slice(0, 300);
      fail(`parameter ${key} is not in the run's parameters table (searching for it shows: ${shown || 'nothing'})`);
    }
    const cells = row.first().getByRole('cell');
    const shown = squash(await cells.nth(1).innerText());
    const title = await cells.nth(1).locator('[title]').first().getAttribute('title', { timeout: 1_000 }).catch(() => null);
    found.params[key] = title === value ? title : shown;
    if (shown !== value && title !== value) fail(`parameter ${key} shows ${JSON.stringify(shown)}, expected ${JSON.stringify(value)}`);
  }

  // Tags are chips: <span title=KEY>KEY</span><span title=VALUE>: VALUE</span> (long keys are
  // cut with an ellipsis on screen; the title keeps the whole text).
  for (const [key, value] of expectTags) {
    const chip = page.locator('[data-component-type="tag"]').filter({ has: page.locator(`span[title="${cssString(key)}"]`) });
    await waitFor(chip, `tag ${key} is not among the run's tags`);
    const titles = await chip.first().locator('span[title]').evaluateAll(els => els.map(e => e.getAttribute('title')));
    const shown = titles.length > 1 ? titles[1] : squash(await chip.first().innerText()).replace(/^.*?:\s*/, '');
    found.tags[key] = shown;
    if (shown !== value) fail(`tag ${key} shows ${JSON.stringify(shown)}, expected ${JSON.stringify(value)}`);
  }

  // For the screenshot: the table filtered to the keys' common prefix, at the top of the view.
  await search.fill(commonPrefix(expectParams.map(([k]) => k)));
  await page.getByText(/^Parameters \(\d+\)$/).first().evaluate(e => e.scrollIntoView({ block: 'start' })).catch(() => {});
  await page.waitForTimeout(300);
  return found;
}

async function checkLineageCard(page) {
  const path = opts.artifact.replace(/^\/+/, '');
  await page.goto(`${runUrl}/artifacts/${path}`, { waitUntil: 'domcontentloaded', timeout: remaining() });
  // MLflow renders .html artifacts in a sandboxed iframe (class mlflow-html-iframe, a blob: URL).
  const iframe = page.locator('iframe.mlflow-html-iframe, iframe#html');
  const nothing = page.getByText(/Select a file to preview|No Artifacts Recorded|does not exist|Page Not Found/);
  await waitFor(iframe.or(nothing), `the artifacts view did not show ${path} in a frame`);
  // (the tree may say "Select a file" for a moment before it selects the linked file)
  if (!(await iframe.count())) await iframe.first().waitFor({ state: 'attached', timeout: 3_000 }).catch(() => {});
  if (!(await iframe.count())) fail(`the artifacts view shows no ${path}: ${squash(await nothing.first().innerText())}`);
  const body = page.frameLocator('iframe.mlflow-html-iframe, iframe#html').first().locator('body');
  const wanted = [commit, 'lakeFS', repo];
  const hasAll = t => wanted.every(w => t.toLowerCase().includes(w.toLowerCase()));
  // Poll the frame's text until it shows everything, or it has rendered and stayed the same for
  // 3 s (then it is not going to), or the step's time is up.
  let text = '';
  let stableSince = Date.now();
  const until = Date.now() + remaining();
  while (Date.now() < until) {
    const now = squash(await body.innerText({ timeout: 2_000 }).catch(() => ''));
    if (now !== text) { text = now; stableSince = Date.now(); }
    if (hasAll(text) || (text && Date.now() - stableSince > 3_000)) break;
    await page.waitForTimeout(250);
  }
  const missing = wanted.filter(w => !text.toLowerCase().includes(w.toLowerCase()));
  if (missing.length) fail(`the lineage card ${path} does not show ${missing.map(m => JSON.stringify(m)).join(', ')} (it shows: ${text.slice(0, 300) || 'nothing'})`);
  const svg = await page.frameLocator('iframe.mlflow-html-iframe, iframe#html').first().locator('svg').first()
    .isVisible({ timeout: 1_000 }).catch(() => false);
  const lakefsLine = (text.match(/lakeFS [^\s]+(?: @ [^\s]+)?/) || [null])[0];
  return { artifact: path, shows: wanted, lakefs_line: lakefsLine, svg_visible: svg, title: text.slice(0, 120) };
}

// ---------------------------------------------------------------------------------------------
// lakeFS

async function checkLakefsLogin(page) {
  await page.goto(`${lakefsBase}/auth/login`, { waitUntil: 'domcontentloaded', timeout: remaining() });
  const keyInput = page.getByPlaceholder('Access Key ID');
  await waitFor(keyInput, 'the lakeFS login form (Access Key ID / Secret Access Key) did not appear');
  await keyInput.fill(accessKey);
  await page.getByPlaceholder('Secret Access Key').fill(secret);
  await page.locator('button[type=submit]').click();
  const alert = page.locator('.alert-danger');
  const left = page.waitForURL(u => !new URL(u).pathname.startsWith('/auth/login'), { timeout: remaining() }).then(() => 'in');
  const refused = alert.first().waitFor({ state: 'visible', timeout: remaining() }).then(() => 'refused');
  const outcome = await Promise.any([left, refused]).catch(() => 'timeout');
  if (outcome === 'refused') fail(`lakeFS refused the login: ${squash(await alert.first().innerText())}`);
  if (outcome === 'timeout') fail('the lakeFS login did not complete');
  return { logged_in: true, landed_on: new URL(page.url()).pathname };
}

/** On a paginated lakeFS list (100 a page), look for `target` on each page, pressing "Next Page"
 * up to 20 times; the page number it is on, 0 when it is on none. `itemSel` matches every row. */
async function findOnPages(page, itemSel, target, what) {
  const items = page.locator(itemSel);
  // lakeFS renders an error ("could not find repository R") or an empty list ("There aren't any
  // tags yet.") as a Bootstrap alert instead of the list.
  // (its "Loading..." placeholder is an info alert too)
  const alert = page.locator('.alert-danger, .alert-info').filter({ hasNotText: /^\s*Loading/ });
  for (let n = 1; n <= 20; n++) {
    await waitFor(items.or(alert), `the ${what} list did not render`);
    if (!(await items.count())) fail(`lakeFS shows no ${what} list: ${squash(await alert.first().innerText())}`);
    if (await target.count()) return n;
    const next = page.getByRole('button', { name: 'Next Page' });
    if (!(await next.count()) || !(await next.first().isEnabled())) return 0;
    const firstHref = await items.first().getAttribute('href');
    await next.first().click();
    await page.waitForFunction(([sel, href]) => {
      const a = document.querySelector(sel);
      return a && a.getAttribute('href') !== href;
    }, [itemSel, firstHref], { timeout: remaining() }).catch(() => {});
  }
  return 0;
}

async function checkLakefsCommits(page) {
  const base = `/repositories/${encodeURIComponent(repo)}`;
  await page.goto(`${lakefsBase}${base}/commits?ref=${encodeURIComponent(opts.ref)}`, { waitUntil: 'domcontentloaded', timeout: remaining() });
  // Each commit row links its message and its short id (a <code>) to /repositories/R/commits/ID;
  // the Commits tab itself links to .../commits?ref=..., without the slash.
  const itemSel = `a[href*="${base}/commits/"]:has(code)`;
  const link = page.locator(`a[href*="${base}/commits/${commit}"]:has(code)`);
  const onPage = await findOnPages(page, itemSel, link, `commits (ref ${opts.ref})`);
  if (!onPage) {
    const listed = await page.locator(itemSel).allInnerTexts();
    fail(`commit ${commit.slice(0, 16)} is not in the commits of ${repo} at ${opts.ref} (the last page lists ${listed.length}: ${listed.slice(0, 8).map(squash).join(', ')}${listed.length > 8 ? ', …' : ''})`);
  }
  const shortId = squash(await link.first().innerText());
  const href = await link.first().getAttribute('href');
  const fullId = href.slice(href.lastIndexOf('/') + 1);
  const row = page.locator('.list-group-item').filter({ has: link });
  const message = squash(await row.first().locator('h6').first().innerText().catch(() => ''));
  await link.first().evaluate(e => { e.scrollIntoView({ block: 'center' }); e.style.outline = '3px solid #e8590c'; });
  return { ref: opts.ref, short_id: shortId, commit: fullId, message, page: onPage, _link: link };
}

async function checkLakefsCommitPage(page, link) {
  await link.first().click();   // the short id, as a person would
  await page.waitForURL(u => new URL(u).pathname.includes('/commits/') && !new URL(u).pathname.endsWith('/commits'), { timeout: remaining() });
  const fullId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
  if (!fullId.startsWith(commit)) fail(`clicking ${commit.slice(0, 16)} opened the page of commit ${fullId}`);
  await waitFor(page.getByText(fullId, { exact: true }), `the commit page does not show the commit id ${fullId}`);
  const metadata = await page.evaluate(() => {
    const out = {};
    for (const table of document.querySelectorAll('table')) {
      if (!/Metadata Key/.test(table.innerText)) continue;
      for (const tr of table.querySelectorAll('tbody tr')) {
        const td = tr.querySelectorAll('td');
        if (td.length >= 2) out[td[0].innerText.trim()] = td[1].innerText.trim();
      }
    }
    return out;
  });
  return { commit: fullId, metadata };
}

async function checkLakefsTag(page) {
  const base = `/repositories/${encodeURIComponent(repo)}`;
  // ?prefix= is what the page's own "Find Tag" filter puts in the address
  await page.goto(`${lakefsBase}${base}/tags?prefix=${encodeURIComponent(opts.tag)}`, { waitUntil: 'domcontentloaded', timeout: remaining() });
  // Each tag row: <a href=".../objects?ref=TAG">TAG</a> and a button with the commit's 12-char id.
  const linkSel = `a[href*="${base}/objects?ref="]`;
  const itemSel = `.list-group-item ${linkSel}`;
  const name = page.locator(linkSel).filter({ hasText: new RegExp(`^\\s*${escapeRe(opts.tag)}\\s*$`) });
  const onPage = await findOnPages(page, itemSel, name, 'tags');
  if (!onPage) {
    const listed = await page.locator(itemSel).allInnerTexts();
    fail(`tag ${opts.tag} is not on the tags page of ${repo} (it lists ${listed.length}: ${listed.slice(0, 8).map(squash).join(', ')}${listed.length > 8 ? ', …' : ''})`);
  }
  const row = page.locator('.list-group-item').filter({ has: name });
  const ids = (await row.first().locator('button').allInnerTexts()).map(squash).filter(t => /^[0-9a-f]{6,64}$/.test(t));
  const shown = ids[0] || null;
  if (!shown || !(commit.startsWith(shown) || shown.startsWith(commit))) {
    fail(`tag ${opts.tag} points to ${shown || '(no commit id shown)'}, expected ${commit.slice(0, 12)}`);
  }
  await name.first().evaluate(e => { e.scrollIntoView({ block: 'center' }); e.closest('.list-group-item').style.outline = '3px solid #e8590c'; });
  return { tag: opts.tag, commit_short_id: shown, page: onPage };
}

// ---------------------------------------------------------------------------------------------

function commonPrefix(keys) {
  if (!keys.length) return '';
  let p = keys[0];
  for (const k of keys) while (!k.startsWith(p)) p = p.slice(0, -1);
  return p.length >= 2 ? p : '';
}
const cssString = s => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
const escapeRe = s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function main() {
  const { chromium } = loadPlaywright();
  const executablePath = process.env.MLV_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) setupFailure(`Chromium is not installed at ${executablePath}: run \`make browser\``);
  mkdirSync(outDir, { recursive: true });
  const userDataDir = mkdtempSync(join(tmpdir(), 'mlv-check-uis-'));
  let context;
  try {
    try {
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath, headless: true, args: CHROMIUM_ARGS, timeout: STEP_MS,
        viewport: { width: 1400, height: 1100 },
      });
    } catch (e) {
      setupFailure(`Chromium (${executablePath}) did not start: ${firstLine(e)}`);
    }
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.setDefaultNavigationTimeout(STEP_MS);

    say(`MLflow run ${runUrl}`);
    await check('mlflow_run', page, () => checkMlflowRun(page));
    await check('mlflow_lineage_card', page, () => checkLineageCard(page));

    say(`lakeFS ${lakefsBase} repository ${repo}`);
    if (!accessKey || !secret) {
      checks.lakefs_login = { ok: false, screenshot: null, seconds: 0,
        error: 'MLV_LAKEFS_ACCESS_KEY_ID and MLV_LAKEFS_SECRET_ACCESS_KEY must be set in the environment' };
      say('FAIL lakefs_login (no credentials)');
      for (const name of ['lakefs_commits', 'lakefs_commit_page', ...(opts.tag ? ['lakefs_tag'] : [])]) skipped(name, 'no lakeFS credentials');
    } else if (await check('lakefs_login', page, () => checkLakefsLogin(page))) {
      let link = null;
      await check('lakefs_commits', page, async () => {
        const { _link, ...found } = await checkLakefsCommits(page);
        link = _link;
        return found;
      });
      if (link) await check('lakefs_commit_page', page, () => checkLakefsCommitPage(page, link));
      else skipped('lakefs_commit_page', 'the commit was not found on the commits page');
      if (opts.tag) await check('lakefs_tag', page, () => checkLakefsTag(page));
    } else {
      for (const name of ['lakefs_commits', 'lakefs_commit_page', ...(opts.tag ? ['lakefs_tag'] : [])]) skipped(name, 'the lakeFS login failed');
    }
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
  finish();
}

main().catch(e => {
  say(`error: ${firstLine(e)}`);
  finish({ error: firstLine(e) });
  process.exit(1);
});
