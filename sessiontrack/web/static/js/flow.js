// The flow graph drawn as SVG from React Flow data, with the executed path highlighted,
// fit to view, pan (drag, arrow keys) and zoom (wheel, buttons, +/- keys); or, with
// setHeat(), as a heat map (node fill by a level, edge width by a weight, a tooltip per
// node and edge on hover and keyboard focus).

import { formatCompact, formatCost, formatMs, formatNumber, h, plural } from "./dom.js";

const NODE_W = 172;
const NODE_H = 48;
const GAP_X = 56;
const GAP_Y = 64;
const MIN_ZOOM = 0.15;
const MAX_ZOOM = 3;
// The least zoom that fit and the first view use: node labels (13 px) stay ≥ 9.75 px on
// screen. Below it the reader pans (or zooms out on purpose, down to MIN_ZOOM).
const READABLE_ZOOM = 0.75;
// Back edges (to a node above, or beside) go round the layout in lanes this far apart.
const LANE_GAP = 14;
const LANE_MARGIN = 30;
const STATS_LINE = 20;
const STATS_OVERHANG = 16;
// Heat map: a light green → yellow → salmon scale (dark label text stays ≥ 4.5:1 on it).
const HEAT_STOPS = [[0, [220, 242, 226]], [0.5, [253, 226, 150]], [1, [244, 150, 136]]];
const HEAT_MIN_WIDTH = 1.5;
const HEAT_MAX_WIDTH = 12;
let instances = 0;

export class FlowView {
  /**
   * options.idPrefix (default "flow"): ids of the SVG ("<prefix>-svg") and its buttons
   * ("<prefix>-zoom-in", "-zoom-out", "-fit"), so two views can share a page.
   * options.onNodeActivate(nodeId): called on a click (not a drag) on a node, or Enter /
   * Space on a focused one; nodes with heat data are then buttons.
   */
  constructor(flowData, options = {}) {
    const prefix = options.idPrefix ?? "flow";
    this.uid = `fv${++instances}`;
    this.onNodeActivate = options.onNodeActivate ?? null;
    this.heat = null;
    this.nodes = (flowData?.nodes || []).filter((n) => n && n.id != null);
    this.edges = (flowData?.edges || []).filter((e) => e && e.source != null && e.target != null);
    this.view = { x: 0, y: 0, k: 1 };
    this.userMoved = false;
    this.layout();

    this.viewport = h("g", { class: "viewport" });
    this.svg = h("svg", {
      class: "flow-svg", id: `${prefix}-svg`, role: "group", tabindex: "0",
      "aria-label": "Flow graph. Drag or use arrow keys to pan; wheel, plus or minus to zoom; 0 to fit.",
    }, h("defs", {},
      marker(`${this.uid}-arrow`, "edge-arrow"), marker(`${this.uid}-arrow-exec`, "edge-arrow exec")), this.viewport);
    const button = (label, text, fn, id) => {
      const b = h("button", { type: "button", class: "btn btn-icon", "aria-label": label, title: label, id }, text);
      b.addEventListener("click", fn);
      return b;
    };
    this.controls = h("div", { class: "flow-controls" },
      button("Zoom in", "+", () => this.zoomBy(1.25), `${prefix}-zoom-in`),
      button("Zoom out", "−", () => this.zoomBy(0.8), `${prefix}-zoom-out`),
      button("Fit to view", "⤢", () => { this.fitAll = true; this.fit(); }, `${prefix}-fit`),
      this.focusButton = button("Show the current node", "◎", () => this.showFocus(), `${prefix}-focus`));
    this.focusButton.hidden = true;
    this.legend = h("p", { class: "flow-legend" },
      h("span", { class: "legend-item executed" }, "Executed"),
      h("span", { class: "legend-item current" }, "Current"),
      h("span", { class: "legend-item unexecuted" }, "Not reached"),
      h("span", { class: "legend-item errors" }, "Errors"),
      h("span", { class: "legend-note" }, "Under a node: runs · time · tokens · tool calls"));
    this.tooltip = h("div", { class: "flow-tooltip", role: "tooltip", id: `${prefix}-tooltip`, hidden: true });
    this.heatLegend = h("div", { class: "heat-legend", id: `${prefix}-heat-legend`, hidden: true });
    this.el = h("div", { class: "flow" }, this.svg, this.controls, this.heatLegend, this.tooltip);
    if (!this.nodes.length) {
      this.el.replaceChildren(h("p", { class: "state muted" }, "This chatbot has no flow graph registered."));
    }
    this.draw();
    this.bind();
  }

