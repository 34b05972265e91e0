// The conversation log: messages grouped by sender, older pages loaded on scroll-up.
//
// Messages live in chunks of one API page each; chunks use `content-visibility: auto`, so
// the browser lays out and paints only the chunks in view even with thousands loaded.

import { api } from "./api.js";
import { formatDay, formatTime, h } from "./dom.js";
import { jsonTree } from "./json.js";

const PAGE = 100;
const NEAR_BOTTOM_PX = 96;
const SENDERS = { inbound: "Customer", outbound: "Bot" };

export class Conversation {
  /**
   * options.id (default "conversation"): the log's id, so two can share a page (their
   * status line and button take it as a prefix). options.live (default true): false for a
   * replay, which announces its steps itself.
   */
  constructor(sessionId, messages, messageCount, { id = "conversation", live = true, label } = {}) {
    this.sessionId = sessionId;
    this.oldestId = messages.length ? messages[0].id : null;
    this.loadedCount = messages.length;
    this.total = Math.max(messageCount || 0, messages.length);
    this.loading = false;
    this.newestChunk = null;
    this.lastDay = null;
    this.seen = new Set(messages.map((m) => m.id));

    const own = id === "conversation";
    this.status = h("div", { class: "conv-status", id: own ? "conv-status" : `${id}-status` });
    this.olderButton = h("button", { type: "button", class: "btn btn-small", id: own ? "load-older" : `${id}-load-older` }, "Load older messages");
    this.olderButton.addEventListener("click", () => this.loadOlder());
    this.top = h("div", { class: "conv-top" }, this.olderButton, this.status);
    this.chunks = h("div", { class: "conv-chunks" });
    this.scroller = h("div", {
      class: "conv-scroller", id, role: "log", tabindex: "0",
      "aria-label": label ?? "Conversation, newest at the bottom", "aria-live": live ? "polite" : "off", "aria-relevant": "additions",
    }, this.top, this.chunks);
    this.jump = h("button", { type: "button", class: "btn btn-small jump-latest", hidden: true }, "↓ Latest messages");
    this.jump.addEventListener("click", () => this.scrollToBottom());
    this.el = h("div", { class: "conv" }, this.scroller, this.jump);

    if (messages.length) this.appendChunk(messages);
    else this.chunks.append(h("p", { class: "muted conv-empty" }, "No messages yet."));
    this.updateTop();

    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadOlder();
    }, { root: this.scroller, rootMargin: "400px 0px 0px 0px" });
    this.observer.observe(this.top);
    // Follow new messages only while the reader is at the bottom (decided on scroll, not
    // on arrival: a burst of messages must not unstick the view).
    this.stick = true;
    this.scroller.addEventListener("scroll", () => {
      this.stick = this.nearBottom();
      if (this.stick) this.jump.hidden = true;
      if (this.nearTop()) this.loadOlder();
    }, { passive: true });
    // Content settles after first paint (chunks skipped by content-visibility get their
    // real height when shown): stay at the bottom while the reader is there.
    this.resizeObserver = new ResizeObserver(() => { if (this.stick) this.scrollToBottom(); });
    this.resizeObserver.observe(this.chunks);
    requestAnimationFrame(() => this.scrollToBottom());
  }

  get hasOlder() { return this.oldestId !== null && this.loadedCount < this.total; }

  updateTop() {
    this.olderButton.hidden = !this.hasOlder || this.loading;
    this.status.textContent = this.loading ? "Loading older messages…"
      : !this.hasOlder && this.loadedCount ? "Start of the conversation" : "";
  }

  nearTop() {
    return this.scroller.scrollTop < 400;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.stick = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.jump.hidden = true;
  }

  async loadOlder() {
    if (this.loading || !this.hasOlder) return;
    this.loading = true;
    this.updateTop();
    try {
      const older = await api(`${encodeURIComponent(this.sessionId)}/messages`, { params: { limit: PAGE, before: this.oldestId } });
      const fresh = older.filter((m) => !this.seen.has(m.id));
      if (!fresh.length) { this.total = this.loadedCount; return; }
      const beforeHeight = this.scroller.scrollHeight;
      const beforeTop = this.scroller.scrollTop;
      this.prependChunk(fresh);
      this.oldestId = fresh[0].id;
      // Keep the message under the reader's eye where it was.
      this.scroller.scrollTop = beforeTop + (this.scroller.scrollHeight - beforeHeight);
    } catch (err) {
      this.status.textContent = `Could not load older messages: ${err.message}`;
      this.loading = false;
      this.olderButton.hidden = false;
      return;
    } finally {
      this.loading = false;
    }
    this.updateTop();
    // Still at the top (a short page, or the reader scrolled on): keep going.
    if (this.nearTop() && this.scroller.scrollHeight > this.scroller.clientHeight) requestAnimationFrame(() => this.loadOlder());
  }

  prependChunk(messages) {
    for (const m of messages) this.seen.add(m.id);
    this.loadedCount += messages.length;
    const chunk = this.renderChunk(messages, null);
    const first = this.chunks.querySelector(".chunk");
    if (first) {
      const lastDir = messages[messages.length - 1].direction;
      const firstGroup = first.querySelector(".msg-group");
      if (firstGroup && firstGroup.dataset.direction === lastDir) firstGroup.classList.add("continued");
      const firstDay = first.querySelector(".day-sep");
      if (firstDay && firstDay.dataset.day === chunk.dataset.lastDay) firstDay.remove();
    }
    this.chunks.prepend(chunk);
  }

  appendChunk(messages) {
    this.chunks.querySelector(".conv-empty")?.remove();
    const chunk = this.renderChunk(messages, this.newestChunk);
    this.chunks.append(chunk);
    this.newestChunk = chunk;
  }

  renderChunk(messages, previous) {
    // Until the browser renders a chunk it assumes this height: the average so far.
    const rendered = this.chunks.querySelector(".chunk");
    const perMessage = rendered && rendered.offsetHeight > 0
      ? rendered.offsetHeight / Number(rendered.dataset.count) : 64;
    const chunk = h("div", { class: "chunk", style: `contain-intrinsic-size: auto ${Math.round(messages.length * perMessage)}px` });
    let group = null;
    let day = previous ? previous.dataset.lastDay : null;
    for (const m of messages) {
      const mDay = new Date(m.timestamp).toDateString();
      if (mDay !== day) {
        chunk.append(h("div", { class: "day-sep", role: "separator", dataset: { day: mDay } }, h("span", {}, formatDay(m.timestamp))));
        day = mDay;
        group = null;
      }
      if (!group || group.dataset.direction !== m.direction) {
        group = this.renderGroup(m.direction);
        chunk.append(group);
      }
      group.querySelector(".msg-list").append(renderMessage(m));
    }
    chunk.dataset.lastDay = day;
    chunk.dataset.count = String(messages.length);
    return chunk;
  }

  renderGroup(direction) {
    return h("div", { class: `msg-group ${direction === "inbound" ? "inbound" : "outbound"}`, dataset: { direction } },
      h("p", { class: "msg-sender" }, SENDERS[direction] || direction),
      h("ul", { class: "msg-list" }));
  }

  /** A live message: add it at the bottom and follow it if the reader was at the bottom. */
  append(m) {
    if (this.seen.has(m.id)) return;
    this.seen.add(m.id);
    this.loadedCount += 1;
    this.total = Math.max(this.total + 1, this.loadedCount);
    if (this.oldestId === null) this.oldestId = m.id;
    const follow = this.stick;
    const chunk = this.newestChunk;
    if (!chunk || Number(chunk.dataset.count) >= PAGE) {
      this.appendChunk([m]);
    } else {
      const mDay = new Date(m.timestamp).toDateString();
      const groups = chunk.querySelectorAll(".msg-group");
      let group = groups[groups.length - 1];
      if (mDay !== chunk.dataset.lastDay) {
        chunk.append(h("div", { class: "day-sep", role: "separator", dataset: { day: mDay } }, h("span", {}, formatDay(m.timestamp))));
        chunk.dataset.lastDay = mDay;
        group = null;
      }
      if (!group || group.dataset.direction !== m.direction || group !== chunk.lastElementChild) {
        group = this.renderGroup(m.direction);
        chunk.append(group);
      }
      group.querySelector(".msg-list").append(renderMessage(m));
      chunk.dataset.count = String(Number(chunk.dataset.count) + 1);
    }
    if (follow) requestAnimationFrame(() => this.scrollToBottom());
    else this.jump.hidden = false;
  }

  destroy() {
    this.observer.disconnect();
    this.resizeObserver.disconnect();
  }
}

