// A JavaScript socket.io-client driven by tests/test_socket.py.
//
//   node client.mjs <origin> <path> [--token T] [--join SESSION_ID] [--subscribe]
//                  [--after SEQ] [--until N] [--polling]
//
// Connects to the /sessions namespace, subscribes and/or joins, prints one JSON line per
// ack and per received event, prints {"ready": true} once set up, and exits after N
// session:completed events (or when stdin closes). --after resumes the subscription after
// that sequence number (replayed from the log).
import { io } from "socket.io-client";

const [origin, path, ...rest] = process.argv.slice(2);
const opt = { subscribe: false, join: [], until: 1, token: undefined, polling: false, after: null };
for (let i = 0; i < rest.length; i++) {
  const a = rest[i];
  if (a === "--subscribe") opt.subscribe = true;
  else if (a === "--join") opt.join.push(rest[++i]);
  else if (a === "--token") opt.token = rest[++i];
  else if (a === "--until") opt.until = Number(rest[++i]);
  else if (a === "--polling") opt.polling = true;
  else if (a === "--after") opt.after = Number(rest[++i]);
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(`${origin}/sessions`, {
  path,
  // --polling: the client's default, HTTP long-polling first, then the websocket upgrade.
  transports: opt.polling ? ["polling", "websocket"] : ["websocket"],
  reconnection: false,
  auth: opt.token ? { token: opt.token } : {},
});

let completed = 0;
socket.onAny((event, data) => {
  out({ event, data });
  if (event === "session:completed" && ++completed >= opt.until) {
    socket.disconnect();
    process.exit(0);
  }
});
socket.on("connect_error", (err) => {
  out({ connect_error: err.message, data: err.data ?? null });
  process.exit(3);
});
socket.on("connect", async () => {
  if (opt.subscribe) {
    const resume = opt.after === null ? undefined : { after: opt.after };
    out({ ack: "sessions:subscribe", data: await socket.emitWithAck("sessions:subscribe", resume) });
  }
  for (const sessionId of opt.join) {
    out({ ack: "session:join", data: await socket.emitWithAck("session:join", { sessionId }) });
  }
  out({ ready: true });
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
