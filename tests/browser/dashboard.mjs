// Drives the wasmsock dashboard in headless Chromium: sign in with the admin token, see every host of the cluster, see
// the connection count rise as sessions open, and see a host that was killed leave. Run with
// `node dashboard.mjs ADMIN-URL WS-URL TOKEN HOST...` (tests/tests/dashboard.rs does): ADMIN-URL is the dashboard's
// host's admin listener, WS-URL an endpoint's ws:// URL on the same host, HOST... the ids the hosts table must list.
// After the sessions are open it prints `step: sessions open`, then waits (up to 30 s) for the last HOST to be shown
// gone: the test kills that host meanwhile. Prints each step; exits non-zero on any failure.
import { launchChromium } from "./launch.mjs";

const [admin, wsUrl, token, ...hosts] = process.argv.slice(2);
if (!admin || !wsUrl || !token || hosts.length === 0) {
  console.error("usage: node dashboard.mjs ADMIN-URL WS-URL TOKEN HOST...");
  process.exit(2);
}
const STEP_MS = 15_000;
const SESSIONS = 3;

const browser = await launchChromium();
let failed = false;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (err) => {
    console.error(`page error: ${err.message}`);
    failed = true;
  });
  const first = await page.goto(`${admin}/dashboard`);
  if (first.status() !== 401) throw new Error(`without the token the dashboard answered ${first.status()}, not 401`);
  console.log("step: asked for the token");
  await page.fill("#token", "not the token");
  await page.click("#sign-in");
  await page.locator(".wrong").waitFor();
  console.log("step: a wrong token is refused");
  await page.fill("#token", token);
  await page.click("#sign-in");
  await page.locator("#updated", { hasText: "updated" }).waitFor();
  console.log("step: signed in");
  for (const host of hosts) {
    await page.locator(`#hosts tr[data-key="${host}"]:not(.gone)`).waitFor();
  }
  console.log(`step: hosts ${hosts.join(", ")} listed`);
  const before = Number(await page.locator("#connections").textContent());
  // The sessions, from a page of the host's main listener (the console), an origin its endpoints accept; the
  // dashboard's page may talk only to its own listener.
  const peers = await browser.newPage();
  await peers.goto(new URL("/", wsUrl.replace(/^ws/, "http")).href);
  await peers.evaluate(
    async ([url, count]) => {
      window.sessions = [];
      for (let i = 0; i < count; i++) {
        const socket = new WebSocket(url);
        await new Promise((resolve, reject) => {
          socket.onopen = resolve;
          socket.onerror = () => reject(new Error(`cannot open ${url}`));
        });
        window.sessions.push(socket);
      }
    },
    [wsUrl, SESSIONS],
  );
  await page.waitForFunction((want) => Number(document.getElementById("connections").textContent) >= want, before + SESSIONS);
  const endpoint = new URL(wsUrl).pathname.split("/").pop();
  await page.waitForFunction(
    ([name, want]) => {
      const row = document.querySelector(`#endpoints tr[data-key="${name}"]`);
      return row !== null && Number(row.children[4].textContent) >= want;
    },
    [endpoint, SESSIONS],
  );
  console.log(`step: connections rose from ${before} to ${await page.locator("#connections").textContent()}`);
  console.log("step: sessions open");
  const killed = hosts[hosts.length - 1];
  await page.locator(`#hosts tr.gone[data-key="${killed}"]`).waitFor({ timeout: 30_000 });
  console.log(`step: ${killed} shown gone`);
} catch (err) {
  console.error(`failed: ${err.message}`);
  failed = true;
} finally {
  await browser.close();
}
if (failed) process.exit(1);
console.log("ok");
