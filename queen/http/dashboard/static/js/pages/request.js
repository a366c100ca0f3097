// One job request, live: state and controls, the DAG coloured by task state, each task's exit code,
// timings and Ant, the approval gates, the artifacts, and the console log as the Ants send it.

import { ApiError, fetchText, get, post, stream } from "../api.js";
import { gatePanel } from "../approval.js";
import { legend, renderDag } from "../dag.js";
import { announce, badge, bytes, errorBox, h, liveIndicator, replace, setTitle, took, when } from "../dom.js";

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const VIEW_LIMIT = 512 * 1024;
const MAX_LOG_LINES = 5000;
const TEXT_NAME = /\.(json|txt|log|ya?ml|tfstate|sarif|xml|csv|md|sh|out|ini|toml|env)$/i;

function viewable(artifact) {
  if (artifact.content_length > VIEW_LIMIT * 4) return false;
  const type = artifact.content_type || "";
  return artifact.kind === "LOG" || type.startsWith("text/") || /json|yaml|xml/.test(type) || TEXT_NAME.test(artifact.name);
}

function shortState(state) {
  return state === "MANUAL_APPROVAL_REQUIRED" ? "awaiting approval" : state.replaceAll("_", " ");
}

/** What one node of the DAG says about its task's execution. */
function describer(byType, requestState) {
  return (task) => {
    const run = byType.get(task.task_type);
    if (!run) {
      const text = TERMINAL.has(requestState) ? "not run" : task.method === "MANUAL" ? "gate not reached" : "not run yet";
      return { state: "", notRun: true, detail: text, title: `${task.task_type} (${task.method}): ${text}` };
    }
    let detail = shortState(run.task_state);
    if (run.exit_code && run.exit_code !== run.task_state) detail += ` · exit ${run.exit_code}`;
    const where = run.ant_id ? ` on ${run.ant_id}` : "";
    return {
      state: run.task_state,
      detail,
      title: `${task.task_type} (${task.method}): ${run.task_state}${run.exit_code ? `, exit code ${run.exit_code}` : ""}${where}`,
    };
  };
}