  layout() {
    const pos = new Map();
    const positioned = this.nodes.length && this.nodes.every((n) => Number.isFinite(n.position?.x) && Number.isFinite(n.position?.y));
    if (positioned) {
      for (const n of this.nodes) pos.set(String(n.id), { x: n.position.x, y: n.position.y, ...size(n) });
    } else {
      for (const [id, p] of layeredLayout(this.nodes, this.edges)) pos.set(id, { ...p, w: NODE_W, h: NODE_H });
    }
    this.pos = pos;
    // Vertical flows connect bottom → top, horizontal ones right → left.
    let dx = 0;
    let dy = 0;
    for (const e of this.edges) {
      const a = pos.get(String(e.source));
      const b = pos.get(String(e.target));
      if (a && b) { dx += Math.abs(b.x - a.x); dy += Math.abs(b.y - a.y); }
    }
    this.vertical = dy >= dx;
    // The first node: the first root (no edge into it) in the flow's order, else the first.
    const targets = new Set(this.edges.map((e) => String(e.source) === String(e.target) ? null : String(e.target)));
    const first = this.nodes.find((n) => !targets.has(String(n.id))) || this.nodes[0];
    this.firstId = first ? String(first.id) : null;
    this.laneGap = LANE_GAP;
    this.routes = routeEdges(this.edges, pos, this.vertical, this.laneGap);
  }

  draw() {
    const edgeLayer = h("g", { class: "edges" });
    const nodeLayer = h("g", { class: "nodes" });
    this.edgeEls = [];
    this.edges.forEach((e, i) => {
      const a = this.pos.get(String(e.source));
      const b = this.pos.get(String(e.target));
      if (!a || !b) return;
      const route = this.routes.get(i);
      const d = route ? route.d : this.edgePath(a, b);
      const path = h("path", { class: "edge", d, "marker-end": `url(#${this.uid}-arrow)` });
      // A wide invisible stroke: thin edges are easy to point at.
      const hit = h("path", { class: "edge-hit", d });
      const g = h("g", { class: `edge-g${route ? " back-edge" : ""}`, dataset: { source: String(e.source), target: String(e.target), edgeId: String(e.id ?? ""), index: String(i) } }, path, hit);
      if (e.label) {
        const at = route ? route.labelAt : { x: (a.x + a.w / 2 + b.x + b.w / 2) / 2, y: (a.y + a.h / 2 + b.y + b.h / 2) / 2 };
        g.append(h("text", { class: "edge-label", x: at.x, y: at.y }, String(e.label)));
      }
      edgeLayer.append(g);
      this.edgeEls.push(g);
    });
    this.nodeEls = new Map();
    for (const n of this.nodes) {
      const p = this.pos.get(String(n.id));
      const label = String(n.data?.label ?? n.id);
      const type = n.type ? String(n.type) : "";
      const g = h("g", { class: "node", transform: `translate(${p.x},${p.y})`, dataset: { nodeId: String(n.id) } },
        h("title", {}, type ? `${label} (${type})` : label),
        h("rect", { class: "node-box", width: p.w, height: p.h, rx: 10 }),
        h("text", { class: "node-label", x: p.w / 2, y: type ? p.h / 2 - 3 : p.h / 2 + 5 }, truncate(label, Math.floor(p.w / 8))),
        // The type is in the title (and a heat node's text): hidden from the accessible name.
        type ? h("text", { class: "node-type", x: p.w / 2, y: p.h / 2 + 13, "aria-hidden": "true" }, truncate(type, Math.floor(p.w / 7))) : null,
        h("g", { class: "visit-badge", transform: `translate(${p.w - 6},6)` }, h("circle", { r: 11 }), h("text", { y: 4 }, "")),
        h("g", { class: "error-badge", transform: "translate(6,6)" }, h("circle", { r: 11 }), h("text", { y: 4 }, "")),
        h("text", { class: "node-stats", x: p.w / 2, y: p.h + 14 }));
      g.dataset.title = type ? `${label} (${type})` : label;
      nodeLayer.append(g);
      this.nodeEls.set(String(n.id), g);
    }
    this.viewport.replaceChildren(edgeLayer, nodeLayer);
  }

  edgePath(a, b) {
    if (this.vertical) {
      const sx = a.x + a.w / 2, sy = a.y + a.h, tx = b.x + b.w / 2, ty = b.y;
      const k = Math.max(36, Math.abs(ty - sy) / 2);
      return `M${sx},${sy} C${sx},${sy + k} ${tx},${ty - k} ${tx},${ty - 2}`;
    }
    const sx = a.x + a.w, sy = a.y + a.h / 2, tx = b.x, ty = b.y + b.h / 2;
    const k = Math.max(36, Math.abs(tx - sx) / 2);
    return `M${sx},${sy} C${sx + k},${sy} ${tx - k},${ty} ${tx - 2},${ty}`;
  }

