// The analytics page: one chatbot, one flow version (or two side by side), a date range.
// Cards, the flow as a heat map, the top paths, a funnel built by picking nodes, the daily
// trend and a duration histogram, all from GET <prefix>/analytics/*, refetched (throttled)
// when the live stream says a session of this chatbot started, moved on or ended.

import { api } from "./api.js";
import { Chart, drawBars, drawFunnel, drawTrend, TREND_SERIES } from "./charts.js";
import { adaptiveThrottle, formatMs, formatNumber, h, plural } from "./dom.js";
import { FlowView } from "./flow.js";
import { LiveStream } from "./live.js";
import { analyticsHref, listHref, navigate } from "./router.js";

export const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const LIVE_MIN_MS = 2000;
const MAX_STEPS = 20;
const PATHS_LIMIT = 10;
const LIVE_EVENTS = new Set(["session:started", "session:completed", "session:status-changed", "session:node-executed"]);
const PRESETS = [[7, "7 days"], [30, "30 days"], [90, "90 days"]];

const meanFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const pctFmt = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
const longDayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric", timeZone: "UTC" });

export const formatRate = (r) => (r === null || r === undefined ? "—" : pctFmt.format(r));
export const formatSeconds = (s) => (s === null || s === undefined ? "—" : formatMs(s * 1000));
const formatMean = (n) => (n === null || n === undefined ? "—" : meanFmt.format(n));
/** A histogram bound in seconds: "30 s", "2 min", "6 h", "1 day". */
function formatBound(s) {
  if (s < 60) return `${meanFmt.format(s)} s`;
  if (s < 3600) return `${meanFmt.format(s / 60)} min`;
  if (s < 86400) return `${meanFmt.format(s / 3600)} h`;
  return s === 86400 ? "1 day" : `${meanFmt.format(s / 86400)} days`;
}
const formatDate = (iso) => dayFmt.format(new Date(`${iso}T00:00:00Z`));

/** YYYY-MM-DD of a local date. */
export function localDate(d = new Date()) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function daysAgo(n) {
  const d = new Date();
  d.setDate(d.getDate() - n);
  return localDate(d);
}

const isDate = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s || "");

function normalize(params) {
  return {
    chatbotId: params.chatbotId || params.bot || "",
    version: params.version || "",
    compare: params.compare || "",
    // No dates in the link: the last 7 local days, rolling (the API's default, made visible).
    startDate: isDate(params.startDate) ? params.startDate : "",
    endDate: isDate(params.endDate) ? params.endDate : "",
    steps: (params.steps || "").split(",").map((s) => s.trim()).filter(Boolean).slice(0, MAX_STEPS),
  };
}

const mainKey = (s) => JSON.stringify([s.chatbotId, s.version, s.compare, s.startDate, s.endDate]);

function hrefFor(state, changes = {}) {
  const s = { ...state, ...changes };
  return analyticsHref({
    chatbotId: s.chatbotId, version: s.version, compare: s.compare,
    startDate: s.startDate, endDate: s.endDate, steps: s.steps.join(","),
  });
}

/**
 * The sessions list filtered to one path (every tab: ended and active sessions), to the
 * answer's flow version (none for `all`: every version's sessions on those node ids) and
 * to its effective range (ISO datetimes: the list's startDate/endDate).
 */
export const pathHref = (chatbotId, nodes, answer = {}) => listHref({
  tab: "all", chatbotId, version: answer.version && answer.version !== "all" ? answer.version : "",
  path: nodes.join(","), startDate: answer.startDate,
  // The analytics range is half-open, the list's endDate inclusive: one millisecond before.
  endDate: answer.endDate ? new Date(Date.parse(answer.endDate) - 1).toISOString() : "",
});

let chatbotsCache = null;

export function mountAnalytics(main, params) {
  const view = new AnalyticsView(main);
  view.update(params);
  return view;
}

class AnalyticsView {
  constructor(main) {
    this.main = main;
    this.state = null;
    this.gen = 0;
    this.inflight = null;
    this.answers = {};
    this.flows = [];
    this.versions = null;
    this.build();
    this.refreshSoon = adaptiveThrottle(() => this.liveRefresh(), LIVE_MIN_MS);
    this.stream = new LiveStream({}, (name, p) => this.onEvent(name, p), () => this.refreshSoon());
    this.onVisible = () => { if (document.visibilityState === "visible" && this.dirty) this.refreshSoon(); };
    document.addEventListener("visibilitychange", this.onVisible);
  }

  // --- skeleton -------------------------------------------------------------------------

