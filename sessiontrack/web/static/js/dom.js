// Small DOM and formatting helpers shared by the views.

/** Create an element: h("a", {href: "#", class: "x"}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

const SVG_TAGS = new Set(["g", "rect", "path", "text", "circle", "defs", "marker", "title", "tspan"]);

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
// With seconds: Started, Updated and Expires are often within the same minute.
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const numFmt = new Intl.NumberFormat();

export const formatNumber = (n) => (n === null || n === undefined ? "—" : numFmt.format(n));

const compactFmt = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
/** "1.2K": for counts shown in little room (the exact figure goes in a title). */
export const formatCompact = (n) => (n === null || n === undefined ? "—" : compactFmt.format(n));

const costFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const smallCostFmt = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });
/** A cost in the host's currency unit (none is implied): 0.00021, 0.0035, 1.25. */
export function formatCost(n) {
  if (n === null || n === undefined) return "—";
  return n > 0 && n < 1 ? smallCostFmt.format(n) : costFmt.format(n);
}

/**
 * A duration in milliseconds: "340 ms", "1.2 s", "2m 05s"; under a millisecond (a real
 * 0 included: a timer's resolution, not "no time") "<1 ms"; none reported: "—".
 */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1) return "<1 ms";
  if (ms < 1000) return `${numFmt.format(Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

/** "3 tool calls", "1 tool call". */
export const plural = (n, one, many = `${one}s`) => `${formatNumber(n)} ${n === 1 ? one : many}`;

export const TOTAL_KEYS = ["inputTokens", "outputTokens", "cost", "llmCalls", "toolCalls", "errorCount"];

/**
 * Totals only grow: a late copy of an event (one already counted in what the page read)
 * must not take them back, so each figure keeps the larger of the two.
 */
export function mergeTotals(into, totals) {
  if (!totals) return into;
  for (const key of TOTAL_KEYS) {
    const v = totals[key];
    if (typeof v === "number" && !(v <= (into[key] ?? -Infinity))) into[key] = v;
  }
  return into;
}

export function formatTime(iso) {
  return iso ? timeFmt.format(new Date(iso)) : "—";
}

export function formatDateTime(iso) {
  return iso ? dateTimeFmt.format(new Date(iso)) : "—";
}

export function formatDay(iso) {
  return dayFmt.format(new Date(iso));
}

/** "3 min ago" for a timestamp; the caller refreshes it periodically. */
export function formatRelative(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return relFmt.format(Math.round(seconds / 5) * 5 || 0, "second");
  if (abs < 2700) return relFmt.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relFmt.format(Math.round(seconds / 3600), "hour");
  return relFmt.format(Math.round(seconds / 86400), "day");
}

export function formatDuration(startIso, endIso) {
  if (!startIso) return "—";
  let s = Math.max(0, Math.round(((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) { parts.push(`${Math.floor(s / size)}${unit}`); s %= size; }
  }
  if (parts.length < 2) parts.push(`${s}s`);
  return parts.join(" ");
}

/** A <time> element showing a local time, with the full timestamp on hover. */
export function timeEl(iso, text, cls) {
  if (!iso) return h("span", { class: cls }, "—");
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString(), class: cls }, text);
}

/** A <time> that shows a relative time and is refreshed by refreshRelativeTimes(). */
export function relativeTimeEl(iso) {
  const el = timeEl(iso, formatRelative(iso));
  if (iso) el.dataset.relative = "";
  return el;
}

export function refreshRelativeTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-relative]")) {
    el.textContent = formatRelative(el.getAttribute("datetime"), now);
  }
}

export const STATUS_LABELS = {
  running: "Running",
  waiting_input: "Waiting for input",
  waiting_flow: "Waiting for flow",
  completed: "Completed",
  expired: "Expired",
  stopped: "Stopped",
};
export const ACTIVE = new Set(["running", "waiting_input", "waiting_flow"]);

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, dataset: { status } }, STATUS_LABELS[status] || status);
}

/**
 * Rate-limits an async fn, adapting to its cost: runs never overlap, and the next run
 * starts at least max(minMs, factor × the last run's duration) after the previous one.
 */
export function adaptiveThrottle(fn, minMs, factor = 4) {
  let timer = null;
  let running = false;
  let again = false;
  let last = 0;
  let cost = 0;
  const run = async () => {
    timer = null;
    running = true;
    last = Date.now();
    const started = performance.now();
    try {
      await fn();
    } finally {
      cost = performance.now() - started;
      running = false;
      if (again) { again = false; wrapped(); }
    }
  };
  const wrapped = () => {
    if (running) { again = true; return; }
    if (timer) return;
    const gap = Math.max(minMs, cost * factor);
    timer = setTimeout(run, Math.max(0, last + gap - Date.now()));
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return wrapped;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

export const prefersReducedMotion = () => window.matchMedia("(prefers-reduced-motion: reduce)").matches;
