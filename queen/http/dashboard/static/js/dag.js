// A job definition's DAG drawn as SVG: tasks in layers along their routes (on_completed, on_failed,
// on_exit_code), ordered to cross few edges, each node coloured by its task's state.
//
// Layout (a small Sugiyama): longest-path layers from the tasks nothing routes to (always_run tasks
// nothing routes to go last, where they run); edges spanning several layers pass through virtual
// points, one per layer, so that ordering sees them; a few barycentre sweeps order each layer; layers
// are centred. Route targets that are not tasks (FATAL, no-op, RESTART_JOB, ...) are not drawn: the
// task table lists every route.

import { h, s } from "./dom.js";

const NODE_H = 46;
const LAYER_GAP = 56;
const NODE_GAP = 28;
const MARGIN = 14;
const MIN_W = 120;
const SWEEPS = 6;

/** The kind of route a task's exit code takes, for its colour. */
function exitKind(code) {
  const word = String(code).toUpperCase();
  if (word === "APPROVED") return "approved";
  if (word === "REJECTED") return "rejected";
  if (word === "FAILED" || word === "TIMED_OUT") return "failed";
  if (word === "COMPLETED" || word === "0") return "completed";
  return "exit";
}

/** Edges between tasks, one per (from, to), labelled with what takes them. */
export function flowEdges(tasks) {
  const names = new Set(tasks.map((t) => t.task_type));
  const merged = new Map();
  const add = (from, to, kind, label) => {
    if (!names.has(to) || to === from) return;
    const key = `${from}\u0000${to}`;
    const edge = merged.get(key) || { from, to, kinds: [], labels: [] };
    if (!edge.kinds.includes(kind)) edge.kinds.push(kind);
    if (!edge.labels.includes(label)) edge.labels.push(label);
    merged.set(key, edge);
  };
  for (const task of tasks) {
    for (const [code, target] of Object.entries(task.on_exit_code || {})) {
      add(task.task_type, target, exitKind(code), /^\d+$/.test(code) ? `exit ${code}` : code);
    }
    if (task.on_completed) add(task.task_type, task.on_completed, "completed", "completed");
    if (task.on_failed) add(task.task_type, task.on_failed, "failed", "failed");
  }
  return [...merged.values()].map((edge) => {
    const kind = edge.kinds.length === 1 ? edge.kinds[0] : "exit";
    // a plain on_completed edge needs no words; anything else says what takes it
    const label = edge.labels.length === 1 && edge.labels[0] === "completed" ? "" : edge.labels.join(", ");
    return { from: edge.from, to: edge.to, kind, label };
  });
}

function textWidth(text, size) {
  return text.length * size * 0.6;
}

