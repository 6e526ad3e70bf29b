// docent web chat: no framework, no external assets.
"use strict";

const $ = (id) => document.getElementById(id);
let conversationId = null;
// The web-chat session's CSRF token (POST /auth/session, GET /auth/session).
// Kept in memory only; sent as X-CSRF-Token on every state-changing call.
let csrfToken = null;

// A /v1 call. Adds the CSRF token to state changes; a 401 (or a refused
// CSRF token) shows the sign-in form.
async function api(url, opts = {}) {
  const method = (opts.method || "GET").toUpperCase();
  const headers = { ...(opts.headers || {}) };
  if (csrfToken && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  const r = await fetch(url, { ...opts, headers });
  if (r.status === 401 || r.status === 403) {
    const e = await r.clone().json().catch(() => ({}));
    const code = e.error && e.error.code;
    if (r.status === 401 || code === "csrf_failed") showSignIn((e.error && e.error.message) || "Please sign in.");
  }
  return r;
}

function showSignIn(reason) {
  csrfToken = null;
  $("whoami").hidden = true;
  $("signin-reason").textContent = reason;
  $("signin-form").hidden = false;
}

function signedIn(s) {
  csrfToken = s.csrf_token;
  $("signin-form").hidden = true;
  $("whoami-name").textContent = `Signed in as ${s.user} (${s.role})`;
  $("whoami").hidden = false;
}

// Restores the CSRF token of an existing session (after a page reload).
async function loadSession() {
  const r = await fetch("/auth/session");
  if (r.status === 200) signedIn(await r.json());
}

async function signIn(idToken) {
  const status = $("signin-status");
  status.textContent = "Signing in…";
  const r = await fetch("/auth/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id_token: idToken }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    status.textContent = "Sign-in failed: " + ((body.error && body.error.message) || r.status);
    return;
  }
  status.textContent = "";
  $("id-token").value = "";
  signedIn(body);
  refreshDocuments();
  refreshConversations();
}

async function signOut() {
  await fetch("/auth/session", { method: "DELETE", headers: csrfToken ? { "X-CSRF-Token": csrfToken } : {} });
  csrfToken = null;
  $("whoami").hidden = true;
  conversationId = null;
  $("messages").replaceChildren();
  $("documents").replaceChildren();
  $("conversations").replaceChildren();
  showSignIn("Signed out.");
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function refreshDocuments() {
  const r = await api("/v1/documents");
  if (!r.ok) return;
  const { documents } = await r.json();
  const ul = $("documents");
  ul.replaceChildren(...documents.map((d) =>
    el("li", {}, d.title, el("span", { class: "status" }, d.status + (d.pages ? ` · ${d.pages} p.` : "")))));
}

async function refreshConversations() {
  const r = await api("/v1/conversations");
  if (!r.ok) return;
  const { conversations } = await r.json();
  $("conversations").replaceChildren(...conversations.map((c) => {
    const li = el("li", { "data-id": c.id, class: c.id === conversationId ? "active" : "" }, c.title);
    li.addEventListener("click", () => openConversation(c.id));
    return li;
  }));
}

async function openConversation(id) {
  const r = await api(`/v1/conversations/${id}`);
  if (!r.ok) return;
  const conv = await r.json();
  conversationId = id;
  const msgs = $("messages");
  msgs.replaceChildren();
  for (const m of conv.messages) {
    const box = el("div", { class: m.role === "user" ? "msg user" : "msg bot" }, m.content);
    if (m.role !== "user" && m.citations.length) {
      box.append(el("div", { class: "sources" }, "Sources: " +
        m.citations.map((c) => `[${c.n}] ${c.title}${c.page ? `, p. ${c.page}` : ""}`).join("; ")));
    }
    msgs.append(box);
  }
  refreshConversations();
}

function showSource(c) {
  $("source-panel").hidden = false;
  $("source-title").textContent = `[${c.n}] ${c.title}`;
  $("source-meta").textContent = c.page ? `Page ${c.page}` : "";
  const q = $("source-passage");
  const enc = new TextEncoder(), dec = new TextDecoder();
  const bytes = enc.encode(c.passage);
  const [s, e] = c.span;
  q.replaceChildren(
    dec.decode(bytes.slice(0, s)),
    el("mark", {}, dec.decode(bytes.slice(s, e))),
    dec.decode(bytes.slice(e)));
}

function renderAnswer(box, ev) {
  const byN = new Map(ev.citations.map((c) => [c.n, c]));
  const body = el("div", { class: "answer" });
  for (const s of ev.sentences) {
    const span = el("span", s.supported ? {} : { class: "unsupported", title: "No cited passage supports this sentence" }, s.text);
    body.append(span);
    for (const n of s.citations) {
      const c = byN.get(n);
      if (!c) continue;
      const b = el("button", { class: "cite", type: "button", "data-n": String(n) }, `[${n}]`);
      b.addEventListener("click", () => showSource(c));
      body.append(b);
    }
    body.append(" ");
  }
  if (ev.sentences.length === 0) body.append(box.dataset.raw || "");
  box.replaceChildren(body);
  const unsupported = ev.sentences.filter((s) => !s.supported).length;
  if (unsupported) box.append(el("div", { class: "note" }, `${unsupported} sentence(s) have no supporting source.`));
  const dropped = ev.sentences.reduce((k, s) => k + (s.dropped ? s.dropped.length : 0), 0);
  if (dropped) box.append(el("div", { class: "note" }, `${dropped} citation(s) given by the model did not hold and were removed.`));
  if (ev.withheld && ev.withheld.length) {
    box.append(el("div", { class: "note" }, `Instruction-like text in source(s) ${ev.withheld.map((n) => `[${n}]`).join(", ")} was not shown to the model.`));
  }
  if (ev.citations.length) {
    box.append(el("div", { class: "sources" }, "Sources: " +
      ev.citations.map((c) => `[${c.n}] ${c.title}${c.page ? `, p. ${c.page}` : ""}`).join("; ")));
  }
}

async function ask(question) {
  const msgs = $("messages");
  msgs.append(el("div", { class: "msg user" }, question));
  const box = el("div", { class: "msg bot" }, "");
  box.dataset.raw = "";
  msgs.append(box);
  const r = await api("/v1/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(conversationId ? { question, conversation_id: conversationId } : { question }),
  });
  if (!r.ok) {
    const e = await r.json().catch(() => ({}));
    box.textContent = "Error: " + ((e.error && e.error.message) || r.status);
    return;
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      const payload = JSON.parse(data || "{}");
      if (event === "query") {
        // A follow-up was made standalone before retrieval: show what was searched.
        msgs.insertBefore(el("div", { class: "note query" }, "Searched for: " + payload.query), box);
      } else if (event === "token") {
        box.dataset.raw += payload.text;
        box.textContent = box.dataset.raw;
      } else if (event === "citations") {
        renderAnswer(box, payload);
      } else if (event === "done") {
        conversationId = payload.conversation_id;
        refreshConversations();
      } else if (event === "error") {
        box.append(el("div", { class: "note" }, "Error: " + payload.error.message));
      }
      msgs.scrollTop = msgs.scrollHeight;
    }
  }
}

