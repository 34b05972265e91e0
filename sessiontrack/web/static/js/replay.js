// Replay of a recorded session: its events in the order they were stored (node
// executions, messages, LLM and tool calls), played with their recorded timing or stepped
// through. `buildSteps` orders them; `ReplayBar` is the transport (play, pause, step,
// speed, a slider) and the clock; the session page draws each step.

import { formatMs, formatTime, h } from "./dom.js";

/** Playback speeds offered (× recorded time). */
export const SPEEDS = [1, 2, 4, 10];
/** A pause between two events longer than this is played as this long (and shown). */
export const GAP_CAP_MS = 3000;
/** The least time a step stays on screen at 1× (events stored in the same instant). */
export const MIN_STEP_MS = 250;

// Messages and calls carry their event sequence number: among them it is the stored
// order. Node executions carry none, so each goes in by its timestamp; in the same instant
// it goes after what the customer said and the calls made while it ran (an engine reports
// a node when it ends) and before its reply.
const TIE_RANK = { inbound: 0, llm: 1, tool: 1, node: 2, outbound: 3 };
const EMPTY = { nodes: 0, messages: 0, llm: 0, tool: 0 };

// The transport's icons, drawn (media-control glyphs are missing from many fonts).
const ICONS = {
  first: "M5 4h2.5v16H5z M20 4v16L9 12z",
  back: "M6 4h2.5v16H6z M19 4v16L10 12z",
  play: "M7 4v16l13-8z",
  pause: "M6 4h4.5v16H6z M13.5 4H18v16h-4.5z",
  forward: "M15.5 4H18v16h-2.5z M5 4v16l9-8z",
  last: "M16.5 4H19v16h-2.5z M4 4v16l11-8z",
};
const icon = (name) => h("svg", { class: "icon", viewBox: "0 0 24 24", width: "18", height: "18", "aria-hidden": "true", focusable: "false" },
  h("path", { d: ICONS[name] }));

/**
 * The session's events as replay steps, oldest first: messages, LLM and tool calls in
 * their stored order (by sequence number), node executions (in their stored order)
 * merged in by timestamp. Step 0 is the session's start, before any event. A step:
 * {kind: "start" | "node" | "inbound" | "outbound" | "llm" | "tool", at, item, gapMs (since
 * the step before), counts: {nodes, messages, llm, tool} (how many of each have
 * happened, this step included)}.
 */
export function buildSteps(session, messages) {
  const timed = (e) => ({ ...e, t: Date.parse(e.at) });
  const nodes = (session.nodeExecutions || []).map((x) => timed({ kind: "node", at: x.at, item: x }));
  const logged = [
    ...(messages || []).map((m) => timed({ kind: m.direction === "inbound" ? "inbound" : "outbound", at: m.timestamp, seq: m.id, item: m })),
    ...(session.llmCallHistory || []).map((c) => timed({ kind: "llm", at: c.at, seq: c.seq, item: c })),
    ...(session.toolCallHistory || []).map((c) => timed({ kind: "tool", at: c.at, seq: c.seq, item: c })),
  ].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0) || a.t - b.t);
  const steps = [{ kind: "start", at: session.startedAt, item: null, gapMs: 0, counts: { ...EMPTY } }];
  let counts = { ...EMPTY };
  let lastT = Date.parse(session.startedAt);
  let i = 0, j = 0;
  while (i < nodes.length || j < logged.length) {
    const n = nodes[i], e = logged[j];
    const takeNode = n && (!e || n.t < e.t || (n.t === e.t && TIE_RANK.node < TIE_RANK[e.kind]) || !Number.isFinite(e.t));
    const x = takeNode ? nodes[i++] : logged[j++];
    counts = { ...counts };
    if (x.kind === "node") counts.nodes++;
    else if (x.kind === "llm") counts.llm++;
    else if (x.kind === "tool") counts.tool++;
    else counts.messages++;
    const t = Number.isFinite(x.t) ? x.t : lastT;
    steps.push({ kind: x.kind, at: x.at, item: x.item, gapMs: Number.isFinite(lastT) && Number.isFinite(t) ? Math.max(0, t - lastT) : 0, counts });
    if (Number.isFinite(t)) lastT = Number.isFinite(lastT) ? Math.max(lastT, t) : t;
  }
  return steps;
}

/** How long step `step` waits after the one before it at `speed`, and whether its
 * recorded pause was shortened. */
export function stepWait(step, speed) {
  const capped = step.gapMs > GAP_CAP_MS;
  return { ms: Math.max(MIN_STEP_MS, Math.min(step.gapMs, GAP_CAP_MS)) / speed, capped };
}

