// The approvals inbox: every open gate, oldest first, followed as gates open, change and close.

import { stream } from "../api.js";
import { announce, badge, errorBox, h, liveIndicator, relative, replace, setTitle, when } from "../dom.js";
import { setApprovalCount } from "../nav.js";

function card(gate) {
  const link = `/requests/${gate.job_request_id}#approval-${encodeURIComponent(gate.task_type)}`;
  const t = gate.tally;
  return h(
    "li",
    { class: "panel gate", "data-request": String(gate.job_request_id), "data-task": gate.task_type },
    h(
      "h2",
      {},
      h("a", { href: link }, `#${gate.job_request_id} ${gate.job_type}: ${gate.task_type}`),
      badge(gate.state),
      gate.caller_can_decide ? null : h("span", { class: "badge" }, "not yours to decide"),
    ),
    gate.description ? h("p", {}, gate.description) : null,
    h(
      "dl",
      { class: "facts" },
      [
        ["Progress", gate.progress],
        ["Tally", `${t.approvals} of ${t.required_approvals} approvals, ${t.rejections} rejections`],
        ["Waiting since", h("span", {}, when(gate.created_at), ` (${relative(gate.created_at)})`)],
        ["Deadline", gate.deadline_at ? h("span", {}, when(gate.deadline_at), ` (${relative(gate.deadline_at)})`) : "none"],
        ["Next SLA step", gate.next_sla_at ? `${gate.next_sla_action} ${relative(gate.next_sla_at)}` : null],
        ["Requested by", gate.requester || "—"],
        ["Artifacts under review", gate.artifact_digests.map((a) => a.name).join(", ") || null],
      ]
        .filter(([, v]) => v)
        .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
    ),
    h("p", {}, h("a", { class: "button", href: link }, "Review and decide", h("span", { class: "visually-hidden" }, ` ${gate.task_type} of job request ${gate.job_request_id}`))),
  );
}

export function approvalsPage(main) {
  setTitle("Approvals");
  const live = liveIndicator();
  const list = h("ul", { class: "inbox", id: "inbox" });
  const empty = h("p", { class: "muted" }, "Loading…");
  const message = h("div");
  replace(
    main,
    h("div", { class: "row spread" }, h("h1", {}, "Approvals waiting"), live),
    h("p", { class: "hint" }, "Open approval gates, oldest first. A decision is made on the job request's page, next to its logs and artifacts."),
    message,
    empty,
    list,
  );
  const open = new Map();
  let snapshot = false;
  const render = () => {
    const gates = [...open.values()].sort((a, b) => new Date(a.created_at) - new Date(b.created_at));
    replace(list, gates.map(card));
    empty.textContent = gates.length ? "" : "Nothing is waiting for a decision.";
    empty.hidden = Boolean(gates.length);
    setApprovalCount(gates.length);
  };
  stream(
    "/api/approvals/pending/stream",
    {},
    {
      approval: (gate) => {
        const key = `${gate.job_request_id}/${gate.task_type}`;
        if (gate.state === "OPEN") open.set(key, gate);
        else if (open.delete(key) && snapshot) announce(`${gate.task_type} of job request ${gate.job_request_id}: ${gate.state}`);
        if (snapshot) render();
      },
      snapshot_complete: () => {
        snapshot = true;
        render();
      },
      problem: (problem) => replace(message, errorBox({ message: problem.message, problems: [] }, "Cannot follow the approvals")),
    },
    live.update,
  );
}
