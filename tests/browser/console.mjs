// Drives the wasmsock console page in headless Chromium: pick an endpoint, connect, send a message, see the echo,
// disconnect and see the close code. Run with `node console.mjs URL [ENDPOINT]` (tests/tests/console.rs does);
// CHROMIUM names the browser (default /usr/bin/chromium), DESCRIPTION text the endpoint's description must contain. Prints each step; exits non-zero on any failure.
import { launchChromium } from "./launch.mjs";

const [url, endpoint = "echo"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node console.mjs URL [ENDPOINT]");
  process.exit(2);
}
const STEP_MS = 15_000;
const message = `hello from chromium ${Date.now()}`;

const browser = await launchChromium();
let failed = false;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (err) => {
    console.error(`page error: ${err.message}`);
    failed = true;
  });
  await page.goto(url);
  console.log(`step: opened ${url}`);
  const item = page.locator(`#endpoints li[data-endpoint="${endpoint}"]`);
  await item.click();
  const description = await page.locator("#description").textContent();
  if (!description.includes(process.env.DESCRIPTION ?? "")) {
    throw new Error(`expected the description ${JSON.stringify(process.env.DESCRIPTION)}, saw ${JSON.stringify(description)}`);
  }
  console.log(`step: picked ${endpoint}: ${description}`);
  await page.click("#connect");
  await page.locator("#state", { hasText: "open" }).waitFor();
  console.log("step: connected");
  await page.fill("#message", message);
  await page.click("#send");
  await page.locator("#log .received", { hasText: message }).waitFor();
  console.log(`step: echoed ${JSON.stringify(message)}`);
  await page.click("#disconnect");
  const closed = await page.locator("#log .closed").textContent();
  if (!/closed 1000\b/.test(closed)) throw new Error(`expected close 1000, saw ${JSON.stringify(closed)}`);
  console.log(`step: ${closed.slice(13)}`);
} catch (err) {
  console.error(`failed: ${err.message}`);
  failed = true;
} finally {
  await browser.close();
}
if (failed) process.exit(1);
console.log("ok");
