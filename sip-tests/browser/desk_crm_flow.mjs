// Two calls whose callers are not simply known (see lib.mjs for the protocol with
// sip-tests/tests/desk_browser.rs): a number two customers share (the page lists the
// candidates, the agent picks one, opens a ticket in wrap-up), then an unknown number (a
// provisional customer the agent completes), and a customer search.
// Env: DESK_URL, DESK_USER, DESK_PASSWORD, SHOTS_DIR, CHROMIUM (default /usr/bin/chromium).

import { STEP_MS, hangUp, run, saveWrapup, signInReady, step } from "./lib.mjs";

await run("crm", async (desk) => {
  const { page, shot, text, waitAttr } = desk;
  await signInReady(desk);
  step("ready");

  // 1. A shared number: the candidates, then the agent's choice.
  await page.waitForSelector("#candidates li", { timeout: STEP_MS });
  await waitAttr("#call-status", "data-call", "answered");
  const names = await page.locator("#candidates .name").allTextContents();
  await shot("01-candidates");
  step("candidates", { names });
  await page.getByRole("button", { name: "This is Dr. Ida Berg" }).click();
  await page.waitForSelector("#pop-name", { timeout: STEP_MS });
  step("chosen", { name: await text("#pop-name") });

  await hangUp(desk);
  await saveWrapup(desk, {
    code: "follow_up",
    notes: "Router still broken",
    ticket: { subject: "Router broken again", priority: "high" },
  });
  step("saved", {});

  // 2. An unknown number: a provisional customer, completed on the page.
  await page.waitForSelector("#customer-form", { timeout: STEP_MS });
  await waitAttr("#call-status", "data-call", "answered");
  await shot("02-provisional");
  const form = page.locator("#customer-form");
  await form.getByLabel("First name").fill("Eva");
  await form.getByLabel("Surname").fill("Neumann");
  await form.getByLabel("Company").fill("Neumann GmbH");
  await form.getByLabel("Tier").selectOption("key_account");
  await form.getByRole("button", { name: "Save customer" }).click();
  await page.waitForFunction(() => document.getElementById("pop-name")?.textContent === "Eva Neumann", null, {
    timeout: STEP_MS,
  });
  await shot("03-completed");
  step("completed", { name: await text("#pop-name"), tier: await text("#pop .tier") });

  // 3. Search (this test's config lets agents search).
  await page.getByLabel("Name or number").fill("Berg");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForSelector("#search-results li", { timeout: STEP_MS });
  const found = await page.locator("#search-results .name").allTextContents();
  await shot("04-search");
  step("search", { found });

  await hangUp(desk);
  await saveWrapup(desk, { code: "new_customer", notes: "" });
  step("done", { errors: desk.errors });
});
