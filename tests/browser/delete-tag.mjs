// Deleting a tag as alice, an admin of `team`: the repository page's Delete
// link leads to a confirmation page, which names the tag and the other tag
// on the same digest that stays; its button deletes (a confirm() dialog, if
// the form ever asks one, is accepted). After it the tag is gone from the
// page and the other tag stays (tests/api/browser.rs checks tags/list).

import { arrived, check, emit, input, scenario, signIn } from "./lib.mjs";

const { repository, deleted, kept } = input.team;

await scenario("delete-tag", async (session) => {
  const page = await session.newPage();
  await signIn(page, "alice");
  await page.goto(`/r/${repository}`);
  await arrived(page, "the repository page");
  await session.checkpoint(page, "repository");

  await page.getByRole("link", { name: `Delete tag ${deleted}` }).click();
  await arrived(page, "the confirmation page");
  await session.checkpoint(page, "confirm");
  check(
    (await page.getByRole("heading", { name: `Delete the tag ${deleted}?` }).count()) === 1,
    `the confirmation page does not ask about tag ${deleted}`,
  );
  check(
    (await page.getByRole("listitem").filter({ hasText: kept }).count()) === 1,
    `the confirmation page does not say tag ${kept}, on the same manifest, stays`,
  );

  let asked = null;
  page.onConfirm = async (dialog) => {
    asked = dialog.message();
    await dialog.accept();
  };
  await Promise.all([
    page.waitForURL((url) => url.pathname === `/r/${repository}` || url.search.includes("done=")),
    page.getByRole("button", { name: /delete/i }).click(),
  ]);
  emit("confirmed", { question: asked });
  await arrived(page, "the page after the delete");
  await session.checkpoint(page, "deleted");
  check((await page.getByRole("status").count()) > 0, "the page after the delete says nothing");
  check(
    (await page.getByRole("link", { name: deleted, exact: true }).count()) === 0,
    `tag ${deleted} is still listed after its delete`,
  );
  check(
    (await page.getByRole("link", { name: kept, exact: true }).count()) === 1,
    `tag ${kept}, on the same digest, went with ${deleted}`,
  );
});