  /** Highlight what ran: nodes in history, edges between consecutive history entries. */
  setExecution(history, currentNodeId, active) {
    this.focusId = currentNodeId ?? history[history.length - 1];
    this.focusButton.hidden = !this.pos.has(String(this.focusId));
    this.focusButton.setAttribute("aria-label", active ? "Show the current node" : "Show the last node");
    this.focusButton.title = this.focusButton.getAttribute("aria-label");
    const visits = new Map();
    for (const id of history) visits.set(String(id), (visits.get(String(id)) || 0) + 1);
    const pairs = new Set();
    for (let i = 1; i < history.length; i++) pairs.add(`${history[i - 1]}\u0000${history[i]}`);
    for (const [id, g] of this.nodeEls) {
      const count = visits.get(id) || 0;
      const current = active && String(currentNodeId) === id;
      g.classList.toggle("executed", count > 0);
      g.classList.toggle("unexecuted", count === 0 && !current);
      g.classList.toggle("current", current);
      g.classList.toggle("last", !active && String(currentNodeId) === id);
      g.querySelector(".visit-badge text").textContent = count > 1 ? `×${count}` : "";
      g.classList.toggle("revisited", count > 1);
      g.dataset.state = current ? " — current node" : count ? ` — executed ${count}×` : " — not reached";
      this.updateTitle(g);
    }
    for (const g of this.edgeEls) {
      const exec = pairs.has(`${g.dataset.source}\u0000${g.dataset.target}`);
      g.classList.toggle("executed", exec);
      if (!g.classList.contains("heat")) g.querySelector(".edge").setAttribute("marker-end", `url(#${this.uid}-${exec ? "arrow-exec" : "arrow"})`);
    }
    // Executed edges on top of the others.
    const layer = this.viewport.querySelector(".edges");
    if (layer) for (const g of this.edgeEls) if (g.classList.contains("executed")) layer.append(g);
    if (this.nodeEls.size && this.svg.isConnected) this.autoView();
    const executed = [...visits.keys()].filter((id) => this.nodeEls.has(id)).length;
    this.svg.setAttribute("aria-label", `Flow graph: ${this.nodeEls.size} nodes, ${executed} executed. ` +
      "Drag or use arrow keys to pan; wheel, plus or minus to zoom; 0 to fit; c for the current node.");
  }

  /**
   * Per-node figures (the detail's nodeTotals; `timed`, a Set of the node ids with a
   * reported duration): a line under each node that ran, a red
   * badge on a node with errors, and every figure in the node's title.
   */
  setFigures(nodeTotals, timed = null) {
    const byId = new Map((nodeTotals || []).map((t) => [String(t.nodeId), t]));
    for (const [id, g] of this.nodeEls) {
      const t = byId.get(id);
      const stats = g.querySelector(".node-stats");
      const errors = t?.errorCount || 0;
      g.classList.toggle("has-errors", errors > 0);
      g.querySelector(".error-badge text").textContent = errors ? (errors > 9 ? "9+" : String(errors)) : "";
      if (!t || !(t.executions || t.llmCalls || t.toolCalls || errors)) {
        stats.replaceChildren();
        delete g.dataset.figures;
        this.updateTitle(g);
        continue;
      }
      const tokens = (t.inputTokens || 0) + (t.outputTokens || 0);
      const parts = [];
      if (t.executions) parts.push(`${formatNumber(t.executions)}×`);
      // A time only when the engine reported one (`timed`: the nodes with a reported
      // duration; without it, a sum above 0): "<1 ms" for a real 0, never a made-up one.
      const hasTime = t.durationMs > 0 || !!timed?.has(id);
      if (hasTime) parts.push(formatMs(t.durationMs || 0));
      if (tokens) parts.push(`${formatCompact(tokens)} tok`);
      if (t.toolCalls) parts.push(plural(t.toolCalls, "tool"));
      stats.replaceChildren(parts.join(" · "));
      if (errors) stats.append(h("tspan", { class: "node-stats-error" }, `${parts.length ? " · " : ""}${plural(errors, "error")}`));
      Object.assign(g.dataset, {
        executions: String(t.executions || 0), tokens: String(tokens), toolCalls: String(t.toolCalls || 0),
        llmCalls: String(t.llmCalls || 0), errors: String(errors), durationMs: String(t.durationMs || 0),
      });
      const said = [plural(t.executions || 0, "run")];
      if (hasTime) said.push(`${formatMs(t.durationMs || 0)} in all`);
      if (t.llmCalls) said.push(`${plural(t.llmCalls, "LLM call")} (${formatNumber(t.inputTokens || 0)} input, ${formatNumber(t.outputTokens || 0)} output tokens)`);
      if (t.cost) said.push(`cost ${formatCost(t.cost)}`);
      if (t.toolCalls) said.push(plural(t.toolCalls, "tool call"));
      if (errors) said.push(plural(errors, "error"));
      g.dataset.figures = `: ${said.join(", ")}`;
      this.updateTitle(g);
    }
  }

  updateTitle(g) {
    // With heat data the node's tooltip (and aria-label) says it all: no second, native one.
    g.querySelector("title").textContent = g.dataset.tip ? "" : g.dataset.title + (g.dataset.state || "") + (g.dataset.figures || "");
  }

