// The dashboard's entry point: render the page the address names. Every address of the dashboard
// answers the same HTML; links are ordinary links, so the browser's history and new tabs just work.

import { installSignIn } from "./auth.js";
import { h, replace, setTitle } from "./dom.js";
import { loadApprovalCount, markCurrent } from "./nav.js";
import { antsPage } from "./pages/ants.js";
import { approvalsPage } from "./pages/approvals.js";
import { definitionPage } from "./pages/definition.js";
import { definitionsPage } from "./pages/definitions.js";
import { requestPage } from "./pages/request.js";
import { requestsPage } from "./pages/requests.js";

const ROUTES = [
  [/^\/(?:requests\/?)?$/, "requests", (main) => requestsPage(main)],
  [/^\/requests\/(\d+)\/?$/, "requests", (main, id) => requestPage(main, Number(id))],
  [/^\/definitions\/?$/, "definitions", (main) => definitionsPage(main)],
  [/^\/definitions\/([^/]+)\/?$/, "definitions", (main, type) => definitionPage(main, decodeURIComponent(type))],
  [/^\/approvals\/?$/, "approvals", (main) => approvalsPage(main)],
  [/^\/ants\/?$/, "ants", (main) => antsPage(main)],
];

function start() {
  installSignIn();
  const main = document.getElementById("main");
  for (const [pattern, section, render] of ROUTES) {
    const match = location.pathname.match(pattern);
    if (!match) continue;
    markCurrent(section);
    render(main, ...match.slice(1));
    if (section !== "approvals") loadApprovalCount();
    return;
  }
  setTitle("Not found");
  replace(main, h("h1", {}, "Not found"), h("p", {}, "No dashboard page here. ", h("a", { href: "/" }, "Job requests")));
}

start();