  build() {
    const select = (id, label, onChange) => {
      const el = h("select", { id });
      el.addEventListener("change", () => onChange(el.value));
      return { el, field: h("div", { class: "field" }, h("label", { for: id }, label), el) };
    };
    this.botPick = select("an-chatbot", "Chatbot", (v) => this.go({ chatbotId: v, version: "", compare: "", steps: [] }));
    this.versionPick = select("an-version", "Version", (v) => this.go({ version: v, steps: this.state.steps }));
    this.comparePick = select("an-compare", "Compare with", (v) => this.go({ compare: v }));
    const dateInput = (id, label, key) => {
      const el = h("input", { id, type: "date", required: true });
      el.addEventListener("change", () => {
        if (!isDate(el.value)) return;
        const other = key === "startDate" ? this.range().endDate : this.range().startDate;
        this.go(key === "startDate" ? { startDate: el.value, endDate: other } : { startDate: other, endDate: el.value });
      });
      return { el, field: h("div", { class: "field" }, h("label", { for: id }, label), el) };
    };
    this.startPick = dateInput("an-start", "From", "startDate");
    this.endPick = dateInput("an-end", "To (inclusive)", "endDate");
    this.presets = h("div", { class: "an-presets", role: "group", "aria-label": "Quick ranges" },
      PRESETS.map(([n, label]) => {
        const b = h("button", { type: "button", class: "btn btn-small", dataset: { days: String(n) } }, label);
        b.addEventListener("click", () => this.go(n === 7 ? { startDate: "", endDate: "" } : { startDate: daysAgo(n - 1), endDate: localDate() }));
        return b;
      }));

    this.title = h("h1", { id: "an-title" }, "Analytics");
    this.subtitle = h("p", { class: "muted an-subtitle", id: "an-subtitle" });
    this.status = h("p", { class: "sr-only", role: "status", id: "an-status" });
    this.message = h("div", { class: "an-message", id: "an-message" });
    this.cards = h("div", { class: "an-cards", id: "an-cards" });
    this.flowGrid = h("div", { class: "an-flows", id: "an-flows" });
    this.nodesTable = h("div", { class: "an-table-wrap", id: "an-nodes", tabindex: "0", role: "region", "aria-label": "Table of the figures per node (scrolls sideways)" });
    this.pathsList = h("ol", { class: "an-paths", id: "an-paths" });
    this.stepPick = h("select", { id: "an-step-pick" });
    const addStep = h("button", { type: "button", class: "btn btn-small", id: "an-step-add" }, "Add step");
    addStep.addEventListener("click", () => { if (this.stepPick.value) this.addStep(this.stepPick.value); });
    this.clearSteps = h("button", { type: "button", class: "btn btn-small", id: "an-steps-clear" }, "Clear");
    this.clearSteps.addEventListener("click", () => this.go({ steps: [] }, true));
    this.stepList = h("ol", { class: "an-steps", id: "an-steps", "aria-label": "Funnel steps" });
    this.funnelChart = new Chart("an-funnel-chart", (d) => `Funnel of ${d.steps.length} steps`, (d, w) => drawFunnel({
      steps: d.steps,
      tipOf: (s, i) => `Step ${i + 1}, ${s.label ?? s.nodeId}: ${formatNumber(s.sessions)} sessions, ` +
        `${formatRate(s.conversion)} of the previous step, ${formatRate(s.overall)} of all; ` +
        `median ${formatSeconds(s.timeFromPrevious?.p50)} from ${i ? "the previous step" : "the start"}`,
    }, w));
    this.funnelTable = h("div", { class: "an-table-wrap", id: "an-funnel-table", tabindex: "0", role: "region", "aria-label": "Table of the funnel steps (scrolls sideways)" });
    this.funnelNote = h("p", { class: "muted an-note", id: "an-funnel-note" });
    this.trendChart = new Chart("an-trend-chart", (d) => `Sessions started per day, ${d.days.length} days`, (d, w) => drawTrend({
      days: d.days, formatDate: (iso) => (w < 500 ? formatDate(iso) : longDayFmt.format(new Date(`${iso}T00:00:00Z`))),
    }, w));
    this.trendLegend = h("p", { class: "an-legend" }, TREND_SERIES.map(([key, label]) =>
      h("span", { class: `an-key series-${key}` }, label)));
    this.histChart = new Chart("an-hist-chart", (d) => d.label, (d, w) => drawBars({ bars: d.bars, format: (v) => formatNumber(Math.round(v)) }, w));
    this.histNote = h("p", { class: "muted an-note", id: "an-hist-note" });

    const panel = (id, title, ...body) => h("section", { class: "panel an-panel", id, "aria-labelledby": `${id}-title` },
      h("h2", { class: "panel-title", id: `${id}-title` }, title), h("div", { class: "an-panel-body" }, ...body));
    this.nodesPanelTitle = "Figures per node";
    this.main.replaceChildren(h("section", { class: "analytics-view", "aria-labelledby": "an-title" },
      h("div", { class: "page-head" }, this.title, this.subtitle),
      h("form", { class: "an-controls", id: "an-controls", "aria-label": "What to show", onsubmit: (e) => e.preventDefault() },
        this.botPick.field, this.versionPick.field, this.comparePick.field,
        this.startPick.field, this.endPick.field, this.presets),
      this.status,
      this.message,
      this.cards,
      panel("an-flow", "Flow heat map", this.flowGrid,
        h("p", { class: "muted an-note" }, "Edge width: sessions that took it. Node colour: drop-off rate (expired or stopped there). " +
          "Hover or Tab to a node or edge for its figures; click a node, or press Enter on it, to add it to the funnel.")),
      h("div", { class: "an-grid" },
        panel("an-paths-panel", "Top paths", this.pathsList),
        panel("an-funnel", "Funnel",
          h("div", { class: "an-step-picker" },
            h("div", { class: "field" }, h("label", { for: "an-step-pick" }, "Node"), this.stepPick), addStep, this.clearSteps),
          this.stepList, this.funnelChart.el, this.funnelTable, this.funnelNote),
        panel("an-trend", "Daily sessions", this.trendChart.el, this.trendLegend),
        panel("an-histogram", "Session duration", this.histChart.el, this.histNote)),
      panel("an-nodes-panel", "Figures per node", this.nodesTable)));
  }

