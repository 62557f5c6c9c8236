// permessage-deflate in headless Chromium: from the host's own page (same origin), open a WebSocket to each URL, send
// a 1 KB JSON message and wait for its echo. Run with `node deflate.mjs PAGE WS_URL...` (tests/tests/deflate.rs
// does); prints one JSON line per URL: the extensions Chromium agreed to (`WebSocket.extensions`) and whether the
// echo matched. Exits non-zero on any failure.
import { launchChromium } from "./launch.mjs";

const [page_url, ...urls] = process.argv.slice(2);
if (!page_url || urls.length === 0) {
  console.error("usage: node deflate.mjs PAGE WS_URL...");
  process.exit(2);
}

const browser = await launchChromium();
let failed = false;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(page_url);
  for (const url of urls) {
    const result = await page.evaluate(
      (url) =>
        new Promise((resolve, reject) => {
          const words = ["hello", "there", "room", "message", "deflate", "again", "what", "about", "lunch", "today"];
          let text = "";
          for (let i = 0; text.length < 900; i += 7) text += words[i % words.length] + " ";
          const message = JSON.stringify({ type: "chat", room: "general", user: "ada", id: 12345, text });
          const ws = new WebSocket(url);
          const timer = setTimeout(() => reject(new Error(`no echo from ${url} in 10 s`)), 10_000);
          ws.onopen = () => ws.send(message);
          ws.onmessage = (event) => {
            clearTimeout(timer);
            resolve({ url, extensions: ws.extensions, echoed: event.data === message });
            ws.close(1000);
          };
          ws.onerror = () => reject(new Error(`WebSocket error on ${url}`));
        }),
      url,
    );
    console.log(JSON.stringify(result));
  }
} catch (err) {
  console.error(`failed: ${err.message}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
