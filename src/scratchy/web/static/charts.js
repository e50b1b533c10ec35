// Small inline SVG bar charts (no library): tokens per turn and sessions active per day.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text != null) node.textContent = text;
  return node;
}

// bars: [{value, label, parts?: [{value, cls}]}]; returns an <svg> sized by CSS (viewBox).
function barChart(bars, { title, width = 600, height = 80, unit = "", slots = 1 }) {
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    class: "bars",
  });
  root.append(svg("title", {}, title));
  const max = Math.max(1, ...bars.map((b) => b.value));
  const n = Math.max(bars.length, slots, 1); // few bars stay narrow
  const step = width / n;
  const gap = Math.min(2, step * 0.2);
  bars.forEach((bar, i) => {
    const x = i * step + gap / 2;
    const w = Math.max(step - gap, 0.5);
    const g = svg("g", { class: "bar" });
    g.append(svg("title", {}, `${bar.label}: ${bar.value.toLocaleString()}${unit}`));
    let y = height;
    for (const part of bar.parts || [{ value: bar.value, cls: "part" }]) {
      const h = (part.value / max) * (height - 4);
      y -= h;
      g.append(svg("rect", { x, y, width: w, height: Math.max(h, part.value ? 1 : 0), class: part.cls }));
    }
    root.append(g);
  });
  return root;
}

export function tokensChart(container, turns) {
  container.replaceChildren();
  if (!turns.length) {
    container.classList.add("hidden");
    return;
  }
  container.classList.remove("hidden");
  const head = document.createElement("div");
  head.className = "chart-head";
  const total = turns.reduce((s, t) => s + t.input + t.output, 0);
  const guessed = turns.filter((t) => t.estimated).length;
  const kind =
    guessed === 0 ? "measured" : guessed === turns.length ? "all estimated" : `${guessed} estimated (pale)`;
  const count = `${turns.length} turn${turns.length === 1 ? "" : "s"}`;
  head.textContent = `Tokens per turn · ${count} shown, ${kind} · ${total.toLocaleString()} in all`;
  head.title =
    "Measured: the usage the model reported for the turn (kept on its final reply). Estimated: " +
    "about 4 characters a token of the text, for turns that did not record their usage.";
  const bars = turns.map((t, i) => ({
    value: t.input + t.output,
    label: `turn ${t.index ?? i + 1}: ${t.input} in, ${t.output} out${t.estimated ? " (estimated)" : ""}`,
    parts: [
      { value: t.input, cls: t.estimated ? "in est" : "in" },
      { value: t.output, cls: t.estimated ? "out est" : "out" },
    ],
  }));
  container.append(head, barChart(bars, { title: "Tokens per turn", height: 60, slots: 40 }));
}

export function activityChart(container, dates, loaded, complete) {
  container.replaceChildren();
  if (!dates.length) return;
  const days = 30;
  const counts = new Map();
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  for (const d of dates) {
    const day = new Date(d);
    day.setHours(0, 0, 0, 0);
    const ago = Math.round((today - day) / 86400000);
    if (ago >= 0 && ago < days) counts.set(ago, (counts.get(ago) || 0) + 1);
  }
  const bars = [];
  for (let ago = days - 1; ago >= 0; ago--) {
    const day = new Date(today - ago * 86400000);
    bars.push({ value: counts.get(ago) || 0, label: day.toISOString().slice(0, 10) });
  }
  const head = document.createElement("div");
  head.className = "chart-head";
  const scope = complete ? `all ${loaded}` : `the ${loaded} loaded`;
  head.textContent = `Sessions active per day, last 30 days (${scope})`;
  container.append(head, barChart(bars, { title: "Sessions active per day", height: 40, unit: " sessions" }));
}
