// The headless Chromium both browser scripts drive (console.mjs, dashboard.mjs): CHROMIUM names the browser (default
// /usr/bin/chromium, the Debian package).
import { chromium } from "playwright-core";

/** Launches Chromium. */
export function launchChromium() {
  // playwright-core launches with a fresh temporary profile (--user-data-dir) of its own and --headless; the flags
  // below keep Chromium from reaching out to Google services, which are unreachable here.
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 60_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
}
