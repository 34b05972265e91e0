// The Alerts page: the alert rules (GET <prefix>/alerts/rules) and the recent alerts
// (GET <prefix>/alerts), each alert linked to the session or the analytics page it is
// about, with its deliveries' state. Refreshed every REFRESH_MS while it is shown, and
// soon after the live stream says a session ended or changed status (what fires alerts);
// rules are added with a form (POST <prefix>/alerts/rules) and a rule made through the API
// can be deleted here (the code's rules are the host's).

import { api, ApiError } from "./api.js";
import { confirmDialog } from "./confirm.js";
import { adaptiveThrottle, formatDateTime, formatNumber, h, relativeTimeEl, timeEl } from "./dom.js";
import { LiveStream } from "./live.js";
import { toast } from "./toast.js";

const REFRESH_MS = 10000;
const LIVE_MIN_MS = 1500;
const LIVE_EVENTS = new Set(["session:completed", "session:status-changed"]);
const LIMIT = 100;

export const KIND_LABELS = {
  session_ended: "Session ended",
  stuck: "Stuck in a status",
  node_rate: "Node rate",
};

const pctFmt = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

/** "more than 10 min", "2 h": a number of seconds, roughly. */
export function formatSpan(seconds) {
  if (seconds < 90) return `${formatNumber(Math.round(seconds))} s`;
  if (seconds < 5400) return `${formatNumber(Math.round(seconds / 60))} min`;
  if (seconds < 129600) return `${formatNumber(Math.round(seconds / 360) / 10)} h`;
  return `${formatNumber(Math.round(seconds / 8640) / 10)} days`;
}

/** What a rule watches for, in a sentence. */
export function describeRule(rule) {
  const p = rule.params || {};
  if (rule.kind === "session_ended") {
    const parts = [];
    if (p.statuses?.length) parts.push(`status ${p.statuses.join(" or ")}`);
    if (p.reasons?.length) parts.push(`reason ${p.reasons.join(" or ")}`);
    return parts.length ? `Ends with ${parts.join(" and ")}` : "Any session end";
  }
  if (rule.kind === "stuck") return `In ${p.status} for more than ${formatSpan(p.longerThan)}`;
  const what = p.metric === "error" ? "Error rate" : "Drop-off rate";
  const node = p.nodeId ? ` at ${p.nodeId}` : " at any node";
  return `${what}${node} above ${pctFmt.format(p.threshold)} over ${formatSpan(p.window)} (at least ${formatNumber(p.minSessions)} sessions)`;
}

function targetEl(t) {
  const where = t.type === "email" ? t.to.join(", ") : (t.url || "");
  return h("div", { class: "alert-target" }, h("strong", {}, t.type === "email" ? "e-mail" : t.type), " ",
    h("span", { class: "muted" }, where));
}

const DELIVERY_CLASS = { delivered: "status-completed", pending: "status-waiting_input", failed: "status-stopped" };

function deliveryBadge(d) {
  const label = `${d.type}: ${d.state}`;
  const title = d.error ? `${label} after ${d.attempts} attempts (${d.error})` : `${label} (${d.attempts} attempts)`;
  return h("span", { class: `badge ${DELIVERY_CLASS[d.state] || ""}`, title }, label);
}


const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);

/** The form's fields: [element, its labelled wrapper]. */
function field(id, label, el, help) {
  el.id = id;
  return [el, h("div", { class: "field" }, h("label", { for: id }, label), el, help ? h("span", { class: "field-help", id: `${id}-help` }, help) : null)];
}
const textInput = (attrs = {}) => h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...attrs });
const numberInput = (attrs = {}) => h("input", { type: "number", inputmode: "decimal", ...attrs });
const select = (options) => h("select", {}, options.map(([v, label]) => h("option", { value: v }, label)));

