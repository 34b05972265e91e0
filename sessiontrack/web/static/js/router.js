// Hash routing: "#/?tab=active&q=ann&page=2" is the list (with its advanced filters:
// nodeId, completionReason, minMessages, maxMessages, minDuration, maxDuration, hasError,
// variable (repeatable) and in=messages for a message search), "#/sessions/<id>" a session,
// "#/sessions/<id>?step=7&speed=4" a session in replay mode at step 7 (step 0: before its
// first event), "#/compare/<id>/<id>" two sessions side by side,
// "#/analytics?chatbotId=…&version=…&startDate=…&endDate=…&compare=…&steps=…" the analytics,
// "#/alerts" the alert rules and recent alerts.
// The hash keeps every view shareable under any mount prefix without server routes.

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const search = new URLSearchParams(query);
  const params = Object.fromEntries(search);
  // A repeatable parameter (variable=a:1&variable=b:2) keeps every value, as a list.
  for (const key of REPEATABLE) if (search.has(key)) params[key] = search.getAll(key);
  const m = path.match(/^\/sessions\/([^/]+)\/?$/);
  if (m) return { view: "detail", id: decodeURIComponent(m[1]), params };
  const c = path.match(/^\/compare\/([^/]+)\/([^/]+)\/?$/);
  if (c) return { view: "compare", id: `${c[1]}/${c[2]}`, ids: [decodeURIComponent(c[1]), decodeURIComponent(c[2])], params };
  if (/^\/analytics\/?$/.test(path)) return { view: "analytics", params };
  if (/^\/alerts\/?$/.test(path)) return { view: "alerts", params };
  return { view: "list", params };
}

/** Parameters that may repeat in a hash; their value is a list. */
export const REPEATABLE = ["variable"];

function queryString(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (Array.isArray(value)) for (const v of value) { if (v !== "") query.append(key, v); }
    else if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  return query.toString();
}

export function listHref(params) {
  const qs = queryString(params);
  return qs ? `#/?${qs}` : "#/";
}

/** The analytics page: {chatbotId, version, startDate, endDate, compare, steps}. */
export function analyticsHref(params = {}) {
  const qs = queryString(params);
  return qs ? `#/analytics?${qs}` : "#/analytics";
}

/** A session; with `params` (e.g. {step: 3, speed: 4}) in replay mode at that step. */
export function sessionHref(id, params = {}) {
  const qs = queryString(params);
  return `#/sessions/${encodeURIComponent(id)}${qs ? `?${qs}` : ""}`;
}

/** Two sessions side by side. */
export const compareHref = (a, b) => `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;

/** Change the hash; `replace` avoids a history entry (used while typing a search). */
export function navigate(href, { replace = false } = {}) {
  if (location.hash === href) return;
  if (replace) {
    history.replaceState(history.state, "", href);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = href;
  }
}
