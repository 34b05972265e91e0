// The sessions list: tabs, filters, search, sort, keyset pagination, stats, live updates,
// and row selection: a checkbox per session, "Select all on this page", "Stop selected"
// (the active ones among them, after a confirmation: POST /stop with the ids, a toast with
// the counts) and "Compare" (exactly two selected: #/compare/<a>/<b>).
// `path=n1,n2,…` (with a chatbot) keeps the sessions whose current path is exactly that, and
// `version=v1` (with a chatbot) those that started with that flow version: the analytics
// page's top paths link here.

import { api, apiUrl, download, getToken } from "./api.js";
import { confirmDialog } from "./confirm.js";
import {
  ACTIVE, adaptiveThrottle, debounce, formatCompact, formatDateTime, formatNumber, h, mergeTotals, plural,
  relativeTimeEl, statusBadge, timeEl,
} from "./dom.js";
import { LiveStream } from "./live.js";
import { analyticsHref, compareHref, listHref, navigate, sessionHref } from "./router.js";
import { toast } from "./toast.js";

const PAGE_SIZE = 20;
const TABS = [["active", "Active"], ["completed", "Completed"], ["all", "All"]];
const SORTS = [
  ["startedAt.DESC", "Newest first"],
  ["startedAt.ASC", "Oldest first"],
  ["updatedAt.DESC", "Recently updated"],
  ["updatedAt.ASC", "Least recently updated"],
];
const MIN_REFRESH_MS = 1500;
// The advanced filters: hash parameter = API parameter, with its kind.
const ADVANCED = [
  ["nodeId", "text"], ["completionReason", "text"],
  ["minMessages", "count"], ["maxMessages", "count"],
  ["minDuration", "seconds"], ["maxDuration", "seconds"],
  ["hasError", "bool"],
];
const MAX_VARIABLES = 10;

/** Remembers cursors per filter state, so "Previous" after "Next" is a keyset query too. */
const cursorMemory = new Map();
let chatbotsCache = null;
export let lastListHref = "#/";

function normalize(params) {
  const tab = TABS.some(([t]) => t === params.tab) ? params.tab : "active";
  const sort = SORTS.some(([s]) => s === params.sort) ? params.sort : SORTS[0][0];
  const page = Math.max(1, Number.parseInt(params.page, 10) || 1);
  // `chatbotId` is accepted too: the analytics page's links name the chatbot the API's way.
  const bot = params.bot || params.chatbotId || "";
  const path = bot ? (params.path || "").split(",").map((n) => n.trim()).filter(Boolean).join(",") : "";
  const version = bot ? params.version || "" : "";
  // startDate/endDate: ISO datetimes with an offset (an analytics range), sessions started in [start, end).
  const when = (v) => (v && !Number.isNaN(Date.parse(v)) ? v : "");
  const adv = {};
  for (const [key, kind] of ADVANCED) adv[key] = advancedValue(kind, params[key]);
  const variables = variableList([].concat(params.variable || []));
  return {
    tab, bot, q: params.q || "", searchIn: params.in === "messages" ? "messages" : "customer",
    sort, page, cursor: params.cursor || "", path, version,
    startDate: when(params.startDate), endDate: when(params.endDate), ...adv, variable: variables,
  };
}

