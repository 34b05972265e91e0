// The session detail: header with Stop, Replay and Compare, totals, metadata,
// conversation, flow, timeline, LLM and tool calls, variables. With `step` in the hash
// (#/sessions/<id>?step=3&speed=4) it is in replay mode: the conversation, the flow, the
// timeline and the call table show the session as it was at that step (js/replay.js).

import { api } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { Conversation } from "./conversation.js";
import { CallTable } from "./calls.js";
import {
  ACTIVE, formatCost, formatDateTime, formatDuration, formatMs, formatNumber, formatTime, h, mergeTotals, statusBadge,
  timeEl, TOTAL_KEYS,
} from "./dom.js";
import { FlowView } from "./flow.js";
import { jsonTree, openPathsOf } from "./json.js";
import { lastListHref } from "./list.js";
import { LiveStream } from "./live.js";
import { buildSteps, ReplayBar, SPEEDS } from "./replay.js";
import { compareHref, navigate, sessionHref } from "./router.js";
import { toast } from "./toast.js";

const MESSAGE_PAGE = 1000;

export function mountDetail(main, id, params = {}) {
  return new DetailView(main, id, params);
}

/** The replay a hash asks for: {step, speed}, or null (no `step`: the live page). */
function replayParams(params) {
  if (params?.step === undefined) return null;
  const step = Number.parseInt(params.step, 10);
  const speed = Number(params.speed);
  return { step: Number.isFinite(step) && step >= 0 ? step : 0, speed: SPEEDS.includes(speed) ? speed : 1 };
}

class DetailView {
  constructor(main, id, params = {}) {
    this.main = main;
    this.id = id;
    this.wanted = replayParams(params);
    this.replay = null;
    this.session = null;
    this.parts = [];
    // Outlives re-renders: the outcome of a stop stays visible after the reload it causes.
    this.stopMessage = h("p", { class: "stop-message", role: "status", id: "stop-message" });
    this.main.replaceChildren(h("section", { class: "detail-view", "aria-busy": "true" },
      backLink(), h("p", { class: "state" }, "Loading session…")));
    this.start();
  }

  start() {
    // Listen before reading, so nothing that happens in between is lost: events that
    // arrive before the detail are applied after it (applying one twice is harmless).
    this.early = [];
    this.stream = new LiveStream({ sessionId: this.id }, (name, p) => this.onEvent(name, p), () => this.reload());
    this.load();
  }

  async load() {
    try {
      this.session = await api(encodeURIComponent(this.id));
    } catch (err) {
      if (this.destroyed) return;
      this.stream.close();
      this.renderError(err);
      return;
    }
    if (this.destroyed) return;
    this.render();
    const early = this.early;
    this.early = null;
    for (const [name, p] of early) this.onEvent(name, p);
  }

  async reload() {
    try {
      const fresh = await api(encodeURIComponent(this.id));
      if (this.destroyed) return;
      this.session = fresh;
      this.render();
    } catch { /* keep what is shown; the stream keeps retrying */ }
  }

  renderError(err) {
    const notFound = err.status === 404 || err.status === 400;
    const retry = h("button", { type: "button", class: "btn" }, "Retry");
    retry.addEventListener("click", () => this.start());
    this.main.replaceChildren(h("section", { class: "detail-view" }, backLink(),
      h("div", { class: "state state-error", role: "alert", id: "error-state" },
        h("h1", {}, notFound ? "Session not found" : "Could not load the session"),
        h("p", {}, notFound ? "It may have been purged, or the link is wrong." : err.message),
        notFound ? null : retry)));
  }

  /** The hash changed on this session: a replay step or speed, or in or out of replay. */
  update(params) {
    const wanted = replayParams(params);
    this.wanted = wanted;
    if (!this.session) return;  // load() renders what is wanted
    if (!wanted) { if (this.replay || this.replayLoading) { this.leaveReplay(); this.render(); } return; }
    if (!this.replay) { this.enterReplay({ focus: true }); return; }
    // Apply the link's step and speed, then write the URL once (a step past the end
    // becomes the last one).
    this.applying = true;
    try {
      if (wanted.speed !== this.replay.speed) this.replay.setSpeed(wanted.speed);
      if (wanted.step !== this.replay.index) this.replay.seek(wanted.step, { fromUrl: true });
    } finally {
      this.applying = false;
    }
    this.replayUrl();
  }

