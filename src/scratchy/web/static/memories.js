// The memory page (/memories): the memories kept across sessions, searched as you type; add,
// edit (the old text stays in the history) and forget. Self-contained: app.js only calls
// showMemories() when the route is /memories.

import { json } from "./api.js";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const SEARCH_DELAY = 120;

const memoriesApi = {
  list: (q) => json(q ? `/v1/memories?q=${enc(q)}&limit=50` : "/v1/memories?limit=500"),
  add: (text, tags) => json("/v1/memories", { method: "POST", body: { text, tags } }),
  edit: (id, text) => json(`/v1/memories/${enc(id)}`, { method: "PATCH", body: { text } }),
  forget: (id) => json(`/v1/memories/${enc(id)}`, { method: "DELETE" }),
};

function node(tag, cls, value) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (value != null) el.textContent = value;
  return el;
}

function day(iso) {
  return iso ? new Date(iso).toISOString().slice(0, 16).replace("T", " ") : "";
}

let wired = false;
let timer = null;
let seq = 0;

function status(message) {
  $("memory-status").textContent = message;
}

function row(m) {
  const li = node("li", "row memory");
  li.dataset.id = m.id;
  const body = node("div", "memory-body");
  body.append(node("p", "memory-text", m.text));
  const meta = node("span", "row-meta");
  meta.append(node("span", "row-id", m.id));
  for (const tag of m.tags) meta.append(node("span", "memory-tag", tag));
  if (m.source && m.source.session) {
    const link = node("a", "memory-source", `from ${m.source.session}`);
    link.href = `/s/${enc(m.source.session)}?at=${m.source.message ?? 0}`;
    link.dataset.link = "";
    meta.append(link);
  }
  if (m.history.length) {
    const earlier = m.history.map((h) => h.text).join(" → ");
    meta.append(node("span", "memory-history", `was: ${earlier}`));
  }
  meta.append(node("time", "row-when", day(m.updated_at)));
  body.append(meta);
  const edit = node("button", "memory-edit", "Edit");
  edit.type = "button";
  edit.addEventListener("click", () => startEdit(li, m));
  const forget = node("button", "danger memory-forget", "Forget");
  forget.type = "button";
  forget.addEventListener("click", async () => {
    forget.disabled = true;
    try {
      await memoriesApi.forget(m.id);
      li.remove();
      status(`Forgot ${m.id}.`);
    } catch (error) {
      forget.disabled = false;
      status(error.message);
    }
  });
  li.append(body, edit, forget);
  return li;
}

function startEdit(li, m) {
  const form = node("form", "memory-edit-form");
  const input = node("input");
  input.value = m.text;
  input.maxLength = 1000;
  input.setAttribute("aria-label", "New text");
  const save = node("button", "primary", "Save");
  save.type = "submit";
  const cancel = node("button", null, "Cancel");
  cancel.type = "button";
  form.append(input, save, cancel);
  cancel.addEventListener("click", () => li.replaceWith(row(m)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const updated = await memoriesApi.edit(m.id, input.value);
      li.replaceWith(row(updated));
      status(`Updated ${m.id}; the old text is kept in its history.`);
    } catch (error) {
      status(error.message);
    }
  });
  li.replaceChildren(form);
  input.focus();
}

async function load() {
  const mine = ++seq;
  const q = $("memory-search").value.trim();
  try {
    const { items } = await memoriesApi.list(q);
    if (mine !== seq) return;
    $("memory-list").replaceChildren(...items.map(row));
    if (!items.length) status(q ? "No memories match." : "No memories yet.");
    else status(q ? `${items.length} most relevant` : `${items.length} memories`);
  } catch (error) {
    if (mine === seq) status(error.message);
  }
}

function wire() {
  $("memory-search").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(load, SEARCH_DELAY);
  });
  $("memory-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("memory-new").value;
    const tags = $("memory-tags").value.split(/[\s,]+/).filter(Boolean);
    try {
      const m = await memoriesApi.add(text, tags);
      $("memory-new").value = "";
      $("memory-tags").value = "";
      await load();
      status(`Remembered ${m.id}.`);
    } catch (error) {
      status(error.message);
    }
  });
}

export function showMemories() {
  if (!wired) {
    wire();
    wired = true;
  }
  return load();
}
