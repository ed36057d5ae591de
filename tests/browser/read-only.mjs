// bob, a read-only member of `team`, sees no delete control on its pages;
// the delete form, as alice's confirmation page has it, posted by hand
// with bob's session and CSRF token, is refused with 403.

import { arrived, check, csrfToken, emit, input, scenario, signIn } from "./lib.mjs";

const { repository, kept } = input.team;
const DELETE_CONTROL = /delete/i;

async function deleteControls(page) {
  return (
    (await page.getByRole("link", { name: DELETE_CONTROL }).count()) +
    (await page.getByRole("button", { name: DELETE_CONTROL }).count())
  );
}

await scenario("read-only", async (session) => {
  // The form as a member allowed to delete is given it.
  const alice = await session.newPage();
  await signIn(alice, "alice");
  await alice.goto(`/r/${repository}`);
  await arrived(alice, "the repository page");
  await alice.getByRole("link", { name: `Delete tag ${kept}` }).click();
  await arrived(alice, "the confirmation page");
  const confirmUrl = alice.url();
  const form = await alice
    .getByRole("button", { name: DELETE_CONTROL })
    .evaluate((button) => {
      const fields = Object.fromEntries(new FormData(button.form));
      if (button.name) fields[button.name] = button.value;
      return { action: button.form.action, method: button.form.method, fields };
    });
  check(form.method === "post", `the delete form's method is ${form.method}`);

  const bob = await session.newPage();
  await signIn(bob, "bob");
  await bob.goto(`/r/${repository}`);
  await arrived(bob, "bob's repository page");
  await session.checkpoint(bob, "repository");
  check(
    (await bob.getByRole("link", { name: kept, exact: true }).count()) === 1,
    `bob does not see tag ${kept}`,
  );
  check((await deleteControls(bob)) === 0, "bob, who may only pull, is shown a delete control");
  check(
    (await bob.getByRole("navigation", { name: "Repository" }).getByRole("link", { name: "Settings" }).count()) === 0,
    "bob is shown the repository's settings",
  );
  await bob.getByRole("link", { name: kept, exact: true }).click();
  await arrived(bob, "the tag page");
  await session.checkpoint(bob, "tag");
  check((await deleteControls(bob)) === 0, "bob is shown a delete control on the tag page");
  // Taken here: an error page's frame names nobody, so it has no sign-out
  // form to take the token from.
  const csrf = await csrfToken(bob);
  check(csrf.length > 0, "bob's pages carry no CSRF token");

  const confirm = await bob.goto(confirmUrl);
  emit("confirm-page", { status: confirm.status() });
  await session.checkpoint(bob, "confirm-refused");
  check(confirm.status() === 403, `bob opening the confirmation page gets ${confirm.status()}`);

  const forged = await bob.request.post(form.action, {
    form: { ...form.fields, csrf },
    maxRedirects: 0,
  });
  const refusal = await forged.text();
  emit("forged-post", { status: forged.status() });
  check(forged.status() === 403, `bob posting the delete form by hand gets ${forged.status()}`);
  // A stale or foreign CSRF token is a 403 too: this one must be refused
  // for what bob may do, not for the token.
  check(!/form has expired/.test(refusal), "bob's forged form was refused for its CSRF token, not his role");
  check(/may not delete/.test(refusal), `bob's forged form was refused without saying why: ${refusal}`);
});
