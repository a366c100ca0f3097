// A MANUAL task's approval gate: what is asked, the policy and tally, deadlines, the artifacts the
// decision is bound to, the votes so far, and (while it is open) the Approve / Reject form.

import { ApiError, get, post } from "./api.js";
import { announce, badge, errorBox, h, randomKey, relative, replace, when } from "./dom.js";

const gatePath = (requestId, taskType) =>
  `/api/jobs/requests/${requestId}/tasks/${encodeURIComponent(taskType)}`;

function tallyText(gate) {
  const t = gate.tally;
  const approvals = `${t.approvals} of ${t.required_approvals} approval${t.required_approvals === 1 ? "" : "s"}`;
  return `${approvals}, ${t.rejections} rejection${t.rejections === 1 ? "" : "s"}`;
}

function deadline(value, action) {
  if (!value) return null;
  return h("span", {}, when(value), ` (${relative(value)})`, action ? ` → ${action}` : "");
}

function facts(gate) {
  const rows = [
    ["Policy", gate.policy_summary],
    ["Progress", gate.progress],
    ["Tally", tallyText(gate)],
    ["Requested by", gate.requester || "—"],
    ["Opened", when(gate.created_at)],
    ["Deadline", deadline(gate.deadline_at, gate.policy.timeout_action)],
    ["Next SLA step", deadline(gate.next_sla_at, gate.next_sla_action)],
    ["Separation of duties", gate.separation_of_duties_note],
  ];
  if (gate.state !== "OPEN") {
    rows.push(
      ["Decided by", gate.decided_by ? `${gate.decided_by}${gate.decided_channel ? ` (${gate.decided_channel})` : ""}` : "—"],
      ["Decided", when(gate.decided_at)],
      ["Comment", gate.decision_comments || "—"],
    );
    const inputs = Object.entries(gate.decision_inputs || {});
    if (inputs.length) rows.push(["Inputs", inputs.map(([k, v]) => `${k} = ${v}`).join(", ")]);
  }
  return h(
    "dl",
    { class: "facts" },
    rows.filter(([, value]) => value).map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
  );
}

function digests(gate, onView) {
  if (!gate.artifact_digests.length) return null;
  return h(
    "div",
    {},
    h("h4", {}, "Artifacts under review"),
    h(
      "ul",
      {},
      gate.artifact_digests.map((a) =>
        h(
          "li",
          {},
          a.url ? h("a", { href: a.url, download: a.name }, a.name) : a.name,
          " ",
          h("span", { class: "mono muted", title: `sha256 ${a.sha256}` }, a.sha256.slice(0, 12)),
          onView && a.url ? [" ", h("button", { type: "button", class: "small", onclick: () => onView(a) }, `View ${a.name}`)] : null,
        ),
      ),
    ),
  );
}

