// Real-browser test of HTTP/2: one Chromium page opens 20 EventSources to the gateway over
// TLS. With HTTP/2 (ALPN h2) every one opens and receives every event, and the gateway
// sees one connection. With HTTP/1.1 (the same gateway with http2 = false) only six open:
// the browser's limit per origin, which is why HTTP/2 matters.
//
// Run: cargo build && npm ci --prefix tests/browser && node tests/browser/http2.mjs
// Env: SSEGATE_BIN (default target/debug/ssegate), CHROMIUM (default /usr/bin/chromium).
// Chromium trusts nothing here: it gets --ignore-certificate-errors for the fixture's
// self-signed certificate, in this test only.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.SSEGATE_BIN ?? join(root, "target", "debug", "ssegate");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const fixtures = join(root, "tests", "fixtures");
const KEY = "browser-test-key";
const STREAMS = 20;
const EVENTS = 5;
const deadline = Date.now() + 90_000; // the whole test, bounded

function fail(msg) {
  throw new Error(msg);
}

function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", KEY).update(head).digest("base64url")}`;
}

/** Starts a TLS gateway; resolves with its port and admin address once it is ready. */
function startGateway(http2) {
  const child = spawn(
    bin,
    [
      "--listen", "127.0.0.1:0", "--workers", "1", "--ui", "true", "--anonymous", "true",
      "--tls-cert", join(fixtures, "tls-a-cert.pem"), "--tls-key", join(fixtures, "tls-a-key.pem"),
      "--http2", String(http2), "--publisher-jwt-key", KEY, "--log-level", "warn",
      "--admin-addr", "127.0.0.1:0",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("gateway not ready in 20 s")), 20_000);
    child.on("exit", (code) => reject(new Error(`gateway exited early (${code})`)));
    let admin;
    createInterface({ input: child.stdout }).on("line", (line) => {
      const a = line.match(/^ssegate admin on (\S+)/);
      if (a) admin = a[1];
      const m = line.match(/^ssegate listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1].split(":").pop()), admin });
      }
    });
  });
}

/** A metric summed over cores. */
async function metric(admin, name) {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

/** Publishes over HTTP/1.1 from Node (its own connection, not the browser's). */
function publish(port, data) {
  const body = new URLSearchParams({ topic: "https://example.com/live", data }).toString();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1", port, path: "/.well-known/mercure", method: "POST",
        rejectUnauthorized: false, agent: false,
        headers: {
          Authorization: `Bearer ${jwt({ mercure: { publish: ["*"] } })}`,
          "Content-Type": "application/x-www-form-urlencoded",
          "Content-Length": Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`publish: ${res.statusCode} ${text}`))));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function waitFor(page, predicate, what, ms = 15_000) {
  const until = Math.min(Date.now() + ms, deadline);
  while (Date.now() < until) {
    if (await page.evaluate(predicate)) return true;
    await page.waitForTimeout(50);
  }
  if (what) fail(`timed out waiting for ${what}`);
  return false;
}

/** Opens the page and its EventSources; returns what the page and the gateway saw. */
async function run(browser, http2) {
  const { child, port, admin } = await startGateway(http2);
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.error("page error:", e));
    await page.goto(`https://localhost:${port}/`);
    await page.evaluate((n) => {
      window.h2test = { opens: 0, ids: Array.from({ length: n }, () => []) };
      for (let i = 0; i < n; i++) {
        const es = new EventSource("/.well-known/mercure?topic=" + encodeURIComponent("https://example.com/live"));
        es.onopen = () => window.h2test.opens++;
        es.onmessage = (e) => window.h2test.ids[i].push(e.lastEventId);
      }
    }, STREAMS);
    const want = http2 ? STREAMS : 6;
    await waitFor(page, `window.h2test.opens >= ${want}`, `${want} EventSources to open`);
    // The gateway's count of subscribers is the other side of the same fact.
    const until = Date.now() + 5_000;
    while ((await metric(admin, "ssegate_subscribers")) < want && Date.now() < until) {
      await page.waitForTimeout(50);
    }
    if (!http2) {
      // Give the other fourteen every chance to open: they cannot.
      await page.waitForTimeout(1_500);
    }
    const opens = await page.evaluate(() => window.h2test.opens);
    const subscribers = await metric(admin, "ssegate_subscribers");
    const connections = await metric(admin, "ssegate_connections_open");
    const h2conns = await metric(admin, "ssegate_http2_connections_total");
    const published = [];
    for (let i = 0; i < EVENTS; i++) published.push(await publish(port, `event ${i}`));
    const got = await waitFor(
      page,
      `window.h2test.ids.filter((l) => l.length >= ${EVENTS}).length >= ${opens}`,
      null,
      10_000,
    );
    const ids = await page.evaluate(() => window.h2test.ids);
    await page.close();
    return { opens, subscribers, connections, h2conns, published, ids, got };
  } finally {
    child.kill("SIGTERM");
  }
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--ignore-certificate-errors",
    ],
  });
  const h2 = await run(browser, true);
  if (h2.opens !== STREAMS) fail(`HTTP/2: ${h2.opens} of ${STREAMS} EventSources opened`);
  if (h2.subscribers !== STREAMS) fail(`HTTP/2: the gateway has ${h2.subscribers} subscribers`);
  if (h2.h2conns < 1) fail("HTTP/2: no HTTP/2 connection counted");
  // The page's connections at that moment: the one HTTP/2 connection (the publishes had
  // not started).
  if (h2.connections !== 1) fail(`HTTP/2: the gateway saw ${h2.connections} connections`);
  for (const [i, l] of h2.ids.entries()) {
    if (JSON.stringify(l) !== JSON.stringify(h2.published)) fail(`HTTP/2: stream ${i} got ${JSON.stringify(l)}`);
  }

  const h1 = await run(browser, false);
  if (h1.opens !== 6) fail(`HTTP/1.1: ${h1.opens} EventSources opened, expected the browser's limit of 6`);
  if (h1.subscribers !== 6) fail(`HTTP/1.1: the gateway has ${h1.subscribers} subscribers`);
  if (h1.h2conns !== 0) fail("HTTP/1.1: an HTTP/2 connection was counted");
  console.log(
    `1 passed, 0 failed: over HTTP/2 ${h2.opens} EventSources on ${h2.connections} connection each got all ${EVENTS} events; ` +
      `over HTTP/1.1 ${h1.opens} of ${STREAMS} opened on ${h1.connections} connections`,
  );
} catch (e) {
  console.log("0 passed, 1 failed");
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
}
