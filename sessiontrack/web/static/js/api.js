// Talks to the sub-app's REST API, wherever it is mounted, with optional token auth.

const TOKEN_KEY = "sessiontrack.token";

/** The API root: the page's path up to (not including) "ui/", e.g. "/api/chatbot-sessions/". */
export function apiBase(pathname = location.pathname) {
  const i = pathname.lastIndexOf("/ui/");
  if (i >= 0) return pathname.slice(0, i + 1);
  if (pathname.endsWith("/ui")) return pathname.slice(0, -2);
  return pathname.endsWith("/") ? pathname : pathname + "/";
}

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export const getToken = () => sessionStorage.getItem(TOKEN_KEY);

let tokenRequest = null;

/** Ask for a token once: concurrent 401s share one dialog. */
function askForToken(rejected) {
  if (!tokenRequest) {
    tokenRequest = new Promise((resolve) => {
      const dialog = document.getElementById("token-dialog");
      const input = document.getElementById("token-input");
      const error = document.getElementById("token-error");
      error.hidden = !rejected;
      error.textContent = rejected ? "That token was not accepted. Try another." : "";
      input.value = "";
      dialog.addEventListener("close", () => {
        const token = input.value.trim();
        if (token) sessionStorage.setItem(TOKEN_KEY, token);
        tokenRequest = null;
        resolve(Boolean(token));
      }, { once: true });
      // Escape cancels: the request then fails with the API's 401 and the view offers Retry.
      dialog.addEventListener("cancel", () => { input.value = ""; }, { once: true });
      dialog.showModal();
      input.focus();
    });
  }
  return tokenRequest;
}

/** Query parameters on `url`: empty ones left out, a list as the parameter repeated. */
export function setParams(url, params) {
  for (const [key, value] of Object.entries(params || {})) {
    if (Array.isArray(value)) for (const v of value) url.searchParams.append(key, v);
    else if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

/** An API URL (absolute) with query parameters, for links such as the export. */
export function apiUrl(path, params) {
  return setParams(new URL(apiBase() + path.replace(/^\//, ""), location.origin), params).toString();
}

/** Download an API answer as a file: a plain link (cookies and loopback need nothing
 * more; the browser streams it to disk), or with a token, fetched with it and saved. */
export async function download(href, filename) {
  const token = getToken();
  if (!token) return false;  // the link's own navigation does it
  const response = await fetch(href, { headers: { Authorization: `Bearer ${token}` }, credentials: "same-origin" });
  if (!response.ok) {
    const text = await response.text();
    let data = null;
    try { data = JSON.parse(text); } catch { data = text; }
    throw new ApiError(response.status, data, describe(response, data));
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  return true;
}

/** fetch() a path relative to the API root; JSON in, JSON out; throws ApiError. */
export async function api(path, { method = "GET", params, body, signal } = {}) {
  const url = new URL(apiBase() + path.replace(/^\//, ""), location.origin);
  setParams(url, params);
  for (let attempt = 0; attempt < 4; attempt++) {
    const headers = { Accept: "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      const rejected = Boolean(token);
      if (rejected) sessionStorage.removeItem(TOKEN_KEY);
      if (await askForToken(rejected)) continue;
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (!response.ok) throw new ApiError(response.status, data, describe(response, data));
    return data;
  }
  throw new ApiError(401, null, "Not authorised: no valid token was given.");
}

function describe(response, data) {
  if (data && typeof data === "object") {
    const detail = Array.isArray(data.detail)
      ? data.detail.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).join("; ")
      : "";
    const main = data.error || data.message || response.statusText;
    return detail ? `${main} (${detail})` : String(main);
  }
  return `${response.status} ${response.statusText}`.trim();
}

/** The SSE URL, with the token as `access_token` (EventSource cannot send headers). */
export function eventsUrl(params = {}) {
  const url = new URL(apiBase() + "events", location.origin);
  for (const [key, value] of Object.entries(params)) if (value) url.searchParams.set(key, value);
  const token = getToken();
  if (token) url.searchParams.set("access_token", token);
  return url.toString();
}
