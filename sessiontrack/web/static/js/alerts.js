// The Alerts page: the alert rules (GET <prefix>/alerts/rules) and the recent alerts
// (GET <prefix>/alerts), each alert linked to the session or the analytics page it is
// about, with its deliveries' state. Refreshed every REFRESH_MS while it is shown, and
// soon after the live stream says a session ended or changed status (what fires alerts);
// a rule made through the API can be deleted here (the code's rules are the host's).

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
    main.replaceChildren(h("section", { class: "list-view alerts-view", "aria-labelledby": "alerts-title" },
      h("div", { class: "page-head" }, h("h1", { id: "alerts-title", tabindex: "-1" }, "Alerts"),
        h("p", { class: "muted" }, "Rules defined in the host's code or through the API, and the alerts they fired.")),
      h("h2", { class: "section-title", id: "rules-title" }, "Rules"),
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
