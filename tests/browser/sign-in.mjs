// Sign in and out: an anonymous visitor sees no private repository; a wrong
// password is refused on the page; alice signed in sees hers; signed out,
// they are gone again.

import { check, input, scenario, signIn, signOut, signedInAs } from "./lib.mjs";

const privateRepository = input.multi.repository;

await scenario("sign-in", async (session) => {
  const page = await session.newPage();
  const repositoryLink = () => page.getByRole("link", { name: privateRepository, exact: true });

  await page.goto("/");
  await session.checkpoint(page, "home-anonymous");
  check((await repositoryLink().count()) === 0, `an anonymous visitor sees ${privateRepository}`);

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sign in" }).click();
  await page.waitForURL(/\/sign-in/);
  await session.checkpoint(page, "sign-in");

  await signIn(page, "alice", "not-her-password");
  check(!(await signedInAs(page, "alice")), "a wrong password signed alice in");
  check(
    (await page.getByText(/incorrect|wrong|invalid/i).count()) > 0,
    "a refused sign-in says nothing about why",
  );
  await session.checkpoint(page, "sign-in-refused");

  await signIn(page, "alice");
  check(await signedInAs(page, "alice"), "alice is not signed in after signing in");
  await page.goto("/");
  check((await repositoryLink().count()) === 1, `signed in, alice does not see ${privateRepository}`);
  await session.checkpoint(page, "signed-in");

  await signOut(page);
  check(!(await signedInAs(page, "alice")), "alice is still signed in after signing out");
  await page.goto("/");
  check((await repositoryLink().count()) === 0, `signed out, ${privateRepository} is still listed`);
  await session.checkpoint(page, "signed-out");
});
