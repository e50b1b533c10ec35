// The Scratchy browser app: routing, the sessions list (paging, search), the trash, API keys,
// keyboard shortcuts. One session's view and chat live in session.js.

import { api, ApiError, getKey, onKeyWanted, setKey } from "./api.js";
import { activityChart } from "./charts.js";
import { showMemories } from "./memories.js";
import { SessionView } from "./session.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const SEARCH_DELAY = 60;

// --- small helpers ----------------------------------------------------------------------------

export function toast(message, action) {
  const box = $("toast");
  box.replaceChildren(document.createTextNode(message));
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action.label;
    button.addEventListener("click", () => {
      box.classList.add("hidden");
      action.run();
    });
    box.append(button);
  }
  box.classList.remove("hidden");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.add("hidden"), action ? 8000 : 4000);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const seconds = (Date.now() - date) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  if (seconds < 86400 * 7) return `${Math.round(seconds / 86400)} d ago`;
  return date.toISOString().slice(0, 10);
}

function text(tag, cls, value) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  node.textContent = value ?? "";
  return node;
}

// "…matched [word] here…" -> Text and <mark> nodes.
function snippetNodes(snippet) {
  const out = [];
  const re = /\[([^[\]\n]{1,200})\]/g;
  let last = 0;
  let m;
  while ((m = re.exec(snippet))) {
    if (m.index > last) out.push(document.createTextNode(snippet.slice(last, m.index)));
    out.push(text("mark", null, m[1]));
    last = m.index + m[0].length;
  }
  out.push(document.createTextNode(snippet.slice(last)));
  return out;
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState({}, "", path);
  else if (location.pathname + location.search !== path) history.pushState({}, "", path);
  route();
}

// --- the sessions list ------------------------------------------------------------------------

const list = {
  items: [],
  cursor: null,
  done: false,
  loading: false,
  headers: new Map(), // id -> header, for titles of search hits
  generation: 0,
};

function sessionRow(info) {
  const li = document.createElement("li");
  li.className = "row";
  li.dataset.id = info.id;
  const a = document.createElement("a");
  a.href = `/s/${encodeURIComponent(info.id)}`;
  a.dataset.link = "";
  a.append(text("span", "row-title", info.title || info.id));
  const meta = text("span", "row-meta", "");
  meta.append(
    text("span", "row-id", info.id),
    text("span", "row-count", `${info.message_count} msg`),
    text("time", "row-when", when(info.updated_at)),
  );
  meta.lastChild.dateTime = info.updated_at || "";
  a.append(meta);
  li.append(a);
  return li;
}

function markActive() {
  const current = view.session.id;
  for (const row of $("session-list").children) {
    row.classList.toggle("active", row.dataset.id === current);
  }
}

async function loadMore() {
  if (list.loading || list.done || searchState.q) return;
  list.loading = true;
  const generation = list.generation;
  $("list-status").textContent = list.items.length ? "" : "Loading…";
  try {
    const page = await api.listSessions(PAGE, list.cursor);
    if (generation !== list.generation) return;
    const frag = document.createDocumentFragment();
    const shown = new Set(list.items.map((i) => i.id));
    for (const info of page.items) {
      if (shown.has(info.id)) continue; // moved to the top by a change made here
      list.items.push(info);
      list.headers.set(info.id, info);
      frag.append(sessionRow(info));
    }
    $("session-list").append(frag);
    list.cursor = page.next_cursor;
    list.done = !page.next_cursor;
    $("list-status").textContent = list.items.length ? "" : "No sessions yet. Press n to start one.";
    activityChart($("activity"), list.items.map((i) => i.updated_at), list.items.length, list.done);
    markActive();
  } catch (error) {
    if (generation === list.generation) $("list-status").textContent = describe(error);
  } finally {
    list.loading = false;
  }
  if (generation === list.generation) fillViewport();
}

