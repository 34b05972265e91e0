// Two sessions side by side (#/compare/<a>/<b>): their node paths aligned, the first
// place they diverge marked (in the path table, on both flow graphs and in both
// conversations), and both conversations. Sessions of one chatbot are matched by node id
// (the same across its flow versions); sessions of different chatbots by node label.

import { api } from "./api.js";
import { Conversation } from "./conversation.js";
import { formatDateTime, formatNumber, h, statusBadge } from "./dom.js";
import { FlowView } from "./flow.js";
import { lastListHref } from "./list.js";
import { compareHref, sessionHref } from "./router.js";

const MESSAGE_PAGE = 1000;
const MAX_CELLS = 4_000_000;  // above n × m, paths are aligned position by position

export function mountCompare(main, ids) {
  return new CompareView(main, ids);
}

/**
 * Aligns two paths (arrays of keys) on their longest common subsequence, so that paths
 * which part and meet again line up after the detour. Rows: {kind: "same" | "changed" |
 * "onlyA" | "onlyB", a, b} with indexes into each path (null where that side has no
 * node); within a stretch of differences, pairs come first as "changed".
 */
export function alignPaths(a, b) {
  const n = a.length, m = b.length;
  const raw = [];
  if (n * m > MAX_CELLS) {
    for (let i = 0; i < Math.max(n, m); i++) {
      if (i < n && i < m) raw.push(a[i] === b[i] ? { kind: "same", a: i, b: i } : { kind: "changed", a: i, b: i });
      else raw.push(i < n ? { kind: "onlyA", a: i, b: null } : { kind: "onlyB", a: null, b: i });
    }
    return raw;
  }
  // lcs[i][j]: the LCS length of a[i:] and b[j:].
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) raw.push({ kind: "same", a: i++, b: j++ });
    else if (j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1])) raw.push({ kind: "onlyA", a: i++, b: null });
    else raw.push({ kind: "onlyB", a: null, b: j++ });
  }
  // Pair up each stretch of differences: "A ran x where B ran y".
  const rows = [];
  for (let k = 0; k < raw.length;) {
    if (raw[k].kind === "same") { rows.push(raw[k++]); continue; }
    const as = [], bs = [];
    while (k < raw.length && raw[k].kind !== "same") {
      if (raw[k].a !== null) as.push(raw[k].a); else bs.push(raw[k].b);
      k++;
    }
    const pairs = Math.min(as.length, bs.length);
    for (let p = 0; p < pairs; p++) rows.push({ kind: "changed", a: as[p], b: bs[p] });
    for (const x of as.slice(pairs)) rows.push({ kind: "onlyA", a: x, b: null });
    for (const y of bs.slice(pairs)) rows.push({ kind: "onlyB", a: null, b: y });
  }
  return rows;
}

/** The key two nodes are matched by: the node id within one chatbot, else the label. */
export function pathKeys(session, byLabel) {
  return (session.nodeExecutions || []).map((x) => (byLabel ? String(x.label || x.nodeId).trim().toLowerCase() : String(x.nodeId)));
}

class CompareView {
  constructor(main, ids) {
    this.main = main;
    this.ids = ids;
    this.parts = [];
    document.title = "Compare sessions · sessiontrack";
    this.main.replaceChildren(h("section", { class: "compare-view", "aria-busy": "true" },
      backLink(), h("h1", {}, "Compare two sessions"), h("p", { class: "state" }, "Loading both sessions…")));
    this.load();
  }

  update() { /* nothing in the hash besides the two ids */ }

  async load() {
    let sessions;
    try {
      sessions = await Promise.all(this.ids.map((id) => loadSession(id)));
    } catch (err) {
      if (this.destroyed) return;
      this.renderError(err);
      return;
    }
    if (this.destroyed) return;
    this.render(sessions);
  }

  renderError(err) {
    const notFound = err.status === 404 || err.status === 400;
    const retry = h("button", { type: "button", class: "btn" }, "Retry");
    retry.addEventListener("click", () => this.load());
    this.main.replaceChildren(h("section", { class: "compare-view" }, backLink(),
      h("div", { class: "state state-error", role: "alert", id: "error-state" },
        h("h1", {}, notFound ? "Session not found" : "Could not load the sessions"),
        h("p", {}, notFound ? "One of the two sessions may have been purged, or the link is wrong." : err.message),
        notFound ? null : retry)));
  }