function upload(file) {
  const bar = $("upload-progress"), status = $("upload-status");
  bar.hidden = false; bar.value = 0;
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/documents");
  if (csrfToken) xhr.setRequestHeader("X-CSRF-Token", csrfToken);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = 0.3 * e.loaded / e.total; };
  xhr.onload = async () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* keep empty */ }
    if (xhr.status >= 400) {
      const code = body.error && body.error.code;
      if (xhr.status === 401 || code === "csrf_failed") showSignIn((body.error && body.error.message) || "Please sign in.");
      status.textContent = "Failed: " + ((body.error && body.error.message) || xhr.status);
      bar.hidden = true;
      return;
    }
    if (!body.job_id) { status.textContent = "Already ingested."; bar.value = 1; refreshDocuments(); return; }
    for (;;) {
      const j = await (await api(`/v1/jobs/${body.job_id}`)).json();
      bar.value = 0.3 + 0.7 * (j.progress || 0);
      status.textContent = `${file.name}: ${j.status}`;
      if (j.status === "ready" || j.status === "failed") {
        if (j.error) status.textContent += ` (${j.error})`;
        break;
      }
      await new Promise((res) => setTimeout(res, 500));
    }
    refreshDocuments();
  };
  xhr.send(form);
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("question").value.trim();
    if (!q) return;
    $("question").value = "";
    ask(q);
  });
  $("upload-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = $("upload-file").files[0];
    if (f) upload(f);
  });
  $("source-close").addEventListener("click", () => { $("source-panel").hidden = true; });
  $("new-chat").addEventListener("click", () => {
    conversationId = null;
    $("messages").replaceChildren();
    refreshConversations();
  });
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("id-token").value.trim();
    if (t) signIn(t);
  });
  $("signout").addEventListener("click", signOut);
  loadSession().finally(() => {
    refreshDocuments();
    refreshConversations();
  });
});