  go(changes, replace = false) {
    const next = { ...this.state, ...changes };
    if (changes.steps === undefined && ("chatbotId" in changes || "version" in changes)) next.steps = [];
    navigate(hrefFor(next, {}), { replace });
  }

  /** The effective range: the link's dates, or the last 7 local days. */
  range() {
    return { startDate: this.state.startDate || daysAgo(6), endDate: this.state.endDate || localDate() };
  }

  // --- routing and loading --------------------------------------------------------------

  async update(params) {
    const prev = this.state;
    const next = normalize(params);
    this.state = next;
    if (!next.chatbotId) {
      const bots = await this.chatbots();
      if (this.state !== next) return;
      if (bots.length) { navigate(hrefFor(next, { chatbotId: bots[0].id }), { replace: true }); return; }
      this.renderControls();
      this.showMessage("empty", "No chatbots yet", "Analytics appear here once a chatbot has reported sessions.");
      return;
    }
    this.renderControls();
    if (prev && mainKey(prev) === mainKey(next)) {
      if (prev.steps.join(",") !== next.steps.join(",")) this.loadFunnel();
      return;
    }
    if (!prev || prev.chatbotId !== next.chatbotId) this.versions = null;
    this.load({ quiet: false });
  }

  async chatbots() {
    try {
      chatbotsCache ??= await api("chatbots");
    } catch { return []; }
    return chatbotsCache;
  }

  params(version) {
    const { startDate, endDate } = this.range();
    return { chatbotId: this.state.chatbotId, version, startDate, endDate, tz: TZ };
  }

