// Entry point: routes the hash to the list, the detail, the comparison, the analytics or the
// alerts view.

import { mountAlerts } from "./alerts.js";
import { mountAnalytics } from "./analytics.js";
import { mountCompare } from "./compare.js";
import { mountDetail } from "./detail.js";
import { refreshRelativeTimes } from "./dom.js";
import { mountList } from "./list.js";
import { parseHash } from "./router.js";

const main = document.getElementById("main");
let current = null;  // {view, id, instance}

const MOUNT = {
  list: (el, t) => mountList(el, t.params),
  analytics: (el, t) => mountAnalytics(el, t.params),
  alerts: (el) => mountAlerts(el),
  detail: (el, t) => mountDetail(el, t.id, t.params),
  compare: (el, t) => mountCompare(el, t.ids),
};

function route() {
  const target = parseHash();
  // The same view of the same session(s): only its parameters changed (a list filter, a
  // replay step), so the view updates in place.
  if (current && current.view === target.view && current.id === target.id) {
    current.instance.update(target.params);
    return;
  }
  current?.instance.destroy();
  const instance = MOUNT[target.view](main, target);
  current = { ...target, instance };
  document.getElementById("nav-sessions").setAttribute("aria-current", target.view === "list" ? "page" : "false");
  document.getElementById("nav-analytics").setAttribute("aria-current", target.view === "analytics" ? "page" : "false");
  document.getElementById("nav-alerts").setAttribute("aria-current", target.view === "alerts" ? "page" : "false");
  window.scrollTo(0, 0);
  // A new view replaced what had focus: start keyboard navigation at its top.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
setInterval(() => refreshRelativeTimes(main), 15000);
route();
