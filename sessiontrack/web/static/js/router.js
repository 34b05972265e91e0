// Hash routing: "#/?tab=active&q=ann&page=2" is the list, "#/sessions/<id>" a session,
// "#/analytics?chatbotId=…&version=…&startDate=…&endDate=…&compare=…&steps=…" the analytics.
// The hash keeps every view shareable under any mount prefix without server routes.

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const params = Object.fromEntries(new URLSearchParams(query));
  const m = path.match(/^\/sessions\/([^/]+)\/?$/);
  if (m) return { view: "detail", id: decodeURIComponent(m[1]), params };
  if (/^\/analytics\/?$/.test(path)) return { view: "analytics", params };
  return { view: "list", params };
}

function queryString(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
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

export const sessionHref = (id) => `#/sessions/${encodeURIComponent(id)}`;

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