  /**
   * The flow as a heat map, or back to plain with null:
   * {nodes: {[nodeId]: {level: 0..1 | null, text}}, edges: {[source + "\u0000" + target]:
   * {weight: 0..1, text}}, legend?: {title, low, high, edges}}. A node's fill follows its
   * level on a green → yellow → red scale (null: no data, grey); an edge's width follows
   * its weight; `text` is the tooltip shown on hover and keyboard focus, and the
   * element's aria-label (nodes and edges with data are in the tab order).
   */
  setHeat(heat) {
    this.heat = heat || null;
    this.hideTip();
    this.svg.classList.toggle("heat", !!this.heat);
    for (const [id, g] of this.nodeEls) {
      const d = this.heat?.nodes?.[id];
      const box = g.querySelector(".node-box");
      const level = d && Number.isFinite(d.level) ? clamp(d.level, 0, 1) : null;
      box.style.fill = level === null ? "" : heatColor(level);
      g.classList.toggle("heat-node", !!d);
      g.classList.toggle("heat-none", !!this.heat && level === null);
      // A heat node shows its label only (its type, if wanted, goes in the text), centred.
      const p = this.pos.get(id);
      const labelEl = g.querySelector(".node-label");
      const typed = !!g.querySelector(".node-type");
      labelEl.setAttribute("y", String(d || !typed ? p.h / 2 + 5 : p.h / 2 - 3));
      if (d) {
        const text = String(d.text ?? "");
        // The name holds the visible label (WCAG 2.5.3): the text, prefixed if it lacks it.
        const shown = labelEl.textContent;
        const name = text.toLowerCase().includes(shown.toLowerCase()) ? text : `${shown}: ${text}`;
        Object.assign(g.dataset, { tip: text, level: level === null ? "" : String(level) });
        setAttrs(g, { tabindex: "0", role: this.onNodeActivate ? "button" : "img", "aria-label": name });
      } else {
        delete g.dataset.tip;
        delete g.dataset.level;
        setAttrs(g, { tabindex: null, role: null, "aria-label": null });
      }
      this.updateTitle(g);
    }
    const defs = this.svg.querySelector("defs");
    for (const old of defs.querySelectorAll(".heat-marker")) old.remove();
    this.edgeEls.forEach((g, i) => {
      const d = this.heat?.edges?.[`${g.dataset.source}\u0000${g.dataset.target}`];
      const path = g.querySelector(".edge");
      g.classList.toggle("heat", !!d);
      if (d) {
        const weight = Number.isFinite(d.weight) ? clamp(d.weight, 0, 1) : 0;
        const width = HEAT_MIN_WIDTH + (HEAT_MAX_WIDTH - HEAT_MIN_WIDTH) * weight;
        const text = String(d.text ?? "");
        path.style.strokeWidth = String(width);
        // An arrowhead sized in user space: a little wider than the line, never huge.
        const id = `${this.uid}-heat-${i}`;
        defs.append(marker(id, "edge-arrow heat", 8 + width * 1.4, "heat-marker"));
        path.setAttribute("marker-end", `url(#${id})`);
        Object.assign(g.dataset, { tip: text, weight: String(weight) });
        setAttrs(g, { tabindex: "0", role: "img", "aria-label": text });
      } else {
        path.style.strokeWidth = "";
        path.setAttribute("marker-end", `url(#${this.uid}-${g.classList.contains("executed") ? "arrow-exec" : "arrow"})`);
        delete g.dataset.tip;
        delete g.dataset.weight;
        setAttrs(g, { tabindex: null, role: null, "aria-label": null });
      }
    });
    this.renderHeatLegend();
    // Lanes of back edges at least as far apart as their widest line.
    const widths = this.edgeEls.filter((g) => g.classList.contains("back-edge")).map((g) => parseFloat(g.querySelector(".edge").style.strokeWidth) || 0);
    const gap = Math.max(LANE_GAP, ...widths.map((w) => w + 6));
    if (gap !== this.laneGap) {
      this.laneGap = gap;
      this.routes = routeEdges(this.edges, this.pos, this.vertical, gap);
      for (const g of this.edgeEls) {
        const r = this.routes.get(Number(g.dataset.index));
        if (!r) continue;
        for (const path of g.querySelectorAll("path")) path.setAttribute("d", r.d);
        g.querySelector(".edge-label")?.setAttribute("x", r.labelAt.x);
        g.querySelector(".edge-label")?.setAttribute("y", r.labelAt.y);
      }
      if (this.svg.isConnected && !this.userMoved) this.autoView();
    }
  }

  renderHeatLegend() {
    const box = this.heatLegend;
    if (!this.heat) { box.hidden = true; box.replaceChildren(); return; }
    const legend = { title: "Drop-off rate", low: "0%", high: "100%", edges: "Wider edge: more sessions", ...(this.heat.legend || {}) };
    const gradient = HEAT_STOPS.map(([at, rgb]) => `rgb(${rgb.join(",")}) ${at * 100}%`).join(", ");
    box.hidden = false;
    box.replaceChildren(
      h("p", { class: "heat-legend-title" }, legend.title),
      h("div", { class: "heat-scale" },
        h("span", {}, legend.low),
        h("span", { class: "heat-bar", role: "img", "aria-label": `${legend.title}: colour from green (${legend.low}) through yellow to red (${legend.high})`, style: `background: linear-gradient(to right, ${gradient})` }),
        h("span", {}, legend.high)),
      h("p", { class: "heat-legend-row" }, h("span", { class: "heat-swatch none", "aria-hidden": "true" }), "No data"),
      legend.edges ? h("p", { class: "heat-legend-row" }, legend.edges) : null);
  }