/** Positions of the tasks (and of the points long edges pass through). */
export function layoutDag(tasks, edges, describe) {
  const names = tasks.map((t) => t.task_type);
  const out = new Map(names.map((n) => [n, []]));
  const into = new Map(names.map((n) => [n, []]));
  for (const e of edges) {
    out.get(e.from).push(e.to);
    into.get(e.to).push(e.from);
  }

  // Topological order (Kahn); a cycle (refused by validation) would leave tasks out: they go first.
  const indegree = new Map(names.map((n) => [n, into.get(n).length]));
  const queue = names.filter((n) => indegree.get(n) === 0);
  const topo = [];
  while (queue.length) {
    const n = queue.shift();
    topo.push(n);
    for (const m of out.get(n)) {
      indegree.set(m, indegree.get(m) - 1);
      if (indegree.get(m) === 0) queue.push(m);
    }
  }
  const ordered = [...names.filter((n) => !topo.includes(n)), ...topo];
  const layer = new Map(names.map((n) => [n, 0]));
  const propagate = () => {
    for (const n of ordered) for (const m of out.get(n)) layer.set(m, Math.max(layer.get(m), layer.get(n) + 1));
  };
  propagate();
  const last = Math.max(0, ...layer.values());
  for (const t of tasks.slice(1)) {
    if (t.always_run && into.get(t.task_type).length === 0) layer.set(t.task_type, last + 1);
  }
  propagate();

  // Nodes: the tasks, then one virtual point per layer an edge crosses.
  const nodes = new Map();
  tasks.forEach((task, index) => {
    const label = describe(task);
    const w = Math.max(MIN_W, textWidth(task.task_type, 13), textWidth(label.detail, 11.5)) + 24;
    nodes.set(task.task_type, { id: task.task_type, task, label, layer: layer.get(task.task_type), w, rank: index });
  });
  const chains = [];
  let virtual = 0;
  for (const e of edges) {
    const chain = [e.from];
    const a = layer.get(e.from);
    const b = layer.get(e.to);
    for (let l = a + 1; l < b; l++) {
      const id = `\u0000${virtual++}`;
      nodes.set(id, { id, layer: l, w: 10, rank: nodes.get(e.from).rank + 0.5, virtual: true });
      chain.push(id);
    }
    chain.push(e.to);
    chains.push({ edge: e, chain });
  }
  const above = new Map([...nodes.keys()].map((id) => [id, []]));
  const below = new Map([...nodes.keys()].map((id) => [id, []]));
  for (const { chain } of chains) {
    for (let i = 0; i + 1 < chain.length; i++) {
      if (nodes.get(chain[i + 1]).layer <= nodes.get(chain[i]).layer) continue; // only in a cycle
      below.get(chain[i]).push(chain[i + 1]);
      above.get(chain[i + 1]).push(chain[i]);
    }
  }

  const depth = Math.max(0, ...[...nodes.values()].map((n) => n.layer)) + 1;
  const layers = Array.from({ length: depth }, () => []);
  for (const node of [...nodes.values()].sort((x, y) => x.rank - y.rank)) layers[node.layer].push(node.id);
  const index = new Map();
  const reindex = (ids) => ids.forEach((id, i) => index.set(id, i));
  layers.forEach(reindex);
  const sortBy = (ids, neighbours) => {
    const keyed = ids.map((id, i) => {
      const near = neighbours.get(id);
      const key = near.length ? near.reduce((sum, n) => sum + index.get(n), 0) / near.length : i;
      return { id, key, i };
    });
    keyed.sort((x, y) => x.key - y.key || x.i - y.i);
    ids.splice(0, ids.length, ...keyed.map((k) => k.id));
    reindex(ids);
  };
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    for (let l = 1; l < depth; l++) sortBy(layers[l], above);
    for (let l = depth - 2; l >= 0; l--) sortBy(layers[l], below);
  }

  const widths = layers.map((ids) => ids.reduce((sum, id) => sum + nodes.get(id).w, 0) + NODE_GAP * Math.max(0, ids.length - 1));
  const width = Math.max(...widths, MIN_W) + 2 * MARGIN;
  layers.forEach((ids, l) => {
    let x = (width - widths[l]) / 2;
    for (const id of ids) {
      const node = nodes.get(id);
      node.x = x;
      node.cx = x + node.w / 2;
      node.y = MARGIN + l * (NODE_H + LAYER_GAP);
      x += node.w + NODE_GAP;
    }
  });
  const height = 2 * MARGIN + depth * NODE_H + (depth - 1) * LAYER_GAP;
  return { nodes, chains, width, height };
}

/** Where an edge leaves or enters a node: spread along its side, ordered by the other end's x. */
function ports(nodes, chains) {
  const exits = new Map();
  const entries = new Map();
  for (const item of chains) {
    const { chain } = item;
    (exits.get(chain[0]) || exits.set(chain[0], []).get(chain[0])).push(item);
    const end = chain[chain.length - 1];
    (entries.get(end) || entries.set(end, []).get(end)).push(item);
  }
  const offsets = new Map();
  const spread = (groups, side, other) => {
    for (const [id, items] of groups) {
      const node = nodes.get(id);
      items.sort((a, b) => nodes.get(other(a)).cx - nodes.get(other(b)).cx);
      const step = Math.min(18, node.w / (items.length + 1));
      items.forEach((item, i) => offsets.set(`${side}:${item.edge.from}:${item.edge.to}`, (i - (items.length - 1) / 2) * step));
    }
  };
  spread(exits, "out", (item) => item.chain[1]);
  spread(entries, "in", (item) => item.chain[item.chain.length - 2]);
  return offsets;
}

function curve(points) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    if (x0 === x1) d += ` L${x1},${y1}`;
    else {
      const mid = (y0 + y1) / 2;
      d += ` C${x0},${mid} ${x1},${mid} ${x1},${y1}`;
    }
  }
  return d;
}

/**
 * The DAG of `tasks` (a definition's tasks) as an <svg>. `describe(task)` gives each node
 * {state, detail, title, notRun}: state "" draws it uncoloured. `taken(edge)` marks edges the run took.
 */
