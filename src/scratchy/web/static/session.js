// One session: header (rename, fork, export, delete), the transcript loaded in pages around the
// latest messages (earlier ones on scroll up), tool calls, compacted parts, and chat over SSE.

import { api, download, streamTurn } from "./api.js";
import { tokensChart } from "./charts.js";
import { render } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;

function el(tag, cls, value) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (value != null) node.textContent = value;
  return node;
}

function button(label, cls, onClick, title) {
  const b = el("button", cls, label);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

export function contentText(content) {
  if (content == null) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (typeof part === "string" ? part : part?.text ?? (part?.type ? `[${part.type}]` : "")))
      .join("");
  }
  return JSON.stringify(content);
}

function prettyArgs(raw) {
  if (raw == null || raw === "") return "{}";
  if (typeof raw !== "string") return JSON.stringify(raw, null, 2);
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

function shortArgs(raw) {
  const s = typeof raw === "string" ? raw : JSON.stringify(raw ?? {});
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `s_${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const estimate = (s) => Math.ceil((s || "").length / 4);

export class SessionView {
  constructor(app) {
    this.app = app;
    this.id = null;
    this.fresh = false;
    this.total = 0;
    this.lo = 0; // index of the first message shown
    this.hi = 0; // one past the last message shown
    this.loaded = []; // [index, message] of what is shown, for the tokens chart
    this.toolBlocks = new Map();
    this.loading = false;
    this.streaming = null; // AbortController of the running turn
    this.generation = 0;
    this.bind();
  }

  bind() {
    if (window.matchMedia("(max-width: 760px)").matches) $("input").placeholder = "Message";
    $("back").addEventListener("click", () => this.app.navigate("/"));
    $("rename").addEventListener("click", () => this.startRename());
    $("rename-cancel").addEventListener("click", () => this.endRename());
    $("rename-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveRename();
    });
    $("delete").addEventListener("click", () => this.remove());
    $("fork").addEventListener("click", () => this.fork(null));
    for (const format of ["json", "md", "toon"]) {
      $(`export-${format}`).addEventListener("click", (e) => {
        e.preventDefault();
        $("export-menu").open = false;
        download(this.id, format).catch((err) => this.app.toast(this.app.describe(err)));
      });
    }
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    $("input").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.send();
      }
    });
    $("input").addEventListener("input", () => this.autosize());
    $("stop").addEventListener("click", () => this.stop());
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadEarlier();
      },
      { root: $("transcript"), rootMargin: "400px 0px 0px 0px" },
    );
    observer.observe($("earlier"));
    $("transcript").addEventListener("scroll", () => {
      const t = $("transcript");
      if (t.scrollTop < 400) this.loadEarlier();
      if (t.scrollHeight - t.scrollTop - t.clientHeight < 400) this.loadLater();
    }, { passive: true });
  }

  autosize() {
    const box = $("input");
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight, 240)}px`;
  }

  escape() {
    if (!$("rename-form").classList.contains("hidden")) {
      this.endRename();
      return true;
    }
    if ($("export-menu").open) {
      $("export-menu").open = false;
      return true;
    }
    for (const d of $("messages").querySelectorAll("details[open]")) d.open = false;
    if (document.activeElement === $("input")) {
      $("input").blur();
      return true;
    }
    return false;
  }

  reset(id) {
    this.generation++;
    this.id = id;
    this.total = 0;
    this.lo = this.hi = 0;
    this.loaded = [];
    this.toolBlocks = new Map();
    this.loading = false;
    $("messages").replaceChildren();
    $("earlier").textContent = "";
    $("usage-chart").replaceChildren();
    this.endRename();
  }

  close() {
    this.id = null;
    this.generation++;
  }

  openNew() {
    if (this.streaming) return;
    this.reset(randomId());
    this.fresh = true;
    $("s-title").textContent = "New session";
    $("s-meta").textContent = "Type a message to start; the session is saved with your first turn.";
    this.setActions(false);
    $("input").focus();
  }

  setActions(enabled) {
    for (const id of ["rename", "fork", "delete"]) $(id).disabled = !enabled;
    $("export-menu").classList.toggle("disabled", !enabled);
  }

  async open(id, { at = null } = {}) {
    if (this.id === id && !this.fresh && at == null) return;
    if (this.streaming && this.id === id) return;
    this.reset(id);
    this.fresh = false;
    this.setActions(true);
    const generation = this.generation;
    $("s-title").textContent = id;
    $("s-meta").textContent = "Loading…";
    try {
      // The header and the latest page load together (one round trip).
      const first = at == null ? api.tail(id, PAGE) : null;
      first?.catch(() => {});
      const header = await api.session(id);
      if (generation !== this.generation) return;
      this.showHeader(header);
      this.total = header.message_count;
      const target = at != null && at < this.total ? at : null;
      const start = target != null ? Math.max(0, target - 10) : Math.max(0, this.total - PAGE);
      this.lo = this.hi = start;
      const latest = first?.then((page) => {
        if (generation === this.generation) {
          this.total = page.total;
          this.lo = this.hi = page.offset;
        }
        return page.items;
      });
      await this.loadLater(true, latest);
      if (generation !== this.generation) return;
      if (this.hi < this.total) await this.loadLater();
      const t = $("transcript");
      if (target != null) {
        // a tool result is shown inside the call's block: the nearest message at or before it
        let hit = null;
        for (const node of $("messages").children) {
          if (Number(node.dataset.index) <= target) hit = node;
        }
        if (hit) {
          if (Number(hit.dataset.index) !== target) {
            for (const d of hit.querySelectorAll("details.tool")) d.open = true;
          }
          hit.classList.add("target");
          hit.scrollIntoView({ block: "center" });
        }
      } else {
        t.scrollTop = t.scrollHeight;
      }
      this.app.markActive();
    } catch (error) {
      if (generation !== this.generation) return;
      $("s-meta").textContent = this.app.describe(error);
      this.setActions(false);
    }
  }

  showHeader(h) {
    this.header = h;
    $("s-title").textContent = h.title || h.id;
    const usage = h.usage || {};
    const meta = [
      h.id,
      `${h.message_count} messages`,
      `${(usage.input_tokens || 0).toLocaleString()} in / ${(usage.output_tokens || 0).toLocaleString()} out tokens`,
      `updated ${new Date(h.updated_at).toLocaleString()}`,
    ];
    if (h.cost && h.cost.calls) meta.splice(3, 0, `cost ${h.cost.text}`);
    $("s-meta").textContent = meta.join(" · ");
    $("s-meta").title = `created ${h.created_at}`;
  }

  async fetchPage(offset, limit) {
    const page = await api.messages(this.id, offset, limit);
    this.total = page.total;
    return page.items;
  }

  async loadLater(first = false, pending = null) {
    if (this.loading || (!first && this.hi >= this.total)) return;
    this.loading = true;
    const generation = this.generation;
    try {
      const items = await (pending || this.fetchPage(this.hi, PAGE));
      if (generation !== this.generation) return;
      const frag = document.createDocumentFragment();
      items.forEach((msg, k) => this.place(frag, msg, this.hi + k));
      $("messages").append(frag);
      items.forEach((msg, k) => this.loaded.push([this.hi + k, msg]));
      this.hi += items.length;
      this.updateEarlier();
      this.updateChart();
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  async loadEarlier() {
    if (this.loading || this.lo <= 0 || !this.id || this.fresh) return;
    this.loading = true;
    const generation = this.generation;
    try {
      const start = Math.max(0, this.lo - PAGE);
      const items = await this.fetchPage(start, this.lo - start);
      if (generation !== this.generation) return;
      const t = $("transcript");
      const before = t.scrollHeight;
      const frag = document.createDocumentFragment();
      items.forEach((msg, k) => this.place(frag, msg, start + k));
      $("messages").prepend(frag);
      this.loaded.unshift(...items.map((msg, k) => [start + k, msg]));
      this.lo = start;
      t.scrollTop += t.scrollHeight - before; // keep the reader's place
      this.updateEarlier();
      this.updateChart();
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  updateEarlier() {
    $("earlier").textContent = this.lo > 0 ? `${this.lo} earlier messages — scroll up to load them` : "";
  }

  // Tokens per turn: measured where the turn's final reply carries its usage (turns run by
  // the server), else estimated from the text (about 4 characters a token) and marked so.
  updateChart() {
    const turns = [];
    let turn = null;
    for (const [, msg] of this.loaded) {
      if (msg.role === "user" || !turn) {
        turn = { index: turns.length + 1, input: 0, output: 0, measured: null };
        turns.push(turn);
      }
      const size = estimate(contentText(msg.content));
      if (msg.role === "assistant") {
        turn.output += size;
        for (const call of msg.tool_calls || []) turn.output += estimate(call.function?.arguments);
        const u = msg.usage;
        if (u && Number.isFinite(u.input_tokens) && Number.isFinite(u.output_tokens)) {
          turn.measured = { input: u.input_tokens, output: u.output_tokens };
        }
      } else if (msg.role !== "system") {
        turn.input += size;
      }
    }
    const shown = turns
      .map((t) => (t.measured ? { index: t.index, ...t.measured, estimated: false } : { ...t, estimated: true }))
      .filter((t) => t.input + t.output > 0);
    tokensChart($("usage-chart"), shown);
  }

  // --- rendering ------------------------------------------------------------------------------

  place(parent, msg, index) {
    const node = this.renderMessage(msg, index);
    if (node) parent.append(node);
  }

  renderMessage(msg, index, nested = false) {
    const role = msg?.role || "unknown";
    if (role === "tool") {
      const block = this.toolBlocks.get(msg.tool_call_id);
      if (block && !nested) {
        this.fillResult(block, contentText(msg.content), msg.is_error);
        return null;
      }
      const wrap = this.frame("tool", index, nested);
      const tb = this.toolBlock(msg.name || "tool result", null, msg.tool_call_id);
      this.fillResult(tb, contentText(msg.content), msg.is_error);
      wrap.querySelector(".body").append(tb);
      return wrap;
    }
    const wrap = this.frame(role, index, nested);
    const body = wrap.querySelector(".body");
    const content = contentText(msg.content);
    if (role === "system") {
      const d = el("details", "system-prompt");
      d.append(el("summary", null, "System prompt"));
      const inner = el("div", "md");
      inner.append(render(content));
      d.append(inner);
      body.append(d);
      return wrap;
    }
    if (Array.isArray(msg.compacted)) {
      wrap.classList.add("summary");
      const inner = el("div", "md");
      inner.append(render(content));
      const d = el("details", "compacted");
      d.append(el("summary", null, `Compacted: ${msg.compacted.length} original messages`));
      d.addEventListener("toggle", () => {
        if (d.open && d.childElementCount === 1) {
          const box = el("div", "originals");
          msg.compacted.forEach((m, k) => {
            const n = this.renderMessage(m, `${index}.${k}`, true);
            if (n) box.append(n);
          });
          d.append(box);
        }
      }, { once: false });
      body.append(inner, d);
      return wrap;
    }
    if (content) {
      const md = el("div", "md");
      md.append(render(content));
      body.append(md);
    }
    for (const call of msg.tool_calls || []) {
      const fn = call.function || {};
      const block = this.toolBlock(fn.name || "tool", fn.arguments, call.id);
      if (!nested && call.id) this.toolBlocks.set(call.id, block);
      body.append(block);
    }
    return wrap;
  }

  frame(role, index, nested) {
    const wrap = el("article", `msg ${role}`);
    wrap.dataset.index = index;
    const head = el("header", "msg-head");
    head.append(el("span", "role", role === "assistant" ? "assistant" : role));
    if (!nested && typeof index === "number") {
      head.append(el("span", "index", `#${index + 1}`));
      head.append(button("Fork here", "fork-here", () => this.fork(index + 1), "A new session with the messages up to here"));
    }
    wrap.append(head, el("div", "body"));
    return wrap;
  }

  toolBlock(name, args, callId) {
    const d = el("details", "tool");
    const summary = el("summary");
    summary.append(el("span", "tool-icon", "⚙"), el("span", "tool-name", name));
    if (args != null) summary.append(el("span", "tool-args-short", shortArgs(args)));
    summary.append(el("span", "tool-state", args != null ? "" : "result"));
    d.append(summary);
    if (args != null) {
      d.append(el("div", "label", "Arguments"), el("pre", "tool-args", prettyArgs(args)));
    }
    const result = el("div", "tool-result hidden");
    result.append(el("div", "label", "Result"), el("pre", "tool-output"));
    d.append(result);
    if (callId) d.dataset.callId = callId;
    return d;
  }

  fillResult(block, output, isError) {
    const result = block.querySelector(".tool-result");
    result.classList.remove("hidden");
    result.querySelector("pre").textContent = output;
    block.classList.toggle("error", Boolean(isError));
    block.querySelector(".tool-state").textContent = isError ? "error" : "done";
  }

  // --- header actions -------------------------------------------------------------------------

  startRename() {
    $("rename-form").classList.remove("hidden");
    $("rename-input").value = this.header?.title || "";
    $("rename-input").focus();
    $("rename-input").select();
  }

  endRename() {
    $("rename-form").classList.add("hidden");
  }

  async saveRename() {
    const title = $("rename-input").value.trim();
    try {
      const header = await api.rename(this.id, title);
      this.showHeader(header);
      this.app.rememberHeader(header);
      this.endRename();
      this.app.toast("Renamed.");
    } catch (error) {
      this.app.toast(this.app.describe(error));
    }
  }

  async remove() {
    const id = this.id;
    try {
      await api.remove(id);
      this.app.reloadList();
      this.app.navigate("/", { replace: true });
      this.app.toast(`Moved ${id} to the trash.`, {
        label: "Undo",
        run: async () => {
          await api.restore(id);
          this.app.reloadList();
          this.app.navigate(`/s/${encodeURIComponent(id)}`);
        },
      });
    } catch (error) {
      this.app.toast(this.app.describe(error));
    }
  }

  async fork(at) {
    try {
      const header = await api.fork(this.id, at);
      this.app.reloadList();
      this.app.navigate(`/s/${encodeURIComponent(header.id)}`);
      this.app.toast(`Forked to ${header.id}${at == null ? "" : ` (first ${header.message_count} messages)`}.`);
    } catch (error) {
      this.app.toast(this.app.describe(error));
    }
  }

  // --- chat -----------------------------------------------------------------------------------

  async send() {
    const input = $("input").value;
    if (!input.trim() || this.streaming || !this.id) return;
    $("input").value = "";
    this.autosize();
    $("messages").querySelectorAll(".notice").forEach((n) => n.remove());
    const id = this.id;
    const generation = this.generation;
    const wasFresh = this.fresh;
    const base = this.hi;
    const userNode = this.renderMessage({ role: "user", content: input }, base);
    userNode.classList.add("pending");
    const live = this.frame("assistant", base + 1, true);
    live.classList.add("live");
    const body = live.querySelector(".body");
    const status = el("div", "live-status", "Thinking…");
    live.append(status);
    $("messages").append(userNode, live);
    const scroll = () => {
      const t = $("transcript");
      t.scrollTop = t.scrollHeight;
    };
    scroll();
    const controller = new AbortController();
    this.streaming = controller;
    $("send").classList.add("hidden");
    $("stop").classList.remove("hidden");
    let segment = null;
    let text = "";
    let frame = 0;
    const blocks = new Map();
    const paint = () => {
      frame = 0;
      if (segment) segment.replaceChildren(render(text));
      scroll();
    };
    let final = null;
    let failure = null;
    try {
      await streamTurn(id, input, (kind, data) => {
        if (generation !== this.generation) return;
        if (kind === "delta") {
          if (!segment) {
            segment = el("div", "md");
            text = "";
            body.append(segment);
          }
          text += data.text || "";
          status.textContent = "Writing…";
          if (!frame) frame = requestAnimationFrame(paint);
        } else if (kind === "tool_call") {
          if (frame) paint();
          segment = null;
          const block = this.toolBlock(data.name, data.arguments, data.id);
          block.querySelector(".tool-state").textContent = "called";
          blocks.set(data.id, block);
          body.append(block);
          status.textContent = `Running ${data.name}…`;
          scroll();
        } else if (kind === "tool_start") {
          const block = blocks.get(data.id);
          if (block) {
            block.classList.add("running");
            block.querySelector(".tool-state").textContent = "running…";
          }
        } else if (kind === "tool_result") {
          const block = blocks.get(data.id);
          if (block) {
            block.classList.remove("running");
            this.fillResult(block, contentText(data.content), data.is_error);
          }
          status.textContent = "Thinking…";
        } else if (kind === "final") {
          final = data;
        } else if (kind === "error") {
          failure = data.error || { message: "the turn failed" };
          if (failure.code === "turn_cancelled") failure = { code: "cancelled" };
        }
      }, controller.signal);
    } catch (error) {
      failure = error.name === "AbortError" ? { code: "stopped" } : { message: this.app.describe(error) };
    } finally {
      if (frame) cancelAnimationFrame(frame);
      if (segment) segment.replaceChildren(render(text));
      this.streaming = null;
      $("stop").classList.add("hidden");
      $("stop").disabled = false;
      $("stop").textContent = "Stop";
      $("send").classList.remove("hidden");
    }
    if (generation !== this.generation) return;
    userNode.classList.remove("pending");
    if (final) {
      live.remove();
      userNode.remove();
      this.showTurn(final.messages || [], base);
      status.remove();
    } else if (failure?.code === "cancelled") {
      await this.afterCancel(id, generation, base, [userNode, live]);
    } else if (failure?.code === "stopped") {
      live.classList.add("stopped");
      status.textContent =
        "Stopped. The server still finishes this turn and saves it; it shows here once saved.";
      this.afterStop(id, generation);
    } else {
      live.classList.add("failed");
      status.textContent = failure?.message || "The turn failed.";
    }
    if (wasFresh && (final || failure?.code === "stopped" || failure?.code === "cancelled")) {
      this.fresh = false;
      this.setActions(true);
      history.replaceState({}, "", `/s/${encodeURIComponent(id)}`);
    }
    this.refreshHeader(id, generation, wasFresh);
    $("input").focus();
  }

  // Stop: the server cancels the turn (in whichever worker runs it) and the stream ends with
  // a turn_cancelled error; see afterCancel. If the cancel cannot be sent, stop reading: the
  // server then finishes the turn and saves it (a client going away never cancels a turn).
  async stop() {
    const controller = this.streaming;
    if (!controller || $("stop").disabled) return;
    $("stop").disabled = true;
    $("stop").textContent = "Stopping…";
    try {
      await api.cancelTurn(this.id);
    } catch (error) {
      if (error.code === "no_turn_running") return; // it has just ended: its reply is coming
      if (this.streaming === controller) controller.abort();
    }
  }

  // After a cancelled turn: show what the server kept (the input, the tool calls and their
  // results), and say that the unfinished reply was dropped.
  async afterCancel(id, generation, base, pending) {
    let items = [];
    try {
      const header = await api.session(id);
      if (header.message_count > base) items = await this.fetchPage(base, header.message_count - base);
    } catch {
      /* shown as it was streamed */
    }
    if (generation !== this.generation) return;
    if (items.length) {
      pending.forEach((n) => n.remove());
      this.showTurn(items, base);
    } else {
      pending[1].classList.add("stopped");
    }
    const note = el("p", "notice", "Stopped. Your message is kept; the unfinished reply was dropped.");
    $("messages").append(note);
  }

  showTurn(messages, base) {
    const frag = document.createDocumentFragment();
    messages.forEach((msg, k) => this.place(frag, msg, base + k));
    $("messages").append(frag);
    messages.forEach((msg, k) => this.loaded.push([base + k, msg]));
    this.hi = base + messages.length;
    this.total = Math.max(this.total, this.hi);
    this.updateChart();
    const t = $("transcript");
    t.scrollTop = t.scrollHeight;
  }

  async refreshHeader(id, generation, reloadList) {
    try {
      const header = await api.session(id);
      if (generation !== this.generation) return;
      this.showHeader(header);
      if (reloadList) this.app.reloadList();
      else this.app.rememberHeader(header);
    } catch {
      /* a stopped first turn may not be saved yet */
    }
  }

  // After Stop, the turn still runs to its end on the server: show it once it is saved.
  // The user's input is stored when the turn starts, so a longer session is not yet a finished
  // turn: wait for its final answer (an assistant message without tool calls), or show what is
  // stored when the wait runs out (a turn that failed on the server).
  async afterStop(id, generation) {
    const before = this.hi;
    let seen = null;
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 500));
      if (generation !== this.generation || this.streaming) return;
      try {
        const header = await api.session(id);
        if (header.message_count > before) {
          const items = await this.fetchPage(before, header.message_count - before);
          if (generation !== this.generation || this.streaming) return;
          seen = { header, items };
          const last = items[items.length - 1];
          if (last && last.role === "assistant" && !(last.tool_calls && last.tool_calls.length)) break;
        }
      } catch {
        /* not saved yet */
      }
    }
    if (!seen || generation !== this.generation || this.streaming) return;
    $("messages").querySelectorAll(".live.stopped, .msg.user.pending").forEach((n) => n.remove());
    const stoppedUser = [...$("messages").children].filter((n) => Number(n.dataset.index) >= before);
    stoppedUser.forEach((n) => n.remove());
    this.showTurn(seen.items, before);
    this.showHeader(seen.header);
    this.app.rememberHeader(seen.header);
  }
}
