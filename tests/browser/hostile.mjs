// An image whose labels and annotations hold <script> and markup: its pages
// show every such string as text; no element it names exists and no
// script runs (tests/api/browser.rs asserts no dialog opened and nothing
// reached the console, where the CSP would report a blocked script).

import { arrived, check, input, scenario, signIn } from "./lib.mjs";

const { repository, tag, texts } = input.hostile;

async function assertInert(page, where) {
  // An onerror handler would fire once the broken image failed to load.
  await page.waitForTimeout(500);
  const found = await page.evaluate(() => ({
    scripts: [...document.scripts].map((s) => s.src || "inline"),
    images: document.images.length,
    bold: document.querySelectorAll("main b").length,
    javascriptLinks: document.querySelectorAll('a[href^="javascript:"]').length,
    handlers: document.querySelectorAll("[onerror], [onload], [onclick]").length,
  }));
  const origin = new URL(input.url).origin;
  check(
    found.scripts.every((src) => src.startsWith(origin + "/")),
    `${where}: scripts other than Berth's own: ${found.scripts}`,
  );
  check(found.images === 0, `${where}: an <img> from a label made it into the page`);
  check(found.bold === 0, `${where}: markup from a label made it into the page`);
  check(found.javascriptLinks === 0, `${where}: a javascript: link from an annotation made it into the page`);
  check(found.handlers === 0, `${where}: an event handler attribute made it into the page`);
}

await scenario("hostile", async (session) => {
  const page = await session.newPage();
  await signIn(page, "alice");
  await page.goto("/");
  await assertInert(page, "repositories page");
  await page.getByRole("link", { name: repository, exact: true }).click();
  await arrived(page, "the repository page");
  await assertInert(page, "repository page");
  await session.checkpoint(page, "repository");

  await page.getByRole("link", { name: tag, exact: true }).click();
  await arrived(page, "the tag page");
  await page.getByRole("heading", { name: "Labels" }).waitFor();
  for (const text of texts) {
    check(
      (await page.getByText(text, { exact: true }).count()) >= 1,
      `the tag page does not show ${JSON.stringify(text)} as text`,
    );
  }
  await assertInert(page, "tag page");
  await session.checkpoint(page, "tag");
});
