// Browse and search as alice: the repositories page lists what she may
// pull and finds one by name; the two-platform index shows both platforms
// with their sizes, on its repository page and on its tag page; the pull
// command is copied with the page's Copy button (tests/api/browser.rs then
// runs it with the real Docker engine).

import { arrived, check, emit, input, scenario, signIn } from "./lib.mjs";

const { repository, tag, platforms } = input.multi;
// How format::size writes a size: a number and a unit.
const SIZE = /\d+(\.\d+)?\s?(B|kB|KB|KiB|MB|MiB|GB|GiB)\b/;

await scenario("browse", async (session) => {
  const page = await session.newPage({ clipboard: true });
  await signIn(page, "alice");
  await page.goto("/");
  await session.checkpoint(page, "home");
  const listed = [repository, input.team.repository, input.hostile.repository];
  for (const name of listed) {
    check(
      (await page.getByRole("link", { name, exact: true }).count()) === 1,
      `the repositories page does not list ${name}`,
    );
  }

  const search = page.getByRole("search");
  await search.getByLabel("Search by name").fill("multi");
  await search.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/[?&]q=multi/);
  check(
    (await page.getByRole("link", { name: repository, exact: true }).count()) === 1,
    `searching for "multi" does not find ${repository}`,
  );
  check(
    (await page.getByRole("link", { name: input.team.repository, exact: true }).count()) === 0,
    `searching for "multi" lists ${input.team.repository}`,
  );
  await session.checkpoint(page, "home-search");

  await search.getByLabel("Search by name").fill("");
  await search.getByLabel("Sort by").selectOption({ label: "Name" });
  await search.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/[?&]sort=name/);
  const order = [];
  for (const row of await page.getByRole("row").all()) {
    const link = row.getByRole("link");
    if ((await link.count()) > 0) order.push(await link.first().textContent());
  }
  const sorted = [...order].sort();
  check(JSON.stringify(order) === JSON.stringify(sorted), `sorted by name, the order is ${order}`);
  await session.checkpoint(page, "home-by-name");

  await page.getByRole("link", { name: repository, exact: true }).click();
  await arrived(page, "the repository page");
  await page.getByRole("heading", { level: 1, name: new RegExp(repository) }).waitFor();
  await session.checkpoint(page, "repository");
  const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: tag, exact: true }) });
  check((await row.count()) === 1, `the repository page has no row for tag ${tag}`);
  const shown = {};
  for (const platform of platforms) {
    const item = row.getByRole("listitem").filter({ hasText: platform });
    check((await item.count()) === 1, `tag ${tag} does not show ${platform}`);
    const text = (await item.textContent()).trim();
    check(SIZE.test(text), `tag ${tag} shows ${platform} without a size: "${text}"`);
    shown[platform] = text;
  }
  emit("platforms", { page: "repository", shown });

  await row.getByRole("button", { name: /copy/i }).click();
  const command = await page.evaluate(() => navigator.clipboard.readText());
  check(
    command.startsWith("docker pull ") && command.endsWith(`/${repository}:${tag}`),
    `the copied pull command is "${command}"`,
  );
  check((await row.getByText(command, { exact: true }).count()) === 1, "the copied command is not the one shown");
  emit("pull-command", { command });

  await row.getByRole("link", { name: tag, exact: true }).click();
  await arrived(page, "the tag page");
  await page.getByRole("heading", { name: "Platforms" }).waitFor();
  await session.checkpoint(page, "tag");
  for (const platform of platforms) {
    const platformRow = page.getByRole("row").filter({ has: page.getByRole("link", { name: platform }) });
    check((await platformRow.count()) === 1, `the tag page does not list ${platform}`);
    const text = (await platformRow.textContent()).trim();
    check(SIZE.test(text), `the tag page shows ${platform} without a size: "${text}"`);
  }

  const last = platforms[platforms.length - 1];
  await page.getByRole("link", { name: last }).click();
  await arrived(page, `the ${last} manifest page`);
  await page.getByRole("heading", { name: "Layers" }).waitFor();
  check((await page.getByText(last).count()) > 0, `the ${last} manifest page does not name its platform`);
  await session.checkpoint(page, "manifest");

  await page.getByRole("navigation", { name: "Repository" }).getByRole("link", { name: "Untagged" }).click();
  await arrived(page, "the untagged manifests page");
  await page.getByRole("heading", { name: "Untagged manifests" }).waitFor();
  await session.checkpoint(page, "untagged");
});
