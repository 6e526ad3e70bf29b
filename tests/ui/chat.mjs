// End-to-end test of the web chat in headless Chromium: upload a document
// through the page, watch its progress, ask, see a cited answer, click the
// citation and see the passage with its supporting sentence highlighted.
// Then, with OIDC sign-in required: the page asks for an ID token, signs in
// (session cookie + CSRF token), keeps the session over a reload, uploads,
// and signs out.
// Runs the real `docent serve` (DOCENT_BIN) on port 0 with the real models.
import { spawn } from "node:child_process";
import { createSign } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const bin = process.env.DOCENT_BIN;
const models = process.env.DOCENT_TEST_MODELS;
if (!bin || !models) throw new Error("set DOCENT_BIN and DOCENT_TEST_MODELS");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const dir = mkdtempSync(join(tmpdir(), "docent-ui-"));
const doc = join(dir, "visitor-policy.md");
writeFileSync(doc, "# Visitor policy\n\n## Hours\n\nVisiting hours on the maternity ward are from two to eight in the evening.\n\n## Flowers\n\nFlowers are not allowed in the intensive care unit.\n");

// Starts `docent serve` on a data directory with extra environment.
async function start(data, env = {}) {
  const server = spawn(bin, ["serve", "--port", "0"], {
    env: { ...process.env, DOCENT__STORAGE__DATA_DIR: data, DOCENT__MODELS__DIR: models, DOCENT_LOG: "warn", ...env },
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
  return { server, base };
}

// Graceful stop (SIGTERM).
async function stop(server) {
  const exited = new Promise((resolve) => server.on("exit", resolve));
  server.kill("SIGTERM");
  await exited;
}

// An RS256 ID token signed with the test-only issuer key (tests/fixtures/oidc).
const fixtures = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "oidc");
const ISSUER = "https://sso.test/realms/staff";
function idToken(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "RS256", typ: "JWT", kid: "test-rsa" })}.${b64({ iss: ISSUER, aud: "docent", iat: now, exp: now + 600, ...claims })}`;
  const sig = createSign("RSA-SHA256").update(body).sign(readFileSync(join(fixtures, "issuer-rsa.pem")));
  return `${body}.${sig.toString("base64url")}`;
}

const { server, base } = await start(join(dir, "data"));
let signinServer = null;

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
  await page.close();

  // Sign-in required (OIDC): a 401 shows the sign-in form; an ID token
  // opens a session (the Secure cookie is kept for http://127.0.0.1 too).
  await stop(server);
  signinServer = await start(join(dir, "signin-data"), {
    DOCENT__ACCESS__REQUIRE_AUTH: "true",
    DOCENT__ACCESS__OIDC__ISSUER: ISSUER,
    DOCENT__ACCESS__OIDC__AUDIENCE: "docent",
    DOCENT__ACCESS__OIDC__JWKS_FILE: join(fixtures, "jwks.json"),
  });
  const signin = await browser.newPage();
  const base2 = signinServer.base;
  await signin.goto(base2 + "/");
  await signin.waitForSelector("#signin-form:not([hidden])", { timeout: 10000 });
  await signin.fill("#id-token", idToken({ sub: "id-uma", preferred_username: "uma", groups: ["everyone"], docent_role: "editor" }));
  await signin.click("#signin-button");
  await signin.waitForSelector("#whoami:not([hidden])", { timeout: 10000 });
  const who = await signin.textContent("#whoami-name");
  if (!who.includes("uma") || !who.includes("editor")) throw new Error(`signed in as ${who}`);
  const cookies = await signin.context().cookies();
  const session = cookies.find((c) => c.name === "docent_session");
  if (!session || !session.httpOnly || !session.secure || session.sameSite !== "Strict") {
    throw new Error(`session cookie ${JSON.stringify(session)}`);
  }
  // After a reload the session (and its CSRF token) is restored: an upload,
  // a state change by cookie, goes through.
  await signin.reload();
  await signin.waitForSelector("#whoami:not([hidden])", { timeout: 10000 });
  await signin.setInputFiles("#upload-file", doc);
  await signin.click("#upload-button");
  await signin.waitForFunction(() => document.querySelector("#upload-status").textContent.includes("ready"), null, { timeout: 120000 });
  await signin.waitForSelector("#documents li");
  // Signing out shows the form again and the API refuses the old cookie.
  await signin.click("#signout");
  await signin.waitForSelector("#signin-form:not([hidden])", { timeout: 10000 });
  const status = await signin.evaluate(async () => (await fetch("/v1/documents")).status);
  if (status !== 401) throw new Error(`after sign-out /v1/documents answered ${status}`);
  console.log(`signed in as: ${who}; upload by session cookie ok; signed out`);
} catch (e) {
  failed = 1;
  console.error(e);
} finally {
  await browser.close();
  // Graceful stop (SIGTERM), and only then remove the data directory.
  const running = (p) => p.exitCode === null && p.signalCode === null;
  if (running(server)) await stop(server);
  if (signinServer && running(signinServer.server)) await stop(signinServer.server);
  rmSync(dir, { recursive: true, force: true });
}
console.log(`ui: ${1 - failed} passed, ${failed} failed`);
process.exit(failed);