  render() {
    for (const part of this.parts) part.destroy();
    this.leaveReplay();
    const s = this.session;
    const who = s.customerName || s.customerPhone || s.conversationId || "Unknown customer";
    document.title = `${who} · session · sessiontrack`;

    this.badgeSlot = h("span", { id: "detail-status" });
    this.stopSlot = h("div", { class: "stop-slot" });
    this.metaEl = h("dl", { class: "meta", id: "metadata" });
    this.totalsEl = h("dl", { class: "totals", id: "totals" });
    this.calls = new CallTable(nodeLabels(s));
    this.conversation = new Conversation(s.id, s.messages || [], s.messageCount);
    this.convSlot = h("div", { class: "conv-slot" }, this.conversation.el);
    this.replaySlot = h("div", { class: "replay-slot" });
    this.compareBox = this.compareControl();
    this.flow = new FlowView(s.flowData);
    this.timelineList = h("ol", { class: "timeline-list" });
    this.timeline = h("div", { class: "timeline", id: "timeline", tabindex: "0", "aria-label": "Node timeline" }, this.timelineList);
    this.variablesEl = h("div", { class: "variables", id: "variables", tabindex: "0", "aria-label": "Session variables" });
    this.parts = [this.conversation, this.flow];

    const panel = (id, title, ...body) => h("section", { class: `panel panel-${id}`, "aria-labelledby": `${id}-title` },
      h("h2", { id: `${id}-title`, class: "panel-title" }, title), ...body);
    this.main.replaceChildren(h("section", { class: "detail-view" },
      backLink(),
      h("div", { class: "detail-head" },
        h("div", { class: "detail-title" }, h("h1", {}, who), this.badgeSlot,
          h("p", { class: "session-id muted" }, "Session ", h("code", {}, s.id))),
        h("div", { class: "detail-actions" },
          h("a", { class: "btn", id: "replay-button", href: sessionHref(s.id, { step: 0 }) }, "▶ Replay"),
          this.compareBox,
          this.stopSlot)),
      this.stopMessage,
      this.replaySlot,
      this.totalsEl,
      h("details", { class: "meta-box", open: window.matchMedia("(min-width: 721px)").matches },
        h("summary", {}, "Session details"), this.metaEl),
      h("div", { class: "detail-grid" },
        panel("conversation", "Conversation", this.convSlot),
        panel("flow", "Flow", this.flow.el, this.flow.legend),
        panel("timeline", "Node timeline", this.timeline),
        panel("calls", "LLM and tool calls", this.calls.el),
        panel("variables", "Variables", this.variablesEl))));
    this.refreshHeader();
    this.renderTimeline();
    this.renderVariables();
    this.calls.render(s.llmCallHistory || [], s.toolCallHistory || []);
    this.flow.setExecution(s.nodeHistory || [], s.currentNodeId, ACTIVE.has(s.status));
    this.flow.setFigures(s.nodeTotals || [], timedNodes(s));
    requestAnimationFrame(() => this.flow.initialView(s.currentNodeId));
    if (this.wanted) this.enterReplay({ focus: false });
  }

