// What every scenario shares: its input, Debian's chromium launched through
// playwright-core, signing in and out, and a checkpoint per page (a
// screenshot and an axe-core check). Scenarios print JSON lines on stdout
// for tests/api/browser.rs to read; anything else goes to stderr.
//
// A scenario is run as `node <scenario>.mjs '<input JSON>'`, the input being
//   { "url": "http://127.0.0.1:PORT", "artifacts": "/abs/dir",
//     "chromium": "/usr/bin/chromium", "users": { "alice": "password", ... },
//     "timeoutMs": 15000 (optional: how long a step may wait),
//     ... what the scenario needs (repository names, tags) }
// It exits 0 when every step it checks passed, 1 with the reason on stderr
// otherwise (after a screenshot of the page it failed on).

import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** The scenario's input, from its one argument. */
export const input = JSON.parse(process.argv[2] ?? "{}");

/** A JSON line for the Rust side: `{"event": event, ...fields}`. */
export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/** Fails the scenario (the Rust side shows the message) unless `condition`. */
export function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** A URL on the registry under test. */
export function url(pathAndQuery) {
  return new URL(pathAndQuery, input.url).toString();
}

/** The password of one of the seeded users. */
export function password(user) {
  const secret = input.users?.[user];
  check(typeof secret === "string", `the input names no password for ${user}`);
  return secret;
}

/**
 * Runs `body(session)` with a browser launched as the issue asks: Debian's
 * chromium, headless, no sandbox (tests run as root), no GPU and no
 * background traffic. `session.newPage()` opens a page in a fresh context
 * (its own cookies) that is watched for script that should never run.
 * Exits the process with the outcome.
 */
export async function scenario(name, body) {
  const browser = await chromium.launch({
    executablePath: input.chromium || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const session = new Session(name, browser);
  let failure = null;
  try {
    await body(session);
  } catch (error) {
    failure = error;
    await session.screenshotAll("failure");
  } finally {
    await browser.close();
  }
  if (failure) {
    process.stderr.write(`scenario ${name} failed: ${failure.stack || failure}\n`);
    process.exit(1);
  }
  emit("done", { scenario: name });
}

class Session {
  constructor(name, browser) {
    this.name = name;
    this.browser = browser;
    this.pages = [];
    this.artifacts = path.resolve(input.artifacts || "browser-artifacts");
    mkdirSync(this.artifacts, { recursive: true });
  }

  /**
   * A page in a context of its own. Every dialog and console message is
   * reported (`dialog`, `console` events), so a scenario, and the Rust
   * side, can tell whether any script ran that Berth did not serve; the
   * CSP reports a blocked inline script as a console error.
   */
  async newPage({ clipboard = false } = {}) {
    const context = await this.browser.newContext({
      baseURL: input.url,
      viewport: { width: 1280, height: 900 },
    });
    if (clipboard) {
      await context.grantPermissions(["clipboard-read", "clipboard-write"], {
        origin: new URL(input.url).origin,
      });
    }
    const page = await context.newPage();
    page.setDefaultTimeout(input.timeoutMs || 15_000);
    page.dialogs = [];
    page.consoleMessages = [];
    page.on("dialog", async (dialog) => {
      page.dialogs.push({ type: dialog.type(), message: dialog.message() });
      emit("dialog", { type: dialog.type(), message: dialog.message(), url: page.url() });
      // A confirmation Berth asks for is answered by the scenario that expects it.
      if (page.onConfirm && dialog.type() === "confirm") {
        await page.onConfirm(dialog);
      } else {
        await dialog.dismiss();
      }
    });
    page.on("response", (response) => {
      if (response.request().isNavigationRequest() && response.frame() === page.mainFrame()) {
        page.lastDocument = {
          url: response.url(),
          status: response.status(),
          contentType: response.headers()["content-type"] || "",
        };
      }
    });
    page.on("console", (message) => {
      const source = message.location()?.url || "";
      // Chromium asks for an icon no page links to; its 404 is no page's doing.
      if (source.endsWith("/favicon.ico")) return;
      const entry = { type: message.type(), text: message.text(), url: page.url(), source };
      page.consoleMessages.push(entry);
      emit("console", entry);
    });
    page.on("pageerror", (error) => {
      const entry = { type: "pageerror", text: String(error), url: page.url() };
      page.consoleMessages.push(entry);
      emit("console", entry);
    });
    this.pages.push(page);
    return page;
  }

  /**
   * A page reached and checked: a full-page screenshot `<scenario>-<label>.png`
   * in the artifacts directory, and axe-core's findings (every violation,
   * with its impact) reported as a `page` event.
   */
  async checkpoint(page, label) {
    await page.waitForLoadState("load");
    // Anything else (the registry's JSON 404 for a page not built yet, which
    // is sandboxed) is no page to check, and scripts cannot run in it.
    const document = page.lastDocument;
    check(
      document && document.contentType.startsWith("text/html"),
      `${label}: ${document?.url} is not an HTML page ` +
        `(status ${document?.status}, ${document?.contentType}): is the page there yet?`,
    );
    const file = path.join(this.artifacts, `${this.name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    const violations = await axe(page);
    emit("page", {
      label,
      url: page.url(),
      title: await page.title(),
      screenshot: file,
      violations,
    });
    return violations;
  }

  async screenshotAll(label) {
    for (const [index, page] of this.pages.entries()) {
      if (page.isClosed()) continue;
      const file = path.join(this.artifacts, `${this.name}-${label}-${index}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true });
        process.stderr.write(`screenshot of ${page.url()}: ${file}\n`);
      } catch {
        // The page may be gone with the failure; the error says why.
      }
    }
  }
}

/**
 * axe-core run on the page as it is, WCAG 2.x A and AA and best practices.
 * It is evaluated through the DevTools protocol, which the page's CSP does
 * not govern, so the page keeps its real policy.
 */
async function axe(page) {
  await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
      resultTypes: ["violations"],
    }),
  );
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}

/**
 * Waits for the page a click or `goto` led to and checks it is an HTML page
 * answered `status`: a page not built yet fails here, saying so, rather
 * than in a wait for something on it.
 */
export async function arrived(page, what, status = 200) {
  await page.waitForLoadState("load");
  const document = page.lastDocument;
  check(
    document?.status === status && document.contentType.startsWith("text/html"),
    `${what}: ${document?.url} answered ${document?.status} (${document?.contentType}), ` +
      `not an HTML page with ${status}: is the page there yet?`,
  );
}

/** Signs `user` in through the sign-in page; ends on the page it lands on. */
export async function signIn(page, user, secret = password(user)) {
  const response = await page.goto("/sign-in");
  check(response.ok(), `the sign-in page answered ${response.status()}: is it there yet?`);
  await page.getByLabel(/user ?name/i).fill(user);
  await page.getByLabel(/password/i).fill(secret);
  await Promise.all([
    page.waitForLoadState("load"),
    page.getByRole("button", { name: /sign in/i }).click(),
  ]);
}

/** Whether the frame says `user` is signed in. */
export async function signedInAs(page, user) {
  const nav = page.getByRole("navigation", { name: "Main" });
  return (await nav.getByText(`Signed in as ${user}`).count()) > 0;
}

/** Signs out with the button every page's frame has. */
export async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForLoadState("load");
}

/**
 * The CSRF token of the page's session, as its sign-out form carries it;
 * for posting a form by hand as the browser would.
 */
export async function csrfToken(page) {
  return page.locator('form[action="/sign-out"] input[name="csrf"]').inputValue();
}