  /** The tooltip of a node or edge with heat data, next to it (or to the pointer). */
  showTip(el, clientX, clientY) {
    const text = el?.dataset.tip;
    if (!text) { this.hideTip(); return; }
    const tip = this.tooltip;
    tip.textContent = text;
    tip.hidden = false;
    const host = this.el.getBoundingClientRect();
    let x, y;
    if (clientX !== undefined) {
      x = clientX; y = clientY - 12;
    } else if (el.classList.contains("edge-g")) {
      const path = el.querySelector(".edge");
      const mid = path.getPointAtLength(path.getTotalLength() / 2);
      const m = path.getScreenCTM();
      x = m.a * mid.x + m.c * mid.y + m.e; y = m.b * mid.x + m.d * mid.y + m.f - 10;
    } else {
      const r = el.querySelector(".node-box").getBoundingClientRect();
      x = r.left + r.width / 2; y = r.top - 6;
    }
    const w = tip.offsetWidth, th = tip.offsetHeight;
    let left = clamp(x - host.left - w / 2, 4, Math.max(4, host.width - w - 4));
    let top = y - host.top - th;
    if (top < 4) top = y - host.top + 30;  // no room above: below
    tip.style.left = `${left}px`;
    tip.style.top = `${clamp(top, 4, Math.max(4, host.height - th - 4))}px`;
    this.tipFor = el;
  }

  hideTip() {
    this.tooltip.hidden = true;
    this.tipFor = null;
  }

  /** Pan just enough that a focused node or edge is on screen. */
  reveal(el) {
    const svg = this.svg.getBoundingClientRect();
    const r = (el.querySelector(".node-box") || el.querySelector(".edge")).getBoundingClientRect();
    const pad = 12;
    let dx = 0, dy = 0;
    if (r.width < svg.width - 2 * pad) {
      if (r.left < svg.left + pad) dx = svg.left + pad - r.left;
      else if (r.right > svg.right - pad) dx = svg.right - pad - r.right;
    }
    if (r.height < svg.height - 2 * pad) {
      if (r.top < svg.top + pad) dy = svg.top + pad - r.top;
      else if (r.bottom > svg.bottom - pad) dy = svg.bottom - pad - r.bottom;
    }
    if (dx || dy) this.panBy(dx, dy);
  }

  apply() {
    const { x, y, k } = this.view;
    this.viewport.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
  }

