// Real-browser test: Debian's Chromium opens ssegate's debug page, subscribes with the
// browser's own EventSource, receives updates published over HTTP, and, each time the
// gateway ends the stream (max_stream_duration), reconnects by itself and resumes with
// Last-Event-ID: every published event must arrive once, in order.
//
// Run: cargo build && npm ci --prefix tests/browser && node tests/browser/eventsource.mjs
// Env: SSEGATE_BIN (default target/debug/ssegate), CHROMIUM (default /usr/bin/chromium).
// playwright-core launches that Chromium with a fresh temporary profile of its own.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.SSEGATE_BIN ?? join(root, "target", "debug", "ssegate");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const KEY = "browser-test-key";
const EVENTS = 40;
const deadline = Date.now() + 60_000; // the whole test, bounded

function fail(msg) {
  throw new Error(msg);
}

function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", KEY).update(head).digest("base64url")}`;
}

/** Starts the gateway and resolves with its address once it prints its ready line. */
function startGateway() {
  const child = spawn(
    bin,
    [
      "--listen", "127.0.0.1:0", "--workers", "2", "--ui", "true",
      "--publisher-jwt-key", KEY, "--max-stream-duration", "700ms",
      "--heartbeat-interval", "200ms", "--log-level", "warn", "--admin-addr", "off",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("gateway not ready in 20 s")), 20_000);
    child.on("exit", (code) => reject(new Error(`gateway exited early (${code})`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/^ssegate listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, addr: m[1] });
      }
    });
  });
}

async function waitFor(page, predicate, what, ms = 15_000) {
  const until = Math.min(Date.now() + ms, deadline);
  while (Date.now() < until) {
    if (await page.evaluate(predicate)) return;
    await page.waitForTimeout(50);
  }
  fail(`timed out waiting for ${what}`);
}

const { child, addr } = await startGateway();
let browser;
try {
  browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  await page.goto(`http://${addr}/`);
  await page.fill("#topics", "https://example.com/books/{id}");
  await page.click("#subscribe-button");
  await waitFor(page, () => window.ssegate.opens >= 1, "the EventSource to open");

  const token = jwt({ mercure: { publish: ["*"] } });
  const published = [];
  for (let i = 0; i < EVENTS; i++) {
    const body = new URLSearchParams({ topic: `https://example.com/books/${i}`, data: `book ${i}` });
    // A short reconnection delay, carried by the stream itself (SSE `retry:`).
    if (i === 0) body.append("retry", "100");
    const r = await fetch(`http://${addr}/.well-known/mercure`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
      body,
    });
    if (r.status !== 200) fail(`publish ${i}: ${r.status} ${await r.text()}`);
    published.push(await r.text());
    await new Promise((res) => setTimeout(res, 50));
  }
  // And one through the page's own form (fetch from the browser).
  await page.fill("#pub-topic", "https://example.com/books/last");
  await page.fill("#pub-data", "from the page");
  await page.fill("#pub-token", token);
  await page.click("#publish-button");
  await waitFor(page, () => /^200 /.test(document.querySelector("#pub-result").textContent), "the page's publish");
  published.push((await page.textContent("#pub-result")).slice(4));

  await waitFor(page, `window.ssegate.events.length >= ${published.length}`, "all events");
  const state = await page.evaluate(() => ({
    ids: window.ssegate.events.map((e) => e.id),
    data: window.ssegate.events.map((e) => e.data),
    opens: window.ssegate.opens,
  }));
  await page.screenshot({ path: join(root, "target", "browser-eventsource.png"), fullPage: true });

  const dupes = state.ids.filter((id, i) => state.ids.indexOf(id) !== i);
  if (dupes.length) fail(`duplicates: ${dupes}`);
  if (JSON.stringify(state.ids) !== JSON.stringify(published)) {
    fail(`order or gap: got ${state.ids.length} ids, expected ${published.length}`);
  }
  if (state.data[0] !== "book 0" || state.data.at(-1) !== "from the page") fail("wrong data");
  if (state.opens < 3) fail(`the stream should have been reopened by the browser (opened ${state.opens} times)`);
  console.log(`1 passed, 0 failed: chromium received ${state.ids.length} events in order across ${state.opens} EventSource connections`);
} catch (e) {
  console.log("0 passed, 1 failed");
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  child.kill("SIGTERM");
}
