// Every page, for axe-core and a screenshot each: signed out (repositories,
// sign-in, a missing page), then as the administrator (repositories, a
// repository's tags and untagged manifests, an index, an image, the
// settings, the confirmations of deleting a tag and a manifest, a
// namespace's settings, the account, an organization, the administration
// page and its confirmation of deleting a user). A page that is not there
// is reported and the tour goes on, so one run names every missing page;
// it fails at the end.

import { arrived, check, emit, input, scenario, signIn } from "./lib.mjs";

await scenario("tour", async (session) => {
  const page = await session.newPage();
  const missing = [];
  // Runs `reach` (a goto or a click), then checks the page and checkpoints it.
  const visit = async (label, reach, status = 200) => {
    try {
      await reach();
      await arrived(page, label, status);
      await session.checkpoint(page, label);
    } catch (error) {
      missing.push(`${label}: ${error.message.split("\n")[0]}`);
      emit("missing", { label, error: error.message.split("\n")[0] });
    }
  };
  const go = (path) => () => page.goto(path);
  // Where a link to the page is: that page must be there first.
  const from = async (path) => {
    await page.goto(path);
    await arrived(page, `the page linking to it (${path})`);
  };
  const { multi, team, hostile } = input;

  await visit("home-anonymous", go("/"));
  await visit("sign-in", go("/sign-in"));
  await visit("not-found", go("/r/nobody/nothing"), 404);

  await signIn(page, "admin");
  await visit("home", go("/"));
  await visit("repository", go(`/r/${multi.repository}`));
  await visit("untagged", go(`/r/${multi.repository}/-/untagged`));
  await visit("index", async () => {
    await from(`/r/${multi.repository}`);
    await page.getByRole("link", { name: multi.tag, exact: true }).click();
  });
  await visit("image", async () => {
    await from(`/r/${multi.repository}`);
    await page.getByRole("link", { name: multi.platforms[0] }).first().click();
  });
  await visit("image-with-labels", async () => {
    await from(`/r/${hostile.repository}`);
    await page.getByRole("link", { name: hostile.tag, exact: true }).click();
  });
  await visit("settings", async () => {
    await from(`/r/${team.repository}`);
    await page.getByRole("navigation", { name: "Repository" }).getByRole("link", { name: "Settings" }).click();
  });
  await visit("confirm-delete", async () => {
    await from(`/r/${team.repository}`);
    await page.getByRole("link", { name: `Delete tag ${team.kept}` }).click();
  });
  await visit("confirm-delete-manifest", async () => {
    // A manifest the index lists: the page says why it cannot go.
    await from(`/r/${multi.repository}`);
    await page.getByRole("link", { name: multi.platforms[0] }).first().click();
    await arrived(page, "the image page");
    await page.getByRole("link", { name: "Delete this manifest" }).click();
  });
  await visit("namespace", async () => {
    await from(`/r/${team.repository}/-/settings`);
    await page.getByRole("main").getByRole("link", { name: "team", exact: true }).click();
  });
  await visit("account", go("/account"));
  await visit("organization", go("/orgs/team"));
  await visit("administration", go("/admin"));
  await visit("confirm-delete-user", async () => {
    await from("/admin");
    await page.getByRole("link", { name: "Delete bob" }).click();
  });
  check(missing.length === 0, `pages not reached:\n  ${missing.join("\n  ")}`);
});
