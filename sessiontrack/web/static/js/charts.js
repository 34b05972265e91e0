// Small hand-written SVG charts for the analytics page: bars (histogram), a stacked daily
// trend and a funnel. Each chart redraws at its container's width, names itself for
// screen readers (a labelled group) and carries its figures on focusable marks
// (Tab reaches every bar; its figures show in a tooltip on hover and on focus).

const NS = "http://www.w3.org/2000/svg";

/** Create an SVG element: svg("rect", {x: 1}, child, "text"). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Round a maximum up to 1, 2 or 5 × 10^n, for axis ticks. */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * A tooltip shared by the marks under `root` that have `data-tip`: shown next to the mark
 * on pointer hover and on keyboard focus, hidden on leave, blur and Escape.
 */
export function attachTooltip(root) {
  const tip = document.createElement("div");
  tip.className = "chart-tip";
  tip.setAttribute("role", "tooltip");
  tip.hidden = true;
  root.append(tip);
  let owner = null;
  const show = (mark) => {
    owner = mark;
    tip.textContent = mark.dataset.tip;
    tip.hidden = false;
    const box = root.getBoundingClientRect();
    const r = mark.getBoundingClientRect();
    const left = Math.min(Math.max(0, r.left + r.width / 2 - box.left - tip.offsetWidth / 2), Math.max(0, box.width - tip.offsetWidth));
    let top = r.top - box.top - tip.offsetHeight - 6;
    if (top < 0) top = r.bottom - box.top + 6;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  };
  const hide = (mark) => { if (!mark || mark === owner) { tip.hidden = true; owner = null; } };
  const markOf = (e) => e.target.closest?.("[data-tip]");
  root.addEventListener("pointerover", (e) => { const m = markOf(e); if (m && root.contains(m)) show(m); });
  root.addEventListener("pointerout", (e) => { const m = markOf(e); if (m && !m.contains(e.relatedTarget)) hide(m); });
  root.addEventListener("focusin", (e) => { const m = markOf(e); if (m) show(m); });
  root.addEventListener("focusout", (e) => hide(markOf(e)));
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") hide(); });
  return tip;
}

/** A chart that draws itself at its container's width, again when that changes. */
export class Chart {
  constructor(cls, label, draw) {
    this.drawFn = draw;
    this.label = label;
    this.el = document.createElement("div");
    this.el.className = `chart ${cls}`;
    this.width = 0;
    this.data = null;
    attachTooltip(this.el);
    this.observer = new ResizeObserver(() => {
      const w = Math.floor(this.el.clientWidth);
      if (w && w !== this.width) { this.width = w; this.render(); }
    });
    this.observer.observe(this.el);
  }

  set(data) {
    this.data = data;
    this.width = Math.floor(this.el.clientWidth) || this.width;
    this.render();
  }

  render() {
    if (!this.data || !this.width) return;
    const chart = this.drawFn(this.data, this.width);
    const old = this.el.querySelector("svg");
    chart.setAttribute("role", "group");
    chart.setAttribute("aria-label", typeof this.label === "function" ? this.label(this.data) : this.label);
    if (old) old.replaceWith(chart); else this.el.prepend(chart);
  }

  destroy() {
    this.observer.disconnect();
  }
}

const PAD = { top: 12, right: 12, bottom: 34, left: 44 };