function renderMessage(m) {
  return h("li", { class: `msg msg-${m.type || "text"}`, dataset: { messageId: m.id, type: m.type || "text" } },
    h("div", { class: "bubble" }, renderBody(m)),
    h("p", { class: "msg-meta" },
      h("time", { datetime: m.timestamp, title: new Date(m.timestamp).toLocaleString() }, formatTime(m.timestamp)),
      m.type && m.type !== "text" ? h("span", { class: "msg-type" }, m.type) : null));
}

const titleOf = (x) => (typeof x === "string" ? x
  : x?.title ?? x?.reply?.title ?? x?.label ?? x?.text ?? x?.name ?? x?.id ?? JSON.stringify(x));
const isObject = (x) => x !== null && typeof x === "object" && !Array.isArray(x);

/** Text, buttons, lists, forms and replies to them, readable; anything else as JSON. */
function renderBody(m) {
  const p = isObject(m.payload) && Object.keys(m.payload).length ? m.payload : null;
  const inbound = m.direction === "inbound";
  const parts = [];
  let structured = false;
  const reply = p ? (p.button_reply ?? p.list_reply ?? p.reply ?? p.selected
    ?? (inbound && p.title !== undefined ? p : undefined)) : undefined;
  const text = m.text ?? p?.text ?? p?.body?.text ?? (typeof p?.body === "string" ? p.body : null);
  if (p?.header) parts.push(h("p", { class: "msg-header" }, typeof p.header === "string" ? p.header : titleOf(p.header)));
  if (text && !(reply && titleOf(reply) === text)) parts.push(h("p", { class: "msg-text" }, text));
  if (reply !== undefined) {
    parts.push(h("p", { class: "msg-choice" }, h("span", { class: "muted" }, "Chose "), h("span", { class: "choice" }, titleOf(reply))));
    structured = true;
  }
  const buttons = p?.buttons ?? p?.action?.buttons ?? p?.options ?? p?.quickReplies;
  if (Array.isArray(buttons) && buttons.length) {
    parts.push(h("ul", { class: "choices", "aria-label": "Buttons offered" }, buttons.map((b) => h("li", { class: "choice" }, titleOf(b)))));
    structured = true;
  }
  const sections = p?.sections ?? p?.action?.sections ?? (Array.isArray(p?.rows) ? [{ rows: p.rows }] : null);
  if (Array.isArray(sections) && sections.length) {
    const button = p.button ?? p.action?.button;
    parts.push(h("div", { class: "list-card" },
      button ? h("p", { class: "list-button" }, h("span", { class: "choice" }, `☰ ${button}`)) : null,
      sections.map((section) => h("div", { class: "list-section" },
        section.title ? h("p", { class: "list-title" }, section.title) : null,
        h("ul", { class: "list-rows", "aria-label": section.title || "List options" }, (section.rows || []).map((r) => h("li", {},
          h("span", {}, titleOf(r)), r.description ? h("span", { class: "muted" }, r.description) : null)))))));
    structured = true;
  }
  if (p?.kind === "form" || (!inbound && m.type === "form")) {
    const about = [p?.flow_id ?? p?.flowId, p?.screen].filter(Boolean).join(" · ");
    parts.push(h("p", { class: "form-card" }, h("span", { class: "choice" }, `Form: ${p?.cta ?? p?.title ?? "open"}`),
      about ? h("span", { class: "muted" }, about) : null));
    structured = true;
  } else {
    const answers = p ? (p.response ?? p.answers ?? p.fields ?? p.values ?? (m.type === "form" ? p : undefined)) : undefined;
    const fields = answers ? formFields(answers) : null;
    if (fields) {
      parts.push(h("p", { class: "muted form-caption" }, "Form answers"),
        h("dl", { class: "form-fields" }, fields.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, formatValue(v))])));
      structured = true;
    }
  }
  if (p?.footer) parts.push(h("p", { class: "msg-footer muted" }, String(p.footer)));
  if (p && !structured) {
    parts.push(h("details", { class: "payload" }, h("summary", {}, "Details"), jsonTree(p, { openDepth: 1 })));
  }
  if (!parts.length) parts.push(h("p", { class: "msg-text muted" }, `(${m.type || "empty"} message)`));
  return parts;
}

function formFields(source) {
  if (Array.isArray(source)) {
    return source.length ? source.map((f) => (isObject(f)
      ? [f.label ?? f.name ?? f.id ?? "Field", f.value ?? f.answer ?? ""]
      : ["", f])) : null;
  }
  if (!isObject(source)) return null;
  const entries = Object.entries(source).filter(([k]) => !["text", "header", "footer", "body", "kind"].includes(k));
  return entries.length ? entries.map(([k, v]) => [humanize(k), v]) : null;
}

const humanize = (key) => key.replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/^./, (c) => c.toUpperCase());

function formatValue(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "boolean") return v ? "Yes" : "No";
  if (Array.isArray(v)) return v.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