const quote = (text, n = 80) => {
  const s = String(text ?? "").replace(/\s+/g, " ").trim();
  return s.length > n ? `“${s.slice(0, n - 1)}…”` : `“${s}”`;
};

/** One line saying what happened at a step. */
export function describeStep(step) {
  const x = step.item;
  switch (step.kind) {
    case "start": return "Session started";
    case "node": return `Node ${quote(x.label || x.nodeId, 40)} ran${x.error ? ` (error: ${x.error})` : ""}`;
    case "inbound": return `Customer: ${x.text ? quote(x.text) : `(${x.type || "message"})`}`;
    case "outbound": return `Bot: ${x.text ? quote(x.text) : `(${x.type || "message"})`}`;
    case "llm": return `LLM call: ${x.model}${x.inputTokens != null || x.outputTokens != null ? ` (${x.inputTokens ?? 0} → ${x.outputTokens ?? 0} tokens)` : ""}${x.error ? ` (error: ${x.error})` : ""}`;
    case "tool": return `Tool call: ${x.name}${x.error ? ` (error: ${x.error})` : ""}`;
    default: return step.kind;
  }
}

export class ReplayBar {
  /**
   * options.onStep(index): draw that step (called on every change, the first included).
   * options.onSpeed(speed): the speed changed. options.exitHref: the page without replay.
   */
  constructor(steps, { step = 0, speed = 1, onStep, onSpeed, exitHref }) {
    this.steps = steps;
    this.index = clampStep(step, steps);
    this.speed = SPEEDS.includes(speed) ? speed : 1;
    this.playing = false;
    this.timer = null;
    this.onStep = onStep;
    this.onSpeed = onSpeed;

    const button = (id, label, name, fn, key) => {
      const b = h("button", { type: "button", class: "btn btn-icon", id, "aria-label": label, title: `${label} (${key})`, "aria-keyshortcuts": key }, icon(name));
      b.addEventListener("click", fn);
      return b;
    };
    this.firstButton = button("replay-first", "First step", "first", () => this.seek(0), "Home");
    this.backButton = button("replay-back", "Step back", "back", () => this.seek(this.index - 1), "ArrowLeft");
    this.playButton = button("replay-play", "Play", "play", () => this.toggle(), "Space");
    this.playButton.classList.add("btn-primary");
    this.forwardButton = button("replay-forward", "Step forward", "forward", () => this.seek(this.index + 1), "ArrowRight");
    this.lastButton = button("replay-last", "Last step", "last", () => this.seek(this.steps.length - 1), "End");
    this.slider = h("input", { type: "range", id: "replay-slider", min: "0", step: "1", "aria-label": "Step" });
    this.slider.addEventListener("input", () => this.seek(Number(this.slider.value), { keepPlaying: true }));
    this.speedButtons = SPEEDS.map((s) => {
      const b = h("button", { type: "button", class: "btn btn-small speed", id: `replay-speed-${s}`, dataset: { speed: String(s) } }, `${s}×`);
      b.addEventListener("click", () => this.setSpeed(s));
      return b;
    });
    this.position = h("p", { class: "replay-position", id: "replay-position", "aria-hidden": "true" });
    this.caption = h("p", { class: "replay-caption", id: "replay-caption", role: "status", "aria-live": "polite" });
    this.gapNote = h("p", { class: "replay-gap", id: "replay-gap", hidden: true });
    this.el = h("section", { class: "replay-bar", id: "replay", "aria-label": "Replay", dataset: { step: "0" } },
      h("div", { class: "replay-row" },
        h("h2", { class: "replay-title" }, "Replay"),
        h("div", { class: "replay-controls", role: "group", "aria-label": "Replay controls" },
          this.firstButton, this.backButton, this.playButton, this.forwardButton, this.lastButton),
        h("div", { class: "replay-scrub" }, this.slider, this.position),
        h("div", { class: "replay-speeds", role: "group", "aria-label": "Speed" }, this.speedButtons),
        h("a", { class: "btn btn-small", id: "replay-exit", href: exitHref }, "Exit replay")),
      h("div", { class: "replay-row replay-text" }, this.caption, this.gapNote),
      h("p", { class: "replay-help muted" },
        "Space plays or pauses, ← and → step, Home and End go to the ends (with the focus here or on the page)."));
    this.onKey = (e) => this.key(e);
    document.addEventListener("keydown", this.onKey);
    this.refresh(false);  // the page draws the first step once it holds the bar
  }

  get atEnd() { return this.index >= this.steps.length - 1; }

  /** New steps (events that arrived live): the position stays where it is. */
  setSteps(steps) {
    this.steps = steps;
    this.index = clampStep(this.index, steps);
    this.refresh(false);
    if (this.playing && !this.timer) this.schedule();
  }