/** The "New rule" form: what POST /alerts/rules takes, one kind's fields at a time. */
class RuleForm {
  constructor(onCreated) {
    this.onCreated = onCreated;
    const [name, nameField] = field("rule-name", "Name", textInput({ required: true, maxlength: "200" }));
    const [kind, kindField] = field("rule-kind", "Kind", select(Object.entries(KIND_LABELS)));
    const [bots, botsField] = field("rule-chatbots", "Chatbots", textInput(), "Comma-separated ids; empty: every chatbot");
    this.statusBoxes = ["expired", "stopped", "completed"].map((v) =>
      h("label", { class: "rule-check" }, h("input", { type: "checkbox", value: v, checked: v !== "completed" }), ` ${v}`));
    const [reasons, reasonsField] = field("rule-reasons", "Completion reasons", textInput(), "Comma-separated, e.g. error; empty: any");
    const [status, statusField] = field("rule-status", "Status", select([["waiting_flow", "waiting_flow"], ["waiting_input", "waiting_input"], ["running", "running"]]));
    const [minutes, minutesField] = field("rule-minutes", "For more than (minutes)", numberInput({ min: "0", step: "any", value: "10" }));
    const [metric, metricField] = field("rule-metric", "Rate", select([["dropOff", "Drop-off rate"], ["error", "Error rate"]]));
    const [threshold, thresholdField] = field("rule-threshold", "Above (%)", numberInput({ min: "0", max: "100", step: "any", value: "30" }));
    const [windowMin, windowField] = field("rule-window", "Over the last (minutes)", numberInput({ min: "15", step: "any", value: "60" }));
    const [minSessions, minSessionsField] = field("rule-min-sessions", "With at least (sessions)", numberInput({ min: "1", step: "1", value: "20", inputmode: "numeric" }));
    const [node, nodeField] = field("rule-node", "Node id", textInput(), "Empty: every node");
    const [targetType, targetTypeField] = field("rule-target-type", "Send to", select([["", "nobody (list only)"], ["webhook", "a webhook (signed)"], ["slack", "Slack"], ["teams", "Teams"], ["email", "e-mail"]]));
    const [target, targetField] = field("rule-target", "URL or addresses", textInput(), "An incoming-webhook URL, or comma-separated e-mail addresses");
    Object.assign(this, { name, kind, bots, reasons, status, minutes, metric, threshold, windowMin, minSessions, node, targetType, target });
    this.groups = {
      session_ended: h("fieldset", { class: "advanced-grid rule-kind-fields", id: "rule-ended-fields" },
        h("legend", { class: "sr-only" }, "Session ended"),
        h("div", { class: "field", role: "group", "aria-labelledby": "rule-statuses-label" },
          h("span", { class: "field-label", id: "rule-statuses-label" }, "Ended with status"), h("div", { class: "rule-checks" }, this.statusBoxes)),
        reasonsField),
      stuck: h("fieldset", { class: "advanced-grid rule-kind-fields", id: "rule-stuck-fields", hidden: true },
        h("legend", { class: "sr-only" }, "Stuck in a status"), statusField, minutesField),
      node_rate: h("fieldset", { class: "advanced-grid rule-kind-fields", id: "rule-rate-fields", hidden: true },
        h("legend", { class: "sr-only" }, "Node rate"), metricField, thresholdField, windowField, minSessionsField, nodeField),
    };
    this.error = h("p", { class: "dialog-error", id: "rule-form-error", role: "alert", hidden: true });
    this.cancel = h("button", { type: "button", class: "btn" }, "Cancel");
    this.el = h("form", { class: "advanced-filters", id: "rule-form", hidden: true, "aria-labelledby": "rule-form-title", novalidate: true },
      h("h3", { id: "rule-form-title" }, "New alert rule"),
      h("div", { class: "advanced-grid" }, nameField, kindField, botsField),
      Object.values(this.groups),
      h("div", { class: "advanced-grid" }, targetTypeField, targetField),
      this.error,
      h("div", { class: "advanced-actions" }, h("button", { type: "submit", class: "btn btn-primary", id: "rule-create" }, "Create rule"), this.cancel));
    kind.addEventListener("change", () => this.showKind());
    targetType.addEventListener("change", () => this.showTarget());
    this.el.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    this.showTarget();
  }

  showKind() {
    for (const [k, group] of Object.entries(this.groups)) group.hidden = k !== this.kind.value;
  }

  showTarget() {
    this.target.closest(".field").hidden = !this.targetType.value;
  }

  body() {
    const kind = this.kind.value;
    const num = (el) => (el.value === "" ? NaN : Number(el.value));
    let params;
    if (kind === "session_ended") {
      params = { statuses: this.statusBoxes.map((l) => l.firstChild).filter((b) => b.checked).map((b) => b.value), reasons: list(this.reasons.value) };
    } else if (kind === "stuck") {
      params = { status: this.status.value, longerThan: num(this.minutes) * 60 };
    } else {
      params = {
        metric: this.metric.value, threshold: num(this.threshold) / 100, window: num(this.windowMin) * 60,
        minSessions: num(this.minSessions), nodeId: this.node.value.trim() || null,
      };
    }
    for (const [k, v] of Object.entries(params)) if (typeof v === "number" && !Number.isFinite(v)) params[k] = null;
    const targets = [];
    const type = this.targetType.value;
    if (type === "email") targets.push({ type, to: list(this.target.value) });
    else if (type) targets.push({ type, url: this.target.value.trim() });
    return { name: this.name.value.trim(), kind, chatbotIds: list(this.bots.value), params, targets };
  }