export function renderDag(tasks, { describe, taken = () => false, label = "Task graph" }) {
  const edges = flowEdges(tasks);
  const { nodes, chains, width, height } = layoutDag(tasks, edges, describe);
  const offsets = ports(nodes, chains);
  const kinds = ["completed", "failed", "approved", "rejected", "exit"];
  const defs = s(
    "defs",
    {},
    kinds.map((kind) =>
      s(
        "marker",
        {
          id: `arrow-${kind}`,
          class: kind,
          viewBox: "0 0 10 10",
          refX: 9,
          refY: 5,
          markerUnits: "userSpaceOnUse", // the same size on thick (taken) edges
          markerWidth: 10,
          markerHeight: 10,
          orient: "auto-start-reverse",
        },
        s("path", { d: "M0,0 L10,5 L0,10 z" }),
      ),
    ),
  );
  const edgeGroup = s("g", { class: "edges" });
  const labelGroup = s("g", { class: "edge-labels" });
  for (const { edge, chain } of chains) {
    const from = nodes.get(edge.from);
    const to = nodes.get(edge.to);
    const points = [[from.cx + (offsets.get(`out:${edge.from}:${edge.to}`) || 0), from.y + NODE_H]];
    for (const id of chain.slice(1, -1)) {
      const point = nodes.get(id);
      points.push([point.cx, point.y], [point.cx, point.y + NODE_H]);
    }
    points.push([to.cx + (offsets.get(`in:${edge.from}:${edge.to}`) || 0), to.y - 2]);
    const classes = `edge ${edge.kind}${taken(edge) ? " taken" : ""}`;
    edgeGroup.append(
      s("g", { class: classes, "data-from": edge.from, "data-to": edge.to }, s("path", { d: curve(points), "marker-end": `url(#arrow-${edge.kind})` })),
    );
    if (edge.label) {
      const [x0, y0] = points[0];
      const [x1, y1] = points[1];
      const x = (x0 + x1) / 2;
      const y = (y0 + y1) / 2;
      const w = textWidth(edge.label, 11) + 8;
      labelGroup.append(
        s(
          "g",
          { class: `edge ${edge.kind}` },
          s("rect", { x: x - w / 2, y: y - 8, width: w, height: 15, rx: 3 }),
          s("text", { x, y: y + 4, "text-anchor": "middle" }, edge.label),
        ),
      );
    }
  }
  const nodeGroup = s("g", { class: "nodes" });
  for (const node of nodes.values()) {
    if (node.virtual) continue;
    const { task, label: info } = node;
    const classes = ["node"];
    if (info.state) classes.push(`state-${info.state}`);
    if (info.notRun) classes.push("not-run");
    if (task.method === "MANUAL") classes.push("manual");
    nodeGroup.append(
      s(
        "g",
        { class: classes.join(" "), "data-task": task.task_type, "data-state": info.state || "" },
        s(
          "a",
          { href: `#task-${encodeURIComponent(task.task_type)}`, "aria-label": `${task.task_type}: ${info.detail}` },
          s("title", {}, info.title || `${task.task_type}: ${info.detail}`),
          s("rect", { x: node.x, y: node.y, width: node.w, height: NODE_H, rx: 8 }),
          s("text", { x: node.cx, y: node.y + 19, "text-anchor": "middle", class: "name" }, task.task_type),
          s("text", { x: node.cx, y: node.y + 36, "text-anchor": "middle", class: "detail" }, info.detail),
        ),
      ),
    );
  }
  return s(
    "svg",
    { class: "dag", role: "group", "aria-label": label, width, height, viewBox: `0 0 ${width} ${height}` },
    defs,
    edgeGroup,
    labelGroup,
    nodeGroup,
  );
}

/** The legend of the node colours. */
export function legend() {
  const items = [
    ["COMPLETED", "completed / approved"],
    ["EXECUTING", "running"],
    ["MANUAL_APPROVAL_REQUIRED", "waiting for approval"],
    ["FAILED", "failed / rejected"],
    ["SKIPPED", "skipped / cancelled"],
  ];
  return h(
    "p",
    { class: "legend", "aria-hidden": "true" },
    items.map(([state, text]) => h("span", { class: `badge state-${state}` }, text)),
    h("span", { class: "badge" }, "dashed: not run"),
  );
}