function axes(g, { w, h, max, format }) {
  // Whole steps where the maximum allows (50 → 10s, 20 → 5s, 2 → 1s).
  const ticks = [5, 4, 2, 1].find((t) => max < 1 || Number.isInteger(max / t)) || 4;
  for (let i = 0; i <= ticks; i++) {
    const v = (max * i) / ticks;
    const y = PAD.top + h - (h * i) / ticks;
    g.append(svg("line", { class: "grid", x1: PAD.left, x2: PAD.left + w, y1: y, y2: y }),
      svg("text", { class: "tick", x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, format(v)));
  }
}

/**
 * Vertical bars: `bars` [{label, value, tip}], in order; labels under the bars, thinned
 * out so they never overlap. Each bar carries its value as `data-value`.
 */
export function drawBars({ bars, format = String }, width) {
  const height = 210;
  const w = Math.max(10, width - PAD.left - PAD.right);
  const h = height - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const root = svg("svg", { class: "chart-svg", width, height, viewBox: `0 0 ${width} ${height}` });
  const g = svg("g");
  axes(g, { w, h, max, format });
  const slot = w / Math.max(1, bars.length);
  const every = Math.max(1, Math.ceil(60 / slot));
  bars.forEach((b, i) => {
    const bh = (h * b.value) / max;
    const x = PAD.left + i * slot;
    g.append(svg("g", { class: "bar", tabindex: 0, "data-value": b.value, "data-tip": b.tip, "aria-label": b.tip, role: "img" },
      svg("rect", { class: "bar-hit", x, y: PAD.top, width: slot, height: h }),
      svg("rect", { class: "bar-fill", x: x + slot * 0.12, y: PAD.top + h - bh, width: Math.max(1, slot * 0.76), height: bh })));
    if (i % every === 0) {
      g.append(svg("text", { class: "tick", x: x + slot / 2, y: PAD.top + h + 16, "text-anchor": "middle" }, b.label));
    }
  });
  g.append(svg("line", { class: "axis", x1: PAD.left, x2: PAD.left + w, y1: PAD.top + h, y2: PAD.top + h }));
  root.append(g);
  return root;
}

export const TREND_SERIES = [
  ["completed", "Completed"],
  ["stopped", "Stopped"],
  ["expired", "Expired"],
  ["active", "Still active"],
];

/**
 * The daily cohort: one stacked bar per day (sessions started that day, by their status
 * now). `days` [{date, started, completed, expired, stopped}], `formatDate(date)`.
 */
export function drawTrend({ days, formatDate }, width) {
  const height = 220;
  const w = Math.max(10, width - PAD.left - PAD.right);
  const h = height - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(0, ...days.map((d) => d.started)));
  const root = svg("svg", { class: "chart-svg", width, height, viewBox: `0 0 ${width} ${height}` });
  const g = svg("g");
  axes(g, { w, h, max, format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)) });
  const slot = w / Math.max(1, days.length);
  const every = Math.max(1, Math.ceil(70 / slot));
  days.forEach((d, i) => {
    const x = PAD.left + i * slot;
    const active = Math.max(0, d.started - d.completed - d.expired - d.stopped);
    const values = { ...d, active };
    const parts = TREND_SERIES.map(([key, label]) => `${values[key]} ${label.toLowerCase()}`).join(", ");
    const tip = `${formatDate(d.date)}: ${d.started} started (${parts})`;
    const bar = svg("g", { class: "bar trend-day", tabindex: 0, "data-tip": tip, "aria-label": tip, "data-date": d.date, role: "img" },
      svg("rect", { class: "bar-hit", x, y: PAD.top, width: slot, height: h }));
    let y = PAD.top + h;
    for (const [key] of TREND_SERIES) {
      const bh = (h * values[key]) / max;
      if (bh <= 0) continue;
      y -= bh;
      bar.append(svg("rect", { class: `bar-fill series-${key}`, x: x + slot * 0.15, y, width: Math.max(1, slot * 0.7), height: bh }));
    }
    g.append(bar);
    if (i % every === 0) {
      g.append(svg("text", { class: "tick", x: x + slot / 2, y: PAD.top + h + 16, "text-anchor": "middle" }, formatDate(d.date)));
    }
  });
  g.append(svg("line", { class: "axis", x1: PAD.left, x2: PAD.left + w, y1: PAD.top + h, y2: PAD.top + h }));
  root.append(g);
  return root;
}

/** A funnel: one horizontal bar per step, its length the share of sessions that got there. */
export function drawFunnel({ steps, tipOf }, width) {
  const row = 40;
  const labelW = Math.min(180, Math.max(90, width * 0.3));
  const height = steps.length * row + 8;
  const w = Math.max(10, width - labelW - 70);
  const root = svg("svg", { class: "chart-svg", width, height, viewBox: `0 0 ${width} ${height}` });
  steps.forEach((s, i) => {
    const y = 4 + i * row;
    const share = s.overall ?? 0;
    const tip = tipOf(s, i);
    const label = String(s.label ?? s.nodeId);
    root.append(svg("g", { class: "bar funnel-step", tabindex: 0, "data-tip": tip, "aria-label": tip, "data-node-id": s.nodeId, role: "img" },
      svg("rect", { class: "bar-hit", x: 0, y, width, height: row - 4 }),
      svg("text", { class: "funnel-label", x: labelW - 8, y: y + row / 2 + 2, "text-anchor": "end" },
        label.length > 24 ? `${label.slice(0, 23)}…` : label),
      svg("rect", { class: "bar-track", x: labelW, y: y + 6, width: w, height: row - 16, rx: 4 }),
      svg("rect", { class: "bar-fill", x: labelW, y: y + 6, width: Math.max(share > 0 ? 2 : 0, w * share), height: row - 16, rx: 4 }),
      svg("text", { class: "funnel-value", x: labelW + w + 8, y: y + row / 2 + 2 }, `${Math.round(share * 100)}%`)));
  });
  return root;
}