  render([a, b]) {
    const sameBot = a.chatbotId === b.chatbotId;
    const rows = alignPaths(pathKeys(a, !sameBot), pathKeys(b, !sameBot));
    const first = rows.findIndex((r) => r.kind !== "same");
    this.rows = rows;
    const flowA = new FlowView(a.flowData, { idPrefix: "flow-a" });
    const flowB = new FlowView(b.flowData, { idPrefix: "flow-b" });
    const convA = new Conversation(a.id, a.allMessages, a.allMessages.length, { id: "conversation-a", live: false, label: "Conversation of session A" });
    const convB = new Conversation(b.id, b.allMessages, b.allMessages.length, { id: "conversation-b", live: false, label: "Conversation of session B" });
    this.parts = [flowA, flowB, convA, convB];
    const row = first >= 0 ? rows[first] : null;

    const panel = (id, title, ...body) => h("section", { class: `panel panel-${id}`, "aria-labelledby": `${id}-title` },
      h("h2", { id: `${id}-title`, class: "panel-title" }, title), ...body);
    const side = (letter, s, flow, conv) => h("div", { class: `compare-side side-${letter.toLowerCase()}`, dataset: { side: letter } },
      head(letter, s),
      panel(`flow-${letter.toLowerCase()}`, `Flow of ${letter}${s.flowVersion ? ` (version ${s.flowVersion})` : ""}`, flow.el),
      panel(`conv-${letter.toLowerCase()}`, `Conversation of ${letter}`, conv.el));
    this.main.replaceChildren(h("section", { class: "compare-view", id: "compare", dataset: { firstDivergence: String(first) } },
      backLink(),
      h("div", { class: "compare-head" },
        h("h1", {}, "Compare two sessions"),
        h("a", { class: "btn btn-small", id: "compare-swap", href: compareHref(b.id, a.id) }, "⇄ Swap A and B")),
      h("p", { class: "compare-note", id: "compare-note" }, matchNote(a, b)),
      summary(a, b, rows, first),
      panel("paths", "Node paths, aligned", pathTable(a, b, rows, first)),
      h("div", { class: "compare-sides" },
        side("A", a, flowA, convA),
        side("B", b, flowB, convB))));
    document.title = `Compare ${who(a)} and ${who(b)} · sessiontrack`;

    for (const [s, flow, index, conv] of [[a, flowA, row?.a, convA], [b, flowB, row?.b, convB]]) {
      const history = (s.nodeExecutions || []).map((x) => x.nodeId);
      flow.setExecution(history, history[history.length - 1], false);
      // The divergence: the node this side ran there (or, where it ran none, where it
      // stopped short: its last common node).
      const x = index !== null && index !== undefined ? s.nodeExecutions[index] : null;
      const marker = x ?? (first > 0 ? s.nodeExecutions[sideIndex(rows[first - 1], s === a)] : null);
      if (marker) flow.nodeEls.get(String(marker.nodeId))?.classList.add("diverge");
      if (x) markConversation(conv, x.at);
      requestAnimationFrame(() => flow.initialView(marker?.nodeId ?? history[history.length - 1]));
    }
  }

  destroy() {
    this.destroyed = true;
    for (const part of this.parts) part.destroy();
  }
}

const sideIndex = (r, isA) => (isA ? r.a : r.b);

async function loadSession(id) {
  const s = await api(encodeURIComponent(id));
  let messages = [...(s.messages || [])];
  while (messages.length && messages.length < (s.messageCount || 0)) {
    const older = await api(`${encodeURIComponent(s.id)}/messages`, { params: { limit: MESSAGE_PAGE, before: messages[0].id } });
    const seen = new Set(messages.map((m) => m.id));
    const fresh = older.filter((m) => !seen.has(m.id));
    if (!fresh.length) break;
    messages = [...fresh, ...messages];
  }
  return { ...s, allMessages: messages };
}

const who = (s) => s.customerName || s.customerPhone || s.conversationId || "Unknown customer";
const nodeName = (x) => (x ? x.label || x.nodeId : "—");

function head(letter, s) {
  return h("div", { class: "compare-card", id: `compare-${letter.toLowerCase()}` },
    h("p", { class: "compare-letter", "aria-hidden": "true" }, letter),
    h("div", { class: "compare-card-body" },
      h("h2", { class: "compare-who" }, h("span", { class: "sr-only" }, `Session ${letter}: `), who(s), " ", statusBadge(s.status)),
      h("p", { class: "muted" },
        `${s.chatbotName || s.chatbotId}${s.flowVersion ? ` · flow version ${s.flowVersion}` : ""} · started ${formatDateTime(s.startedAt)}`),
      h("p", { class: "muted" }, `${formatNumber((s.nodeExecutions || []).length)} nodes · ${formatNumber(s.messageCount)} messages${s.completionReason ? ` · ended: ${s.completionReason}` : ""}`),
      h("p", { class: "compare-links" },
        h("a", { href: sessionHref(s.id), id: `compare-open-${letter.toLowerCase()}` }, `Open session ${letter}`), " · ",
        h("a", { href: sessionHref(s.id, { step: 0 }), id: `compare-replay-${letter.toLowerCase()}` }, `Replay ${letter}`))));
}

