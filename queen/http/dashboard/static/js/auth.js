// Signing in when the API asks for a credential: an API token (or OIDC token) is exchanged for the
// session cookie (POST /api/auth/login); the token itself is never stored by the page.

import { ApiError, call } from "./api.js";
import { errorBox, h, replace } from "./dom.js";

let dialog = null;

function signInDialog(reason) {
  const message = h("div", { "aria-live": "polite" });
  const token = h("input", { type: "password", id: "sign-in-token", name: "token", autocomplete: "off", required: true, size: 48 });
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", { id: "sign-in-heading" }, "Sign in"),
    h("p", {}, reason || "The Queen needs a credential."),
    h("label", { for: "sign-in-token" }, "API token"),
    h("p", { class: "hint" }, "From `formicary tokens create`, or an OIDC token of your organisation."),
    token,
    message,
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Sign in"), h("button", { type: "button", onclick: () => dialog.close() }, "Not now")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("POST", "/api/auth/login", { json: { token: token.value } });
      location.reload();
    } catch (error) {
      replace(message, errorBox(error instanceof ApiError ? error : new ApiError(0, { message: String(error) }), "Not signed in"));
      token.select();
    }
  });
  return h("dialog", { class: "panel", "aria-labelledby": "sign-in-heading" }, form);
}

/** Offer to sign in whenever a call is refused for want of a credential. */
export function installSignIn() {
  window.addEventListener("formicary:unauthenticated", (event) => {
    if (dialog && dialog.open) return;
    dialog?.remove();
    dialog = signInDialog(event.detail && event.detail.message);
    document.body.append(dialog);
    dialog.showModal();
  });
}
