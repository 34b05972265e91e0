// The live event stream (Server-Sent Events) and the connection indicator.
//
// The browser's EventSource reconnects by itself and sends Last-Event-ID, so the server
// resumes after the last sequence number we saw. If the server refuses the stream (an HTTP
// error such as 401), EventSource gives up: we then probe the REST API (which asks for a
// token on 401), open a new stream with backoff and tell the view to re-sync.

import { api, eventsUrl } from "./api.js";

export const EVENT_NAMES = [
  "session:started",
  "session:status-changed",
  "session:node-executed",
  "session:message-sent",
  "session:variables-changed",
  "session:completed",
  "session:llm-call",
  "session:tool-call",
];

const LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

function setIndicator(state) {
  const el = document.getElementById("live");
  if (!el || el.dataset.state === state) return;
  el.dataset.state = state;
  el.querySelector(".live-text").textContent = LABELS[state];
  el.title = state === "live" ? "Receiving live updates" : "Live updates paused; reconnecting automatically";
}

export class LiveStream {
  /**
   * @param {object} params query parameters of /events (e.g. {sessionId})
   * @param {(name: string, payload: object) => void} onEvent
   * @param {() => void} onResync called after a gap (a new stream had to be opened)
   */
  constructor(params, onEvent, onResync) {
    this.params = params;
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.lastSeq = 0;
    this.retryMs = 1000;
    this.closed = false;
    this.timer = null;
    this.source = null;
    current = this;
    this.connect(false);
  }

  /** After the browser comes back online: show what the stream is actually doing. */
  showState() {
    if (this.closed || !this.source) return;
    setIndicator(this.source.readyState === EventSource.OPEN ? "live" : "reconnecting");
  }

  connect(isRetry) {
    if (this.closed) return;
    setIndicator(isRetry ? "reconnecting" : "connecting");
    // A stream we open ourselves resumes through ?lastEventId= (the browser's own
    // reconnects send the Last-Event-ID header, which the server prefers).
    const params = this.lastSeq ? { ...this.params, lastEventId: this.lastSeq } : this.params;
    const source = new EventSource(eventsUrl(params));
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = 1000;
      setIndicator("live");
      if (isRetry) { isRetry = false; this.onResync(); }
    });
    source.addEventListener("error", () => {
      if (this.closed) return;
      if (source.readyState === EventSource.CLOSED) this.scheduleRetry(source);
      else setIndicator("reconnecting");
    });
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (event) => this.dispatch(name, event));
    }
  }

  dispatch(name, event) {
    let payload;
    try { payload = JSON.parse(event.data); } catch { return; }
    const seq = Number(payload.seq ?? event.lastEventId);
    if (seq && seq <= this.lastSeq) return;  // already seen (a resumed stream may repeat)
    if (seq) this.lastSeq = seq;
    this.onEvent(name, payload);
  }

  async scheduleRetry(source) {
    source.close();
    setIndicator("reconnecting");
    clearTimeout(this.timer);
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 30000);
    this.timer = setTimeout(async () => {
      try { await api("stats"); } catch { /* still down: the new stream retries again */ }
      this.connect(true);
    }, wait);
  }

  close() {
    this.closed = true;
    if (current === this) current = null;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
  }
}

let current = null;
window.addEventListener("offline", () => setIndicator("offline"));
window.addEventListener("online", () => current?.showState());
