// Node's http as a load generator (seed 003): `agent: false`, a new connection per
// request, against a keep-alive http.Agent with maxSockets.
//
//   node node_load.js --url URL --users N --duration S [--max-requests N]
//                     [--agent none|keepalive] [--max-sockets N] --out /out/client.json
//
// `--users` requests are in flight at once (each finished one starts the next) until
// --duration seconds have passed or --max-requests were sent in all. Writes the
// harness's native-client JSON (harness/analyse/native.py): responses by status, errors
// by code, every request's latency in whole µs (process.hrtime, send to the body's end),
// the connections opened (sockets that connected) and their distinct local ports
// (socket.localPort, what the note printed as req.connection's port).
"use strict";
const http = require("http");
const fs = require("fs");

function options(argv) {
  const o = { maxRequests: 0, agent: "none", maxSockets: 0 };
  for (let i = 2; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === "--url") o.url = v;
    else if (k === "--users") o.users = parseInt(v, 10);
    else if (k === "--duration") o.duration = parseFloat(v);
    else if (k === "--max-requests") o.maxRequests = parseInt(v, 10);
    else if (k === "--agent") o.agent = v;
    else if (k === "--max-sockets") o.maxSockets = parseInt(v, 10);
    else if (k === "--out") o.out = v;
    else throw new Error(`unknown option ${k}`);
  }
  if (!o.url || !(o.users > 0) || !(o.duration > 0) || !o.out) throw new Error("bad options");
  return o;
}

const o = options(process.argv);
const agent =
  o.agent === "keepalive"
    ? new http.Agent({ keepAlive: true, maxSockets: o.maxSockets || Infinity })
    : false;
const deadline = process.hrtime.bigint() + BigInt(Math.round(o.duration * 1e9));
let left = o.maxRequests || -1;
const status = {}, errors = {}, latency = new Map();
const sockets = new WeakSet(), ports = new Set();
let connections = 0, running = 0;
const began = process.hrtime.bigint();

function add(map, key) { map[key] = (map[key] || 0) + 1; }

function finish() {
  const result = {
    generator: "node",
    requests: Object.values(status).reduce((a, b) => a + b, 0),
    duration_us: Number((process.hrtime.bigint() - began) / 1000n),
    status, errors,
    latency_us: [...latency.entries()].sort((a, b) => a[0] - b[0]),
    connections, ports: ports.size,
  };
  fs.writeFileSync(o.out, JSON.stringify(result));
  if (agent) agent.destroy();
}

function next() {
  if (left === 0 || process.hrtime.bigint() >= deadline) {
    running -= 1;
    if (running === 0) finish();
    return;
  }
  left -= 1;
  const start = process.hrtime.bigint();
  let done = false;
  const end = (err) => {
    if (done) return;
    done = true;
    if (err) add(errors, err.code || err.name || "Error");
    const us = Number((process.hrtime.bigint() - start) / 1000n);
    latency.set(us, (latency.get(us) || 0) + 1);
    setImmediate(next);
  };
  const req = http.get(o.url, { agent }, (res) => {
    res.on("data", () => {});
    res.on("end", () => { add(status, String(res.statusCode)); end(null); });
    res.on("error", end);
  });
  req.on("socket", (s) => {
    if (sockets.has(s)) return; // a kept-alive socket, reused
    sockets.add(s);
    const opened = () => { connections += 1; ports.add(s.localPort); };
    if (s.connecting) s.once("connect", opened);
    else opened();
  });
  req.setTimeout(10000, () => req.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })));
  req.on("error", end);
}

for (let i = 0; i < o.users; i++) { running += 1; next(); }
