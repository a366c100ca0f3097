// One job definition: its DAG, its tasks and routes, its YAML, running it, and its recent requests.

import { get, post } from "../api.js";
import { legend, renderDag } from "../dag.js";
import { badge, errorBox, h, replace, setTitle, took, when } from "../dom.js";

function routes(task) {
  const parts = [];
  if (task.on_completed) parts.push(`completed → ${task.on_completed}`);
  if (task.on_failed) parts.push(`failed → ${task.on_failed}`);
  for (const [code, target] of Object.entries(task.on_exit_code)) parts.push(`${code} → ${target}`);
  return parts.length ? parts.join("; ") : "—";
}

function flags(task) {
  return [task.always_run && "always_run", task.allow_failure && "allow_failure", task.timeout && `timeout ${task.timeout}`, task.retry && `retry ${task.retry}`]
    .filter(Boolean)
    .join(", ");
}

/** Params typed as `name=value` lines, with the required ones as fields of their own. */
function parseParams(form, required) {
  const params = {};
  for (const name of required) params[name] = form.elements[`param-${name}`].value;
  for (const line of form.elements.params.value.split("\n")) {
    const text = line.trim();
    if (!text) continue;
    const at = text.indexOf("=");
    if (at < 1) throw new Error(`"${text}" is not name=value`);
    params[text.slice(0, at).trim()] = text.slice(at + 1).trim();
  }
  return params;
}

export async function definitionPage(main, jobType) {
  setTitle(jobType);
  replace(main, h("h1", {}, jobType), h("p", { class: "muted" }, "Loading…"));
  let definition;
  try {
    definition = await get(`/api/jobs/definitions/${encodeURIComponent(jobType)}`);
  } catch (error) {
    replace(main, h("h1", {}, jobType), errorBox(error, "Cannot read this job definition"), h("p", {}, h("a", { href: "/definitions" }, "All job definitions")));
    return;
  }

  const message = h("div", { "aria-live": "polite" });
  const runResult = h("div", { "aria-live": "polite" });
  const toggle = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        try {
          await post(`/api/jobs/definitions/${encodeURIComponent(jobType)}/${definition.disabled ? "enable" : "disable"}`);
          definitionPage(main, jobType);
        } catch (error) {
          replace(message, errorBox(error));
        }
      },
    },
    definition.disabled ? "Enable" : "Disable",
  );

  const required = definition.required_params;
  const runForm = h(
    "form",
    { id: "run-form", "aria-labelledby": "run-heading" },
    h("h2", { id: "run" , tabindex: "-1" }, h("span", { id: "run-heading" }, `Run ${jobType}`)),
    required.map((name) => [h("label", { for: `param-${name}` }, `${name} (required)`), h("input", { type: "text", id: `param-${name}`, name: `param-${name}`, required: true })]),
    h("label", { for: "run-params" }, "Other params"),
    h("p", { class: "hint", id: "run-params-hint" }, "One name=value per line; tasks see them as variables."),
    h("textarea", { id: "run-params", name: "params", rows: 3, "aria-describedby": "run-params-hint", spellcheck: "false" }),
    h("label", { for: "run-priority" }, "Priority"),
    h("input", { type: "number", id: "run-priority", name: "priority", value: "0", min: "-1000", max: "1000" }),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", disabled: definition.disabled }, "Submit job request")),
    runResult,
  );
  runForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = { job_type: jobType, params: parseParams(runForm, required), job_priority: Number(runForm.elements.priority.value) || 0 };
      const submitted = await post("/api/jobs/requests", { json: body });
      location.assign(`/requests/${submitted.id}`);
    } catch (error) {
      replace(runResult, errorBox(error, "Not submitted"));
    }
  });

  const recent = h("tbody");
  replace(
    main,
    h("h1", {}, definition.job_type, h("span", { class: "muted" }, `version ${definition.version}`), definition.disabled ? badge("CANCELLED", "disabled") : null),
    definition.description ? h("p", {}, definition.description) : null,
    h(
      "dl",
      { class: "facts" },
      [
        ["Methods", definition.methods.join(", ")],
        ["Tags", definition.tags.join(", ") || "—"],
        ["Cron trigger", definition.cron_trigger || "—"],
        ["Timeout", definition.timeout || "—"],
        ["Max concurrency", definition.max_concurrency === null ? "—" : String(definition.max_concurrency)],
        ["Uploaded", h("span", {}, when(definition.updated_at), definition.user_id ? ` by ${definition.user_id}` : "")],
      ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
    h("div", { class: "row" }, toggle, h("a", { class: "button", href: `/requests?job_type=${encodeURIComponent(jobType)}` }, "Its job requests")),
    message,
    h(
      "section",
      { "aria-labelledby": "graph-heading" },
      h("h2", { id: "graph-heading" }, "Task graph"),
      h(
        "div",
        { class: "dag-wrap", id: "dag" },
        definition.tasks.length
          ? renderDag(definition.tasks, {
              describe: (task) => ({ state: "", detail: task.method === "MANUAL" ? "MANUAL gate" : task.method, title: `${task.task_type}: ${task.description || task.method}` }),
              label: `Task graph of ${jobType}`,
            })
          : h("p", { class: "muted" }, "This version could not be parsed; its YAML is below."),
      ),
      h("p", { class: "legend" }, h("span", {}, "Arrows follow on_completed (grey), on_failed (red, dashed) and on_exit_code (labelled) routes; thick borders are MANUAL gates.")),
    ),
    h("section", { class: "panel" }, runForm),
    h(
      "section",
      { "aria-labelledby": "tasks-heading" },
      h("h2", { id: "tasks-heading" }, "Tasks"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Task", "Method", "Routes", "Options", "Description"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            definition.tasks.map((task) =>
              h(
                "tr",
                { id: `task-${task.task_type}` },
                h("th", { scope: "row" }, task.task_type),
                h("td", {}, task.method),
                h("td", {}, routes(task)),
                h("td", {}, flags(task) || "—"),
                h("td", {}, task.description || "—"),
              ),
            ),
          ),
        ),
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "recent-heading" },
      h("h2", { id: "recent-heading" }, "Recent job requests"),
      h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["ID", "State", "Submitted", "Took"].map((c) => h("th", { scope: "col" }, c)))), recent)),
    ),
    h("details", {}, h("summary", {}, "YAML"), h("pre", { class: "content", tabindex: "0" }, definition.raw_yaml)),
  );
  if (location.hash === "#run") document.getElementById("run")?.focus();

  try {
    const found = await get("/api/jobs/requests", { job_type: jobType, page_size: 10 });
    replace(
      recent,
      found.records.length
        ? found.records.map((r) =>
            h(
              "tr",
              {},
              h("td", {}, h("a", { href: `/requests/${r.id}` }, `#${r.id}`)),
              h("td", {}, badge(r.job_state)),
              h("td", {}, when(r.created_at)),
              h("td", {}, took(r.started_at, r.ended_at)),
            ),
          )
        : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "None yet.")),
    );
  } catch (error) {
    replace(recent, h("tr", {}, h("td", { colspan: 4 }, errorBox(error))));
  }
}