  async load({ quiet }) {
    const gen = ++this.gen;
    if (this.inflight && !quiet) this.inflight.abort();
    const abort = new AbortController();
    this.inflight = abort;
    const s = this.state;
    const signal = abort.signal;
    if (!quiet) this.main.querySelector(".analytics-view").setAttribute("aria-busy", "true");
    try {
      const get = (path, version, extra = {}) => api(`analytics/${path}`, { params: { ...this.params(version), ...extra }, signal });
      const a = s.version;
      const b = s.compare;
      const funnel = this.fetchFunnel(signal);
      funnel.catch(() => {});  // awaited below, after the main figures are drawn
      const [versions, summaryA, nodesA, paths, summaryB, nodesB] = await Promise.all([
        api("analytics/versions", { params: { chatbotId: s.chatbotId }, signal }),
        get("summary", a), get("nodes", a), get("paths", a, { limit: PATHS_LIMIT }),
        b ? get("summary", b) : null, b ? get("nodes", b) : null,
      ]);
      if (gen !== this.gen) return;
      this.versions = versions;
      this.answers = { summaryA, nodesA, paths, summaryB, nodesB };
      this.clearMessage();
      this.renderControls();
      this.render();
      await this.loadFunnel(signal, gen, funnel);
      this.status.textContent = `Figures updated at ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (gen !== this.gen || err.name === "AbortError") return;
      if (!quiet || !this.answers.summaryA) this.showError(err);
    } finally {
      if (gen === this.gen) {
        this.inflight = null;
        this.main.querySelector(".analytics-view")?.setAttribute("aria-busy", "false");
      }
    }
  }

  /** The funnel of both versions for the current steps: [A, B] answers, or nulls. */
  fetchFunnel(signal) {
    const s = this.state;
    if (!s.steps.length) return Promise.resolve([null, null]);
    const get = (version) => api("analytics/funnel", { params: { ...this.params(version), steps: s.steps.join(",") }, signal });
    return Promise.all([get(s.version), s.compare ? get(s.compare) : null]);
  }

  async loadFunnel(signal, gen = this.gen, pending = null) {
    const s = this.state;
    this.renderSteps();
    try {
      const [funnelA, funnelB] = await (pending || this.fetchFunnel(signal));
      if (gen !== this.gen || this.state !== s) return;
      Object.assign(this.answers, { funnelA, funnelB });
      this.renderFunnel();
    } catch (err) {
      if (err.name === "AbortError") return;
      this.funnelNote.textContent = `Could not build the funnel: ${err.message}`;
      this.funnelNote.classList.add("an-error-text");
    }
  }

  liveRefresh() {
    if (document.visibilityState === "hidden") { this.dirty = true; return null; }
    this.dirty = false;
    if (!this.state?.chatbotId) return null;
    // A load the reader asked for is under way: it brings the new figures too.
    if (this.inflight) { this.dirty = true; return null; }
    return this.load({ quiet: true });
  }

  onEvent(name, p) {
    if (!this.state || p.chatbotId !== this.state.chatbotId || !LIVE_EVENTS.has(name)) return;
    this.refreshSoon();
  }

  // --- controls -------------------------------------------------------------------------

  renderControls() {
    const s = this.state;
    const bots = chatbotsCache || [];
    const botOptions = bots.map((b) => h("option", { value: b.id }, b.name || b.id));
    if (s.chatbotId && !bots.some((b) => b.id === s.chatbotId)) botOptions.push(h("option", { value: s.chatbotId }, s.chatbotId));
    setOptions(this.botPick.el, botOptions);
    this.botPick.el.value = s.chatbotId;
    if (!chatbotsCache) this.chatbots().then(() => { if (chatbotsCache.length) this.renderControls(); });

    const v = this.versions;
    const current = v?.current ?? null;
    const versionLabel = (x) => `${x.version}${x.version === current ? " (current)" : ""} · ${formatNumber(x.sessions)} sessions`;
    const list = v?.versions || [];
    const options = (none) => [
      none,
      ...list.map((x) => h("option", { value: x.version }, versionLabel(x))),
      h("option", { value: "all" }, "All versions"),
    ];
    const unknown = [s.version, s.compare]
      .filter((value, i, all) => value && value !== "all" && all.indexOf(value) === i && !list.some((x) => x.version === value))
      .map((value) => () => h("option", { value }, `${value} · no sessions`));
    setOptions(this.versionPick.el, [...options(h("option", { value: "" }, current ? `Current (${current})` : "Current")), ...unknown.map((f) => f())]);
    this.versionPick.el.value = s.version;
    setOptions(this.comparePick.el, [...options(h("option", { value: "" }, "No comparison")), ...unknown.map((f) => f())]);
    this.comparePick.el.value = s.compare;

    const { startDate, endDate } = this.range();
    this.startPick.el.value = startDate;
    this.endPick.el.value = endDate;
    this.startPick.el.max = endDate;
    this.endPick.el.min = startDate;
    for (const b of this.presets.children) {
      const n = Number(b.dataset.days);
      const on = n === 7 ? !s.startDate && !s.endDate : s.startDate === daysAgo(n - 1) && s.endDate === localDate();
      b.setAttribute("aria-pressed", String(on));
    }
    const name = bots.find((b) => b.id === s.chatbotId)?.name || s.chatbotId;
    this.title.textContent = name ? `Analytics · ${name}` : "Analytics";
    document.title = `${name ? `${name} analytics` : "Analytics"} · sessiontrack`;
    this.subtitle.replaceChildren(
      `Sessions started from ${longDayFmt.format(new Date(`${startDate}T00:00:00Z`))} to ${longDayFmt.format(new Date(`${endDate}T00:00:00Z`))}, `,
      `counted for the flow version they started with; days in ${TZ}. `,
      name ? h("a", { href: listHref({ tab: "all", bot: s.chatbotId }), id: "an-sessions-link" }, "This chatbot's sessions") : null);
  }

  // --- figures --------------------------------------------------------------------------

  versionName(answer) {
    if (!answer) return "";
    return answer.version === "all" ? "All versions" : `Version ${answer.version || "(none)"}`;
  }

  render() {
    const { summaryA, summaryB } = this.answers;
    this.renderCards();
    this.renderFlows();
    this.renderNodes();
    this.renderPaths();
    this.renderTrend();
    this.renderHistogram();
    this.renderStepPicker();
    if (!summaryA.sessions && !(summaryB && summaryB.sessions)) {
      this.showMessage("empty", "No sessions in this range",
        "No session of this chatbot and version started in these days. Pick a longer range or another version.");
    }
  }

  renderCards() {
    const { summaryA: a, summaryB: b } = this.answers;
    const ended = (x) => ["completed", "expired", "stopped"].reduce((n, k) => n + (x.byStatus?.[k] || 0), 0);
    const cards = [
      ["sessions", "Sessions", (x) => formatNumber(x.sessions), (x) => `${formatNumber(x.active)} active`],
      ["completion", "Completion rate", (x) => formatRate(x.completionRate), (x) => `${formatNumber(x.byStatus?.completed || 0)} of ${formatNumber(ended(x))} ended`],
      ["p50", "Median duration", (x) => formatSeconds(x.duration?.p50), () => "ended sessions"],
      ["p90", "p90 duration", (x) => formatSeconds(x.duration?.p90), (x) => `mean ${formatSeconds(x.duration?.mean)}`],
      ["messages", "Messages per session", (x) => formatMean(x.messages?.mean), (x) => `median ${x.messages?.p50 ?? "—"}, ended sessions`],
    ];
    this.cards.classList.toggle("an-compare", Boolean(b));
    this.cards.replaceChildren(...cards.map(([key, label, value, note]) => {
      const one = (x, tag) => h("div", { class: "an-card-row", dataset: { version: x.version } },
        b ? h("span", { class: "an-card-version" }, tag, " ", h("span", { class: "muted" }, x.version === "all" ? "all" : x.version)) : null,
        h("p", { class: "stat-value an-value" }, value(x)),
        h("p", { class: "stat-note" }, note(x)));
      return h("div", { class: "stat an-card", id: `an-card-${key}` },
        h("h2", { class: "stat-label" }, label), one(a, "A"), b ? one(b, "B") : null);
    }));
  }

  renderFlows() {
    const { nodesA, nodesB } = this.answers;
    const answers = nodesB ? [nodesA, nodesB] : [nodesA];
    const maxEdge = Math.max(1, ...answers.flatMap((n) => n.edges.map((e) => e.sessions)));
    const signature = JSON.stringify(answers.map((n) => [n.version, graphKey(n)]));
    if (signature !== this.flowSignature) {
      for (const f of this.flows) f.view.destroy();
      this.flows = answers.map((n, i) => this.makeFlow(n, i));
      this.flowGrid.replaceChildren(...this.flows.map((f) => f.el));
      this.flowSignature = signature;
    }
    this.flowGrid.classList.toggle("an-compare", answers.length > 1);
    answers.forEach((n, i) => {
      const f = this.flows[i];
      f.title.textContent = `${answers.length > 1 ? (i ? "B · " : "A · ") : ""}${this.versionName(n)} · ${formatNumber(n.sessions)} sessions`;
      f.view.setHeat(heatOf(n, maxEdge));
    });
  }

  makeFlow(answer, i) {
    const slot = i ? "b" : "a";
    const activate = (id) => this.addStep(id);
    const view = new FlowView(heatFlowData(answer), { idPrefix: `an-flow-${slot}`, onNodeActivate: activate });
    const title = h("h3", { class: "an-flow-title" });
    const el = h("div", { class: "an-flow", dataset: { slot: slot.toUpperCase() } }, title, view.el);
    return { el, view, title };
  }

  renderNodes() {
    const { nodesA: a, nodesB: b } = this.answers;
    const label = (n) => n.label ?? n.nodeId;
    if (!b) {
      const head = ["Node", "Sessions", "Visits", "Drop-off", "Completed", "Expired", "Stopped", "Still there", "Bot time p50 / p90", "Wait p50 / p90", "Errors"];
      const rows = a.nodes.map((n) => h("tr", { dataset: { nodeId: n.nodeId } },
        h("th", { scope: "row" }, label(n), n.label === null ? h("span", { class: "muted" }, " (not in this graph)") : null),
        ...[n.sessions, n.visits].map(numCell),
        h("td", { class: "num" }, formatRate(n.dropOffRate)),
        ...["completed", "expired", "stopped", "active"].map((k) => numCell(n.exits?.[k] ?? 0)),
        h("td", { class: "num" }, `${fmtMs(n.botTime?.p50)} / ${fmtMs(n.botTime?.p90)}`),
        h("td", { class: "num" }, `${fmtMs(n.waitTime?.p50)} / ${fmtMs(n.waitTime?.p90)}`),
        numCell(n.errors)));
      this.nodesTable.replaceChildren(table("an-nodes-table", "Figures per node", head, rows));
      return;
    }
    const byB = new Map(b.nodes.map((n) => [n.nodeId, n]));
    const ids = [...a.nodes.map((n) => n.nodeId), ...b.nodes.map((n) => n.nodeId).filter((id) => !a.nodes.some((n) => n.nodeId === id))];
    const byA = new Map(a.nodes.map((n) => [n.nodeId, n]));
    const head = ["Node", `Sessions A (${a.version})`, `Sessions B (${b.version})`, "Drop-off A", "Drop-off B",
      "Bot time p50 A", "Bot time p50 B", "Errors A", "Errors B"];
    const rows = ids.map((id) => {
      const x = byA.get(id);
      const y = byB.get(id);
      const pick = (n, f) => (n ? f(n) : "not in version");
      return h("tr", { dataset: { nodeId: id } },
        h("th", { scope: "row" }, label(x || y)),
        h("td", { class: "num" }, pick(x, (n) => formatNumber(n.sessions))), h("td", { class: "num" }, pick(y, (n) => formatNumber(n.sessions))),
        h("td", { class: "num" }, pick(x, (n) => formatRate(n.dropOffRate))), h("td", { class: "num" }, pick(y, (n) => formatRate(n.dropOffRate))),
        h("td", { class: "num" }, pick(x, (n) => fmtMs(n.botTime?.p50))), h("td", { class: "num" }, pick(y, (n) => fmtMs(n.botTime?.p50))),
        h("td", { class: "num" }, pick(x, (n) => formatNumber(n.errors))), h("td", { class: "num" }, pick(y, (n) => formatNumber(n.errors))));
    });
    this.nodesTable.replaceChildren(table("an-nodes-table", "Figures per node, version A against version B", head, rows));
  }

  labels() {
    const map = new Map();
    for (const answer of [this.answers.nodesB, this.answers.nodesA]) {
      for (const n of answer?.nodes || []) if (n.label) map.set(n.nodeId, n.label);
    }
    return map;
  }

  renderPaths() {
    const { paths } = this.answers;
    const labels = this.labels();
    if (!paths.paths.length) {
      this.pathsList.replaceChildren(h("li", { class: "an-empty" }, "No paths in this range yet."));
      return;
    }
    const top = Math.max(...paths.paths.map((p) => p.share || 0), 0.0001);
    this.pathsList.replaceChildren(...paths.paths.map((p, i) => {
      const names = p.nodes.map((id) => labels.get(id) || id);
      // sessions that ran no node yet are on the empty path: no list filter names it
      const text = names.length ? names.join(" › ") : "(no node run yet)";
      return h("li", { class: "an-path", dataset: { nodes: p.nodes.join(",") } },
        h("div", { class: "an-path-head" },
          h("span", { class: "an-path-rank", "aria-hidden": "true" }, `${i + 1}`),
          h("span", { class: "an-path-nodes" }, text)),
        h("div", { class: "an-share", "aria-hidden": "true" }, h("span", { style: `width:${(100 * (p.share || 0)) / top}%` })),
        h("p", { class: "an-path-figures" },
          h("span", { class: "an-path-sessions" }, plural(p.sessions, "session")), ` · ${formatRate(p.share)} of all · `,
          `${formatRate(p.completionRate)} completed · median ${formatSeconds(p.duration?.p50)}`,
          p.nodes.length ? " · " : null,
          p.nodes.length ? h("a", { href: pathHref(this.state.chatbotId, p.nodes, paths), class: "an-path-link", "aria-label": `Sessions on path ${i + 1}: ${text}` }, "Sessions →") : null));
    }));
  }

  renderStepPicker() {
    const nodes = this.answers.nodesA?.nodes || [];
    const value = this.stepPick.value;
    this.stepPick.replaceChildren(h("option", { value: "" }, "Pick a node…"),
      ...nodes.map((n) => h("option", { value: n.nodeId }, n.label ?? n.nodeId)));
    this.stepPick.value = nodes.some((n) => n.nodeId === value) ? value : "";
  }

  addStep(nodeId) {
    const steps = this.state.steps;
    if (steps.length >= MAX_STEPS) { this.funnelNote.textContent = `A funnel has at most ${MAX_STEPS} steps.`; return; }
    this.go({ steps: [...steps, String(nodeId)] }, true);
  }

  renderSteps() {
    const steps = this.state.steps;
    const labels = this.labels();
    this.clearSteps.disabled = !steps.length;
    this.stepList.replaceChildren(...steps.map((id, i) => {
      const name = labels.get(id) || id;
      const remove = h("button", { type: "button", class: "an-step-remove", "aria-label": `Remove step ${i + 1}, ${name}` }, "×");
      remove.addEventListener("click", () => this.go({ steps: steps.filter((_, j) => j !== i) }, true));
      return h("li", { class: "an-step", dataset: { nodeId: id } }, h("span", {}, name), remove);
    }));
  }

  renderFunnel() {
    const { funnelA: a, funnelB: b } = this.answers;
    this.funnelNote.classList.remove("an-error-text");
    if (!a) {
      this.funnelChart.el.hidden = true;
      this.funnelTable.replaceChildren();
      this.funnelNote.textContent = "Pick nodes (here or in the graph) to see how many sessions reach each step, in order.";
      return;
    }
    this.funnelChart.el.hidden = false;
    this.funnelChart.set({ steps: a.steps });
    const head = ["Step", "Sessions", "Of previous", "Of all", "Median time from previous"];
    if (b) head.push(`Sessions B (${b.version})`, "Of all B");
    const rows = a.steps.map((s, i) => h("tr", { dataset: { nodeId: s.nodeId } },
      h("th", { scope: "row" }, `${i + 1}. ${s.label ?? s.nodeId}`),
      numCell(s.sessions), h("td", { class: "num" }, formatRate(s.conversion)), h("td", { class: "num" }, formatRate(s.overall)),
      h("td", { class: "num" }, formatSeconds(s.timeFromPrevious?.p50)),
      b ? numCell(b.steps[i]?.sessions) : null, b ? h("td", { class: "num" }, formatRate(b.steps[i]?.overall)) : null));
    this.funnelTable.replaceChildren(table("an-funnel-steps-table", `Funnel, ${this.versionName(a)}`, head, rows));
    this.funnelNote.textContent = `${formatNumber(a.sessions)} sessions in range; a step counts the sessions that reached every step before it, in this order.`;
  }

  renderTrend() {
    this.trendChart.set({ days: this.answers.summaryA.daily || [] });
  }

  renderHistogram() {
    const histogram = this.answers.summaryA.duration?.histogram || [];
    if (!histogram.some((bin) => bin.sessions > 0)) {
      this.histChart.el.hidden = true;
      this.histNote.textContent = "No ended sessions in this range yet.";
      return;
    }
    let prev = 0;
    const bars = histogram.map((bin) => {
      const last = bin.le === null || bin.le === undefined;
      const label = last ? `> ${formatBound(prev)}` : `≤ ${formatBound(bin.le)}`;
      const range = last ? `over ${formatBound(prev)}` : prev ? `${formatBound(prev)} to ${formatBound(bin.le)}` : `up to ${formatBound(bin.le)}`;
      prev = last ? prev : bin.le;
      return { label, value: bin.sessions, tip: `${plural(bin.sessions, "session")} lasted ${range}` };
    });
    this.histChart.el.hidden = false;
    this.histChart.set({ bars, label: `Ended sessions by duration, ${bars.length} buckets` });
    this.histNote.textContent = "Ended sessions of the range, by how long they lasted.";
  }

  // --- messages -------------------------------------------------------------------------

  showMessage(kind, title, text, action) {
    this.message.replaceChildren(h("div", {
      class: `state state-${kind}`, id: kind === "error" ? "an-error" : "an-empty", role: kind === "error" ? "alert" : null,
    }, h("h2", {}, title), h("p", {}, text), action));
  }

  showError(err) {
    const retry = h("button", { type: "button", class: "btn" }, "Retry");
    retry.addEventListener("click", () => this.load({ quiet: false }));
    const title = err.status === 404 ? "Unknown chatbot" : err.status === 400 ? "These settings do not work" : "Could not load the analytics";
    this.showMessage("error", title, err.message || String(err), retry);
  }

  clearMessage() {
    this.message.replaceChildren();
  }

  destroy() {
    this.gen++;
    this.stream.close();
    this.refreshSoon.cancel();
    this.inflight?.abort();
    for (const f of this.flows) f.view.destroy();
    for (const c of [this.funnelChart, this.trendChart, this.histChart]) c.destroy();
    document.removeEventListener("visibilitychange", this.onVisible);
  }
}

/** Replace a select's options only when they changed (a live refresh must not close it). */
function setOptions(select, options) {
  const key = JSON.stringify(options.map((o) => [o.value, o.textContent]));
  if (select.dataset.options === key) return;
  select.dataset.options = key;
  select.replaceChildren(...options);
}

const fmtMs = (ms) => (ms === null || ms === undefined ? "—" : formatMs(ms));
const numCell = (n) => h("td", { class: "num" }, formatNumber(n ?? 0));

function table(id, caption, head, rows) {
  return h("table", { class: "an-table", id },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, head.map((t, i) => h("th", { scope: "col", class: i ? "num" : null }, t)))),
    h("tbody", {}, rows));
}

/** The graph a heat map is drawn on: the version's flow, plus executed nodes and edges it lacks. */
export function heatFlowData(answer) {
  const fd = answer.flowData || {};
  const nodes = (fd.nodes || []).filter((n) => n && n.id != null).map((n) => ({ ...n }));
  const edges = (fd.edges || []).filter((e) => e && e.source != null && e.target != null).map((e) => ({ ...e }));
  const ids = new Set(nodes.map((n) => String(n.id)));
  const positioned = nodes.length > 0 && nodes.every((n) => Number.isFinite(n.position?.x) && Number.isFinite(n.position?.y));
  let x = positioned ? Math.min(...nodes.map((n) => n.position.x)) : 0;
  const y = positioned ? Math.max(...nodes.map((n) => n.position.y)) + 140 : 0;
  for (const n of answer.nodes || []) {
    if (ids.has(String(n.nodeId))) continue;
    ids.add(String(n.nodeId));
    nodes.push({
      id: n.nodeId, type: n.type ?? "not in this graph", data: { label: n.label ?? n.nodeId },
      position: positioned ? { x, y } : undefined,
    });
    x += 220;
  }
  const pairs = new Set(edges.map((e) => `${e.source}\u0000${e.target}`));
  for (const e of answer.edges || []) {
    const key = `${e.source}\u0000${e.target}`;
    if (pairs.has(key)) continue;
    pairs.add(key);
    edges.push({ id: `heat:${key}`, source: e.source, target: e.target });
  }
  return {
    nodes, edges,
    legend: { title: "Drop-off rate", low: "0%", high: "100%", edges: "Wider edge: more sessions" },
  };
}

function graphKey(answer) {
  const fd = heatFlowData(answer);
  return [fd.nodes.map((n) => String(n.id)), fd.edges.map((e) => `${e.source}>${e.target}`)];
}

/** setHeat's argument from a nodes answer; edge weights relative to `maxEdge`. */
export function heatOf(answer, maxEdge) {
  const label = new Map(answer.nodes.map((n) => [String(n.nodeId), n.label ?? String(n.nodeId)]));
  const nodes = {};
  for (const n of answer.nodes) {
    const ex = n.exits || {};
    const parts = [`${formatNumber(n.sessions)} sessions`, `${formatNumber(n.visits)} visits`,
      `drop-off ${formatRate(n.dropOffRate)} (${formatNumber(ex.expired || 0)} expired, ${formatNumber(ex.stopped || 0)} stopped)`,
      `${formatNumber(ex.completed || 0)} completed here`];
    if (ex.active) parts.push(`${formatNumber(ex.active)} still here`);
    if (n.botTime?.p50 !== null && n.botTime?.p50 !== undefined) parts.push(`bot time median ${formatMs(n.botTime.p50)}`);
    if (n.waitTime?.p50 !== null && n.waitTime?.p50 !== undefined) parts.push(`wait median ${formatMs(n.waitTime.p50)}`);
    if (n.errors) parts.push(`${formatNumber(n.errors)} errors`);
    nodes[String(n.nodeId)] = {
      level: n.sessions ? n.dropOffRate : null,
      text: `${label.get(String(n.nodeId))}: ${parts.join(", ")}. Click or press Enter to add it to the funnel.`,
    };
  }
  const edges = {};
  for (const e of answer.edges) {
    const from = label.get(String(e.source)) ?? e.source;
    const to = label.get(String(e.target)) ?? e.target;
    edges[`${e.source}\u0000${e.target}`] = {
      weight: maxEdge ? e.sessions / maxEdge : 0,
      text: `${from} → ${to}: ${formatNumber(e.sessions)} sessions (${formatRate(e.share)} of those going on from ${from})`,
    };
  }
  return {
    nodes, edges,
    legend: { title: "Drop-off rate", low: "0%", high: "100%", edges: "Wider edge: more sessions" },
  };
}
