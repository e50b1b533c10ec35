// A small Markdown renderer that builds DOM nodes: text only ever becomes Text nodes, never HTML,
// so model output and tool results cannot inject markup, scripts or event handlers. Links keep
// http(s) and mailto targets only; images are shown as links (nothing loads by itself).

import { highlight } from "./highlight.js";

const SAFE_URL = /^(https?:|mailto:)/i;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

// --- inline -----------------------------------------------------------------------------------

const INLINE = [
  ["code", /`([^`\n]+)`/],
  ["image", /!\[([^\]\n]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/],
  ["link", /\[([^\]\n]+)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/],
  ["auto", /<?(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])>?/],
  ["strong", /\*\*(?=\S)([^\n]*?\S)\*\*|__(?=\S)([^\n]*?\S)__/],
  ["em", /\*(?=[^\s*])([^*\n]*?[^\s*])\*|(?<![\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w])/],
  ["del", /~~(?=\S)([^\n]*?\S)~~/],
  ["br", / {2,}\n|\\\n/],
];

function safeLink(href, label, depth) {
  if (!SAFE_URL.test(href)) return document.createTextNode(label === href ? href : `${label} (${href})`);
  const a = el("a", null);
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  // the label of a bare URL is that URL: plain text (it would match itself again)
  if (depth == null) a.textContent = label;
  else a.append(...inline(label, depth + 1));
  return a;
}

export function inline(text, depth = 0) {
  const out = [];
  while (text) {
    let best = null;
    for (const [kind, re] of INLINE) {
      const m = re.exec(text);
      if (m && (best === null || m.index < best.m.index)) best = { kind, m };
    }
    if (!best || depth > 8) {
      out.push(document.createTextNode(text));
      break;
    }
    const { kind, m } = best;
    if (m.index > 0) out.push(document.createTextNode(text.slice(0, m.index)));
    const inner = m[1] ?? m[2] ?? "";
    if (kind === "code") out.push(el("code", null, inner));
    else if (kind === "image") {
      out.push(safeLink(m[2], `image: ${m[1] || m[2]}`));
    } else if (kind === "link") out.push(safeLink(m[2], m[1], depth));
    else if (kind === "auto") out.push(safeLink(m[1], m[1]));
    else if (kind === "br") out.push(el("br"));
    else {
      const node = el(kind);
      node.append(...inline(inner, depth + 1));
      out.push(node);
    }
    text = text.slice(m.index + m[0].length);
  }
  return out;
}

// --- blocks -----------------------------------------------------------------------------------

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const HR = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

function cells(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

export function codeBlock(code, lang) {
  const wrap = el("div", "code");
  const bar = el("div", "code-bar");
  bar.append(el("span", "lang", lang || "text"));
  const copy = el("button", "copy", "Copy");
  copy.type = "button";
  copy.addEventListener("click", () => {
    navigator.clipboard?.writeText(code).then(
      () => (copy.textContent = "Copied"),
      () => (copy.textContent = "Copy failed"),
    );
  });
  bar.append(copy);
  const pre = el("pre");
  const c = el("code");
  c.append(...highlight(code, lang));
  pre.append(c);
  wrap.append(bar, pre);
  return wrap;
}

function blocks(lines, depth) {
  const out = [];
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) {
      const p = el("p");
      p.append(...inline(para.join("\n")));
      out.push(p);
      para = [];
    }
  };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i++;
      out.push(codeBlock(body.join("\n"), m[2]));
      continue;
    }
    if (!line.trim()) {
      flush();
      i++;
      continue;
    }
    if ((m = HEADING.exec(line))) {
      flush();
      const h = el(`h${Math.min(6, m[1].length + 1)}`);
      h.append(...inline(m[2]));
      out.push(h);
      i++;
      continue;
    }
    if (HR.test(line) && !para.length) {
      flush();
      out.push(el("hr"));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      flush();
      const inner = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
        inner.push(m[1]);
        i++;
      }
      const q = el("blockquote");
      q.append(...(depth < 6 ? blocks(inner, depth + 1) : inline(inner.join("\n"))));
      out.push(q);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
      flush();
      const wrap = el("div", "table-wrap");
      const table = el("table");
      const head = el("tr");
      for (const c of cells(line)) {
        const th = el("th");
        th.append(...inline(c));
        head.append(th);
      }
      const thead = el("thead");
      thead.append(head);
      const tbody = el("tbody");
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) {
        const tr = el("tr");
        for (const c of cells(lines[i])) {
          const td = el("td");
          td.append(...inline(c));
          tr.append(td);
        }
        tbody.append(tr);
        i++;
      }
      table.append(thead, tbody);
      wrap.append(table);
      out.push(wrap);
      continue;
    }
    if ((m = ITEM.exec(line)) && (!para.length || m[1].length === 0)) {
      flush();
      const ordered = /\d/.test(m[2]);
      const list = el(ordered ? "ol" : "ul");
      if (ordered && parseInt(m[2], 10) !== 1) list.start = parseInt(m[2], 10);
      const indent = m[1].length;
      while (i < lines.length && (m = ITEM.exec(lines[i])) && m[1].length <= indent + 1) {
        const body = [m[3]];
        i++;
        while (
          i < lines.length &&
          lines[i].trim() &&
          !(ITEM.exec(lines[i]) && ITEM.exec(lines[i])[1].length <= indent + 1) &&
          (/^\s{2,}/.test(lines[i]) || !FENCE.test(lines[i]))
        ) {
          body.push(lines[i].replace(/^\s{1,4}/, ""));
          i++;
        }
        const li = el("li");
        if (body.length === 1) li.append(...inline(body[0]));
        else li.append(...(depth < 6 ? blocks(body, depth + 1) : inline(body.join("\n"))));
        list.append(li);
      }
      out.push(list);
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
  return out;
}

// Render Markdown text into a DocumentFragment.
export function render(text) {
  const frag = document.createDocumentFragment();
  frag.append(...blocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n"), 0));
  return frag;
}
