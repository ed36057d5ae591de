// An access token made on the account page: alice creates one for her
// repositories, copies its secret from the page that shows it once, and
// finds it listed (tests/api/browser.rs gives it to `docker login`).

import { check, emit, scenario, signIn } from "./lib.mjs";

const DESCRIPTION = "docker login from the browser test";

await scenario("account-token", async (session) => {
  const page = await session.newPage({ clipboard: true });
  await signIn(page, "alice");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Account" }).click();
  await page.getByRole("heading", { level: 1, name: /Account/ }).waitFor();
  await session.checkpoint(page, "account");

  await page.getByLabel("Description").fill(DESCRIPTION);
  await page.getByLabel(/^Repository/).fill("alice/*");
  await page.getByLabel("pull", { exact: true }).check();
  await page.getByLabel(/^Expires after/).fill("1d");
  await page.getByRole("button", { name: "Create token" }).click();
  await page.getByRole("heading", { name: "Access token created" }).waitFor();
  await session.checkpoint(page, "token-created");

  await page.getByRole("button", { name: /copy/i }).first().click();
  const secret = (await page.evaluate(() => navigator.clipboard.readText())).trim();
  check(secret.length >= 20 && !/\s/.test(secret), `the copied secret is "${secret}"`);
  check((await page.getByText(secret, { exact: true }).count()) === 1, "the copied secret is not the one shown");
  emit("token", { secret });

  await page.goto("/account");
  const row = page.getByRole("row").filter({ hasText: DESCRIPTION });
  check((await row.count()) === 1, "the new token is not listed on the account page");
  check(!(await row.textContent()).includes(secret), "the account page shows the secret again");
  await session.checkpoint(page, "account-with-token");
});