  /** "Compare with…": another recent session of this chatbot, or any session id. */
  compareControl() {
    const s = this.session;
    const select = h("select", { id: "compare-with" }, h("option", { value: "" }, "Loading sessions…"));
    const go = h("button", { type: "submit", class: "btn btn-small", id: "compare-go" }, "Compare");
    const form = h("form", { class: "compare-form" },
      h("div", { class: "field" }, h("label", { for: "compare-with" }, "Compare with"), select), go);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (select.value) navigate(compareHref(s.id, select.value));
    });
    const box = h("details", { class: "compare-box", id: "compare-box" }, h("summary", { class: "btn" }, "Compare…"), form);
    box.addEventListener("toggle", async () => {
      if (!box.open || box.dataset.loaded) return;
      box.dataset.loaded = "true";
      try {
        const page = await api("", { params: { filter: "all", chatbotId: s.chatbotId, limit: 20 } });
        const others = page.data.filter((x) => x.id !== s.id);
        select.replaceChildren(...(others.length ? others.map((x) => h("option", { value: x.id },
          `${x.customerName || x.customerPhone || x.conversationId || x.id.slice(0, 8)} · ${x.status} · ${formatDateTime(x.startedAt)}`))
          : [h("option", { value: "" }, "No other session of this chatbot")]));
      } catch (err) {
        select.replaceChildren(h("option", { value: "" }, `Could not load sessions: ${err.message}`));
      }
    });
    return box;
  }

  /** Every message of the session (the detail holds the newest 100), oldest first. */
  async allMessages() {
    const s = this.session;
    let messages = [...(s.messages || [])];
    while (messages.length && messages.length < (s.messageCount || 0)) {
      const older = await api(`${encodeURIComponent(s.id)}/messages`, { params: { limit: MESSAGE_PAGE, before: messages[0].id } });
      const seen = new Set(messages.map((m) => m.id));
      const fresh = older.filter((m) => !seen.has(m.id));
      if (!fresh.length) break;
      messages = [...fresh, ...messages];
    }
    return messages;
  }

  async enterReplay({ focus }) {
    if (this.replay || this.replayLoading) return;
    this.replayLoading = true;
    this.replaySlot.replaceChildren(h("p", { class: "replay-bar state", role: "status" }, "Loading the session's events…"));
    let messages;
    try {
      messages = await this.allMessages();
    } catch (err) {
      this.replayLoading = false;
      if (this.destroyed) return;
      this.replaySlot.replaceChildren(h("p", { class: "replay-bar state state-error", role: "alert" }, `Could not load the messages to replay: ${err.message}`));
      return;
    }
    this.replayLoading = false;
    if (this.destroyed || !this.wanted || this.replay) return;
    this.replayMessages = messages;
    const s = this.session;
    this.main.querySelector(".detail-view")?.classList.add("replaying");
    this.conversation.destroy();
    this.parts = this.parts.filter((p) => p !== this.conversation);
    this.conversation = null;
    this.replayShown = -1;
    this.replay = new ReplayBar(buildSteps(s, messages), {
      step: this.wanted.step,
      speed: this.wanted.speed,
      exitHref: sessionHref(s.id),
      onStep: (index, forward) => this.drawStep(index, forward),
      onSpeed: () => this.replayUrl(),
    });
    this.replaySlot.replaceChildren(this.replay.el);
    this.drawStep(this.replay.index, false);
    if (focus) this.replay.playButton.focus({ preventScroll: true });
  }

  leaveReplay() {
    this.replay?.destroy();
    this.replay = null;
    this.replayLoading = false;
    this.replayConversation?.destroy();
    this.replayConversation = null;
  }

  /** The page as it was at step `index`: messages, nodes and calls up to it. */
  drawStep(index, forward) {
    const s = this.session;
    const step = this.replay.steps[index];
    const { nodes, messages, llm, tool } = step.counts;
    const execs = (s.nodeExecutions || []).slice(0, nodes);
    // The conversation: one more message is appended; any other move redraws it.
    if (forward && messages === this.replayShown + 1 && this.replayConversation) {
      this.replayConversation.append(this.replayMessages[messages - 1]);
    } else if (messages !== this.replayShown || !this.replayConversation) {
      this.replayConversation?.destroy();
      this.replayConversation = new Conversation(s.id, this.replayMessages.slice(0, messages), messages, { live: false, label: "Conversation at this replay step" });
      this.convSlot.replaceChildren(this.replayConversation.el);
    }
    this.replayShown = messages;
    for (const el of this.convSlot.querySelectorAll(".msg.replay-current")) el.classList.remove("replay-current");
    if (step.kind === "inbound" || step.kind === "outbound") {
      const li = this.convSlot.querySelector(`.msg[data-message-id="${step.item.id}"]`);
      if (li) {
        li.classList.add("replay-current");
        if (forward) li.classList.add("replay-new");
      }
    }
    this.renderTimeline(execs, execs.length - 1);
    this.flow.setExecution(execs.map((x) => x.nodeId), execs.length ? execs[execs.length - 1].nodeId : null, execs.length > 0);
    const llmCalls = (s.llmCallHistory || []).slice(0, llm);
    const toolCalls = (s.toolCallHistory || []).slice(0, tool);
    this.calls.render(llmCalls, toolCalls);
    this.flow.setFigures(figuresSoFar(execs, llmCalls, toolCalls), timedNodes({ nodeExecutions: execs }));
    this.main.querySelector(".detail-view")?.setAttribute("data-replay-step", String(index));
    this.replayUrl();
  }

  /** The step (and speed) into the hash, without a history entry per step. */
  replayUrl() {
    if (!this.replay || this.applying) return;
    const speed = this.replay.speed;
    this.wanted = { step: this.replay.index, speed };
    navigate(sessionHref(this.id, { step: this.replay.index, speed: speed === 1 ? "" : speed }), { replace: true });
  }

  refreshHeader() {
    const s = this.session;
    this.badgeSlot.replaceChildren(statusBadge(s.status));
    if (ACTIVE.has(s.status)) {
      if (!this.stopSlot.querySelector("button")) {
        const stop = h("button", { type: "button", class: "btn btn-danger", id: "stop-button" }, "Stop session");
        stop.addEventListener("click", () => this.stop(stop));
        this.stopSlot.replaceChildren(stop);
      }
    } else {
      const hadFocus = this.stopSlot.contains(document.activeElement);
      this.stopSlot.replaceChildren();
      if (hadFocus) this.main.focus();
    }
    this.renderMeta();
    this.renderTotals();
  }

  renderTotals() {
    const s = this.session;
    const items = [
      ["inputTokens", "Input tokens", formatNumber(s.inputTokens ?? 0)],
      ["outputTokens", "Output tokens", formatNumber(s.outputTokens ?? 0)],
      ["cost", "Cost", s.cost ? formatCost(s.cost) : "—"],
      ["llmCalls", "LLM calls", formatNumber(s.llmCalls ?? 0)],
      ["toolCalls", "Tool calls", formatNumber(s.toolCalls ?? 0)],
      ["errorCount", "Errors", formatNumber(s.errorCount ?? 0)],
    ];
    this.totalsEl.replaceChildren(...items.map(([key, label, value]) => h("div", {
      class: `total-item${key === "errorCount" && s.errorCount ? " has-errors" : ""}`, dataset: { total: key },
    }, h("dt", {}, label), h("dd", {}, value))));
  }

  renderMeta() {
    const s = this.session;
    const rows = [
      ["Chatbot", h("span", { title: `id: ${s.chatbotId}` }, s.chatbotName || s.chatbotId)],
      ["Customer", s.customerName || "—"],
      ["Phone", s.customerPhone || "—"],
      ["Conversation", s.conversationId || "—"],
      ["Started", timeEl(s.startedAt, formatDateTime(s.startedAt))],
      ["Updated", timeEl(s.updatedAt, formatDateTime(s.updatedAt))],
      ["Expires", ACTIVE.has(s.status) && s.expiresAt ? timeEl(s.expiresAt, formatDateTime(s.expiresAt)) : "—"],
      ["Ended", timeEl(s.completedAt, formatDateTime(s.completedAt))],
      ["Reason", s.completionReason || "—"],
      ["Duration", formatDuration(s.startedAt, s.completedAt || (ACTIVE.has(s.status) ? null : s.updatedAt))],
      ["Messages", formatNumber(s.messageCount)],
      ["Nodes run", formatNumber(s.nodeCount)],
      ["Current node", s.currentNodeLabel || s.currentNodeId || "—"],
    ];
    this.metaEl.replaceChildren(...rows.map(([k, v]) => h("div", { class: "meta-item" }, h("dt", {}, k), h("dd", {}, v))));
  }

  /** The node executions (`currentIndex`: the one marked current; by default the last,
   * while the session is active). */
  renderTimeline(execs = this.session.nodeExecutions || [], currentIndex = ACTIVE.has(this.session.status) ? execs.length - 1 : -1) {
    if (!execs.length) {
      this.timelineList.replaceChildren(h("li", { class: "muted" }, this.replay ? "No node has run yet at this step." : "No nodes executed yet."));
      return;
    }
    const items = execs.map((x, i) => {
      const current = i === currentIndex;
      return h("li", { class: `step${current ? " current" : ""}${x.error ? " failed" : ""}`, "aria-current": current ? "step" : null, dataset: { nodeId: x.nodeId } },
        h("span", { class: "step-index", "aria-hidden": "true" }, String(i + 1)),
        h("div", { class: "step-body" },
          h("p", { class: "step-label" }, x.label || x.nodeId,
            current ? h("span", { class: "badge badge-current" }, "Current") : null,
            x.error ? h("span", { class: "badge status-stopped" }, "Error") : null),
          h("p", { class: "step-meta muted" },
            timeEl(x.at, formatTime(x.at)),
            x.type ? ` · ${x.type}` : "",
            // No duration reported (null): nothing, rather than a made-up "0 ms".
            typeof x.durationMs === "number" ? h("span", { class: "step-duration" }, ` · ${formatMs(x.durationMs)}`) : ""),
          x.error ? h("p", { class: "step-error" }, x.error) : null));
    });
    this.timelineList.replaceChildren(...items);
    requestAnimationFrame(() => {
      const target = this.timelineList.querySelector(".current") || this.timelineList.lastElementChild;
      if (target) this.timeline.scrollTop = target.offsetTop - this.timeline.clientHeight / 2 + target.offsetHeight / 2;
    });
  }

  renderVariables() {
    const vars = this.session.variables || {};
    const openPaths = this.variablesEl.firstChild ? openPathsOf(this.variablesEl) : null;
    this.variablesEl.replaceChildren(Object.keys(vars).length
      ? jsonTree(vars, { openDepth: 2, openPaths })
      : h("p", { class: "muted" }, "No variables."));
  }

  /** Coalesce redraws: a burst of events repaints each part once per frame. */
  schedule(part) {
    this.pending ??= new Set();
    if (!this.pending.size) {
      requestAnimationFrame(() => {
        const parts = this.pending;
        this.pending = new Set();
        if (this.destroyed) return;
        const s = this.session;
        if (parts.has("header")) this.refreshHeader();
        else {
          if (parts.has("meta")) this.renderMeta();
          if (parts.has("totals")) this.renderTotals();
        }
        if (parts.has("figures") && !this.replay) this.flow.setFigures(s.nodeTotals || [], timedNodes(s));
        if (parts.has("variables")) this.renderVariables();
        // In replay the step decides what these show; new events only add steps.
        if (this.replay) {
          if (parts.has("calls") || parts.has("timeline") || parts.has("messages")) {
            this.replay.setSteps(buildSteps(s, this.replayMessages));
          }
          return;
        }
        if (this.replayLoading) return;
        if (parts.has("calls")) this.calls.render(s.llmCallHistory || [], s.toolCallHistory || []);
        if (parts.has("timeline")) this.renderTimeline();
        if (parts.has("flow")) this.flow.setExecution(s.nodeHistory || [], s.currentNodeId, ACTIVE.has(s.status));
      });
    }
    this.pending.add(part);
  }

  onEvent(name, p) {
    if (this.early) { this.early.push([name, p]); return; }
    if (p.sessionId !== this.session?.id) return;
    const s = this.session;
    // Terminal is final: an event from before the detail was read must not revive it.
    // (Nodes and calls reported just after the end are stored, in the grace window.)
    if (!ACTIVE.has(s.status) && name === "session:status-changed") return;
    switch (name) {
      case "session:node-executed":
        mergeTotals(s, p.totals);
        this.schedule("totals");
        if ((s.nodeExecutions || []).slice(-20).some((x) => x.nodeId === p.nodeId && Date.parse(x.at) === Date.parse(p.at))) break;
        s.nodeExecutions = [...(s.nodeExecutions || []), { nodeId: p.nodeId, label: p.nodeLabel, type: p.nodeType, at: p.at, durationMs: p.durationMs, error: p.error }];
        s.nodeHistory = [...(s.nodeHistory || []), p.nodeId];
        Object.assign(s, { nodeCount: p.nodeCount ?? s.nodeCount + 1 });
        if (ACTIVE.has(s.status)) Object.assign(s, { currentNodeId: p.nodeId, currentNodeLabel: p.nodeLabel, updatedAt: p.at });
        this.countForNode(p.nodeId, { executions: 1, durationMs: p.durationMs || 0, errorCount: p.error ? 1 : 0 }, !p.totals);
        ["timeline", "flow", "meta", "figures"].forEach((part) => this.schedule(part));
        break;
      case "session:llm-call":
        this.addCall("llmCallHistory", p, {
          seq: p.seq, nodeId: p.nodeId, model: p.model, provider: p.provider, inputTokens: p.inputTokens,
          outputTokens: p.outputTokens, latencyMs: p.latencyMs, ttfbMs: p.ttfbMs, cost: p.cost,
          finishReason: p.finishReason, error: p.error, at: p.at,
        }, {
          llmCalls: 1, inputTokens: p.inputTokens || 0, outputTokens: p.outputTokens || 0, cost: p.cost || 0,
          errorCount: p.error ? 1 : 0,
        });
        break;
      case "session:tool-call":
        this.addCall("toolCallHistory", p, {
          seq: p.seq, nodeId: p.nodeId, name: p.name, callId: p.callId, arguments: p.arguments, result: p.result,
          error: p.error, durationMs: p.durationMs, at: p.at,
        }, { toolCalls: 1, errorCount: p.error ? 1 : 0 });
        break;
      case "session:message-sent": {
        const m = { id: p.messageId, sessionId: p.sessionId, direction: p.direction, type: p.type, text: p.text, payload: p.payload, nodeId: p.nodeId, timestamp: p.timestamp };
        if (this.replay) {
          if (!this.replayMessages.some((x) => x.id === m.id)) this.replayMessages.push(m);
          this.schedule("messages");
        } else if (this.conversation) {
          this.conversation.append(m);
        }
        Object.assign(s, { messageCount: p.messageCount ?? s.messageCount + 1, updatedAt: p.timestamp });
        this.schedule("meta");
        break;
      }
      case "session:status-changed":
        Object.assign(s, { status: p.newStatus, updatedAt: p.updatedAt });
        if (p.currentNodeId) Object.assign(s, { currentNodeId: p.currentNodeId, currentNodeLabel: p.currentNodeLabel });
        this.statusChanged();
        break;
      case "session:variables-changed":
        s.variables = { ...(s.variables || {}), ...(p.variables || {}) };
        s.updatedAt = p.updatedAt;
        this.schedule("variables");
        break;
      case "session:completed":
        Object.assign(s, { status: p.status || "completed", completedAt: p.completedAt, updatedAt: p.completedAt, completionReason: p.completionReason });
        mergeTotals(s, p.totals);
        this.statusChanged();
        break;
      default:
        break;
    }
  }

  /** A live LLM or tool call: into its history (once), the totals and its node's figures. */
  addCall(key, p, call, counts) {
    const s = this.session;
    const history = s[key] || [];
    if (!history.slice(-50).some((x) => sameCall(x, call))) {
      s[key] = [...history, call];
      this.countForNode(call.nodeId, counts, !p.totals);
      this.schedule("calls");
      this.schedule("figures");
    }
    mergeTotals(s, p.totals);
    this.schedule("totals");
  }

  /** Adds counts to a node's figures and, when the event carried no totals, to the session's. */
  countForNode(nodeId, counts, toSession) {
    const s = this.session;
    if (toSession) for (const [k, v] of Object.entries(counts)) if (TOTAL_KEYS.includes(k)) s[k] = (s[k] || 0) + v;
    if (nodeId === null || nodeId === undefined) return;
    s.nodeTotals ??= [];
    let t = s.nodeTotals.find((x) => String(x.nodeId) === String(nodeId));
    if (!t) {
      t = { nodeId, executions: 0, durationMs: 0, inputTokens: 0, outputTokens: 0, cost: 0, llmCalls: 0, toolCalls: 0, errorCount: 0 };
      s.nodeTotals.push(t);
    }
    for (const [k, v] of Object.entries(counts)) t[k] = (t[k] || 0) + v;
  }

  statusChanged() {
    ["header", "timeline", "flow"].forEach((part) => this.schedule(part));
  }

  async stop(button) {
    const s = this.session;
    const who = s.customerName || s.customerPhone || "this customer";
    if (!(await confirmDialog("Stop this session?", `The chatbot will not continue the session with ${who}.`, "Stop session"))) {
      button.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Stopping…";
    this.stopMessage.textContent = "";
    try {
      await api(`${encodeURIComponent(s.id)}/stop`, { method: "POST" });
      Object.assign(s, { status: "stopped" });
      this.statusChanged();
      this.stopMessage.textContent = "Session stopped.";
      toast({ kind: "completed", title: "Session stopped", text: who });
      this.reload();
    } catch (err) {
      if (err.status === 409) {
        this.stopMessage.textContent = "This session had already ended.";
        this.reload();
      } else {
        this.stopMessage.textContent = `Could not stop the session: ${err.message}`;
        button.disabled = false;
        button.textContent = "Stop session";
      }
    }
  }

  destroy() {
    this.destroyed = true;
    this.leaveReplay();
    for (const part of this.parts) part.destroy();
    this.stream?.close();
  }
}

