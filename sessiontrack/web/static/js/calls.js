// The LLM and tool calls of a session: one table, oldest first, both kinds merged in the
// order they happened. Tool arguments and results fold open as JSON.

import { formatCost, formatMs, formatNumber, formatTime, h, timeEl } from "./dom.js";
import { jsonTree, openPathsOf } from "./json.js";

const INLINE_CHARS = 40;
const PREVIEW_CHARS = 60;
const NEAR_BOTTOM_PX = 48;

export class CallTable {
  /** @param {Map<string, string>} labels node id → label, to name each call's node */
  constructor(labels) {
    this.labels = labels;
    this.el = h("div", { class: "calls", id: "calls", tabindex: "0", "aria-label": "LLM and tool calls, oldest first" });
    this.count = -1;
  }

  render(llmCalls, toolCalls) {
    const calls = [
      ...llmCalls.map((c, i) => ({ ...c, kind: "llm", key: `llm:${c.seq ?? `i${i}`}` })),
      ...toolCalls.map((c, i) => ({ ...c, kind: "tool", key: `tool:${c.seq ?? `i${i}`}` })),
    ].sort((a, b) => (Date.parse(a.at) - Date.parse(b.at)) || ((a.seq ?? 0) - (b.seq ?? 0)));
    if (!calls.length) {
      this.el.replaceChildren(h("p", { class: "muted" }, "No LLM or tool calls recorded."));
      this.count = 0;
      return;
    }
    // Keep what the reader unfolded, and follow new calls while they are at the bottom.
    const open = new Map();
    for (const d of this.el.querySelectorAll("details[data-part]")) {
      const key = `${d.closest("tr").dataset.key}/${d.dataset.part}`;
      open.set(key, { open: d.open, paths: openPathsOf(d) });
    }
    const follow = this.count <= 0 || this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < NEAR_BOTTOM_PX;
    const table = h("table", { class: "calls-table", id: "calls-table" },
      h("caption", { class: "sr-only" }, "LLM and tool calls, oldest first"),
      h("thead", {}, h("tr", {},
        ["Time", "Node", "Call", "Tokens", "Duration", "Outcome"]
          .map((t) => h("th", { scope: "col", class: t === "Tokens" || t === "Duration" ? "num" : null }, t)))),
      h("tbody", {}, calls.map((c) => this.row(c, open))));
    this.el.replaceChildren(table);
    this.count = calls.length;
    if (follow) this.el.scrollTop = this.el.scrollHeight;
  }

  row(c, open) {
    const node = c.nodeId == null ? "—" : this.labels.get(String(c.nodeId)) || String(c.nodeId);
    const llm = c.kind === "llm";
    const tokens = llm && (c.inputTokens != null || c.outputTokens != null)
      ? h("span", { title: `${formatNumber(c.inputTokens ?? 0)} input, ${formatNumber(c.outputTokens ?? 0)} output tokens` },
        `${formatNumber(c.inputTokens ?? 0)} → ${formatNumber(c.outputTokens ?? 0)}`)
      : h("span", { class: "muted" }, "—");
    const duration = llm
      ? [formatMs(c.latencyMs), c.ttfbMs != null ? h("span", { class: "call-sub muted" }, `first token ${formatMs(c.ttfbMs)}`) : null]
      : formatMs(c.durationMs);
    const what = llm
      ? [h("span", { class: "kind kind-llm" }, "LLM"), h("span", { class: "call-name" }, c.model),
        c.provider ? h("span", { class: "call-sub muted" }, c.provider) : null]
      : [h("span", { class: "kind kind-tool" }, "Tool"), h("span", { class: "call-name", title: c.callId ? `call id: ${c.callId}` : null }, c.name),
        c.arguments !== undefined && c.arguments !== null ? value(c.arguments, "arguments", `${c.key}/arguments`, open) : null];
    let outcome;
    if (c.error) outcome = h("span", { class: "call-error" }, h("span", { class: "badge status-stopped" }, "Error"), " ", c.error);
    else if (llm) {
      outcome = [c.finishReason ? h("span", {}, c.finishReason) : null,
        c.cost ? h("span", { class: "call-sub muted" }, `cost ${formatCost(c.cost)}`) : null];
      if (!c.finishReason && !c.cost) outcome = h("span", { class: "muted" }, "—");
    } else {
      outcome = c.result !== undefined && c.result !== null ? value(c.result, "result", `${c.key}/result`, open) : h("span", { class: "muted" }, "—");
    }
    return h("tr", { class: `call call-${c.kind}${c.error ? " failed" : ""}`, dataset: { kind: c.kind, key: c.key, nodeId: c.nodeId ?? "" } },
      h("td", { "data-label": "Time", class: "call-time" }, timeEl(c.at, formatTime(c.at))),
      h("td", { "data-label": "Node", class: "call-node" }, node),
      h("td", { "data-label": "Call", class: "call-what" }, what),
      h("td", { "data-label": "Tokens", class: "num call-tokens" }, tokens),
      h("td", { "data-label": "Duration", class: "num call-duration" }, duration),
      h("td", { "data-label": "Outcome", class: "call-outcome" }, outcome));
  }
}

/** A short value inline; anything longer as a one-line preview that folds open as JSON. */
function value(v, part, key, open) {
  const text = typeof v === "string" ? v : JSON.stringify(v);
  if (text.length <= INLINE_CHARS) return h("code", { class: `call-value call-${part}` }, text);
  const was = open.get(key);
  const preview = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
  return h("details", { class: `call-value call-${part}`, dataset: { part }, open: was?.open },
    h("summary", {}, h("code", {}, preview)),
    typeof v === "object" ? jsonTree(v, { openDepth: 2, openPaths: was?.paths }) : h("pre", { class: "call-text" }, text));
}
