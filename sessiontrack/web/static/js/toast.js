// Toast notifications, rate-limited so heavy traffic gives a summary instead of a flood.

import { h } from "./dom.js";

// One at a time: in the top bar (wide screens) or at the bottom (phones).
const maxVisible = () => 1;
const LIFETIME_MS = 6000;
const BURST_WINDOW_MS = 3000;
const BURST_LIMIT = 3;

const recent = [];
const pending = new Map();  // kind → count of suppressed toasts in the current burst
let flushTimer = null;

/** Show a toast: {kind, title, text, href}; `force` skips the rate limit (the answer to
 * something the reader did, which a burst of live events must not swallow). */
export function toast({ kind = "info", title, text, href, force = false }) {
  const now = Date.now();
  if (force) {
    show(kind, title, text, href);
    return;
  }
  while (recent.length && now - recent[0] > BURST_WINDOW_MS) recent.shift();
  if (recent.length >= BURST_LIMIT) {
    pending.set(kind, (pending.get(kind) || 0) + 1);
    flushTimer ??= setTimeout(flushSummary, BURST_WINDOW_MS);
    return;
  }
  recent.push(now);
  show(kind, title, text, href);
}

function flushSummary() {
  flushTimer = null;
  for (const [kind, count] of pending) {
    const what = kind === "started" ? "sessions started" : kind === "completed" ? "sessions ended" : "more updates";
    show(kind, `${count} more ${what}`, "", null);
  }
  pending.clear();
}

function show(kind, title, text, href) {
  const box = document.getElementById("toasts");
  if (!box) return;
  while (box.children.length >= maxVisible()) box.firstElementChild.remove();
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss notification" }, "×");
  const heading = href ? h("a", { href }, title) : h("strong", {}, title);
  const el = h("div", { class: `toast toast-${kind}` }, h("div", { class: "toast-body" }, heading, text ? h("p", {}, text) : null), close);
  close.addEventListener("click", () => el.remove());
  box.append(el);
  let timer = setTimeout(() => el.remove(), LIFETIME_MS);
  // Keep it while the pointer or keyboard focus is on it.
  el.addEventListener("mouseenter", () => clearTimeout(timer));
  el.addEventListener("focusin", () => clearTimeout(timer));
  el.addEventListener("mouseleave", () => { timer = setTimeout(() => el.remove(), LIFETIME_MS / 2); });
}