/** `name:value` items the API can take (a name without colon, quote or backslash). */
const variableList = (items) => items.map((v) => String(v).trim())
  .filter((v) => /^[^:"\\]+:/.test(v)).slice(0, MAX_VARIABLES);

/** A hash value of an advanced filter as the API takes it, or "" (a value no filter can
 * use is dropped, as a shared link may hold anything). */
function advancedValue(kind, raw) {
  const v = typeof raw === "string" ? raw.trim() : "";
  if (!v) return "";
  if (kind === "text") return v;
  if (kind === "bool") return v === "true" || v === "false" ? v : "";
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) return "";
  return kind === "count" ? String(Math.floor(n)) : String(n);
}

/** How many advanced filters are set. */
const advancedCount = (s) => ADVANCED.filter(([k]) => s[k]).length + s.variable.length;

const NO_ADVANCED = Object.fromEntries([...ADVANCED.map(([k]) => [k, ""]), ["variable", []]]);

const stateKey = (s) => JSON.stringify([
  s.tab, s.bot, s.q, s.searchIn, s.sort, s.path, s.version, s.startDate, s.endDate,
  ...ADVANCED.map(([k]) => s[k]), s.variable,
]);

function hrefFor(state, changes = {}) {
  const s = { ...state, ...changes };
  return listHref({
    tab: s.tab === "active" ? "" : s.tab, bot: s.bot, version: s.bot ? s.version : "", path: s.bot ? s.path : "", q: s.q,
    in: s.searchIn === "messages" ? "messages" : "",
    startDate: s.startDate, endDate: s.endDate,
    ...Object.fromEntries(ADVANCED.map(([k]) => [k, s[k]])), variable: s.variable,
    sort: s.sort === SORTS[0][0] ? "" : s.sort,
    page: s.page > 1 ? s.page : "", cursor: s.page > 1 ? s.cursor : "",
  });
}

export function mountList(main, params) {
  const view = new ListView(main);
  view.update(params);
  return view;
}

class ListView {
  constructor(main) {
    this.main = main;
    this.state = null;
    this.rows = new Map();
    this.selected = new Set();  // ids of sessions on this page, checked
    this.quietEnds = new Set();  // sessions this page stopped: their ends get no toast
    this.loaded = false;
    this.abort = null;
    this.lastFetchMs = 0;
    this.build();
    this.refreshSoon = this.makeThrottle();
    this.statsSoon = adaptiveThrottle(() => this.loadStats(), 3000);
    this.stream = new LiveStream({}, (name, p) => this.onEvent(name, p), () => this.resync());
    this.onVisible = () => { if (document.visibilityState === "visible" && this.dirty) this.resync(); };
    document.addEventListener("visibilitychange", this.onVisible);
  }

  build() {
    this.statEls = {
      active: h("p", { class: "stat-value", id: "stat-active" }, "—"),
      completedToday: h("p", { class: "stat-value", id: "stat-completed-today" }, "—"),
      total: h("p", { class: "stat-value", id: "stat-total" }, "—"),
    };
    const card = (key, label, note) => h("div", { class: "stat" },
      h("h2", { class: "stat-label" }, label), this.statEls[key], note ? h("p", { class: "stat-note" }, note) : null);
    this.tabsNav = h("nav", { class: "tabs", "aria-label": "Session status" });
    this.botSelect = h("select", { id: "chatbot-filter" }, h("option", { value: "" }, "All chatbots"));
    this.searchInput = h("input", {
      id: "search", type: "search", placeholder: "Name or phone", autocomplete: "off", spellcheck: "false",
    });
    this.searchIn = h("select", { id: "search-in" },
      h("option", { value: "customer" }, "Customer"), h("option", { value: "messages" }, "Messages"));
    this.filtersToggle = h("button", {
      type: "button", class: "btn", id: "filters-toggle", "aria-expanded": "false", "aria-controls": "advanced-filters",
    }, "Filters");
    this.exportCsv = h("a", { class: "btn", id: "export-csv", download: "" }, "Export CSV");
    this.exportJsonl = h("a", { class: "btn", id: "export-jsonl", download: "" }, "Export JSONL");
    for (const link of [this.exportCsv, this.exportJsonl]) link.addEventListener("click", (e) => this.exportClicked(e, link));
    this.panel = this.buildPanel();
    this.sortSelect = h("select", { id: "sort" }, SORTS.map(([v, label]) => h("option", { value: v }, label)));
    this.tbody = h("tbody");
    this.table = h("table", { class: "sessions", id: "sessions-table" },
      h("caption", { class: "sr-only" }, "Sessions"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", class: "cell-select" }, h("span", { class: "sr-only" }, "Select")),
        ["Customer", "Chatbot", "Status", "Current node", "Messages", "Nodes", "Tokens", "Tools", "Started", "Updated"]
          .map((t, i) => h("th", { scope: "col", class: i >= 4 && i <= 7 ? "num" : null }, t)))),
      this.tbody);
    this.selectAll = h("input", { type: "checkbox", id: "select-all" });
    this.selectionCount = h("span", { class: "selection-count", id: "selection-count", "aria-live": "polite" });
    this.stopSelected = h("button", { type: "button", class: "btn btn-danger btn-small", id: "stop-selected", disabled: true }, "Stop selected");
    this.clearSelection = h("button", { type: "button", class: "btn btn-small", id: "clear-selection", hidden: true }, "Clear selection");
    // A link (it navigates), without href until exactly two sessions are selected.
    this.compareSelected = h("a", { class: "btn btn-small", id: "compare-selected", "aria-disabled": "true", title: "Select exactly two sessions to compare them" }, "Compare");
    this.selectionBar = h("div", { class: "selection-bar", id: "selection-bar", hidden: true },
      h("label", { class: "select-all", for: "select-all" }, this.selectAll, "Select all on this page"),
      this.selectionCount, this.compareSelected, this.stopSelected, this.clearSelection);
    this.selectAll.addEventListener("change", () => this.selectPage(this.selectAll.checked));
    this.stopSelected.addEventListener("click", () => this.stopSelection());
    this.clearSelection.addEventListener("click", () => { this.selectPage(false); this.selectAll.focus(); });
    this.message = h("div", { class: "list-message", id: "list-message" });
    this.pathNote = h("p", { class: "path-filter", id: "path-filter", hidden: true });
    this.botAnalytics = h("a", { class: "btn btn-small", id: "chatbot-analytics", hidden: true }, "Analytics");
    this.pager = h("nav", { class: "pager", "aria-label": "Pagination", id: "pager" });
    this.region = h("div", { class: "table-region", "aria-busy": "true", id: "list-region" }, this.table, this.message);
    this.main.replaceChildren(h("section", { class: "list-view", "aria-labelledby": "list-title" },
      h("div", { class: "page-head" }, h("h1", { id: "list-title" }, "Sessions")),
      h("div", { class: "stats", id: "stats" },
        card("active", "Active now"),
        card("completedToday", "Completed today", "since 00:00 UTC"),
        card("total", "Total sessions")),
      h("div", { class: "toolbar" },
        this.tabsNav,
        h("div", { class: "filters" },
          h("div", { class: "field" }, h("label", { for: "chatbot-filter" }, "Chatbot"), this.botSelect),
          this.botAnalytics,
          h("div", { class: "field field-grow" }, h("label", { for: "search" }, "Search"), this.searchInput),
          h("div", { class: "field" }, h("label", { for: "search-in" }, "Search in"), this.searchIn),
          h("div", { class: "field" }, h("label", { for: "sort" }, "Sort"), this.sortSelect),
          h("div", { class: "filter-actions" }, this.filtersToggle, this.exportCsv, this.exportJsonl))),
      this.panel,
      this.pathNote,
      this.selectionBar,
      this.region,
      this.pager));

    this.botSelect.addEventListener("change", () => this.go({ bot: this.botSelect.value, path: "", version: "", page: 1, cursor: "" }));
    this.sortSelect.addEventListener("change", () => this.go({ sort: this.sortSelect.value, page: 1, cursor: "" }));
    this.searchIn.addEventListener("change", () => {
      this.searchDebounce.cancel();
      this.go({ searchIn: this.searchIn.value, q: this.searchInput.value.trim(), page: 1, cursor: "" });
    });
    this.filtersToggle.addEventListener("click", () => this.showPanel(this.panel.hidden));
    const search = debounce(() => this.go({ q: this.searchInput.value.trim(), page: 1, cursor: "" }, true), 350);
    this.searchInput.addEventListener("input", search);
    this.searchDebounce = search;
    this.searchInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { search.cancel(); this.go({ q: this.searchInput.value.trim(), page: 1, cursor: "" }); } });
    this.loadChatbots();
  }

  buildPanel() {
    const input = (id, label, attrs = {}) => {
      const el = h("input", { id, autocomplete: "off", spellcheck: "false", ...attrs });
      return [el, h("div", { class: "field" }, h("label", { for: id }, label), el)];
    };
    const number = (id, label, step) => input(id, label, { type: "number", min: "0", step, inputmode: step === "1" ? "numeric" : "decimal" });
    const [node, nodeField] = input("f-node", "Ran node (id)", { type: "text" });
    const [reason, reasonField] = input("f-reason", "Ended with reason", { type: "text" });
    const [minMsg, minMsgField] = number("f-min-messages", "Messages, at least", "1");
    const [maxMsg, maxMsgField] = number("f-max-messages", "Messages, at most", "1");
    const [minDur, minDurField] = number("f-min-duration", "Duration, at least (min)", "any");
    const [maxDur, maxDurField] = number("f-max-duration", "Duration, at most (min)", "any");
    const errors = h("select", { id: "f-errors" },
      h("option", { value: "" }, "Any"), h("option", { value: "true" }, "With errors"), h("option", { value: "false" }, "Without errors"));
    const variables = h("textarea", {
      id: "f-variables", rows: "2", spellcheck: "false", placeholder: "plan:gold", "aria-describedby": "f-variables-help",
    });
    this.inputs = { nodeId: node, completionReason: reason, minMessages: minMsg, maxMessages: maxMsg, minDuration: minDur, maxDuration: maxDur, hasError: errors, variable: variables };
    const clear = h("button", { type: "button", class: "btn", id: "f-clear" }, "Clear filters");
    const form = h("form", { class: "advanced-filters", id: "advanced-filters", hidden: true, "aria-label": "Advanced filters" },
      h("div", { class: "advanced-grid" },
        nodeField, reasonField, minMsgField, maxMsgField, minDurField, maxDurField,
        h("div", { class: "field" }, h("label", { for: "f-errors" }, "Errors"), errors),
        h("div", { class: "field field-wide" }, h("label", { for: "f-variables" }, "Variables"), variables,
          h("p", { class: "field-help", id: "f-variables-help" }, `name:value, one a line (at most ${MAX_VARIABLES}); all must hold`))),
      h("div", { class: "advanced-actions" },
        h("button", { type: "submit", class: "btn btn-primary", id: "f-apply" }, "Apply filters"), clear));
    form.addEventListener("submit", (e) => { e.preventDefault(); this.applyPanel(); });
    clear.addEventListener("click", () => this.go({ ...NO_ADVANCED, page: 1, cursor: "" }));
    return form;
  }

  showPanel(open) {
    this.panel.hidden = !open;
    this.filtersToggle.setAttribute("aria-expanded", String(open));
    if (open) this.inputs.nodeId.focus();
  }

  /** The panel's inputs into the hash (durations: minutes shown, seconds sent). */
  applyPanel() {
    const changes = { page: 1, cursor: "" };
    for (const [key, kind] of ADVANCED) {
      let v = this.inputs[key].value.trim();
      if (kind === "seconds" && v !== "" && Number.isFinite(Number(v))) v = String(Math.round(Number(v) * 60 * 1000) / 1000);
      changes[key] = v;
    }
    changes.variable = variableList(this.inputs.variable.value.split("\n"));
    this.go(changes);
  }

  fillPanel() {
    const s = this.state;
    for (const [key, kind] of ADVANCED) {
      const el = this.inputs[key];
      if (document.activeElement === el) continue;
      el.value = kind === "seconds" && s[key] ? String(Math.round((Number(s[key]) / 60) * 1000) / 1000) : s[key];
    }
    if (document.activeElement !== this.inputs.variable) this.inputs.variable.value = s.variable.join("\n");
    const n = advancedCount(s);
    this.filtersToggle.replaceChildren("Filters", n ? h("span", { class: "filter-count", id: "filter-count" }, ` (${formatNumber(n)})`) : null);
  }

  /** The list parameters of the current view, without paging: what an export takes. */
  filterParams() {
    const { limit, offset, cursor, ...rest } = this.query();
    return rest;
  }

  exportLinks() {
    const params = this.filterParams();
    this.exportCsv.href = apiUrl("export", { ...params, format: "csv" });
    this.exportJsonl.href = apiUrl("export", { ...params, format: "jsonl" });
  }

  async exportClicked(event, link) {
    if (!getToken()) return;  // cookies or loopback: the browser downloads the link itself
    event.preventDefault();
    const format = new URL(link.href).searchParams.get("format");
    try {
      await download(link.href, `sessions.${format}`);
    } catch (err) {
      toast({ kind: "error", title: "Could not export the sessions", text: err.message || String(err), force: true });
    }
  }

  makeThrottle() {
    // Adaptive: under heavy traffic refetch at most every MIN_REFRESH_MS, or slower when the
    // server takes long to answer, so a busy dashboard never queues requests.
    let timer = null;
    let last = 0;
    const fn = () => {
      if (timer) return;
      if (document.visibilityState === "hidden") { this.dirty = true; return; }
      const gap = Math.max(MIN_REFRESH_MS, this.lastFetchMs * 4);
      const wait = Math.max(0, last + gap - Date.now());
      timer = setTimeout(() => {
        timer = null;
        // Never abort a slow answer for a newer one (it would never finish): ask again after.
        if (this.abort) { this.dirty = true; return; }
        last = Date.now();
        this.load({ quiet: true });
      }, wait);
    };
    fn.cancel = () => { clearTimeout(timer); timer = null; };
    return fn;
  }

  go(changes, replace = false) {
    navigate(hrefFor(this.state, changes), { replace });
  }

  update(params) {
    const next = normalize(params);
    const prev = this.state;
    this.state = next;
    lastListHref = hrefFor(next);
    if (prev && stateKey(prev) !== stateKey(next)) cursorMemory.delete(stateKey(prev));
    if (!prev || stateKey(prev) !== stateKey(next) || prev.page !== next.page) this.selected.clear();
    if (next.cursor) this.cursors().set(next.page, next.cursor);
    this.renderControls();
    if (!prev && advancedCount(next)) this.showPanel(true);
    if (!prev || prev.bot !== next.bot) this.loadStats();
    this.load({ quiet: false });
  }

  cursors() {
    const key = stateKey(this.state);
    if (!cursorMemory.has(key)) cursorMemory.set(key, new Map());
    return cursorMemory.get(key);
  }

  renderControls() {
    const s = this.state;
    this.tabsNav.replaceChildren(...TABS.map(([tab, label]) => h("a", {
      href: hrefFor(s, { tab, page: 1, cursor: "" }), class: "tab", id: `tab-${tab}`,
      "aria-current": tab === s.tab ? "page" : null,
    }, label)));
    if (document.activeElement !== this.searchInput) this.searchInput.value = s.q;
    this.searchIn.value = s.searchIn;
    this.searchInput.placeholder = s.searchIn === "messages" ? "Words in a message" : "Name or phone";
    this.sortSelect.value = s.sort;
    this.fillPanel();
    this.exportLinks();
    this.selectBot();
    this.botAnalytics.hidden = !s.bot;
    if (s.bot) {
      this.botAnalytics.href = analyticsHref({ chatbotId: s.bot });
      this.botAnalytics.setAttribute("aria-label", `Analytics of ${this.botName(s.bot)}`);
    }
    this.pathNote.hidden = !s.path && !s.version && !s.startDate && !s.endDate;
    if (!this.pathNote.hidden) {
      const range = s.startDate || s.endDate
        ? ` started ${s.startDate ? `from ${formatDateTime(s.startDate)}` : ""}${s.endDate ? ` until ${formatDateTime(s.endDate)}` : ""}`
        : "";
      const version = s.version ? h("span", { id: "version-filter" }, " of flow version ", h("span", { class: "path-nodes" }, s.version)) : null;
      const lead = s.path ? (s.version ? ", whose path is exactly " : " whose path is exactly ") : s.version ? range : "";
      this.pathNote.replaceChildren(
        h("span", {}, s.path || s.version ? "Sessions" : `Sessions${range}`),
        version,
        lead ? h("span", {}, lead) : null,
        s.path ? h("span", { class: "path-nodes" }, s.path.split(",").join(" › ")) : null,
        s.path && range ? h("span", {}, `,${range}`) : null,
        " ",
        h("a", { class: "btn btn-small", href: hrefFor(s, { path: "", version: "", startDate: "", endDate: "", page: 1, cursor: "" }), id: "path-filter-clear" },
          s.path ? "Show all paths" : s.version ? "Show all versions" : "Show all dates"));
    }
    document.title = `${TABS.find(([t]) => t === s.tab)[1]} sessions · sessiontrack`;
  }

  selectBot() {
    const bot = this.state.bot;
    if (bot && ![...this.botSelect.options].some((o) => o.value === bot)) {
      this.botSelect.append(h("option", { value: bot }, bot));
    }
    this.botSelect.value = bot;
  }

  botName(id) {
    return chatbotsCache?.find((b) => b.id === id)?.name || id;
  }

  async loadChatbots() {
    try {
      chatbotsCache ??= await api("chatbots");
      const options = chatbotsCache.map((b) => h("option", { value: b.id }, b.name || b.id));
      this.botSelect.replaceChildren(h("option", { value: "" }, "All chatbots"), ...options);
      this.selectBot();
    } catch { /* the filter keeps working with ids from the URL */ }
  }

  async loadStats() {
    try {
      const stats = await api("stats", { params: { chatbotId: this.state.bot } });
      for (const key of Object.keys(this.statEls)) this.statEls[key].textContent = formatNumber(stats[key]);
    } catch { /* the cards keep their last values; the list shows the error */ }
  }

  query() {
    const s = this.state;
    const [sortBy, sortOrder] = s.sort.split(".");
    const params = {
      filter: s.tab, chatbotId: s.bot, path: s.path, version: s.version, startDate: s.startDate, endDate: s.endDate,
      sortBy, sortOrder, limit: PAGE_SIZE,
    };
    if (s.q) params[s.searchIn === "messages" ? "q" : "search"] = s.q;
    for (const [key] of ADVANCED) if (s[key]) params[key] = s[key];
    if (s.variable.length) params.variable = s.variable;
    if (s.page > 1 && s.cursor) params.cursor = s.cursor;
    else params.offset = (s.page - 1) * PAGE_SIZE;
    return params;
  }

  async load({ quiet }) {
    this.dirty = false;
    if (this.abort) this.abort.abort();
    const abort = new AbortController();
    this.abort = abort;
    if (!quiet) this.region.setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const page = await api("", { params: this.query(), signal: abort.signal });
      if (abort.signal.aborted) return;
      this.lastFetchMs = performance.now() - started;
      this.matches = await this.loadMatches(page, abort.signal);
      if (abort.signal.aborted) return;
      this.renderPage(page, quiet);
    } catch (err) {
      if (abort.signal.aborted || err.name === "AbortError") return;
      if (err.status === 400 && this.state.cursor && err.body?.detail?.some?.((d) => d.field === "cursor")) {
        // A stale or hand-edited cursor in a shared link: the same page by offset instead.
        this.go({ cursor: "" }, true);
        return;
      }
      this.renderError(err);
    } finally {
      if (this.abort === abort) {
        this.abort = null;
        this.region.setAttribute("aria-busy", "false");
        if (this.dirty && document.visibilityState === "visible") this.refreshSoon();
      }
    }
  }

  /** For a message search, the newest matching message of each session on the page
   * (from GET /search/messages, its newest 100 matches), shown under the customer. */
  async loadMatches(page, signal) {
    const s = this.state;
    const matches = new Map();
    if (s.searchIn !== "messages" || !s.q || !page.data.length) return matches;
    try {
      const found = await api("search/messages", { params: { q: s.q, chatbotId: s.bot, limit: 100 }, signal });
      for (const m of found.data) if (!matches.has(m.sessionId)) matches.set(m.sessionId, m);
    } catch { /* the list stands without its snippets */ }
    return matches;
  }

  renderPage(page, quiet) {
    this.loaded = true;
    const focusedId = document.activeElement?.closest?.("tr[data-session-id]")?.dataset.sessionId;
    const before = new Set(this.rows.keys());
    this.rows.clear();
    const rows = page.data.map((session) => {
      const row = this.renderRow(session);
      if (quiet && !before.has(session.id)) row.classList.add("row-new");
      this.rows.set(session.id, { row, session });
      return row;
    });
    for (const id of [...this.selected]) {
      if (!this.rows.has(id)) this.selected.delete(id);
    }
    this.tbody.replaceChildren(...rows);
    this.renderSelection();
    if (focusedId && this.rows.has(focusedId)) this.rows.get(focusedId).row.querySelector("a").focus();
    this.table.hidden = rows.length === 0;
    this.message.replaceChildren();
    if (!rows.length) this.renderEmpty();
    this.renderPager(page);
  }

  renderRow(s) {
    const name = s.customerName || s.customerPhone || s.conversationId || "Unknown customer";
    const pick = h("input", { type: "checkbox", class: "row-select", "aria-label": `Select ${name}`, checked: this.selected.has(s.id) });
    pick.addEventListener("change", () => {
      if (pick.checked) this.selected.add(s.id); else this.selected.delete(s.id);
      this.renderSelection();
    });
    return h("tr", { dataset: { sessionId: s.id, status: s.status }, class: this.selected.has(s.id) ? "row-selected" : null },
      h("td", { class: "cell-select" }, pick),
      h("td", { class: "cell-customer", "data-label": "Customer" },
        h("a", { href: sessionHref(s.id), class: "row-link" }, name),
        s.customerName && s.customerPhone ? h("span", { class: "muted phone" }, s.customerPhone) : null,
        this.matches?.has(s.id) ? matchSnippet(this.matches.get(s.id)) : null),
      h("td", { "data-label": "Chatbot", class: "cell-chatbot" },
        h("a", { href: analyticsHref({ chatbotId: s.chatbotId }), class: "chatbot-link", title: `Analytics of ${s.chatbotName || s.chatbotId}` },
          s.chatbotName || s.chatbotId)),
      h("td", { "data-label": "Status", class: "cell-status" }, statusBadge(s.status), errorBadge(s.errorCount)),
      h("td", { "data-label": "Current node", class: "cell-node" }, s.currentNodeLabel || s.currentNodeId || "—"),
      h("td", { "data-label": "Messages", class: "num cell-messages" }, formatNumber(s.messageCount)),
      h("td", { "data-label": "Nodes", class: "num cell-nodes" }, formatNumber(s.nodeCount)),
      tokensCell(s),
      h("td", { "data-label": "Tools", class: `num cell-tools${s.toolCalls ? "" : " empty"}`, title: s.toolCalls ? plural(s.toolCalls, "tool call") : null },
        s.toolCalls ? formatNumber(s.toolCalls) : h("span", { class: "muted" }, "—")),
      h("td", { "data-label": "Started" }, timeEl(s.startedAt, formatDateTime(s.startedAt))),
      h("td", { "data-label": "Updated", class: "cell-updated" }, relativeTimeEl(s.updatedAt)));
  }

  renderEmpty() {
    const s = this.state;
    let title = { active: "No active sessions right now", completed: "No completed sessions yet", all: "No sessions yet" }[s.tab];
    let hint = s.tab === "active" ? "New sessions appear here as soon as they start." : "Sessions appear here as the chatbots run.";
    let action = null;
    if (s.page > 1) {
      title = "This page is empty";
      hint = "The sessions on it may have moved.";
      action = h("a", { class: "btn", href: hrefFor(s, { page: 1, cursor: "" }) }, "Go to the first page");
    } else if (s.q || s.bot || advancedCount(s)) {
      title = s.q ? (s.searchIn === "messages" ? `No messages match “${s.q}”` : `No sessions match “${s.q}”`)
        : s.path ? "No sessions on this path" : advancedCount(s) ? "No sessions match these filters" : "No sessions for this chatbot";
      hint = s.path ? `No session${s.version ? " of this version" : ""} in this tab has exactly this path.` : "Try another search, chatbot or filter.";
      action = h("a", { class: "btn", href: hrefFor(s, { q: "", bot: "", path: "", version: "", startDate: "", endDate: "", ...NO_ADVANCED, page: 1, cursor: "" }) }, "Clear filters");
    }
    this.message.replaceChildren(h("div", { class: "state state-empty", id: "empty-state" },
      h("h2", {}, title), h("p", {}, hint), action));
  }

  renderError(err) {
    const retry = h("button", { type: "button", class: "btn" }, "Retry");
    retry.addEventListener("click", () => this.load({ quiet: false }));
    const box = h("div", { class: "state state-error", role: "alert", id: "error-state" },
      h("h2", {}, "Could not load sessions"), h("p", {}, err.message || String(err)), retry);
    this.message.replaceChildren(box);
    if (!this.loaded) this.table.hidden = true;
  }

  renderPager(page) {
    const s = this.state;
    this.pager.hidden = !page.data.length && s.page === 1;
    const from = page.data.length ? (s.page - 1) * PAGE_SIZE + 1 : 0;
    const to = (s.page - 1) * PAGE_SIZE + page.data.length;
    const summary = h("p", { class: "pager-summary", id: "pager-summary" },
      page.data.length ? `${formatNumber(from)}–${formatNumber(to)} of ${totalText(page)}` : `0 of ${totalText(page)}`);
    const prevPage = s.page - 1;
    const prevCursor = prevPage > 1 ? this.cursors().get(prevPage) || "" : "";
    const prev = s.page > 1
      ? h("a", { class: "btn", href: hrefFor(s, { page: prevPage, cursor: prevCursor }), rel: "prev", id: "page-prev" }, "← Previous")
      : h("span", { class: "btn", "aria-disabled": "true", id: "page-prev" }, "← Previous");
    let next;
    if (page.hasNext) {
      if (page.nextCursor) this.cursors().set(s.page + 1, page.nextCursor);
      next = h("a", { class: "btn", href: hrefFor(s, { page: s.page + 1, cursor: page.nextCursor || "" }), rel: "next", id: "page-next" }, "Next →");
    } else {
      next = h("span", { class: "btn", "aria-disabled": "true", id: "page-next" }, "Next →");
    }
    this.pager.replaceChildren(summary, h("div", { class: "pager-buttons" }, prev,
      h("span", { class: "pager-page", "aria-current": "page" }, `Page ${formatNumber(s.page)}`), next));
  }

  onEvent(name, p) {
    const entry = this.rows.get(p.sessionId);
    const who = p.customerName || p.customerPhone || "A customer";
    switch (name) {
      case "session:started":
        toast({ kind: "started", title: `${who} started a session`, text: p.chatbotName || p.chatbotId, href: sessionHref(p.sessionId) });
        this.refreshSoon();
        this.statsSoon();
        break;
      case "session:status-changed":
        if (entry) this.patchRow(entry, { status: p.newStatus, currentNodeId: p.currentNodeId, currentNodeLabel: p.currentNodeLabel, updatedAt: p.updatedAt });
        if (ACTIVE.has(p.newStatus) !== ACTIVE.has(p.previousStatus) || this.state.sort.startsWith("updatedAt")) this.refreshSoon();
        break;
      case "session:node-executed":
        if (entry) this.patchRow(entry, { currentNodeId: p.nodeId, currentNodeLabel: p.nodeLabel, nodeCount: p.nodeCount, updatedAt: p.at }, p.totals);
        if (this.state.sort.startsWith("updatedAt")) this.refreshSoon();
        break;
      case "session:message-sent":
        if (entry) this.patchRow(entry, { messageCount: p.messageCount, updatedAt: p.timestamp });
        if (this.state.sort.startsWith("updatedAt")) this.refreshSoon();
        break;
      case "session:completed": {
        const name2 = entry ? (entry.session.customerName || entry.session.customerPhone) : null;
        const status = p.status || "completed";
        if (!this.quietEnds.delete(p.sessionId)) toast({ kind: "completed", title: `${name2 || "A session"} ${status === "completed" ? "completed" : status}`, text: p.completionReason || "", href: sessionHref(p.sessionId) });
        if (entry) this.patchRow(entry, { status, completedAt: p.completedAt, updatedAt: p.completedAt }, p.totals);
        this.refreshSoon();
        this.statsSoon();
        break;
      }
      case "session:llm-call":
      case "session:tool-call":
        if (entry && p.totals) this.patchRow(entry, {}, p.totals);
        break;
      default:
        break;
    }
  }

  patchRow(entry, changes, totals) {
    const fresh = Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined && v !== null));
    const session = mergeTotals({ ...entry.session, ...fresh }, totals);
    const row = this.renderRow(session);
    row.classList.add("row-updated");
    const hadFocus = entry.row.contains(document.activeElement);
    entry.row.replaceWith(row);
    if (hadFocus) row.querySelector("a").focus();
    entry.row = row;
    entry.session = session;
    // A selected session that ends stays selected (to compare), but no longer counts for Stop.
    if (!ACTIVE.has(session.status)) this.renderSelection();
  }

  /** The sessions on this page, in the table's order. */
  selectable() {
    return [...this.rows.values()].map((e) => e.session.id);
  }

  /** The selected sessions that can be stopped (active), in the table's order. */
  stoppable() {
    return this.selectable().filter((id) => this.selected.has(id) && ACTIVE.has(this.rows.get(id).session.status));
  }

  selectPage(on) {
    for (const id of this.selectable()) if (on) this.selected.add(id); else this.selected.delete(id);
    for (const { row, session } of this.rows.values()) {
      const box = row.querySelector(".row-select");
      if (box) box.checked = this.selected.has(session.id);
    }
    this.renderSelection();
  }

  renderSelection() {
    const ids = this.selectable();
    const n = this.selected.size;
    this.selectionBar.hidden = ids.length === 0 && n === 0;
    this.selectAll.checked = ids.length > 0 && ids.every((id) => this.selected.has(id));
    this.selectAll.indeterminate = n > 0 && !this.selectAll.checked;
    const stop = this.stoppable().length;
    this.selectionCount.textContent = n ? `${plural(n, "session")} selected` : "None selected";
    this.stopSelected.disabled = stop === 0 || this.stopping;
    this.stopSelected.textContent = this.stopping ? "Stopping…" : stop ? `Stop selected (${formatNumber(stop)})` : "Stop selected";
    this.stopSelected.title = n && !stop ? "None of the selected sessions is active" : "";
    const pair = ids.filter((id) => this.selected.has(id));
    if (pair.length === 2) {
      this.compareSelected.href = compareHref(pair[0], pair[1]);
      this.compareSelected.removeAttribute("aria-disabled");
      this.compareSelected.title = "Compare the two selected sessions side by side";
    } else {
      this.compareSelected.removeAttribute("href");
      this.compareSelected.setAttribute("aria-disabled", "true");
      this.compareSelected.title = "Select exactly two sessions to compare them";
    }
    this.clearSelection.hidden = n === 0;
    for (const { row, session } of this.rows.values()) row.classList.toggle("row-selected", this.selected.has(session.id));
  }

  async stopSelection() {
    const ids = this.stoppable();
    if (!ids.length) return;
    const names = ids.map((id) => {
      const s = this.rows.get(id).session;
      return s.customerName || s.customerPhone || s.conversationId || "a customer";
    });
    const shown = names.length > 3 ? `${names.slice(0, 3).join(", ")} and ${plural(names.length - 3, "other")}` : names.join(", ");
    const title = ids.length === 1 ? "Stop 1 session?" : `Stop ${formatNumber(ids.length)} sessions?`;
    const text = `The chatbots will not continue these conversations: ${shown}.`;
    if (!(await confirmDialog(title, text, ids.length === 1 ? "Stop session" : `Stop ${formatNumber(ids.length)} sessions`))) {
      this.stopSelected.focus();
      return;
    }
    this.stopping = true;
    this.renderSelection();
    // Their session:completed events need no toast each: the answer's toast says it all.
    for (const id of ids) this.quietEnds.add(id);
    setTimeout(() => { for (const id of ids) this.quietEnds.delete(id); }, 30000);
    try {
      const result = await api("stop", { method: "POST", body: { ids } });
      for (const id of ids) this.selected.delete(id);
      const notes = [];
      if (result.alreadyEnded.length) notes.push(`${plural(result.alreadyEnded.length, "session")} had already ended`);
      if (result.notFound.length) notes.push(`${plural(result.notFound.length, "session")} not found`);
      toast({ kind: "stopped", title: `Stopped ${plural(result.stopped.length, "session")}`, text: notes.join(" · "), force: true });
    } catch (err) {
      toast({ kind: "error", title: "Could not stop the sessions", text: err.message || String(err), force: true });
    } finally {
      this.stopping = false;
      this.renderSelection();
      this.resync();
    }
  }

  resync() {
    this.load({ quiet: true });
    this.loadStats();
  }

  destroy() {
    this.searchDebounce.cancel();
    this.stream.close();
    this.refreshSoon.cancel();
    this.statsSoon.cancel();
    if (this.abort) this.abort.abort();
    document.removeEventListener("visibilitychange", this.onVisible);
  }
}