export function requestPage(main, id) {
  setTitle(`Job request ${id}`);
  const live = liveIndicator();
  const heading = h("h1", { id: "request-heading" }, `Job request ${id}`);
  const summary = h("div", { id: "request-summary" });
  const controls = h("div", { class: "row", id: "request-controls" });
  const controlMessage = h("div", { "aria-live": "polite" });
  const dagSlot = h("div", { class: "dag-wrap", id: "dag" }, h("p", { class: "muted" }, "Loading the graph…"));
  const gatesSlot = h("div", { id: "approvals" });
  const tasksBody = h("tbody");
  const artifactsSlot = h("div", { id: "artifacts" }, h("p", { class: "muted" }, "None yet."));
  const viewer = h("div", { id: "artifact-viewer" });
  const logTask = h("select", { id: "log-task" }, h("option", { value: "" }, "All tasks"));
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const log = h("div", { class: "log", id: "log", tabindex: "0", role: "log", "aria-label": "Console log of the tasks" });
  const logEmpty = h("p", { class: "muted" }, "No console lines yet.");

  replace(
    main,
    h("div", { class: "row spread" }, heading, live),
    summary,
    controls,
    controlMessage,
    h("section", { "aria-labelledby": "dag-heading" }, h("h2", { id: "dag-heading" }, "Task graph"), dagSlot, legend()),
    gatesSlot,
    h(
      "section",
      { "aria-labelledby": "tasks-heading" },
      h("h2", { id: "tasks-heading" }, "Tasks"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "tasks" },
          h(
            "thead",
            {},
            h("tr", {}, ["Task", "Method", "State", "Exit code", "Ant", "Started", "Ended", "Took", "Retries"].map((c) => h("th", { scope: "col" }, c))),
          ),
          tasksBody,
        ),
      ),
    ),
    h("section", { "aria-labelledby": "artifacts-heading" }, h("h2", { id: "artifacts-heading" }, "Artifacts"), artifactsSlot, viewer),
    h(
      "section",
      { "aria-labelledby": "log-heading" },
      h("h2", { id: "log-heading" }, "Console log"),
      h("div", { class: "row" }, h("label", { for: "log-task" }, "Show"), logTask, h("label", { class: "inline" }, follow, "Follow new lines")),
      logEmpty,
      log,
    ),
  );

  let request = null;
  let definition;
  let definitionLoad = null;
  let controlsKey = "";
  let artifactsKey = "";
  let artifactsTimer = null;
  let gateStream = null;
  const gates = new Map();
  const gateMarks = new Map();
  const seenLines = new Set();
  const logTasks = new Set();

  // -- the definition (the graph's edges come from the version this request runs) ------------------
  function loadDefinition(data) {
    if (!definitionLoad) {
      definitionLoad = get(`/api/jobs/definitions/${encodeURIComponent(data.job_definition_id)}`).then(
        (found) => { definition = found; },
        () => { definition = null; },
      );
    }
    return definitionLoad;
  }

  function graphTasks(runs) {
    if (definition && definition.tasks.length) return definition.tasks;
    // the definition is gone: the tasks that ran, without their routes
    return runs.map((r) => ({ task_type: r.task_type, method: r.method, on_exit_code: {}, on_completed: "", on_failed: "" }));
  }

  // -- header, summary, controls --------------------------------------------------------------------
  function showSummary(data) {
    setTitle(`#${data.id} ${data.job_type} ${data.job_state}`);
    replace(heading, `Job request #${data.id}`, h("span", { class: "muted" }, data.job_type), badge(data.job_state));
    heading.dataset.state = data.job_state;
    const params = Object.entries(data.params);
    const rows = [
      ["Job type", h("a", { href: `/definitions/${encodeURIComponent(data.job_type)}` }, data.job_type)],
      ["Version", data.job_version],
      ["State", badge(data.job_state)],
      ["Priority", String(data.job_priority)],
      ["Params", params.length ? params.map(([k, v]) => `${k} = ${v}`).join(", ") : "—"],
      ["Submitted", h("span", {}, when(data.created_at), data.user_id ? ` by ${data.user_id}` : "")],
      ["Scheduled for", data.scheduled_at ? when(data.scheduled_at) : null],
      ["Started", when(data.started_at)],
      ["Ended", when(data.ended_at)],
      ["Took", took(data.started_at, data.ended_at)],
      ["Waiting because", data.wait_reason || null],
      ["Error", data.error_code || data.error_message ? `${data.error_code}${data.error_code && data.error_message ? ": " : ""}${data.error_message}` : null],
    ];
    replace(
      summary,
      h("dl", { class: "facts" }, rows.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
    showControls(data);
  }

  function showControls(data) {
    const state = data.job_state;
    const terminal = TERMINAL.has(state);
    const future = data.scheduled_at && new Date(data.scheduled_at) > new Date();
    const actions = [];
    if (state === "PENDING" && future) actions.push(["trigger", "Run now", "Run this scheduled request now"]);
    if (state === "PENDING" || state === "EXECUTING") actions.push(["pause", "Pause", ""]);
    if (state === "PAUSED") actions.push(["resume", "Resume", ""]);
    if (!terminal) actions.push(["cancel", "Cancel", "Cancel this job request?"]);
    if (terminal) actions.push(["restart", "Restart", "Run this job request again?"]);
    const key = actions.map((a) => a[0]).join(",");
    if (key === controlsKey) return;
    controlsKey = key;
    replace(
      controls,
      actions.map(([action, text, question]) =>
        h(
          "button",
          {
            type: "button",
            "data-action": action,
            onclick: async (event) => {
              const button = event.currentTarget;
              if (question && action !== "trigger" && !window.confirm(question)) return;
              button.disabled = true;
              try {
                await post(`/api/jobs/requests/${id}/${action}`);
                replace(controlMessage, h("div", { class: "notice", role: "status" }, `${text}: done.`));
              } catch (error) {
                replace(controlMessage, errorBox(error, text));
              } finally {
                button.disabled = false;
              }
            },
          },
          text,
        ),
      ),
    );
  }

  // -- the graph and the task table ------------------------------------------------------------------
  function showTasks(data) {
    const runs = (data.execution && data.execution.tasks) || [];
    const byType = new Map(runs.map((r) => [r.task_type, r]));
    const tasks = graphTasks(runs);
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("#dag [data-task]");
    const focusedTask = focused ? focused.dataset.task : null;
    const svg = renderDag(tasks, {
      describe: describer(byType, data.job_state),
      taken: (edge) => {
        const from = byType.get(edge.from);
        return Boolean(from && byType.get(edge.to) && from.ended_at);
      },
      label: `Task graph of job request ${data.id}`,
    });
    replace(dagSlot, svg);
    if (focusedTask) svg.querySelector(`[data-task="${CSS.escape(focusedTask)}"] a`)?.focus();

    const names = tasks.map((t) => t.task_type);
    for (const run of runs) if (!names.includes(run.task_type)) names.push(run.task_type);
    const methods = new Map(tasks.map((t) => [t.task_type, t.method]));
    replace(
      tasksBody,
      names.map((name) => {
        const run = byType.get(name);
        if (!run) {
          return h(
            "tr",
            { id: `task-${name}`, "data-task": name, class: "muted" },
            h("th", { scope: "row" }, name),
            h("td", {}, methods.get(name) || ""),
            h("td", { colspan: 7 }, TERMINAL.has(data.job_state) ? "not run" : "not run yet"),
          );
        }
        const error = run.error_code || run.error_message ? `${run.error_code} ${run.error_message}`.trim() : "";
        return h(
          "tr",
          { id: `task-${name}`, "data-task": name, "data-state": run.task_state },
          h("th", { scope: "row" }, name, run.allow_failure ? h("span", { class: "sub" }, "allow_failure") : null),
          h("td", {}, run.method),
          h("td", {}, badge(run.task_state), error ? h("span", { class: "sub" }, error) : null),
          h("td", { class: "mono" }, run.exit_code || "—", run.exit_message ? h("span", { class: "sub" }, run.exit_message) : null),
          h("td", {}, run.ant_id || "—", run.ant_host ? h("span", { class: "sub" }, run.ant_host) : null),
          h("td", {}, when(run.started_at)),
          h("td", {}, when(run.ended_at)),
          h("td", { class: "num" }, took(run.started_at, run.ended_at)),
          h("td", { class: "num" }, String(run.retried)),
        );
      }),
    );
    for (const run of runs) addLogTask(run.task_type);
    showGates(data, tasks, byType);
    scheduleArtifacts(runs);
  }

  // -- approval gates --------------------------------------------------------------------------------
  function showGates(data, tasks, byType) {
    for (const task of tasks) {
      if (task.method !== "MANUAL") continue;
      const run = byType.get(task.task_type);
      if (!run) continue;
      let panel = gates.get(task.task_type);
      if (!panel) {
        panel = gatePanel(id, task.task_type, { onView: viewArtifact });
        gates.set(task.task_type, panel);
        gatesSlot.append(panel.element);
      }
      const mark = `${run.task_state}|${run.updated_at}`;
      if (gateMarks.get(task.task_type) !== mark) {
        gateMarks.set(task.task_type, mark);
        panel.refresh();
      }
    }
    // Votes that do not decide a gate change no task: while a gate is open, follow the gates too.
    if (data.job_state === "MANUAL_APPROVAL_REQUIRED" && !gateStream) {
      gateStream = stream("/api/approvals/pending/stream", { job_request_id: id }, {
        approval: (gate) => gates.get(gate.task_type)?.show(gate),
      });
    } else if (data.job_state !== "MANUAL_APPROVAL_REQUIRED" && gateStream) {
      gateStream.close();
      gateStream = null;
    }
  }

  // -- artifacts -------------------------------------------------------------------------------------
  function scheduleArtifacts(runs) {
    const key = runs.map((r) => `${r.task_type}:${r.task_state}:${r.artifacts.length}`).join("|");
    if (key === artifactsKey) return;
    artifactsKey = key;
    loadArtifacts();
    // a task's console log is stored as an artifact just after it ends
    clearTimeout(artifactsTimer);
    artifactsTimer = setTimeout(loadArtifacts, 3000);
  }

  async function loadArtifacts() {
    let found;
    try {
      found = await get("/api/artifacts", { job_request_id: id, page_size: 200 });
    } catch (error) {
      replace(artifactsSlot, errorBox(error, "Cannot list the artifacts"));
      return;
    }
    if (!found.records.length) {
      replace(artifactsSlot, h("p", { class: "muted" }, "None yet."));
      return;
    }
    replace(
      artifactsSlot,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Name", "Task", "Kind", "Size", "SHA-256", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            found.records.map((a) =>
              h(
                "tr",
                { "data-artifact": a.name },
                h("th", { scope: "row" }, a.name),
                h("td", {}, a.task_type || "—"),
                h("td", {}, a.kind),
                h("td", { class: "num" }, bytes(a.content_length)),
                h("td", { class: "mono", title: a.sha256 }, a.sha256.slice(0, 12)),
                h("td", {}, when(a.created_at)),
                h(
                  "td",
                  { class: "row" },
                  viewable(a) ? h("button", { type: "button", class: "small", onclick: () => viewArtifact(a) }, h("span", {}, "View"), h("span", { class: "visually-hidden" }, ` ${a.name}`)) : null,
                  h("a", { href: a.url, download: a.name }, "Download", h("span", { class: "visually-hidden" }, ` ${a.name}`)),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function viewArtifact(artifact) {
    const title = h("h3", { id: "artifact-view-heading", tabindex: "-1" }, artifact.name);
    replace(viewer, h("div", { class: "panel" }, title, h("p", { class: "muted" }, "Loading…")));
    title.focus();
    try {
      const { text, truncated, size } = await fetchText(artifact.url, VIEW_LIMIT);
      const close = h("button", { type: "button", class: "small", onclick: () => viewer.replaceChildren() }, "Close");
      replace(
        viewer,
        h(
          "div",
          { class: "panel", role: "region", "aria-labelledby": "artifact-view-heading" },
          h("div", { class: "row spread" }, title, h("div", { class: "row" }, h("a", { href: artifact.url, download: artifact.name }, "Download"), close)),
          truncated ? h("p", { class: "muted" }, `The first ${bytes(VIEW_LIMIT)} of ${bytes(size)}.`) : null,
          h("pre", { class: "content", id: "artifact-content", "data-name": artifact.name, tabindex: "0" }, text),
        ),
      );
      title.focus();
    } catch (error) {
      replace(viewer, errorBox(error, `Cannot read ${artifact.name}`));
    }
  }

  // -- logs ------------------------------------------------------------------------------------------
  function addLogTask(taskType) {
    if (logTasks.has(taskType)) return;
    logTasks.add(taskType);
    logTask.append(h("option", { value: taskType }, taskType));
  }

  logTask.addEventListener("change", () => {
    for (const line of log.children) line.hidden = Boolean(logTask.value) && line.dataset.task !== logTask.value;
    if (follow.checked) log.scrollTop = log.scrollHeight;
  });

  function addLines(batch) {
    addLogTask(batch.task_type);
    const fresh = [];
    for (const line of batch.lines) {
      const key = `${batch.task_execution_id}:${batch.task_retry}:${line.sequence}`;
      if (seenLines.has(key)) continue;
      seenLines.add(key);
      const label = batch.task_retry ? `${batch.task_type}#${batch.task_retry}` : batch.task_type;
      const node = h(
        "span",
        { class: `line ${line.stream}`, "data-task": batch.task_type, title: new Date(line.time).toLocaleTimeString() },
        h("span", { class: "task" }, `[${label}]`),
        h("span", { class: "text" }, line.text),
      );
      node.hidden = Boolean(logTask.value) && logTask.value !== batch.task_type;
      fresh.push(node);
    }
    if (!fresh.length) return;
    logEmpty.hidden = true;
    log.append(...fresh);
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
    if (follow.checked) log.scrollTop = log.scrollHeight;
  }

  // -- the stream ------------------------------------------------------------------------------------
  let announced = "";
  stream(
    `/api/jobs/requests/${id}/stream`,
    {},
    {
      request: async (data) => {
        request = data;
        await loadDefinition(data);
        if (request !== data) return; // a newer one arrived meanwhile and is shown instead
        showSummary(data);
        showTasks(data);
        if (data.job_state !== announced) {
          if (announced) announce(`Job request ${data.id} is ${shortState(data.job_state)}.`);
          announced = data.job_state;
        }
      },
      logs: addLines,
      end: () => {
        loadArtifacts();
        gateStream?.close();
      },
      problem: (body) => {
        const error = new ApiError(body.code === "NOT_FOUND" ? 404 : 0, body);
        replace(summary, errorBox(error, `Job request ${id}`));
      },
    },
    live.update,
  );
}