/** What the nodes are matched by, and what differs in the flows compared. */
function matchNote(a, b) {
  if (a.chatbotId !== b.chatbotId) {
    return `Different chatbots (${a.chatbotName || a.chatbotId} and ${b.chatbotName || b.chatbotId}): nodes are matched by their label, ignoring case. Each flow graph is the one its session ran.`;
  }
  if ((a.flowVersion || null) !== (b.flowVersion || null)) {
    return `Same chatbot, different flow versions (${a.flowVersion || "unknown"} and ${b.flowVersion || "unknown"}): nodes are matched by id across the versions; a node only one version has can only be on one side. Each flow graph is the version its session ran.`;
  }
  return `Same chatbot${a.flowVersion ? ` and flow version (${a.flowVersion})` : ""}: nodes are matched by id.`;
}

function summary(a, b, rows, first) {
  const text = (() => {
    if (first < 0) return `Same path: both sessions ran the same ${rows.length === 1 ? "node" : `${formatNumber(rows.length)} nodes`} in the same order.`;
    const r = rows[first];
    const xa = r.a !== null ? a.nodeExecutions[r.a] : null;
    const xb = r.b !== null ? b.nodeExecutions[r.b] : null;
    const after = first > 0 ? `after ${first === 1 ? "1 common node" : `${formatNumber(first)} common nodes`} (last: “${nodeName(a.nodeExecutions[rows[first - 1].a])}”)` : "from the first node";
    if (xa && xb) return `The paths diverge at step ${first + 1}, ${after}: A ran “${nodeName(xa)}”, B ran “${nodeName(xb)}”.`;
    if (xa) return `The paths diverge at step ${first + 1}, ${after}: A ran “${nodeName(xa)}”, which B ${r.kind === "onlyA" && rows.slice(first).every((x) => x.b === null) ? "never reached (its path ends there)" : "skipped"}.`;
    return `The paths diverge at step ${first + 1}, ${after}: B ran “${nodeName(xb)}”, which A ${rows.slice(first).every((x) => x.a === null) ? "never reached (its path ends there)" : "skipped"}.`;
  })();
  return h("p", { class: `compare-summary${first < 0 ? " same" : ""}`, id: "compare-summary", role: "status" }, text);
}

const KIND_TEXT = { same: "Same", changed: "Different node", onlyA: "Only in A", onlyB: "Only in B" };

function pathTable(a, b, rows, first) {
  const cell = (s, index, letter) => {
    if (index === null) return h("td", { class: "path-gap" }, h("span", { "aria-hidden": "true" }, "—"), h("span", { class: "sr-only" }, `No node in ${letter}`));
    const x = s.nodeExecutions[index];
    return h("td", { class: "path-node", dataset: { nodeId: String(x.nodeId) } },
      h("span", { class: "path-index muted" }, `${index + 1}.`), " ", h("span", { class: "path-label" }, nodeName(x)),
      x.error ? h("span", { class: "badge status-stopped" }, "Error") : null);
  };
  const body = rows.map((r, i) => h("tr", {
    class: `path-row path-${r.kind}${i === first ? " first-divergence" : ""}`,
    dataset: { kind: r.kind }, id: i === first ? "first-divergence" : null,
  },
  h("th", { scope: "row", class: "num" }, String(i + 1)),
  cell(a, r.a, "A"), cell(b, r.b, "B"),
  h("td", { class: "path-kind" }, KIND_TEXT[r.kind], i === first ? h("span", { class: "badge badge-diverge" }, "First divergence") : null)));
  return h("div", { class: "compare-paths", tabindex: "0", "aria-label": "Aligned node paths" },
    rows.length
      ? h("table", { class: "paths-table", id: "compare-paths" },
        h("caption", { class: "sr-only" }, "The two node paths, aligned: each row a step of A beside the matching step of B"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "#"), h("th", { scope: "col" }, "Session A"),
          h("th", { scope: "col" }, "Session B"), h("th", { scope: "col" }, "Match"))),
        h("tbody", {}, body))
      : h("p", { class: "muted" }, "Neither session ran a node."));
}

/** Flags the first message at or after `at` (the divergence) in a conversation. */
function markConversation(conv, at) {
  const t = Date.parse(at);
  for (const li of conv.el.querySelectorAll(".msg")) {
    const time = Date.parse(li.querySelector("time")?.getAttribute("datetime"));
    if (time >= t) {
      li.classList.add("after-divergence");
      li.prepend(h("p", { class: "diverge-flag" }, "Paths diverge from here"));
      return;
    }
  }
}

function backLink() {
  return h("a", { href: lastListHref, class: "back-link", id: "back-link" }, "← All sessions");
}
