// Entry point: routes the hash to the list, the detail or the analytics view.

import { mountAnalytics } from "./analytics.js";
import { mountDetail } from "./detail.js";
import { refreshRelativeTimes } from "./dom.js";
import { mountList } from "./list.js";
import { parseHash } from "./router.js";

const main = document.getElementById("main");
let current = null;  // {view, id, instance}

const MOUNT = { list: mountList, analytics: mountAnalytics };

function route() {
  const target = parseHash();
  if (current && current.view === target.view && target.view !== "detail") {
    current.instance.update(target.params);
    return;
  }
  current?.instance.destroy();
  const instance = target.view === "detail" ? mountDetail(main, target.id) : MOUNT[target.view](main, target.params);
  current = { ...target, instance };
  document.getElementById("nav-sessions").setAttribute("aria-current", target.view === "list" ? "page" : "false");
  document.getElementById("nav-analytics").setAttribute("aria-current", target.view === "analytics" ? "page" : "false");
  window.scrollTo(0, 0);
  // A new view replaced what had focus: start keyboard navigation at its top.
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
setInterval(() => refreshRelativeTimes(main), 15000);
route();