/** The same call, seen twice: in the detail read and again as an event that raced it. */
function sameCall(a, b) {
  if (a.seq != null && b.seq != null) return a.seq === b.seq;
  return Date.parse(a.at) === Date.parse(b.at) && a.nodeId === b.nodeId && (a.model ?? a.name) === (b.model ?? b.name);
}

/** Per-node figures (as the detail's nodeTotals) of the executions and calls given: a
 * replay's figures at its step. */
function figuresSoFar(execs, llmCalls, toolCalls) {
  const byId = new Map();
  const of = (nodeId) => {
    const key = String(nodeId);
    if (!byId.has(key)) byId.set(key, { nodeId, executions: 0, durationMs: 0, inputTokens: 0, outputTokens: 0, cost: 0, llmCalls: 0, toolCalls: 0, errorCount: 0 });
    return byId.get(key);
  };
  for (const x of execs) {
    const t = of(x.nodeId);
    t.executions += 1;
    t.durationMs += x.durationMs || 0;
    if (x.error) t.errorCount += 1;
  }
  for (const c of llmCalls) {
    if (c.nodeId == null) continue;
    const t = of(c.nodeId);
    Object.assign(t, { llmCalls: t.llmCalls + 1, inputTokens: t.inputTokens + (c.inputTokens || 0), outputTokens: t.outputTokens + (c.outputTokens || 0), cost: t.cost + (c.cost || 0), errorCount: t.errorCount + (c.error ? 1 : 0) });
  }
  for (const c of toolCalls) {
    if (c.nodeId == null) continue;
    const t = of(c.nodeId);
    Object.assign(t, { toolCalls: t.toolCalls + 1, errorCount: t.errorCount + (c.error ? 1 : 0) });
  }
  return [...byId.values()];
}

/** The nodes with at least one execution whose duration the engine reported. */
function timedNodes(s) {
  return new Set((s.nodeExecutions || []).filter((x) => typeof x.durationMs === "number").map((x) => String(x.nodeId)));
}

function nodeLabels(s) {
  const labels = new Map();
  for (const n of s.flowData?.nodes || []) if (n?.id != null) labels.set(String(n.id), String(n.data?.label ?? n.id));
  for (const x of s.nodeExecutions || []) if (x.label) labels.set(String(x.nodeId), x.label);
  return labels;
}

function backLink() {
  return h("a", { href: lastListHref, class: "back-link", id: "back-link" }, "← All sessions");
}
