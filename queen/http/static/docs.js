// Renders /openapi.json as a browsable page. Everything is served by the Queen: no CDN, no fonts.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function refName(ref) { return ref.split("/").pop(); }

function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
  if (schema.type === "array") return typeOf(schema.items) + "[]";
  if (schema.type === "object" && schema.additionalProperties) return "map<string, " + typeOf(schema.additionalProperties) + ">";
  return schema.type || "any";
}

function schemaLink(schema) {
  const text = typeOf(schema);
  const names = [];
  JSON.stringify(schema || {}, (key, value) => { if (key === "$ref") names.push(refName(value)); return value; });
  if (!names.length) return el("code", {}, text);
  return el("a", { href: "#schema-" + names[0] }, el("code", {}, text));
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

function operation(path, method, op) {
  const body = [];
  if (op.description) body.push(el("p", {}, op.description));
  const params = op.parameters || [];
  if (params.length) {
    body.push(el("h4", {}, "Parameters"));
    body.push(table(["name", "in", "type", "required", "description"], params.map((p) => [
      el("code", {}, p.name), p.in, schemaLink(p.schema), p.required ? "yes" : "no", (p.schema && p.schema.description) || p.description || "",
    ])));
  }
  if (op.requestBody) {
    body.push(el("h4", {}, "Request body"));
    body.push(table(["content type", "schema"], Object.entries(op.requestBody.content || {}).map(([type, c]) => [el("code", {}, type), schemaLink(c.schema)])));
  }
  body.push(el("h4", {}, "Responses"));
  body.push(table(["status", "description", "schema"], Object.entries(op.responses || {}).map(([status, r]) => {
    const content = Object.entries(r.content || {});
    const schema = content.length ? schemaLink(content[0][1].schema) : "";
    return [el("code", {}, status), r.description || "", schema];
  })));
  const summary = el("summary", {}, el("span", { class: "method " + method.toUpperCase() }, method.toUpperCase()), path, " ", el("span", { class: "muted" }, op.summary || ""));
  const details = el("details", { "data-search": (method + " " + path + " " + (op.summary || "")).toLowerCase() }, summary, ...body);
  return details;
}

function schemaSection(name, schema) {
  const props = Object.entries(schema.properties || {});
  const required = new Set(schema.required || []);
  const body = [];
  if (schema.description) body.push(el("p", {}, schema.description));
  if (props.length) {
    body.push(table(["field", "type", "required", "description"], props.map(([field, s]) => [
      el("code", {}, field), schemaLink(s), required.has(field) ? "yes" : "no", s.description || "",
    ])));
  }
  return el("details", { id: "schema-" + name }, el("summary", {}, name), ...body);
}

async function main() {
  const response = await fetch("/openapi.json");
  const spec = await response.json();
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  const summary = document.getElementById("summary");
  summary.textContent = spec.info.description || "";
  summary.append(" ", el("a", { href: "/openapi.json" }, "openapi.json"));
  const routes = document.getElementById("routes");
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) routes.append(operation(path, method, op));
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) schemas.append(schemaSection(name, schema));
  document.getElementById("filter").addEventListener("input", (event) => {
    const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const node of routes.children) {
      const text = node.getAttribute("data-search");
      node.hidden = !words.every((w) => text.includes(w));
    }
  });
  if (location.hash) {
    const target = document.getElementById(location.hash.slice(1));
    if (target) { target.open = true; target.scrollIntoView(); }
  }
}

main().catch((error) => {
  document.getElementById("summary").textContent = "Could not read /openapi.json: " + error;
});