/** A found message around its first highlight, the matched words marked. Highlights are
 * [start, end) in code points. */
function matchSnippet(m) {
  const chars = Array.from(m.text || "");
  const ranges = (m.highlights || []).filter(([a, b]) => a < b && b <= chars.length).sort((x, y) => x[0] - y[0]);
  const from = ranges.length ? Math.max(0, ranges[0][0] - 30) : 0;
  const to = Math.min(chars.length, from + 110);
  const parts = [from > 0 ? "…" : ""];
  let at = from;
  for (const [a, b] of ranges) {
    if (b <= at || a >= to) continue;
    parts.push(chars.slice(at, Math.max(at, a)).join(""), h("mark", {}, chars.slice(Math.max(at, a), Math.min(b, to)).join("")));
    at = Math.min(b, to);
  }
  parts.push(chars.slice(at, to).join(""), to < chars.length ? "…" : "");
  const who = m.direction === "inbound" ? "Customer" : "Bot";
  return h("p", { class: "match-snippet", title: `${who}, ${formatDateTime(m.timestamp)}` },
    h("span", { class: "sr-only" }, `${who} said: `), ...parts);
}

/** The list's total; past what the advanced filters count (totalExact false): "1,000+". */
const totalText = (page) => (page.totalExact === false ? `${formatNumber(page.total)}+` : formatNumber(page.total));

function tokensCell(s) {
  const total = (s.inputTokens || 0) + (s.outputTokens || 0);
  return h("td", {
    "data-label": "Tokens", class: `num cell-tokens${total ? "" : " empty"}`,
    title: total ? `${formatNumber(s.inputTokens || 0)} input + ${formatNumber(s.outputTokens || 0)} output tokens` : null,
    dataset: { tokens: String(total) },
  }, total ? formatCompact(total) : h("span", { class: "muted" }, "—"));
}

/** Node, LLM and tool errors of a session, shown only when there are some. */
function errorBadge(count) {
  if (!count) return null;
  return h("span", { class: "badge badge-errors", title: "Node, LLM and tool call errors" }, plural(count, "error"));
}