function votes(gate) {
  if (!gate.votes.length) return h("p", { class: "muted" }, "No votes yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, "Votes"),
      h("thead", {}, h("tr", {}, ["Who", "Decision", "Comment", "Inputs", "Channel", "When", "Version"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        gate.votes.map((v) =>
          h(
            "tr",
            {},
            h("td", {}, v.user_id),
            h("td", {}, badge(v.decision)),
            h("td", {}, v.comments || "—"),
            h("td", {}, Object.entries(v.inputs).map(([k, x]) => `${k} = ${x}`).join(", ") || "—"),
            h("td", {}, v.channel),
            h("td", {}, when(v.created_at)),
            h("td", { class: "num" }, String(v.gate_version)),
          ),
        ),
      ),
    ),
  );
}

function inputField(input, id) {
  const name = `input-${input.name}`;
  const label = h("label", { for: `${id}-${name}` }, input.name, input.required ? " (required)" : "");
  const hint = input.description ? h("p", { class: "hint", id: `${id}-${name}-hint` }, input.description) : null;
  const common = { id: `${id}-${name}`, name, "aria-describedby": hint ? `${id}-${name}-hint` : null };
  switch (input.type) {
    case "boolean":
      return h("div", {}, h("label", { class: "inline" }, h("input", { ...common, type: "checkbox" }), input.name), hint);
    case "number":
      return h("div", {}, label, hint, h("input", { ...common, type: "number", step: "any", required: input.required }));
    case "enum":
      return h(
        "div",
        {},
        label,
        hint,
        h("select", { ...common, required: input.required }, h("option", { value: "" }, "—"), input.values.map((v) => h("option", { value: v }, v))),
      );
    default:
      return h("div", {}, label, hint, h("input", { ...common, type: "text", required: input.required }));
  }
}

function inputValues(form, inputs) {
  const values = {};
  for (const input of inputs) {
    const field = form.elements[`input-${input.name}`];
    if (!field) continue;
    if (input.type === "boolean") values[input.name] = field.checked;
    else if (field.value !== "") values[input.name] = input.type === "number" ? Number(field.value) : field.value;
  }
  return values;
}

/**
 * A panel for the gate of `taskType` in request `requestId`. `refresh()` reads the gate again (the
 * form is kept while the gate is open at the same version, so that a comment being typed survives).
 * `onView(artifact)` shows an artifact under review.
 */
export function gatePanel(requestId, taskType, { onView, onDecided } = {}) {
  const id = `gate-${taskType.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const heading = h("h3", { id: `${id}-heading` }, `Approval: ${taskType}`);
  const body = h("div", {});
  const formSlot = h("div", {});
  const message = h("div", { "aria-live": "polite" });
  const element = h("section", { class: "panel gate", id: `approval-${taskType}`, "aria-labelledby": `${id}-heading` }, heading, body, formSlot, message);
  let shownVersion = null;
  let busy = false;

  function decisionForm(gate) {
    const comment = h("textarea", { id: `${id}-comment`, name: "comment", "aria-describedby": `${id}-comment-hint` });
    const form = h(
      "form",
      { "aria-label": `Decide ${taskType}` },
      gate.policy.inputs.map((input) => inputField(input, id)),
      h("label", { for: `${id}-comment` }, "Comment"),
      h("p", { class: "hint", id: `${id}-comment-hint` }, "Recorded with your vote; required to reject."),
      comment,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "approve", name: "decision", value: "APPROVED" }, "Approve"),
        h("button", { type: "submit", class: "reject", name: "decision", value: "REJECTED" }, "Reject"),
      ),
    );
    const key = randomKey();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const decision = event.submitter ? event.submitter.value : "APPROVED";
      if (decision === "REJECTED" && !comment.value.trim()) {
        replace(message, h("div", { class: "error", role: "alert" }, "Say why in the comment to reject."));
        comment.focus();
        return;
      }
      if (busy) return;
      busy = true;
      for (const button of form.querySelectorAll("button")) button.disabled = true;
      try {
        const result = await post(`${gatePath(requestId, taskType)}/vote`, {
          json: {
            decision,
            comments: comment.value,
            inputs: inputValues(form, gate.policy.inputs),
            idempotency_key: `${key}-${decision}`,
            gate_version: gate.version,
          },
        });
        const text = `${decision === "APPROVED" ? "Approved" : "Rejected"} ${taskType}: ${result.progress}`;
        replace(message, h("div", { class: "notice", role: "status" }, text));
        announce(text);
        show(result);
        onDecided?.(result);
      } catch (error) {
        replace(message, errorBox(error, "The vote was not recorded"));
        for (const button of form.querySelectorAll("button")) button.disabled = false;
        if (error instanceof ApiError && error.status === 409) refresh();
      } finally {
        busy = false;
      }
    });
    return form;
  }

  function show(gate) {
    element.classList.toggle("closed", gate.state !== "OPEN");
    element.dataset.state = gate.state;
    replace(heading, `Approval: ${taskType}`, badge(gate.state));
    replace(
      body,
      gate.description ? h("p", {}, gate.description) : null,
      facts(gate),
      digests(gate, onView),
      h("h4", {}, "Votes"),
      votes(gate),
    );
    if (gate.state !== "OPEN") {
      formSlot.replaceChildren();
      shownVersion = null;
    } else if (!gate.caller_can_decide) {
      replace(formSlot, h("p", { class: "muted" }, `You cannot decide this gate: ${gate.caller_cannot_decide_reason}`));
      shownVersion = null;
    } else if (shownVersion !== gate.version) {
      shownVersion = gate.version;
      replace(formSlot, decisionForm(gate));
    }
  }

  async function refresh() {
    try {
      show(await get(gatePath(requestId, taskType) + "/approval"));
    } catch (error) {
      replace(body, errorBox(error, "Cannot read the gate"));
    }
  }

  return { element, refresh, show };
}