  seek(index, { keepPlaying = false, fromUrl = false } = {}) {
    const next = clampStep(index, this.steps);
    if (!keepPlaying) this.pause();
    if (next === this.index && !fromUrl) { this.refresh(false); return; }
    const forward = next === this.index + 1;
    this.index = next;
    this.refresh(true, forward);
    if (this.playing) this.schedule();
  }

  toggle() { if (this.playing) this.pause(); else this.play(); }

  play() {
    if (this.steps.length <= 1) return;
    if (this.atEnd) { this.index = 0; this.refresh(true); }
    this.playing = true;
    this.schedule();
    this.refreshButtons();
  }

  pause() {
    const was = this.playing;
    this.playing = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (was) this.refresh(false);
  }

  setSpeed(speed) {
    if (!SPEEDS.includes(speed) || speed === this.speed) return;
    this.speed = speed;
    this.refreshButtons();
    if (this.playing) this.schedule();
    this.onSpeed?.(speed);
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.atEnd) { this.pause(); return; }
    const { ms } = stepWait(this.steps[this.index + 1], this.speed);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.playing) return;
      this.index += 1;
      this.refresh(true, true);
      if (this.atEnd) this.pause();
      else this.schedule();
    }, ms);
  }

  /** Show the position; `draw`: tell the page to draw the step. */
  refresh(draw = true, forward = false) {
    const step = this.steps[this.index];
    const total = this.steps.length - 1;
    this.el.dataset.step = String(this.index);
    this.el.dataset.playing = String(this.playing);
    this.slider.max = String(total);
    this.slider.value = String(this.index);
    const text = describeStep(step);
    this.slider.setAttribute("aria-valuetext", `Step ${this.index} of ${total}: ${text}`);
    this.position.textContent = `${this.index} / ${total}`;
    this.caption.replaceChildren(
      h("span", { class: "replay-step" }, `Step ${this.index} of ${total}`), " · ",
      h("time", { datetime: step.at }, formatTime(step.at)), " · ",
      h("span", { class: "replay-what", dataset: { kind: step.kind } }, text));
    // While playing, the step is not read out at each change: only once it stops.
    this.caption.setAttribute("aria-live", this.playing ? "off" : "polite");
    const wait = this.index > 0 ? stepWait(step, this.speed) : { capped: false };
    this.gapNote.hidden = !wait.capped;
    if (wait.capped) {
      this.gapNote.textContent = `⏩ ${formatMs(step.gapMs)} passed before this step (played as ${formatMs(GAP_CAP_MS)} at 1×)`;
    }
    this.refreshButtons();
    if (draw) this.onStep(this.index, forward);
  }

  refreshButtons() {
    const total = this.steps.length - 1;
    this.firstButton.disabled = this.index === 0;
    this.backButton.disabled = this.index === 0;
    this.forwardButton.disabled = this.index >= total;
    this.lastButton.disabled = this.index >= total;
    this.playButton.disabled = total === 0;
    const label = this.playing ? "Pause" : "Play";
    this.playButton.setAttribute("aria-label", label);
    this.playButton.title = `${label} (Space)`;
    this.playButton.replaceChildren(icon(this.playing ? "pause" : "play"));
    this.el.dataset.playing = String(this.playing);
    this.el.dataset.speed = String(this.speed);
    for (const b of this.speedButtons) b.setAttribute("aria-pressed", String(Number(b.dataset.speed) === this.speed));
  }

  /** Space, arrows, Home and End, with the focus in the bar or on nothing in particular
   * (the page, its main area): elsewhere the keys keep their own meaning (the flow pans,
   * the conversation scrolls, a form field edits). */
  key(e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const t = e.target;
    const free = t === document.body || t === document.documentElement || t?.id === "main" || this.el.contains(t);
    if (!free || t.matches?.("input, select, textarea, [contenteditable]")) return;
    const actions = {
      " ": () => this.toggle(),
      ArrowLeft: () => this.seek(this.index - 1),
      ArrowRight: () => this.seek(this.index + 1),
      Home: () => this.seek(0),
      End: () => this.seek(this.steps.length - 1),
    };
    // A focused button does its own job on Space (and Enter).
    if (e.key === " " && t.matches?.("button, a[href], summary")) return;
    if (!actions[e.key]) return;
    e.preventDefault();
    actions[e.key]();
  }

  destroy() {
    this.pause();
    document.removeEventListener("keydown", this.onKey);
  }
}

function clampStep(index, steps) {
  const n = Number.isFinite(index) ? Math.trunc(index) : 0;
  return Math.min(Math.max(0, n), steps.length - 1);
}
