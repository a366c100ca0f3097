// The header's navigation: the current page marked, and the count of open approval gates.

import { get } from "./api.js";

export function markCurrent(section) {
  for (const link of document.querySelectorAll("header nav a[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

export function setApprovalCount(count) {
  const badge = document.getElementById("approvals-count");
  if (!badge) return;
  badge.hidden = !count;
  badge.textContent = count > 99 ? "99+" : String(count);
  badge.setAttribute("aria-label", `${count} waiting`);
}

export async function loadApprovalCount() {
  try {
    const found = await get("/api/approvals/pending", { page_size: 100 });
    setApprovalCount(found.records.length + (found.has_more ? 1 : 0));
  } catch {
    // the count is a hint; the inbox page says what is wrong
  }
}