  async submit() {
    this.error.hidden = true;
    try {
      const rule = await api("alerts/rules", { method: "POST", body: this.body() });
      this.el.reset();
      this.showKind();
      this.showTarget();
      this.onCreated(rule);
    } catch (err) {
      this.error.textContent = `Could not create the rule: ${err.message}`;
      this.error.hidden = false;
    }
  }
}

class AlertsView {
  constructor(main) {
    this.main = main;
    this.rulesBody = h("tbody", { id: "alert-rules-body" });
    this.alertsBody = h("tbody", { id: "alerts-body" });
    this.rulesMessage = h("div", { id: "alert-rules-message" });
    this.alertsMessage = h("div", { id: "alerts-message" });
    this.rulesTable = h("table", { class: "sessions", id: "alert-rules" },
      h("caption", { class: "sr-only" }, "Alert rules"),
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Fires when", "Chatbots", "Targets", "Defined in", ""]
        .map((t) => h("th", { scope: "col" }, t || h("span", { class: "sr-only" }, "Actions"))))),
      this.rulesBody);
    this.alertsTable = h("table", { class: "sessions", id: "alerts-table" },
      h("caption", { class: "sr-only" }, "Recent alerts"),
      h("thead", {}, h("tr", {}, ["Alert", "Rule", "Chatbot", "Fired", "Deliveries", "Resolved"]
        .map((t) => h("th", { scope: "col" }, t)))),
      this.alertsBody);
    this.rulesRegion = h("div", { class: "table-region", "aria-busy": "true", id: "alert-rules-region" }, this.rulesTable, this.rulesMessage);
    this.alertsRegion = h("div", { class: "table-region", "aria-busy": "true", id: "alerts-region" }, this.alertsTable, this.alertsMessage);
    this.form = new RuleForm((rule) => this.created(rule));
    this.newRule = h("button", { type: "button", class: "btn", id: "new-rule", "aria-expanded": "false", "aria-controls": "rule-form" }, "New rule");
    this.newRule.addEventListener("click", () => this.showForm(this.form.el.hidden));
    this.form.cancel.addEventListener("click", () => { this.showForm(false); this.newRule.focus(); });
    this.secretNote = h("div", { class: "selection-bar", id: "rule-secret", role: "status", hidden: true });
    main.replaceChildren(h("section", { class: "list-view alerts-view", "aria-labelledby": "alerts-title" },
      h("div", { class: "page-head" }, h("h1", { id: "alerts-title", tabindex: "-1" }, "Alerts"),
        h("p", { class: "muted" }, "Rules defined in the host's code or through the API, and the alerts they fired.")),
      h("div", { class: "section-head" }, h("h2", { class: "section-title", id: "rules-title" }, "Rules"), this.newRule),
      this.form.el,
      this.secretNote,
      this.rulesRegion,
      h("h2", { class: "section-title", id: "recent-title" }, "Recent alerts"),
      this.alertsRegion));
    this.rules = new Map();
    this.load();
    this.timer = setInterval(() => this.load(), REFRESH_MS);
    this.refreshSoon = adaptiveThrottle(() => this.load(), LIVE_MIN_MS);
    this.stream = new LiveStream({}, (name) => { if (LIVE_EVENTS.has(name)) this.refreshSoon(); }, () => this.refreshSoon());
  }

  update() { this.load(); }

  destroy() {
    clearInterval(this.timer);
    this.refreshSoon.cancel?.();
    this.stream.close();
    this.controller?.abort();
  }

  async load() {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    try {
      const [rules, alerts] = await Promise.all([
        api("alerts/rules", { signal: controller.signal }),
        api("alerts", { params: { limit: LIMIT }, signal: controller.signal }),
      ]);
      this.renderRules(rules);
      this.renderAlerts(alerts);
    } catch (err) {
      if (err.name === "AbortError") return;
      this.renderError(err);
    } finally {
      this.rulesRegion.setAttribute("aria-busy", "false");
      this.alertsRegion.setAttribute("aria-busy", "false");
    }
  }

  renderRules(rules) {
    this.rules = new Map(rules.map((r) => [r.id, r]));
    this.rulesTable.hidden = !rules.length;
    this.rulesMessage.replaceChildren(rules.length ? "" : h("div", { class: "state state-empty", id: "rules-empty" },
      h("h3", {}, "No alert rules"),
      h("p", {}, "Define them in code (sessiontrack.notify.Alerts) or with POST /alerts/rules.")));
    this.rulesBody.replaceChildren(...rules.map((rule) => {
      const remove = rule.source === "api"
        ? h("button", { type: "button", class: "btn btn-small btn-danger", "data-rule": rule.id, "aria-label": `Delete rule ${rule.name}` }, "Delete")
        : h("span", { class: "muted" }, "—");
      if (rule.source === "api") remove.addEventListener("click", () => this.remove(rule));
      return h("tr", { "data-rule-id": rule.id },
        h("td", {}, h("strong", {}, rule.name)),
        h("td", { "data-label": "Kind" }, KIND_LABELS[rule.kind] || rule.kind),
        h("td", { "data-label": "Fires when" }, describeRule(rule)),
        h("td", { "data-label": "Chatbots" }, rule.chatbotIds.length ? rule.chatbotIds.join(", ") : h("span", { class: "muted" }, "all")),
        h("td", { "data-label": "Targets" }, rule.targets.length ? rule.targets.map(targetEl) : h("span", { class: "muted" }, "none (listed here only)")),
        h("td", { "data-label": "Defined in" }, rule.source === "code" ? "code" : `API${rule.createdBy ? ` (${rule.createdBy})` : ""}`),
        h("td", { class: rule.source === "api" ? null : "empty" }, remove));
    }));
  }

  renderAlerts(alerts) {
    this.alertsTable.hidden = !alerts.length;
    this.alertsMessage.replaceChildren(alerts.length ? "" : h("div", { class: "state state-empty", id: "alerts-empty" },
      h("h3", {}, "No alerts yet"), h("p", {}, "Alerts appear here as the rules fire.")));
    this.alertsBody.replaceChildren(...alerts.map((a) => {
      const rule = this.rules.get(a.ruleId);
      const ruleName = rule ? rule.name : (a.details?.rule || "deleted rule");
      return h("tr", { "data-alert-id": a.id },
        h("td", {}, h("a", { href: a.link, class: "alert-link" }, a.title)),
        h("td", { "data-label": "Rule" }, ruleName),
        h("td", { "data-label": "Chatbot" }, a.chatbotId),
        h("td", { "data-label": "Fired" }, relativeTimeEl(a.firedAt)),
        h("td", { "data-label": "Deliveries" }, a.deliveries.length ? h("div", { class: "alert-deliveries" }, a.deliveries.map(deliveryBadge)) : h("span", { class: "muted" }, "no targets")),
        h("td", { "data-label": "Resolved", class: a.resolvedAt || a.kind === "node_rate" ? null : "empty" }, a.resolvedAt ? timeEl(a.resolvedAt, formatDateTime(a.resolvedAt)) : (a.kind === "node_rate" ? h("span", { class: "badge status-stopped" }, "open") : h("span", { class: "muted" }, "—"))));
    }));
  }

  renderError(err) {
    const denied = err instanceof ApiError && err.status === 403;
    const retry = h("button", { type: "button", class: "btn" }, "Retry");
    retry.addEventListener("click", () => this.load());
    const box = h("div", { class: "state state-error", role: "alert", id: "alerts-error" },
      h("h2", {}, denied ? "Not allowed to see alerts" : "Could not load alerts"),
      h("p", {}, denied ? "Managing alerts needs a principal with can_manage." : (err.message || String(err))),
      retry);
    this.rulesTable.hidden = true;
    this.alertsTable.hidden = true;
    this.rulesMessage.replaceChildren(box);
    this.alertsMessage.replaceChildren();
  }

  showForm(open) {
    this.form.el.hidden = !open;
    this.newRule.setAttribute("aria-expanded", String(open));
    if (open) this.form.name.focus();
  }

  created(rule) {
    this.showForm(false);
    const secrets = (rule.secrets || []).filter(Boolean);
    this.secretNote.hidden = !secrets.length;
    this.secretNote.replaceChildren(...(secrets.length
      ? [h("span", {}, "The webhook's signing secret, shown this once: "), h("code", { id: "rule-secret-value" }, secrets[0])]
      : []));
    toast({ kind: "completed", title: "Rule created", text: rule.name, force: true });
    this.load();
    this.newRule.focus();
  }

  async remove(rule) {
    const ok = await confirmDialog("Delete alert rule", `Delete “${rule.name}”? Its alerts stay listed; deliveries still pending are dropped.`, "Delete rule");
    if (!ok) return;
    try {
      await api(`alerts/rules/${encodeURIComponent(rule.id)}`, { method: "DELETE" });
      toast({ kind: "stopped", title: "Rule deleted", text: rule.name, force: true });
    } catch (err) {
      toast({ kind: "error", title: "Could not delete the rule", text: err.message, force: true });
    }
    await this.load();
    document.getElementById("alerts-title").focus?.();
  }
}

export function mountAlerts(main) {
  return new AlertsView(main);
}
