// Job definitions: the latest version of each job type, and uploading a playbook.

import { get, post } from "../api.js";
import { announce, badge, errorBox, h, replace, setTitle, when } from "../dom.js";

const PAGE_SIZE = 50;

function row(definition) {
  const link = `/definitions/${encodeURIComponent(definition.job_type)}`;
  return h(
    "tr",
    { "data-job-type": definition.job_type },
    h("th", { scope: "row" }, h("a", { href: link }, definition.job_type)),
    h("td", { class: "num" }, String(definition.version)),
    h("td", {}, definition.description || h("span", { class: "muted" }, "—")),
    h("td", { class: "num" }, String(definition.tasks.length)),
    h("td", {}, definition.methods.join(", ")),
    h("td", {}, definition.disabled ? badge("CANCELLED", "disabled") : badge("COMPLETED", "enabled")),
    h("td", {}, when(definition.updated_at)),
    h("td", {}, h("a", { href: `${link}#run` }, "Run", h("span", { class: "visually-hidden" }, ` ${definition.job_type}`))),
  );
}

export function definitionsPage(main) {
  setTitle("Job definitions");
  let page = 0;
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const listMessage = h("div");
  const result = h("div", { id: "upload-result", "aria-live": "polite" });
  const file = h("input", { type: "file", id: "upload-file", name: "file", accept: ".yaml,.yml,application/yaml,text/yaml", "aria-describedby": "upload-hint" });
  const text = h("textarea", { id: "upload-text", name: "yaml", rows: 8, spellcheck: "false", placeholder: "job_type: hello\ntasks:\n- task_type: greet\n  method: SHELL\n  script: [echo hello]" });
  const submit = h("button", { type: "submit", class: "primary" }, "Upload");

  const form = h(
    "form",
    { id: "upload-form", "aria-labelledby": "upload-heading" },
    h("h2", { id: "upload-heading" }, "Upload a playbook"),
    h("p", { class: "hint", id: "upload-hint" }, "A job definition in YAML. An upload of a job type that exists stores a new version (unless it is identical)."),
    h("label", { for: "upload-file" }, "YAML file"),
    file,
    h("label", { for: "upload-text" }, "…or paste the YAML"),
    text,
    h("div", { class: "row" }, submit),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const yaml = file.files.length ? await file.files[0].text() : text.value;
    if (!yaml.trim()) {
      replace(result, h("div", { class: "error", role: "alert" }, "Choose a file or paste the YAML first."));
      file.focus();
      return;
    }
    submit.disabled = true;
    try {
      const stored = await post("/api/jobs/definitions", { body: yaml, contentType: "application/yaml" });
      const what = stored.new_version ? `Uploaded ${stored.job_type} version ${stored.version}` : `${stored.job_type} is unchanged (identical to version ${stored.version})`;
      replace(
        result,
        h(
          "div",
          { class: "notice", role: "status" },
          `${what}. `,
          h("a", { href: `/definitions/${encodeURIComponent(stored.job_type)}`, id: "uploaded-link" }, `Open ${stored.job_type}`),
          stored.warnings.length
            ? h("ul", {}, stored.warnings.map((w) => h("li", {}, `line ${w.line}, column ${w.column}: ${w.message}${w.fix ? ` (fix: ${w.fix})` : ""}`)))
            : null,
        ),
      );
      announce(what);
      file.value = "";
      text.value = "";
      load();
    } catch (error) {
      replace(result, errorBox(error, "Not uploaded"));
    } finally {
      submit.disabled = false;
    }
  });

  replace(
    main,
    h("h1", {}, "Job definitions"),
    h("section", { class: "panel" }, form),
    h(
      "section",
      { "aria-labelledby": "definitions-heading" },
      h("h2", { id: "definitions-heading" }, "Job types"),
      listMessage,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "definitions" },
          h("thead", {}, h("tr", {}, ["Job type", "Version", "Description", "Tasks", "Methods", "Status", "Updated", ""].map((c) => h("th", { scope: "col" }, c)))),
          body,
        ),
      ),
      pager,
    ),
  );

  async function load() {
    try {
      const found = await get("/api/jobs/definitions", { page, page_size: PAGE_SIZE });
      listMessage.replaceChildren();
      replace(body, found.records.length ? found.records.map(row) : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No job definitions yet: upload one above.")));
      replace(
        pager,
        h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "Previous"),
        h("span", {}, `Page ${page + 1}`),
        h("button", { type: "button", disabled: !found.has_more, onclick: () => { page += 1; load(); } }, "Next"),
      );
    } catch (error) {
      replace(listMessage, errorBox(error, "Cannot list the job definitions"));
    }
  }
  load();
}
