// End-to-end test of the web chat in headless Chromium: upload a document
// through the page, watch its progress, ask, see a cited answer, click the
// citation and see the passage with its supporting sentence highlighted.
// Runs the real `docent serve` (DOCENT_BIN) on port 0 with the real models.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.DOCENT_BIN;
const models = process.env.DOCENT_TEST_MODELS;
if (!bin || !models) throw new Error("set DOCENT_BIN and DOCENT_TEST_MODELS");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const dir = mkdtempSync(join(tmpdir(), "docent-ui-"));
const doc = join(dir, "visitor-policy.md");
writeFileSync(doc, "# Visitor policy\n\n## Hours\n\nVisiting hours on the maternity ward are from two to eight in the evening.\n\n## Flowers\n\nFlowers are not allowed in the intensive care unit.\n");

const server = spawn(bin, ["serve", "--port", "0"], {
  env: { ...process.env, DOCENT__STORAGE__DATA_DIR: join(dir, "data"), DOCENT__MODELS__DIR: models, DOCENT_LOG: "warn" },
  stdio: ["ignore", "pipe", "inherit"],
});
const base = await new Promise((resolve, reject) => {
  let buf = "";
  server.stdout.on("data", (d) => {
    buf += d;
    const m = buf.match(/docent listening on (http:\/\/\S+)/);
    if (m) resolve(m[1]);
  });
  server.once("exit", (code) => reject(new Error(`docent exited with ${code}`)));
});

let failed = 0;
const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(base + "/");

  // Upload through the form; the progress bar and status follow the job.
  await page.setInputFiles("#upload-file", doc);
  await page.click("#upload-button");
  await page.waitForFunction(() => document.querySelector("#upload-status").textContent.includes("ready"), null, { timeout: 120000 });
  const progress = await page.$eval("#upload-progress", (p) => p.value);
  if (progress !== 1) throw new Error(`progress bar at ${progress}, expected 1`);
  await page.waitForSelector("#documents li");

  // Ask; tokens stream in, then the checked citations render.
  await page.fill("#question", "What are the visiting hours on the maternity ward?");
  await page.click("#ask-button");
  await page.waitForSelector(".msg.bot .cite", { timeout: 180000 });
  const answer = await page.textContent(".msg.bot");
  await page.click(".msg.bot .cite");
  await page.waitForSelector("#source-panel:not([hidden])");
  const title = await page.textContent("#source-title");
  const mark = await page.textContent("#source-passage mark");
  console.log(`answer: ${answer}\ncited: ${title}\nhighlighted: ${mark}`);
  if (!title.includes("Visitor policy") && !title.includes("visitor-policy")) throw new Error(`wrong source ${title}`);
  if (!mark.includes("two to eight")) throw new Error(`highlight misses the supporting sentence: ${mark}`);
  // The conversation appears in the sidebar and reopens with both messages.
  await page.waitForSelector("#conversations li.active", { timeout: 10000 });
  const convTitle = await page.textContent("#conversations li.active");
  if (!convTitle.includes("visiting hours")) throw new Error(`sidebar shows ${convTitle}`);
  await page.click("#new-chat");
  await page.click("#conversations li");
  await page.waitForSelector(".msg.bot .sources");
  const count = await page.$$eval("#messages .msg", (ms) => ms.length);
  if (count !== 2) throw new Error(`reopened conversation has ${count} messages`);
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
} catch (e) {
  failed = 1;
  console.error(e);
} finally {
  await browser.close();
  // Graceful stop (SIGTERM), and only then remove the data directory.
  const exited = new Promise((resolve) => server.on("exit", resolve));
  server.kill("SIGTERM");
  await exited;
  rmSync(dir, { recursive: true, force: true });
}
console.log(`ui: ${1 - failed} passed, ${failed} failed`);
process.exit(failed);