// Keep loading while the sentinel is on screen (a tall window shows more than one page).
function fillViewport() {
  const sentinel = $("list-more");
  const box = $("sidebar").getBoundingClientRect();
  if (!list.done && !searchState.q && sentinel.getBoundingClientRect().top < box.bottom + 600) {
    loadMore();
  }
}

export function reloadList() {
  list.generation++;
  list.items = [];
  list.cursor = null;
  list.done = false;
  list.loading = false;
  if (!searchState.q) $("session-list").replaceChildren();
  loadMore();
}

export function rememberHeader(info) {
  // A changed session has the newest activity: it moves to the top of the list.
  list.headers.set(info.id, info);
  list.items = [info, ...list.items.filter((i) => i.id !== info.id)];
  if (!searchState.q) {
    const row = [...$("session-list").children].find((r) => r.dataset.id === info.id);
    row?.remove();
    $("session-list").prepend(sessionRow(info));
  }
  markActive();
}

// --- search as you type -----------------------------------------------------------------------

const searchState = { q: "", timer: 0, controller: null, seq: 0 };

function onSearchInput() {
  clearTimeout(searchState.timer);
  const q = $("search").value.trim();
  searchState.timer = setTimeout(() => runSearch(q), q ? SEARCH_DELAY : 0);
}

async function runSearch(q) {
  searchState.controller?.abort();
  const seq = ++searchState.seq;
  if (!q) {
    searchState.q = "";
    document.body.dataset.searching = "";
    $("session-list").replaceChildren(...list.items.map(sessionRow));
    $("list-status").textContent = "";
    markActive();
    fillViewport();
    return;
  }
  searchState.q = q;
  document.body.dataset.searching = "1";
  const controller = new AbortController();
  searchState.controller = controller;
  try {
    const result = await api.search(q, 60, controller.signal);
    if (seq !== searchState.seq) return;
    const bySession = new Map();
    for (const hit of result.hits) {
      if (!bySession.has(hit.session_id)) bySession.set(hit.session_id, []);
      bySession.get(hit.session_id).push(hit);
    }
    const rows = [];
    for (const [id, hits] of bySession) {
      const known = list.headers.get(id);
      const li = document.createElement("li");
      li.className = "row hit";
      li.dataset.id = id;
      const a = document.createElement("a");
      a.href = `/s/${encodeURIComponent(id)}?at=${hits[0].index}`;
      a.dataset.link = "";
      a.append(text("span", "row-title", known?.title || id));
      const meta = text("span", "row-meta", "");
      meta.append(text("span", "row-id", id), text("span", "row-count", `${hits.length} match${hits.length > 1 ? "es" : ""}`));
      a.append(meta);
      for (const hit of hits.slice(0, 2)) {
        const snip = text("span", "snippet", "");
        snip.append(text("span", "snippet-role", hit.role), ...snippetNodes(hit.snippet));
        a.append(snip);
      }
      li.append(a);
      rows.push(li);
    }
    $("session-list").replaceChildren(...rows);
    $("list-status").textContent = rows.length
      ? `${result.hits.length} matching message${result.hits.length === 1 ? "" : "s"} in ${rows.length} session${rows.length === 1 ? "" : "s"}`
      : `Nothing matches “${q}”.`;
    markActive();
  } catch (error) {
    if (error.name !== "AbortError" && seq === searchState.seq) {
      $("list-status").textContent = describe(error);
    }
  }
}

// --- the trash --------------------------------------------------------------------------------

async function showTrash() {
  const ol = $("trash-list");
  ol.replaceChildren(text("li", "status", "Loading…"));
  try {
    const { items } = await api.trash();
    if (!items.length) {
      ol.replaceChildren(text("li", "status", "The trash is empty."));
      return;
    }
    ol.replaceChildren(
      ...items.map((item) => {
        const li = document.createElement("li");
        li.className = "row trashed";
        li.dataset.id = item.id;
        const info = document.createElement("div");
        info.append(text("span", "row-title", item.title || item.id));
        const meta = text("span", "row-meta", "");
        meta.append(
          text("span", "row-id", item.id),
          text("span", "row-count", item.message_count == null ? "" : `${item.message_count} msg`),
          text("time", "row-when", `deleted ${when(item.deleted_at)}`),
        );
        info.append(meta);
        const button = text("button", "restore", "Restore");
        button.type = "button";
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            await api.restore(item.id);
            toast(`Restored ${item.id}`);
            reloadList();
            navigate(`/s/${encodeURIComponent(item.id)}`);
          } catch (error) {
            button.disabled = false;
            toast(describe(error));
          }
        });
        li.append(info, button);
        return li;
      }),
    );
  } catch (error) {
    ol.replaceChildren(text("li", "status", describe(error)));
  }
}