  bounds() {
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const p of this.pos.values()) {
      minX = Math.min(minX, p.x); minY = Math.min(minY, p.y);
      maxX = Math.max(maxX, p.x + p.w); maxY = Math.max(maxY, p.y + p.h);
    }
    // Room for the figures line under the nodes, which may be wider than a node.
    minX -= STATS_OVERHANG; maxX += STATS_OVERHANG; maxY += STATS_LINE;
    // And for the back edges' lanes round the layout.
    for (const r of this.routes.values()) {
      for (const [x, y] of r.points) {
        minX = Math.min(minX, x - 8); maxX = Math.max(maxX, x + 8);
        minY = Math.min(minY, y - 8); maxY = Math.max(maxY, y + 8);
      }
    }
    return { minX, minY, maxX, maxY };
  }

  /** Unless the reader moved the view: fit all (after "Fit"), or follow the current node. */
  autoView() {
    if (this.userMoved) return;
    if (this.fitAll) this.fit();
    else this.initialView(this.focusId);
  }

  /**
   * The first view: everything if it stays readable; else, at the readable zoom, the top
   * of the graph with its first node, and the current node too when both fit (else the
   * "current node" button and key `c` go to it).
   */
  initialView(focusId) {
    this.fit(focusId);
  }

  /**
   * Fit to view, never below the readable zoom: when the whole graph would be smaller,
   * show its first node (and `focusId`'s node, if both fit) at that zoom; the reader pans.
   */
  fit(focusId = this.focusId) {
    this.userMoved = false;
    const rect = this.svg.getBoundingClientRect();
    if (!rect.width || !rect.height || !this.pos.size) return;
    const b = this.bounds();
    const pad = 24;
    const w = b.maxX - b.minX, hgt = b.maxY - b.minY;
    const whole = Math.min((rect.width - 2 * pad) / w, (rect.height - 2 * pad) / hgt);
    if (whole >= READABLE_ZOOM) {
      const k = Math.min(whole, 1.4);
      this.view = { k, x: (rect.width - w * k) / 2 - b.minX * k, y: (rect.height - hgt * k) / 2 - b.minY * k };
      this.apply();
      return;
    }
    const k = READABLE_ZOOM;
    // What must be seen: the first node; with the focus node when the two fit together.
    let box = this.nodeBox(this.firstId) || this.nodeBox(focusId);
    const focus = this.nodeBox(focusId);
    if (box && focus) {
      const both = union(box, focus);
      if ((both.maxX - both.minX) * k <= rect.width - 2 * pad && (both.maxY - both.minY) * k <= rect.height - 2 * pad) box = both;
    }
    box ??= b;
    // Centre what must be seen across the flow, start at its top along it (its left, for a
    // left-to-right flow); leave no empty space where the graph could be shown.
    const cx = this.vertical ? rect.width / 2 - ((box.minX + box.maxX) / 2) * k : pad - box.minX * k;
    const cy = this.vertical ? pad - box.minY * k : rect.height / 2 - ((box.minY + box.maxY) / 2) * k;
    const x = within(cx, rect.width - pad - b.maxX * k, pad - b.minX * k);
    const y = within(cy, rect.height - pad - b.maxY * k, pad - b.minY * k);
    this.view = { k, x, y };
    this.apply();
  }

  /** A node's box with the figures line under it, or null. */
  nodeBox(id) {
    const p = id == null ? null : this.pos.get(String(id));
    if (!p) return null;
    return { minX: p.x - STATS_OVERHANG, minY: p.y - 8, maxX: p.x + p.w + STATS_OVERHANG, maxY: p.y + p.h + STATS_LINE };
  }

  /** Centre the focus (current) node, at least at the readable zoom. */
  showFocus() {
    const p = this.pos.get(String(this.focusId));
    if (!p) return;
    const rect = this.svg.getBoundingClientRect();
    const k = Math.max(this.view.k, READABLE_ZOOM);
    this.view = { k, x: rect.width / 2 - (p.x + p.w / 2) * k, y: rect.height / 2 - (p.y + p.h / 2) * k };
    this.fitAll = false;
    this.userMoved = true;
    this.apply();
  }

  zoomBy(factor, cx, cy) {
    this.fitAll = false;
    const rect = this.svg.getBoundingClientRect();
    cx ??= rect.width / 2;
    cy ??= rect.height / 2;
    const k = clamp(this.view.k * factor, MIN_ZOOM, MAX_ZOOM);
    const f = k / this.view.k;
    this.view = { k, x: cx - (cx - this.view.x) * f, y: cy - (cy - this.view.y) * f };
    this.userMoved = true;
    this.apply();
  }

  panBy(dx, dy) {
    this.fitAll = false;
    this.view = { ...this.view, x: this.view.x + dx, y: this.view.y + dy };
    this.userMoved = true;
    this.apply();
  }

  bind() {
    let drag = null;
    const tipTarget = (t) => t?.closest?.("[data-tip]");
    this.viewport.addEventListener("pointerover", (e) => { if (!drag) this.showTip(tipTarget(e.target), e.clientX, e.clientY); });
    this.viewport.addEventListener("pointerout", (e) => {
      if (tipTarget(e.relatedTarget) === this.tipFor) return;
      // Back to the focused element's tooltip, unless Escape dismissed it.
      const focused = tipTarget(document.activeElement);
      if (focused && this.svg.contains(focused) && focused !== this.dismissed) this.showTip(focused);
      else this.hideTip();
    });
    // On the <svg>, which is focusable anyway: Chromium makes an SVG element with focus
    // listeners focusable itself.
    this.svg.addEventListener("focusin", (e) => {
      const el = tipTarget(e.target);
      if (!el) return;
      this.dismissed = null;
      if (!drag) this.reveal(el);
      this.showTip(el);
    });
    this.svg.addEventListener("focusout", () => this.hideTip());
    this.svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, id: e.pointerId, node: e.target.closest?.(".node"), moved: 0 };
      this.svg.setPointerCapture(e.pointerId);
      this.svg.classList.add("dragging");
    });
    this.svg.addEventListener("pointermove", (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      drag.moved += Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y);
      if (drag.moved < 4 && drag.node) return;  // a click on a node, not yet a drag
      this.panBy(e.clientX - drag.x, e.clientY - drag.y);
      drag.x = e.clientX;
      drag.y = e.clientY;
    });
    const end = (e) => {
      const clicked = e.type === "pointerup" && drag?.node && drag.moved < 4;
      const node = drag?.node;
      drag = null;
      this.svg.classList.remove("dragging");
      if (clicked) {
        if (node.getAttribute("tabindex") === "0") node.focus({ preventScroll: true });
        if (this.onNodeActivate) this.onNodeActivate(node.dataset.nodeId);
      }
    };
    this.svg.addEventListener("pointerup", end);
    this.svg.addEventListener("pointercancel", end);
    this.svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = this.svg.getBoundingClientRect();
      this.zoomBy(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
    }, { passive: false });
    this.svg.addEventListener("keydown", (e) => {
      const node = e.target.closest?.(".node");
      if (node && this.onNodeActivate && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        this.onNodeActivate(node.dataset.nodeId);
        return;
      }
      if (e.key === "Escape") { this.dismissed = tipTarget(document.activeElement); this.hideTip(); return; }
      const step = 40;
      const actions = {
        ArrowLeft: () => this.panBy(step, 0), ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, step), ArrowDown: () => this.panBy(0, -step),
        "+": () => this.zoomBy(1.25), "=": () => this.zoomBy(1.25), "-": () => this.zoomBy(0.8),
        "0": () => { this.fitAll = true; this.fit(); }, c: () => this.showFocus(),
      };
      if (actions[e.key]) { e.preventDefault(); actions[e.key](); }
    });
    this.resizeObserver = new ResizeObserver(() => this.autoView());
    this.resizeObserver.observe(this.svg);
  }

  destroy() {
    this.resizeObserver.disconnect();
  }
}

/** An arrowhead; with `userSize`, sized in user space (px) rather than in stroke widths. */
function marker(id, cls, userSize, markerCls) {
  const size = userSize ? { markerUnits: "userSpaceOnUse", markerWidth: String(userSize), markerHeight: String(userSize) } : { markerWidth: "7", markerHeight: "7" };
  return h("marker", { id, class: markerCls, viewBox: "0 0 10 10", refX: "9", refY: "5", ...size, orient: "auto-start-reverse" },
    h("path", { d: "M0,0 L10,5 L0,10 z", class: cls }));
}

