// The HTTP API of `scratchy serve`, with the bearer key and Server-Sent Events over fetch.

const KEY_STORAGE = "scratchy.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let keyWanted = null; // a function the app sets: asks the person for a key, resolves with it

export function onKeyWanted(fn) {
  keyWanted = fn;
}

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* private mode: the key lives for this page only */
  }
  memoryKey = key;
}

let memoryKey = getKey();

function headers(extra) {
  const h = { ...extra };
  if (memoryKey) h.Authorization = `Bearer ${memoryKey}`;
  return h;
}

async function errorOf(response) {
  let code = "http_error";
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    /* not JSON */
  }
  return new ApiError(response.status, code, message);
}

// fetch with the key; on 401 asks for a key (once per request) and retries.
export async function request(path, { method = "GET", body, signal, accept } = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const init = { method, signal, headers: headers(accept ? { Accept: accept } : {}) };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, init);
    if (response.status === 401 && keyWanted) {
      const problem = await errorOf(response);
      const key = await keyWanted(memoryKey ? "That key was not accepted." : "", problem);
      setKey(key);
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
  throw new ApiError(401, "unauthorized", "no valid API key");
}

export async function json(path, options) {
  const response = await request(path, options);
  if (response.status === 204) return null;
  return response.json();
}

const enc = encodeURIComponent;

export const api = {
  listSessions: (limit, cursor, signal) =>
    json(`/v1/sessions?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ""}`, { signal }),
  search: (q, limit, signal) => json(`/v1/search?q=${enc(q)}&limit=${limit}`, { signal }),
  session: (id, signal) => json(`/v1/sessions/${enc(id)}`, { signal }),
  tail: (id, count, signal) => json(`/v1/sessions/${enc(id)}/messages?tail=${count}`, { signal }),
  messages: (id, offset, limit, signal) =>
    json(`/v1/sessions/${enc(id)}/messages?offset=${offset}&limit=${limit}`, { signal }),
  rename: (id, title) => json(`/v1/sessions/${enc(id)}`, { method: "PATCH", body: { title } }),
  remove: (id) => json(`/v1/sessions/${enc(id)}`, { method: "DELETE" }),
  restore: (id) => json(`/v1/sessions/${enc(id)}/restore`, { method: "POST", body: {} }),
  fork: (id, at) =>
    json(`/v1/sessions/${enc(id)}/fork`, { method: "POST", body: at == null ? {} : { at } }),
  trash: () => json("/v1/trash"),
  // Cancel the session's running turn, wherever it runs (the server waits up to 10 s for it).
  cancelTurn: (id) => json(`/v1/sessions/${enc(id)}/turns/cancel?wait=10`, { method: "POST" }),
  exportUrl: (id, format) => `/v1/sessions/${enc(id)}/export?format=${format}`,
};

// Download an export with the key (a plain link cannot send the Authorization header).
export async function download(id, format) {
  const response = await request(api.exportUrl(id, format));
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = `${id}.${format}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// POST a turn with stream: true and call onEvent(kind, data) for each SSE frame.
export async function streamTurn(id, input, onEvent, signal) {
  const response = await request(`/v1/sessions/${enc(id)}/turns`, {
    method: "POST",
    body: { input, stream: true },
    signal,
    accept: "text/event-stream",
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      let parsed;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch {
        parsed = data.join("\n");
      }
      onEvent(kind, parsed);
    }
  }
}