// --- keys -------------------------------------------------------------------------------------

let keyPrompt = null;

function askForKey(reason) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("key-dialog");
  $("key-error").textContent = reason || "";
  $("key-input").value = "";
  $("key-button").classList.remove("hidden");
  keyPrompt = new Promise((resolve) => {
    const form = $("key-form");
    const submit = (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      form.removeEventListener("submit", submit);
      dialog.close();
      keyPrompt = null;
      resolve(key);
    };
    form.addEventListener("submit", submit);
  });
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
  return keyPrompt;
}

export function describe(error) {
  if (error instanceof ApiError) return error.message;
  if (error?.name === "AbortError") return "Stopped.";
  return `The server did not answer (${error?.message || error}).`;
}

// --- routing ----------------------------------------------------------------------------------

const view = { session: null };

function show(which) {
  for (const id of ["welcome", "session", "trash", "memories"]) {
    $(id).classList.toggle("hidden", id !== which);
  }
  document.body.dataset.view = which === "welcome" ? "list" : which;
  $("tab-trash").classList.toggle("current", which === "trash");
  $("tab-memories").classList.toggle("current", which === "memories");
  $("tab-sessions").classList.toggle("current", which !== "trash" && which !== "memories");
}

function route() {
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  if (path.startsWith("/s/")) {
    const id = decodeURIComponent(path.slice(3));
    show("session");
    const at = params.get("at");
    return view.session.open(id, { at: at == null ? null : Number(at) });
  } else if (path === "/new") {
    show("session");
    view.session.openNew();
  } else if (path === "/memories") {
    view.session.close();
    show("memories");
    showMemories();
  } else if (path === "/trash") {
    view.session.close();
    show("trash");
    showTrash();
  } else {
    view.session.close();
    show("welcome");
  }
  markActive();
}

// --- start ------------------------------------------------------------------------------------

function isTyping(target) {
  return target.closest("input, textarea, select, [contenteditable], dialog");
}

function start() {
  onKeyWanted(askForKey);
  if (getKey()) $("key-button").classList.remove("hidden");
  view.session = new SessionView({
    navigate,
    toast,
    describe,
    reloadList,
    rememberHeader,
    markActive,
  });
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[data-link]");
    if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", route);
  $("search").addEventListener("input", onSearchInput);
  $("search").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      $("search").value = "";
      runSearch("");
      $("search").blur();
    } else if (event.key === "Enter") {
      const first = $("session-list").querySelector("a");
      if (first) navigate(first.getAttribute("href"));
    }
  });
  $("key-button").addEventListener("click", async () => {
    setKey(await askForKey(""));
    reloadList();
    route();
  });
  $("key-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("sidebar").addEventListener("scroll", fillViewport, { passive: true });
  new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && loadMore(), {
    root: $("sidebar"),
    rootMargin: "600px",
  }).observe($("list-more"));
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      if (view.session.escape()) return;
      if (document.body.dataset.view !== "list") navigate("/");
      return;
    }
    if (isTyping(event.target)) return;
    if (event.key === "/") {
      event.preventDefault();
      $("search").focus();
      $("search").select();
    } else if (event.key === "n") {
      event.preventDefault();
      navigate("/new");
    }
  });
  // A link to a session shows that session first; the list loads once its messages are in.
  const opening = route();
  if (opening) opening.finally(loadMore);
  else loadMore();
}

start();