/** The heat scale's colour for a level in [0, 1]: "rgb(r, g, b)". */
export function heatColor(level) {
  const v = clamp(Number(level) || 0, 0, 1);
  let i = 0;
  while (i < HEAT_STOPS.length - 2 && v > HEAT_STOPS[i + 1][0]) i++;
  const [a, ca] = HEAT_STOPS[i];
  const [b, cb] = HEAT_STOPS[i + 1];
  const t = (v - a) / (b - a);
  return `rgb(${ca.map((c, j) => Math.round(c + (cb[j] - c) * t)).join(", ")})`;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null) el.removeAttribute(k);
    else el.setAttribute(k, v);
  }
}

function size(n) {
  const w = Number(n.width ?? n.measured?.width ?? n.style?.width) || NODE_W;
  const hh = Number(n.height ?? n.measured?.height ?? n.style?.height) || NODE_H;
  return { w, h: hh };
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const union = (a, b) => ({ minX: Math.min(a.minX, b.minX), minY: Math.min(a.minY, b.minY), maxX: Math.max(a.maxX, b.maxX), maxY: Math.max(a.maxY, b.maxY) });
/** v kept in [lo, hi]; when the range is empty (the graph is smaller), its middle. */
const within = (v, lo, hi) => (lo > hi ? (lo + hi) / 2 : clamp(v, lo, hi));
const truncate = (s, n) => (s.length > n ? `${s.slice(0, Math.max(1, n - 1))}…` : s);

/**
 * A simple layered (top-down) layout: layer = longest path from a root over the graph
 * without its back edges; nodes no root reaches go to a last layer.
 */
export function layeredLayout(nodes, edges) {
  const ids = nodes.map((n) => String(n.id));
  const out = new Map(ids.map((id) => [id, []]));
  const indeg = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) {
    const s = String(e.source), t = String(e.target);
    if (out.has(s) && out.has(t)) { out.get(s).push(t); indeg.set(t, indeg.get(t) + 1); }
  }
  let roots = ids.filter((id) => indeg.get(id) === 0);
  if (!roots.length && ids.length) roots = [ids[0]];
  // DFS to drop back edges (cycles), giving a DAG.
  const state = new Map();
  const dag = new Map(ids.map((id) => [id, []]));
  const order = [];
  const visit = (start) => {
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [id, i] = top;
      const next = out.get(id)[i];
      if (next === undefined) { state.set(id, 2); order.push(id); stack.pop(); continue; }
      top[1] = i + 1;
      if (state.get(next) === 1) continue;  // back edge
      dag.get(id).push(next);
      if (!state.has(next)) { state.set(next, 1); stack.push([next, 0]); }
    }
  };
  for (const r of roots) if (!state.has(r)) visit(r);
  const reached = new Set(state.keys());
  const layer = new Map();
  for (const id of order.reverse()) {  // topological order
    if (!layer.has(id)) layer.set(id, 0);
    for (const t of dag.get(id)) layer.set(t, Math.max(layer.get(t) ?? 0, layer.get(id) + 1));
  }
  const maxLayer = Math.max(-1, ...layer.values());
  for (const id of ids) if (!reached.has(id)) layer.set(id, maxLayer + 1);
  const rows = new Map();
  for (const id of ids) {
    const l = layer.get(id);
    if (!rows.has(l)) rows.set(l, []);
    rows.get(l).push(id);
  }
  const widest = Math.max(...[...rows.values()].map((r) => r.length));
  const result = new Map();
  for (const [l, row] of rows) {
    const offset = ((widest - row.length) * (NODE_W + GAP_X)) / 2;
    row.forEach((id, i) => result.set(id, { x: offset + i * (NODE_W + GAP_X), y: l * (NODE_H + GAP_Y) }));
  }
  return result;
}

/**
 * Routes for the edges that go back (to a node above the source, or beside it, in a
 * top-down flow; to the left in a left-to-right one) and self-loops: out of the source's
 * side (or just under it), along a lane outside the layout, into the target's side (or
 * its top), so that they cross no node. Of the candidate routes, the shortest that
 * crosses no node (nor the figures line under it) wins. Returns Map(edge index →
 * {d, points, labelAt}); other edges keep their curve.
 */
