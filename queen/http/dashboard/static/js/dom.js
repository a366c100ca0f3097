// Building the page: elements, times and durations, state badges, error boxes, announcements.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("a", {href: "/"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, as `h`. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(node, ...children) {
  node.replaceChildren();
  return fill(node, {}, children);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A <time> showing a moment in local time, with a relative hint ("3 min ago") as its title. */
export function when(value) {
  if (!value) return h("span", { class: "muted" }, "—");
  const date = new Date(value);
  return h("time", { datetime: date.toISOString(), title: relative(value) }, dateTime.format(date));
}

/** "in 3 h 20 min", "5 s ago". */
export function relative(value) {
  const seconds = Math.round((new Date(value).getTime() - Date.now()) / 1000);
  if (Math.abs(seconds) < 2) return "just now";
  const text = span(Math.abs(seconds));
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

/** A length of time in seconds as "1 h 5 min", "42 s". */
export function span(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60 ? `${s % 60} s` : ""}`.trim();
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** How long something ran ("—" if it never started; up to now if it has not ended). */
export function took(start, end) {
  if (!start) return "—";
  const stop = end ? new Date(end).getTime() : Date.now();
  return span(Math.max(0, (stop - new Date(start).getTime()) / 1000)) + (end ? "" : " so far");
}

/** A state as a badge; the text is the state's name, so colour is never the only sign. */
export function badge(state, text) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, text || String(state).replaceAll("_", " "));
}

export function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KiB`;
  return `${(count / 1024 / 1024).toFixed(1)} MiB`;
}

/** An error box (role=alert) for an ApiError: the message, and each validation problem with its place. */
export function errorBox(error, prefix = "") {
  const problems = error.problems || [];
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, prefix ? `${prefix}: ` : ""),
    error.message,
    problems.length
      ? h(
          "ul",
          {},
          problems.map((p) =>
            h(
              "li",
              {},
              h("span", { class: "mono" }, `line ${p.line}, column ${p.column}`),
              `: ${p.message}`,
              p.fix ? h("span", { class: "sub" }, ` (fix: ${p.fix})`) : null,
            ),
          ),
        )
      : null,
  );
}

/** Say something to screen readers (the page's polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = text;
}

export function setTitle(text) {
  document.title = text ? `${text} · Formicary` : "Formicary";
}

/** An indicator of a live stream's state ("live", "reconnecting", "ended"). */
export function liveIndicator() {
  const node = h("span", { class: "live", "data-status": "connecting", role: "status" }, "connecting…");
  const words = { live: "live", reconnecting: "reconnecting…", ended: "final" };
  node.update = (status) => {
    node.dataset.status = status;
    node.textContent = words[status] || status;
  };
  return node;
}

/** A random key (crypto.randomUUID is missing on plain-HTTP origins other than localhost). */
export function randomKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
