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

/** fetch() a path relative to the API root; JSON in, JSON out; throws ApiError. */
export async function api(path, { method = "GET", params, body, signal } = {}) {
  const url = new URL(apiBase() + path.replace(/^\//, ""), location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
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
