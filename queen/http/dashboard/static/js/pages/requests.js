// Job requests by state, newest first, following changes as they are committed.

import { stream } from "../api.js";
import { badge, errorBox, h, liveIndicator, replace, setTitle, took, when } from "../dom.js";

const PAGE_SIZE = 25;
const FILTERS = [
  ["all", "All", []],
  ["running", "Running", ["READY", "STARTED", "EXECUTING"]],
  ["approval", "Waiting for approval", ["MANUAL_APPROVAL_REQUIRED"]],
  ["queued", "Queued or paused", ["PENDING", "PAUSED"]],
  ["completed", "Completed", ["COMPLETED"]],
  ["failed", "Failed", ["FAILED"]],
  ["cancelled", "Cancelled", ["CANCELLED"]],
];

function row(request) {
  const reason = request.error_message || request.wait_reason;
  return h(
    "tr",
    { "data-request": String(request.id), "data-state": request.job_state },
    h("td", { class: "num" }, h("a", { href: `/requests/${request.id}` }, `#${request.id}`)),
    h("td", {}, h("a", { href: `/definitions/${encodeURIComponent(request.job_type)}` }, request.job_type), h("span", { class: "sub" }, `version ${request.job_version}`)),
    h("td", {}, badge(request.job_state), reason ? h("span", { class: "sub" }, reason) : null),
    h("td", { class: "num" }, String(request.job_priority)),
    h("td", {}, when(request.created_at)),
    h("td", {}, when(request.started_at)),
    h("td", { class: "num" }, took(request.started_at, request.ended_at)),
  );
}

export function requestsPage(main) {
  setTitle("Job requests");
  const query = new URLSearchParams(location.search);
  let filter = FILTERS.find((f) => f[0] === query.get("state")) || FILTERS[0];
  let jobType = query.get("job_type") || "";
  let page = Math.max(0, Number(query.get("page")) || 0);

  const live = liveIndicator();
  const buttons = FILTERS.map(([key, text]) =>
    h("button", { type: "button", "data-filter": key, "aria-pressed": String(key === filter[0]), onclick: () => choose(key) }, text),
  );
  const typeInput = h("input", { type: "search", id: "job-type-filter", value: jobType, placeholder: "any job type" });
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const message = h("div");
  replace(
    main,
    h("div", { class: "row spread" }, h("h1", {}, "Job requests"), live),
    h("div", { class: "filters", role: "group", "aria-label": "Filter by state" }, buttons),
    h(
      "form",
      { class: "row", onsubmit: (event) => { event.preventDefault(); jobType = typeInput.value.trim(); page = 0; follow(); } },
      h("label", { for: "job-type-filter" }, "Job type"),
      typeInput,
      h("button", { type: "submit" }, "Filter"),
    ),
    message,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "requests" },
        h("thead", {}, h("tr", {}, ["ID", "Job type", "State", "Priority", "Submitted", "Started", "Took"].map((c) => h("th", { scope: "col" }, c)))),
        body,
      ),
    ),
    pager,
  );

  let current = null;
  function choose(key) {
    filter = FILTERS.find((f) => f[0] === key);
    page = 0;
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.filter === key));
    follow();
  }

  function follow() {
    const params = new URLSearchParams();
    if (filter[0] !== "all") params.set("state", filter[0]);
    if (jobType) params.set("job_type", jobType);
    if (page) params.set("page", String(page));
    const search = params.toString();
    history.replaceState(null, "", `/requests${search ? `?${search}` : ""}`);
    current?.close();
    replace(body, h("tr", {}, h("td", { colspan: 7, class: "muted" }, "Loading…")));
    current = stream(
      "/api/jobs/requests/stream",
      { job_state: filter[2].join(","), job_type: jobType, page, page_size: PAGE_SIZE },
      {
        page: (found) => {
          message.replaceChildren();
          replace(body, found.records.length ? found.records.map(row) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No job requests.")));
          const pages = found.total_pages || 1;
          replace(
            pager,
            h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; follow(); } }, "Previous"),
            h("span", {}, `Page ${found.page + 1} of ${pages} (${found.total_records} job request${found.total_records === 1 ? "" : "s"})`),
            h("button", { type: "button", disabled: !found.has_more, onclick: () => { page += 1; follow(); } }, "Next"),
          );
        },
        problem: (problem) => replace(message, errorBox({ message: problem.message, problems: [] }, "Cannot list job requests")),
      },
      live.update,
    );
  }
  follow();
}
