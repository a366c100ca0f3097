// The REST API as the dashboard calls it: JSON in and out, errors as ApiError, event streams read with
// fetch. Every datum of the dashboard comes through here, from /api/..., never from anywhere else.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "";
    this.reason = (body && body.reason) || "";
    this.details = (body && Array.isArray(body.details)) ? body.details : [];
  }

  /** Validation problems (line, column, message, fix) of a refused definition. */
  get problems() {
    return this.details.filter((d) => String(d["@type"] || "").endsWith(".ValidationProblem"));
  }
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const at = part.indexOf("=");
    if (at > 0 && part.slice(0, at).trim() === name) return decodeURIComponent(part.slice(at + 1).trim());
  }
  return "";
}

/**
 * Headers of every call. The credential itself is the session cookie the browser sends (set by
 * POST /api/auth/login, see auth.js); a call that changes state also carries the session's CSRF token.
 */
export function requestHeaders(extra = {}, method = "GET") {
  const headers = { Accept: "application/json", ...extra };
  const csrf = cookie("formicary_csrf");
  if (csrf && !SAFE_METHODS.has(method)) headers["X-CSRF-Token"] = csrf;
  return headers;
}

/** Tell the page that the API wants a credential (auth.js offers to sign in). */
function unauthenticated(error) {
  window.dispatchEvent(new CustomEvent("formicary:unauthenticated", { detail: error }));
}

/** `path` with query parameters; arrays repeat the parameter, empty values are left out. */
export function withParams(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") query.append(name, String(item));
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export async function call(method, path, { params, json, body, contentType } = {}) {
  const init = { method, headers: requestHeaders({}, method), credentials: "same-origin" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = contentType || "application/octet-stream";
  }
  const response = await fetch(withParams(path, params), init);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data && typeof data === "object" ? data : { message: String(data || response.statusText) });
    if (response.status === 401) unauthenticated(error);
    throw error;
  }
  return data;
}

export const get = (path, params) => call("GET", path, { params });
export const post = (path, options) => call("POST", path, options);

/** The text of a downloadable resource (an artifact), at most `limit` bytes. */
export async function fetchText(path, limit) {
  const response = await fetch(path, { headers: requestHeaders({ Accept: "*/*" }), credentials: "same-origin" });
  if (!response.ok) {
    const error = new ApiError(response.status, await response.json().catch(() => ({})));
    if (response.status === 401) unauthenticated(error);
    throw error;
  }
  const blob = await response.blob();
  return { text: await blob.slice(0, limit).text(), truncated: blob.size > limit, size: blob.size };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow a server-sent event stream of the API: `handlers[name](data)` for each event, `end` when the
 * server ends it, `problem(body)` for an error. A stream that breaks is opened again (with growing
 * delays); `onStatus("live" | "reconnecting" | "ended")` says where it stands. Read with fetch rather
 * than EventSource so that the calls carry `requestHeaders()` like every other call.
 */
export function stream(path, params, handlers, onStatus = () => {}) {
  const controller = new AbortController();
  let stopped = false;
  const stop = () => { stopped = true; controller.abort(); };
  window.addEventListener("pagehide", stop, { once: true });

  (async () => {
    let delay = 1000;
    while (!stopped) {
      try {
        const response = await fetch(withParams(path, params), {
          headers: requestHeaders({ Accept: "text/event-stream" }),
          credentials: "same-origin",
          cache: "no-store",
          signal: controller.signal,
        });
        if (!response.ok) {
          const body = await response.json().catch(() => ({ message: response.statusText }));
          if (response.status === 401) unauthenticated(new ApiError(401, body));
          if (response.status < 500) {
            onStatus("ended");
            handlers.problem?.(body);
            return;
          }
          throw new ApiError(response.status, body);
        }
        onStatus("live");
        delay = 1000;
        for await (const [name, data] of events(response.body)) {
          if (name === "end") {
            onStatus("ended");
            handlers.end?.(data);
            return;
          }
          if (name === "problem") {
            onStatus("ended");
            handlers.problem?.(data);
            return;
          }
          handlers[name]?.(data);
        }
      } catch (error) {
        if (stopped) return;
        console.warn("event stream broke", path, error);
      }
      if (stopped) return;
      onStatus("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return { close: stop };
}

/** The events of an SSE body as [name, JSON data] pairs (comments and `retry` lines are skipped). */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let boundary;
      while ((boundary = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") name = text;
          else if (field === "data") data.push(text);
        }
        if (data.length) yield [name, JSON.parse(data.join("\n"))];
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