export function routeEdges(edges, pos, vertical, laneGap = LANE_GAP) {
  // Work in top-down coordinates: a left-to-right flow is mirrored on the diagonal.
  const flip = (p) => (vertical ? p : { x: p.y, y: p.x, w: p.h, h: p.w });
  const unflip = ([x, y]) => (vertical ? [x, y] : [y, x]);
  const boxes = new Map();
  const obstacles = [];
  for (const [id, p0] of pos) {
    // The node with its figures line (drawn under it, whatever the flow's direction).
    const inflated = { x: p0.x - 6, y: p0.y - 6, w: p0.w + 12, h: p0.h + STATS_LINE + 8 };
    const p = flip(p0);
    const o = flip(inflated);
    boxes.set(id, p);
    obstacles.push({ id, x0: o.x, y0: o.y, x1: o.x + o.w, y1: o.y + o.h });
  }
  if (!obstacles.length) return new Map();
  const minX = Math.min(...obstacles.map((o) => o.x0));
  const maxX = Math.max(...obstacles.map((o) => o.x1));
  const clear = (pts, skip) => {
    let hits = 0;
    for (let i = 1; i < pts.length; i++) {
      const [ax, ay] = pts[i - 1], [bx, by] = pts[i];
      const x0 = Math.min(ax, bx), x1 = Math.max(ax, bx), y0 = Math.min(ay, by), y1 = Math.max(ay, by);
      for (const o of obstacles) {
        if (skip.has(o.id)) continue;
        if (x1 > o.x0 && x0 < o.x1 && y1 > o.y0 && y0 < o.y1) hits++;
      }
    }
    return hits;
  };
  const length = (pts) => pts.slice(1).reduce((n, p, i) => n + Math.abs(p[0] - pts[i][0]) + Math.abs(p[1] - pts[i][1]), 0);

  const back = [];
  edges.forEach((e, i) => {
    const s = boxes.get(String(e.source)), t = boxes.get(String(e.target));
    if (!s || !t) return;
    if (s === t || t.y + t.h / 2 <= s.y + s.h / 2) back.push({ i, e, s, t, self: s === t });
  });

  const candidates = (s, t, side, lane) => {
    const sign = side === "right" ? 1 : -1;
    const sx = side === "right" ? s.x + s.w : s.x;
    const tx = side === "right" ? t.x + t.w : t.x;
    const scy = s.y + s.h / 2, tcy = t.y + t.h / 2;
    const exits = [[[sx, scy + 6], [lane, scy + 6]]];
    for (const drop of [STATS_LINE + 12, STATS_LINE + 22]) {
      const x = s.x + s.w / 2 + sign * s.w / 4;
      exits.push([[x, s.y + s.h], [x, s.y + s.h + drop], [lane, s.y + s.h + drop]]);
    }
    const entries = [[[lane, tcy - 6], [tx + sign * 2, tcy - 6]]];
    for (const rise of [14, 24]) {
      const x = t.x + t.w / 2 + sign * t.w / 4;
      entries.push([[lane, t.y - rise], [x, t.y - rise], [x, t.y - 2]]);
    }
    const out = [];
    for (const a of exits) for (const b of entries) out.push([...a, ...b]);
    return out;
  };
  const best = (item, side, lane) => {
    const skip = new Set([String(item.e.source), String(item.e.target)]);
    let pick = null;
    for (const pts of candidates(item.s, item.t, side, lane)) {
      const score = clear(pts, skip) * 1e6 + length(pts);
      if (!pick || score < pick.score) pick = { pts, score };
    }
    return pick;
  };

  const result = new Map();
  const lanes = { right: [], left: [] };
  for (const item of back) {
    if (item.self) continue;
    const right = best(item, "right", maxX + LANE_MARGIN);
    const left = best(item, "left", minX - LANE_MARGIN);
    item.side = right.score <= left.score ? "right" : "left";
    lanes[item.side].push(item);
  }
  for (const side of ["right", "left"]) {
    // Shorter spans on the inner lanes, so lanes do not cross each other's ends.
    lanes[side].sort((a, b) => Math.abs(a.s.y - a.t.y) - Math.abs(b.s.y - b.t.y));
    lanes[side].forEach((item, n) => {
      const lane = side === "right" ? maxX + LANE_MARGIN + n * laneGap : minX - LANE_MARGIN - n * laneGap;
      const { pts } = best(item, side, lane);
      result.set(item.i, route(pts.map(unflip), [lane, (item.s.y + item.t.y + item.t.h) / 2]));
    });
  }
  for (const item of back) {
    if (!item.self) continue;
    // A loop on the node's right (top-down flows) or on its top (left-to-right ones: in
    // these coordinates its left), away from the figures line under it.
    const { s } = item;
    const sign = vertical ? 1 : -1;
    const x = vertical ? s.x + s.w : s.x, cy = s.y + s.h / 2, out = x + sign * 34;
    const pts = [[x, cy + 14], [out, cy + 14], [out, cy - 14], [x + sign * 2, cy - 14]];
    result.set(item.i, route(pts.map(unflip), [out, cy]));
  }

  function route(pts, label) {
    const [lx, ly] = unflip(label);
    return { d: roundedPath(pts, 10), points: pts, labelAt: { x: lx, y: ly } };
  }
  return result;
}

/** An orthogonal polyline as an SVG path with rounded corners. */
function roundedPath(pts, r) {
  let d = `M${pts[0][0]},${pts[0][1]}`;
  for (let i = 1; i < pts.length - 1; i++) {
    const [px, py] = pts[i - 1], [x, y] = pts[i], [nx, ny] = pts[i + 1];
    const r1 = Math.min(r, Math.hypot(x - px, y - py) / 2), r2 = Math.min(r, Math.hypot(nx - x, ny - y) / 2);
    const ax = x - Math.sign(x - px) * r1, ay = y - Math.sign(y - py) * r1;
    const bx = x + Math.sign(nx - x) * r2, by = y + Math.sign(ny - y) * r2;
    d += ` L${ax},${ay} Q${x},${y} ${bx},${by}`;
  }
  const [lx, ly] = pts[pts.length - 1];
  return `${d} L${lx},${ly}`;
}
