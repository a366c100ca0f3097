// The Ants connected to this Queen: methods, tags, capacity, load and last heartbeat.

import { get } from "../api.js";
import { badge, errorBox, h, relative, replace, setTitle, when } from "../dom.js";

// Ants report by heartbeat, not by event: the page reads them again every few seconds.
const REFRESH_MS = 5000;

function row(ant) {
  return h(
    "tr",
    { "data-ant": ant.ant_id },
    h("th", { scope: "row" }, ant.ant_id, ant.version ? h("span", { class: "sub" }, `version ${ant.version}`) : null),
    h("td", {}, ant.connected ? badge("COMPLETED", "connected") : badge("FAILED", "disconnected")),
    h("td", {}, ant.host || "—"),
    h("td", {}, ant.methods.join(", ")),
    h("td", {}, ant.tags.join(", ") || "—"),
    h("td", { class: "num" }, `${ant.current_load} / ${ant.max_capacity}`, h("span", { class: "sub" }, `${ant.free_slots} free`)),
    h("td", { class: "num" }, ant.load.toFixed(2)),
    h("td", {}, ant.updated_at ? h("span", {}, relative(ant.updated_at), h("span", { class: "sub" }, when(ant.updated_at))) : "—"),
    h("td", {}, when(ant.ant_started_at)),
  );
}

export function antsPage(main) {
  setTitle("Ants");
  const body = h("tbody");
  const status = h("p", { class: "hint", role: "status" });
  const message = h("div");
  replace(
    main,
    h("h1", {}, "Ants"),
    status,
    message,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "ants" },
        h(
          "thead",
          {},
          h("tr", {}, ["Ant", "Connection", "Host", "Methods", "Tags", "Running / capacity", "Load", "Last heartbeat", "Connected since"].map((c) => h("th", { scope: "col" }, c))),
        ),
        body,
      ),
    ),
  );
  async function load() {
    try {
      const found = await get("/api/ants", { page_size: 500 });
      message.replaceChildren();
      replace(body, found.records.length ? found.records.map(row) : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No Ant is registered.")));
      status.textContent = `${found.total_records} Ant${found.total_records === 1 ? "" : "s"}; read ${new Date().toLocaleTimeString()}, again every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      replace(message, errorBox(error, "Cannot list the Ants"));
    }
    setTimeout(load, REFRESH_MS);
  }
  load();
}
