#!/usr/bin/env node
// A bounded, deterministic fuzzer for moe-lens-server (`npm run fuzz`), loopback only.
//
// It starts its own server on the demo model (127.0.0.1, a random token), records a fixed
// trace and a fixed perplexity, then sends N generated requests from C concurrent clients
// over raw sockets: every route; malformed, truncated and deeply nested JSON; wrong types;
// NaN/±Infinity/1e308; out-of-range layers and experts; huge arrays and bodies up to ~2 MB;
// invalid UTF-8 and lone surrogates; wrong methods, content types and tokens; chunked
// bodies; bad framing (long URLs and headers, bare LF, short or long Content-Length);
// abrupt disconnects; slow clients; concurrent long evaluations. Case i is generated from
// (seed, i) alone, so a run is reproducible whatever the concurrency.
//
// Then it checks what issue 15 asks of the server: no crash, a response to every request it
// waited for, no 5xx, a JSON error body on every 4xx, Retry-After on every 429, no error
// record inside a 200 stream, resident memory after the run within 20 % of before, and the
// fixed trace and perplexity identical to before (the summary's elapsed_ms aside). Finally it
// fuzzes the GGUF loader: truncated and bit-flipped copies of the model must each be refused
// with one clear error line (or load, when a flip hit bytes that do not matter), never crash.
//
//   node tools/fuzz/fuzz-server.mjs --requests N [--seed S] [--server BIN] [--model M]
//        [--concurrency C] [--time-limit SECONDS] [--gguf N] [--json]
//
// Prints a report and exits 1 on any failure. --json adds one JSON line with the counts;
// FUZZ_DEBUG=1 prints every case with its time and status on stderr.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const HOST = "127.0.0.1";
const REQUEST_TIMEOUT_S = 3; // the server's --request-timeout during the fuzz (slow-client cases)
const RESPONSE_WAIT_MS = 120_000; // a request we wait for gets its response within this, or counts as unanswered

// ---- options ------------------------------------------------------------------------------

function parseArgs(argv) {
  const o = {
    requests: 1000,
    seed: 1,
    concurrency: 4,
    timeLimit: 3600,
    gguf: 40,
    json: false,
    server: path.join(ROOT, "out", "bin", process.platform === "win32" ? "moe-lens-server.exe" : "moe-lens-server"),
    model: path.join(ROOT, "media", "models", "demo-moe.gguf"),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const int = () => {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 0) usage(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === "--requests") o.requests = int();
    else if (a === "--seed") o.seed = int();
    else if (a === "--concurrency") o.concurrency = Math.max(1, int());
    else if (a === "--time-limit") o.timeLimit = int();
    else if (a === "--gguf") o.gguf = int();
    else if (a === "--server") o.server = path.resolve(value());
    else if (a === "--model") o.model = path.resolve(value());
    else if (a === "--json") o.json = true;
    else usage(`unknown option ${a}`);
  }
  return o;
}

function usage(message) {
  console.error(
    `fuzz: ${message}\nusage: npm run fuzz -- --requests N [--seed S] [--server BIN] [--model M] [--concurrency C] [--time-limit SECONDS] [--gguf N] [--json]`,
  );
  process.exit(2);
}

// ---- deterministic randomness -------------------------------------------------------------

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  constructor(seed) {
    this.next = mulberry32(seed);
  }
  int(lo, hi) {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  } // inclusive
  pick(list) {
    return list[Math.floor(this.next() * list.length)];
  }
  chance(p) {
    return this.next() < p;
  }
  weighted(entries) {
    const total = entries.reduce((s, [w]) => s + w, 0);
    let x = this.next() * total;
    for (const [w, v] of entries) if ((x -= w) < 0) return v;
    return entries[entries.length - 1][1];
  }
}

// ---- the server ---------------------------------------------------------------------------

class Server {
  static async start(binary, model, token, extraArgs = []) {
    const args = ["-m", model, "--host", HOST, "--port", "0", "-t", "2", "--exit-with-stdin", "--request-timeout", String(REQUEST_TIMEOUT_S), ...extraArgs];
    const child = spawn(binary, args, { env: { ...process.env, MOE_LENS_TOKEN: token }, stdio: ["pipe", "pipe", "pipe"] });
    const s = new Server(child, token);
    try {
      return await s.ready();
    } catch (err) {
      err.server = s; // so that a caller can see how it ended
      throw err;
    }
  }

  constructor(child, token) {
    this.child = child;
    this.token = token;
    this.stderrTail = [];
    this.exit = null;
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve((this.exit = { code, signal }))));
    readline.createInterface({ input: child.stderr }).on("line", (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 200) this.stderrTail.shift();
    });
  }

  ready() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the server did not become ready in 120 s")), 120_000);
      readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          return;
        }
        clearTimeout(timer);
        if (msg.event === "ready") {
          this.port = msg.port;
          resolve(this);
        } else reject(new Error(msg.message ?? line));
      });
      void this.exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`the server exited before it was ready (${e.signal ?? e.code}): ${this.stderrTail.slice(-5).join(" | ")}`));
      });
    });
  }

  get pid() {
    return this.child.pid;
  }
  get running() {
    return this.exit === null;
  }

  /** Resident bytes from /proc (Linux): all, anonymous (heap, stacks) and file-backed (the mapped model). */
  rss() {
    try {
      const status = fs.readFileSync(`/proc/${this.pid}/status`, "utf8");
      const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
      return { total: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
    } catch {
      return null;
    }
  }

  async stop() {
    if (!this.running) return this.exit;
    this.child.stdin.end(); // --exit-with-stdin
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    const e = await this.exited;
    clearTimeout(timer);
    return e;
  }
}

// ---- a raw HTTP exchange ------------------------------------------------------------------

/**
 * Sends `parts` (Buffers; with `gapMs` between them) and reads the response. Resolves with
 * { responded, status, headers, body, timedOut, disconnected } and never rejects.
 *  - closeAfterSend: the client disconnects right after sending (abrupt disconnect).
 *  - abortAfterMs: the client disconnects after this long if the response is not complete.
 */
function exchange(port, parts, { gapMs = 0, closeAfterSend = false, abortAfterMs = 0, waitMs = RESPONSE_WAIT_MS } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    const chunks = [];
    let settled = false,
      headerEnd = -1,
      status = 0,
      headers = {};
    const timers = [];
    const finish = (extra = {}) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      sock.destroy();
      const raw = Buffer.concat(chunks);
      const body = headerEnd >= 0 ? decodeBody(raw.subarray(headerEnd + 4), headers) : Buffer.alloc(0);
      resolve({ responded: status > 0, status, headers, body, ...extra });
    };
    const parseHead = () => {
      const raw = Buffer.concat(chunks);
      if (headerEnd < 0) {
        headerEnd = raw.indexOf("\r\n\r\n");
        if (headerEnd < 0) return false;
        const lines = raw.subarray(0, headerEnd).toString("latin1").split("\r\n");
        status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? -1);
        for (const l of lines.slice(1)) {
          const c = l.indexOf(":");
          if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
      }
      const body = raw.subarray(headerEnd + 4);
      if (headers["content-length"] !== undefined) return body.length >= Number(headers["content-length"]);
      if (/chunked/i.test(headers["transfer-encoding"] ?? "")) return /(^|\r\n)0\r\n\r\n$/.test(body.subarray(-7).toString("latin1"));
      return false; // until close
    };
    sock.on("data", (d) => {
      chunks.push(d);
      if (parseHead()) finish();
    });
    sock.on("end", () => {
      parseHead();
      finish();
    });
    sock.on("error", () => {
      parseHead();
      finish({ socketError: true });
    });
    sock.on("close", () => {
      parseHead();
      finish();
    });
    sock.once("connect", async () => {
      for (let i = 0; i < parts.length && !settled; i++) {
        if (i > 0 && gapMs) await new Promise((r) => setTimeout(r, gapMs));
        if (!settled) sock.write(parts[i]);
      }
      if (closeAfterSend) return finish({ disconnected: true });
      if (abortAfterMs) timers.push(setTimeout(() => finish({ disconnected: true }), abortAfterMs));
      timers.push(setTimeout(() => finish({ timedOut: true }), waitMs));
    });
  });
}

function decodeBody(raw, headers) {
  if (!/chunked/i.test(headers["transfer-encoding"] ?? "")) return raw;
  const out = [];
  let at = 0;
  while (at < raw.length) {
    const eol = raw.indexOf("\r\n", at);
    if (eol < 0) break;
    const size = parseInt(raw.subarray(at, eol).toString("latin1"), 16);
    if (!(size > 0)) break;
    out.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

function requestBytes(method, target, { token, body, headers = {}, chunked = false, lineEnd = "\r\n", contentLength } = {}) {
  const buf = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
  const h = { Host: `${HOST}`, Connection: "close", ...headers };
  if (token !== undefined) h.Authorization = `Bearer ${token}`;
  if (buf !== undefined && !chunked) h["Content-Length"] = String(contentLength ?? buf.length);
  if (chunked) h["Transfer-Encoding"] = "chunked";
  let head = `${method} ${target} HTTP/1.1${lineEnd}`;
  for (const [k, v] of Object.entries(h)) head += `${k}: ${v}${lineEnd}`;
  head += lineEnd;
  if (buf === undefined) return [Buffer.from(head, "latin1")];
  if (!chunked) return [Buffer.from(head, "latin1"), buf];
  const parts = [Buffer.from(head, "latin1")];
  for (let at = 0; at < buf.length; at += 4096) {
    const piece = buf.subarray(at, at + 4096);
    parts.push(Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]));
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return [Buffer.concat(parts)];
}

// ---- request generators -------------------------------------------------------------------

const ROUTES = {
  "/health": "GET",
  "/v1/model": "GET",
  "/v1/tokenize": "POST",
  "/v1/trace": "POST",
  "/v1/generate": "POST",
  "/v1/perplexity": "POST",
  "/v1/calibrate": "POST",
  "/v1/predictor": "POST",
};
const EVALUATING = ["/v1/trace", "/v1/generate", "/v1/perplexity", "/v1/calibrate"];
const POST_ROUTES = Object.keys(ROUTES).filter((r) => ROUTES[r] === "POST");

/** Odd values for any field: wrong types, extremes, nesting, surrogates (as JSON text). */
function weirdValue(rng) {
  return rng.pick([
    '"yes"',
    '""',
    "1",
    "-1",
    "0",
    "1.5",
    "-0.0",
    "1e308",
    "-1e308",
    "1e-320",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775809",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "[1,2,3,4]",
    '{"a":1}',
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"\\u0000"',
    "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
    `"${"x".repeat(10_000)}"`,
    "[" + "0,".repeat(5000) + "0]",
    // not JSON at all, or numbers nlohmann cannot hold:
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "0x10",
    "+1",
    "01",
    ".5",
    "'x'",
    "undefined",
  ]);
}

function validPolicy(rng, m) {
  const p = {};
  if (rng.chance(0.4))
    p.amg = {
      threshold: rng.pick([0.3, 0.5, 0.9, 1]),
      ...(rng.chance(0.5) ? { min_k: rng.int(1, m.k) } : {}),
      ...(rng.chance(0.3) ? { mode: rng.pick(["selected", "full"]) } : {}),
    };
  if (rng.chance(0.15)) p.max_k = rng.int(1, m.nExpert);
  if (rng.chance(0.25))
    p.beta = {
      beta: rng.pick([0, 0.5, 0.9]),
      ...(rng.chance(0.5) ? { form: rng.pick(["raw", "scale_preserving"]) } : {}),
      ...(rng.chance(0.3) ? { theta: rng.pick([null, 1, -2]) } : {}),
      ...(rng.chance(0.3) ? { mix: rng.pick([0, 0.5, 1]) } : {}),
    };
  if (rng.chance(0.2)) p.pi = rng.chance(0.5) ? {} : { momentum: rng.pick([0, 0.5, 0.95]) };
  if (rng.chance(0.1)) p.ant = { gamma: rng.pick([0, 0.5, 2]) };
  if (rng.chance(0.25)) p.disable = Array.from({ length: rng.int(1, 3) }, () => [rng.pick(m.moeLayers), rng.int(0, m.nExpert - 1)]);
  if (rng.chance(0.25)) p.boost = Array.from({ length: rng.int(1, 3) }, () => [rng.pick(m.moeLayers), rng.int(0, m.nExpert - 1), rng.pick([-5, 0.5, 3])]);
  return p;
}

function outOfRangePolicy(rng, m) {
  return rng.pick([
    { disable: [[m.nLayer, 0]] },
    { disable: [[0, m.nExpert]] },
    { disable: [[-1, 0]] },
    { boost: [[0, 0, 1e308]] },
    { boost: [[0, 0]] },
    { disable: [[0]] },
    { disable: [0, 1] },
    { max_k: 0 },
    { max_k: m.nExpert + 1 },
    { amg: { threshold: 0 } },
    { amg: { threshold: 1.0000001 } },
    { amg: { threshold: 0.5, min_k: 0 } },
    { amg: { threshold: 0.5, mode: "other" } },
    { beta: { beta: 1 } },
    { beta: { beta: -0.1 } },
    { pi: { momentum: 1 } },
    { pi: { eps: 0 } },
    { ant: { gamma: 11 } },
    { gate: 1 },
    { amg: { threshold: 0.5, extra: 1 } },
    { disable: Array.from({ length: m.nExpert }, (_, e) => [m.moeLayers[0], e]) }, // every expert of a layer
    { disable: Array.from({ length: 50_000 }, (_, i) => [m.moeLayers[i % m.moeLayers.length], i % m.nExpert]) },
  ]);
}

function sampleText(rng, ctx, minBytes, maxBytes) {
  const size = rng.int(minBytes, maxBytes);
  const start = rng.int(0, Math.max(0, ctx.corpus.length - size - 1));
  let s = ctx.corpus
    .subarray(start, start + size)
    .toString("utf8")
    .replace(/\uFFFD/g, "");
  if (!s.trim()) s = "The river ran quietly past the old mill.";
  return s;
}

/** A body that is valid for `route`; the mutators below break it in one way. */
function validBody(rng, ctx, route, { long = false } = {}) {
  const m = ctx.model;
  const text = long ? sampleText(rng, ctx, 2_000, 8_000) : sampleText(rng, ctx, 1, 600);
  switch (route) {
    case "/v1/tokenize":
      return { text, ...(rng.chance(0.3) ? { add_bos: rng.chance(0.5) } : {}) };
    case "/v1/trace":
      return rng.chance(0.15)
        ? { tokens: Array.from({ length: rng.int(1, 200) }, () => rng.int(0, m.nVocab - 1)), policy: validPolicy(rng, m) }
        : {
            text,
            policy: validPolicy(rng, m),
            ...(rng.chance(0.3) ? { top_n: rng.int(0, m.nExpert) } : {}),
            ...(rng.chance(0.2) ? { add_bos: rng.chance(0.5) } : {}),
          };
    case "/v1/generate":
      return {
        prompt: sampleText(rng, ctx, 1, 200),
        n_predict: rng.int(0, 12),
        temperature: rng.pick([0, 0.8, 2]),
        top_k: rng.int(0, 50),
        top_p: rng.pick([0, 0.5, 1]),
        seed: rng.int(0, 1000),
        policy: validPolicy(rng, m),
      };
    case "/v1/perplexity": {
      // About 2 to 16 chunks (a byte is about a third of a token): one decode per chunk, and
      // a stateful policy decodes chunk by chunk.
      const n_ctx = rng.pick([8, 16, 32, 64]);
      return {
        text: long ? text : sampleText(rng, ctx, 6 * n_ctx, 48 * n_ctx),
        n_ctx,
        ...(rng.chance(0.3) ? { n_batch: rng.pick([n_ctx, 2 * n_ctx, 4 * n_ctx, 2048]) } : {}),
        policy: validPolicy(rng, m),
      };
    }
    case "/v1/calibrate":
      return { text };
    case "/v1/predictor":
      return { path: rng.pick([null, ctx.predictorFiles[rng.int(0, ctx.predictorFiles.length - 1)], "/nonexistent.json", "/dev/null", os.tmpdir()]) };
    default:
      return {};
  }
}

/** Replaces one value somewhere in the body with `replacement` (JSON text); returns JSON text. */
function withFieldReplaced(rng, body, replacement) {
  const paths = [];
  const walk = (v, p) => {
    if (p.length) paths.push(p);
    if (v && typeof v === "object" && p.length < 4) for (const k of Object.keys(v).slice(0, 20)) walk(v[k], [...p, k]);
  };
  walk(body, []);
  if (!paths.length) return JSON.stringify({ [rng.pick(["text", "policy", "tokens", "path", "n_ctx"])]: "__X__" }).replace('"__X__"', replacement);
  const target = rng.pick(paths);
  const copy = structuredClone(body);
  let o = copy;
  for (const k of target.slice(0, -1)) o = o[k];
  o[target[target.length - 1]] = "__REPLACED__";
  return JSON.stringify(copy).replace('"__REPLACED__"', replacement);
}

/** One test case from (seed, index): what to send and how. */
function makeCase(seed, index, ctx) {
  const rng = new Rng((seed * 0x9e3779b1 + index * 0x85ebca6b) >>> 0);
  const token = ctx.token;
  const route = rng.pick(Object.keys(ROUTES));
  const post = (r, body, extra = {}) => ({
    parts: requestBytes("POST", r, { token, body, headers: { "Content-Type": "application/json", ...(extra.headers ?? {}) }, ...extra }),
    route: r,
  });
  const kind = rng.weighted([
    [14, "valid"],
    [12, "wrong-type"],
    [6, "out-of-range"],
    [8, "malformed-json"],
    [4, "deep-nesting"],
    [4, "utf8"],
    [3, "huge"],
    [5, "method"],
    [4, "content-type"],
    [4, "chunked"],
    [4, "auth"],
    [6, "framing"],
    [5, "disconnect"],
    [3, "slow"],
    [4, "long"],
    [3, "bad-numbers"],
  ]);
  const r = rng.pick(POST_ROUTES);
  switch (kind) {
    case "valid": {
      if (ROUTES[route] === "GET") return { kind, route, parts: requestBytes("GET", route, { token }) };
      return { kind, ...post(route, JSON.stringify(validBody(rng, ctx, route))) };
    }
    case "wrong-type":
      return { kind, ...post(r, withFieldReplaced(rng, validBody(rng, ctx, r), weirdValue(rng))) };
    case "bad-numbers": {
      const lit = rng.pick(["NaN", "Infinity", "-Infinity", "1e308", "-1e308", "1e999", "4.9e-324", "2147483648", "-2147483649"]);
      const body = rng.pick([
        `{"text":"hi","top_n":${lit}}`,
        `{"text":"hi","n_ctx":${lit}}`,
        `{"prompt":"hi","temperature":${lit}}`,
        `{"text":"hi","policy":{"amg":{"threshold":${lit}}}}`,
        `{"text":"hi","policy":{"boost":[[0,0,${lit}]]}}`,
        `{"text":"hi","policy":{"beta":{"beta":0.5,"theta":${lit}}}}`,
        `{"tokens":[${lit}]}`,
        `{"prompt":"hi","seed":${lit}}`,
      ]);
      return { kind, ...post(r, body) };
    }
    case "out-of-range": {
      const body = validBody(rng, ctx, rng.pick(EVALUATING));
      body.policy = outOfRangePolicy(rng, ctx.model);
      if ("tokens" in body && rng.chance(0.5)) body.tokens = [rng.pick([-1, ctx.model.nVocab, 2 ** 31, 1.5])];
      return { kind, ...post(rng.pick(EVALUATING), JSON.stringify(body)) };
    }
    case "malformed-json": {
      const text = JSON.stringify(validBody(rng, ctx, r));
      const how = rng.pick(["truncate", "flip", "empty", "array", "string", "garbage", "trailing", "dup-keys"]);
      let body = text;
      if (how === "truncate") body = text.slice(0, rng.int(0, Math.max(0, text.length - 1)));
      else if (how === "flip") {
        const b = Buffer.from(text);
        for (let i = 0; i < rng.int(1, 4); i++) b[rng.int(0, b.length - 1)] = rng.int(0, 255);
        body = b;
      } else if (how === "empty") body = "";
      else if (how === "array") body = `[${text}]`;
      else if (how === "string") body = JSON.stringify(text);
      else if (how === "garbage") body = randomBuffer(rng, rng.int(1, 2000));
      else if (how === "trailing") body = `${text} ${text}`;
      else body = text.replace("{", '{"text":1,"text":"dup",');
      return { kind, ...post(r, body) };
    }
    case "deep-nesting": {
      const depth = rng.pick([65, 200, 10_000, 135_000]);
      const open = rng.chance(0.5) ? "[" : '{"a":';
      const close = open === "[" ? "]" : "}";
      const nested = open.repeat(depth) + (open === "[" ? "" : "1") + close.repeat(depth);
      const field = rng.pick(["policy", "text", "tokens", "add_bos", "extra"]);
      return { kind, ...post(r, `{"text":"hi","prompt":"hi","${field}":${nested}}`) };
    }
    case "utf8": {
      const bad = rng.pick([[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x8c], [0xe2, 0x28, 0xa1], [0xf8, 0x88, 0x80, 0x80, 0x80]]);
      const field = rng.pick(["text", "prompt", "path"]);
      const body = rng.chance(0.5)
        ? Buffer.concat([Buffer.from(`{"${field}":"ab`), Buffer.from(bad), Buffer.from('cd"}')])
        : Buffer.from(`{"${field}":"${rng.pick(["\\ud800", "\\udc00", "\\ud800\\u0041", "\\uDBFF\\uDBFF", "a\\u0000b"])}"}`);
      return { kind, ...post(r, body) };
    }
    case "huge": {
      const what = rng.pick(["text", "tokens", "disable", "pieces"]);
      let body;
      if (what === "text") body = JSON.stringify({ text: sampleText(rng, ctx, 200_000, 240_000).repeat(rng.int(4, 8)) });
      else if (what === "tokens") body = JSON.stringify({ tokens: Array.from({ length: rng.int(100_000, 300_000) }, (_, i) => i % ctx.model.nVocab) });
      else if (what === "disable")
        body = JSON.stringify({
          text: "hi",
          policy: { disable: Array.from({ length: 100_000 }, (_, i) => [ctx.model.moeLayers[i % ctx.model.moeLayers.length], i % (ctx.model.nExpert - 1)]) },
        });
      else body = JSON.stringify({ text: "hi", junk: Array.from({ length: 150_000 }, () => "abcdefghij") });
      // Long evaluations are cut off by the client after a moment (cancellation under load).
      return { kind, ...post(rng.pick([...POST_ROUTES, "/v1/tokenize", "/v1/tokenize"]), body), abortAfterMs: rng.int(200, 3000) };
    }
    case "method": {
      const method = rng.pick(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "POST"]);
      const target = rng.pick([...Object.keys(ROUTES), "/", "/v1", "/v1/trace/", "/v1/trace?x=1", "/V1/TRACE", "/v2/nothing", "/v1/../health", "/%00", "*"]);
      return { kind, route: target, parts: requestBytes(method, target, { token, body: method === "GET" || method === "HEAD" ? undefined : '{"text":"hi"}' }) };
    }
    case "content-type": {
      const type = rng.pick([
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/json; charset=latin1",
        "",
        "application/octet-stream",
      ]);
      const body = type.startsWith("multipart")
        ? '--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--xyz--\r\n'
        : type.includes("urlencoded")
          ? "text=hi"
          : JSON.stringify(validBody(rng, ctx, r));
      const headers = { "Content-Type": type, ...(rng.chance(0.2) ? { "Content-Encoding": rng.pick(["gzip", "br", "deflate", "bogus"]) } : {}) };
      return { kind, route: r, parts: requestBytes("POST", r, { token, body, headers }) };
    }
    case "chunked": {
      const body = JSON.stringify(validBody(rng, ctx, r));
      if (rng.chance(0.6)) return { kind, ...post(r, body, { chunked: true }) };
      const head = `POST ${r} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n`;
      const bad = rng.pick([
        `zz\r\n${body}\r\n0\r\n\r\n`,
        `${(body.length + 10).toString(16)}\r\n${body}\r\n0\r\n\r\n`,
        `${body.length.toString(16)}\r\n${body}0\r\n\r\n`,
        `-1\r\n\r\n`,
        `ffffffffffffffffff\r\n${body}\r\n0\r\n\r\n`,
      ]);
      const headers = rng.chance(0.3) ? head.replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\n") : head;
      return { kind, route: r, parts: [Buffer.from(headers + bad)] };
    }
    case "auth": {
      const auth = rng.pick([undefined, "", "x".repeat(64), token.slice(0, -1), token + "x", token.toUpperCase()]);
      return {
        kind,
        route,
        parts: requestBytes(ROUTES[route], route, {
          token: auth,
          body: ROUTES[route] === "POST" ? JSON.stringify(validBody(rng, ctx, route)) : undefined,
          headers: rng.chance(0.2) ? { Authorization: `Basic ${token}` } : {},
        }),
      };
    }
    case "framing": {
      const how = rng.pick([
        "long-url",
        "mid-url",
        "long-header",
        "many-headers",
        "bare-lf",
        "cl-short",
        "cl-long",
        "cl-bad",
        "two-cl",
        "http10",
        "garbage-line",
        "no-host",
      ]);
      const body = '{"text":"hi"}';
      if (how === "long-url") return { kind, route: "/x", parts: [Buffer.from(`GET /${"a".repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)] };
      if (how === "mid-url")
        return {
          kind,
          route: "/x",
          parts: [Buffer.from(`GET /health?${"a".repeat(rng.int(8_200, 30_000))} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)],
        };
      if (how === "long-header")
        return { kind, route: "/health", parts: requestBytes("GET", "/health", { token, headers: { "X-Long": "b".repeat(rng.pick([9_000, 40_000])) } }) };
      if (how === "many-headers")
        return {
          kind,
          route: "/health",
          parts: requestBytes("GET", "/health", { token, headers: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`X-H${i}`, "v"])) }),
        };
      if (how === "bare-lf") return { kind, route: r, parts: requestBytes("POST", r, { token, body, lineEnd: "\n" }) };
      if (how === "cl-short") return { kind, route: r, parts: requestBytes("POST", r, { token, body, contentLength: 5 }) };
      if (how === "cl-long") return { kind, route: r, parts: requestBytes("POST", r, { token, body, contentLength: body.length + 100 }) }; // waits for bytes that never come: 408
      if (how === "cl-bad")
        return {
          kind,
          route: r,
          parts: [
            Buffer.from(
              `POST ${r} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${rng.pick(["-1", "abc", "99999999999999999999", "1e3"])}\r\n\r\n${body}`,
            ),
          ],
        };
      if (how === "two-cl")
        return {
          kind,
          route: r,
          parts: [
            Buffer.from(
              `POST ${r} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\nContent-Length: 3\r\n\r\n${body}`,
            ),
          ],
        };
      if (how === "http10") return { kind, route: "/health", parts: [Buffer.from(`GET /health HTTP/1.0\r\nAuthorization: Bearer ${token}\r\n\r\n`)] };
      if (how === "garbage-line")
        return { kind, route: "/x", parts: [Buffer.concat([randomBuffer(rng, rng.int(1, 300)).map((b) => (b === 10 ? 32 : b)), Buffer.from("\r\n\r\n")])] };
      return { kind, route: "/health", parts: [Buffer.from(`GET /health HTTP/1.1\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)] };
    }
    case "disconnect": {
      const full = requestBytes("POST", r, {
        token,
        body: JSON.stringify(validBody(rng, ctx, r, { long: true })),
        headers: { "Content-Type": "application/json" },
      });
      const all = Buffer.concat(full);
      if (rng.chance(0.5)) return { kind, route: r, parts: [all.subarray(0, rng.int(1, all.length - 1))], closeAfterSend: true };
      return { kind, route: r, parts: [all], abortAfterMs: rng.int(1, 800) }; // gone mid-evaluation
    }
    case "slow": {
      const all = Buffer.concat(
        requestBytes("POST", "/v1/tokenize", { token, body: '{"text":"slow client"}', headers: { "Content-Type": "application/json" } }),
      );
      const pieces = [];
      const size = Math.ceil(all.length / rng.int(4, 12));
      for (let at = 0; at < all.length; at += size) pieces.push(all.subarray(at, at + size));
      // Fast enough to finish before the request timeout, or too slow (then 408).
      return { kind, route: "/v1/tokenize", parts: pieces, gapMs: rng.pick([50, 200, 600]) };
    }
    case "long": {
      const lr = rng.pick(EVALUATING);
      return { kind, ...post(lr, JSON.stringify(validBody(rng, ctx, lr, { long: true }))), abortAfterMs: rng.chance(0.5) ? 0 : rng.int(500, 4000) };
    }
  }
  throw new Error(`unknown case kind ${kind}`);
}

function randomBuffer(rng, n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(0, 255);
  return b;
}

// ---- checking responses -------------------------------------------------------------------

function checkResponse(c, res, report) {
  if (res.disconnected && !res.responded) {
    report.disconnects++;
    return;
  }
  if (res.disconnected) report.disconnects++;
  if (!res.responded) {
    report.noResponse.push(`${c.kind} ${c.route}${res.timedOut ? ` (no answer in ${RESPONSE_WAIT_MS / 1000} s)` : " (closed without a response)"}`);
    return;
  }
  report.byStatus[res.status] = (report.byStatus[res.status] ?? 0) + 1;
  if (res.status >= 500) report.fiveXX.push(`${c.kind} ${c.route}: ${res.status} ${res.body.toString("utf8").slice(0, 200)}`);
  if (res.status >= 400 && !res.disconnected) {
    let ok = false;
    try {
      ok = typeof JSON.parse(res.body.toString("utf8")).error?.code === "string";
    } catch {
      ok = false;
    }
    if (!ok && c.method !== "HEAD") report.badErrorBody.push(`${c.kind} ${c.route}: ${res.status} ${res.body.toString("latin1").slice(0, 120)}`);
  }
  if (res.status === 429 && res.headers["retry-after"] !== "1") report.noRetryAfter++;
  if (res.status === 200 && /ndjson/.test(res.headers["content-type"] ?? "") && !res.disconnected && !res.timedOut) {
    for (const line of res.body.toString("utf8").split("\n")) {
      if (!line) continue;
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        report.streamErrors.push(`${c.kind} ${c.route}: unparsable line`);
        break;
      }
      if (rec.type === "error") report.streamErrors.push(`${c.kind} ${c.route}: ${rec.message}`);
    }
  }
}

// ---- fixed requests compared before and after ---------------------------------------------

async function fixedOutputs(server, ctx) {
  const text = ctx.corpus
    .subarray(0, 3000)
    .toString("utf8")
    .replace(/\uFFFD/g, "");
  const trace = await exchange(
    server.port,
    requestBytes("POST", "/v1/trace", { token: server.token, body: JSON.stringify({ text, top_n: 2, policy: { amg: { threshold: 0.6 } } }) }),
  );
  const ppl = await exchange(
    server.port,
    requestBytes("POST", "/v1/perplexity", {
      token: server.token,
      body: JSON.stringify({
        text: ctx.corpus
          .subarray(0, 6_000)
          .toString("utf8")
          .replace(/\uFFFD/g, ""),
        n_ctx: 64,
      }),
    }),
  );
  if (trace.status !== 200 || ppl.status !== 200)
    throw new Error(`the fixed requests failed: trace ${trace.status}, perplexity ${ppl.status}: ${ppl.body.toString().slice(0, 200)}`);
  const traceText = trace.body.toString("utf8").replace(/,"elapsed_ms":[0-9.e+-]+/, "");
  return { trace: traceText, perplexity: ppl.body.toString("utf8") };
}

async function serverBusy(server) {
  const h = await exchange(server.port, requestBytes("GET", "/health", { token: server.token }), { waitMs: 10_000 });
  try {
    return h.status === 200 && JSON.parse(h.body.toString()).busy === true;
  } catch {
    return false;
  }
}

async function waitIdle(server) {
  for (let i = 0; i < 600; i++) {
    const h = await exchange(server.port, requestBytes("GET", "/health", { token: server.token }), { waitMs: 10_000 });
    if (h.status === 200 && JSON.parse(h.body.toString()).busy === false) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the server stayed busy for a minute after the fuzz");
}

// ---- the GGUF loader ----------------------------------------------------------------------

/** Offset where a GGUF file's tensor data starts (after header, metadata and tensor table). */
function ggufDataOffset(buf) {
  let at = 4;
  const u32 = () => {
    const v = buf.readUInt32LE(at);
    at += 4;
    return v;
  };
  const u64 = () => {
    const v = Number(buf.readBigUInt64LE(at));
    at += 8;
    return v;
  };
  const str = () => {
    const n = u64();
    const s = buf.toString("utf8", at, at + n);
    at += n;
    return s;
  };
  const SIZES = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  let alignment = 32;
  const value = (type) => {
    if (type === 8) return str();
    if (type === 9) {
      const t = u32();
      const n = u64();
      for (let i = 0; i < n; i++) value(t);
      return null;
    }
    const size = SIZES[type];
    const v = size === 4 ? buf.readUInt32LE(at) : null;
    at += size;
    return v;
  };
  u32(); // version
  const nTensors = u64(),
    nKv = u64();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const v = value(u32());
    if (key === "general.alignment" && typeof v === "number") alignment = v;
  }
  for (let i = 0; i < nTensors; i++) {
    str();
    const nd = u32();
    at += 8 * nd + 4 + 8;
  }
  return Math.ceil(at / alignment) * alignment;
}

async function fuzzGguf(opts, count, token) {
  const original = fs.readFileSync(opts.model);
  const dataOffset = ggufDataOffset(original);
  const rng = new Rng(opts.seed ^ 0x6767);
  const variants = [];
  const cuts = [
    0,
    4,
    8,
    16,
    24,
    100,
    1000,
    dataOffset - 1,
    dataOffset,
    dataOffset + 1,
    Math.floor(original.length * 0.1),
    Math.floor(original.length * 0.5),
    Math.floor(original.length * 0.99),
    original.length - 1,
  ];
  for (const n of cuts.slice(0, count)) variants.push({ name: `truncated to ${n} bytes`, bytes: original.subarray(0, n) });
  while (variants.length < count) {
    const copy = Buffer.from(original);
    const flips = rng.int(1, 8);
    // Flips land in the header, metadata and tensor table, where they change what is read;
    // a flip in tensor data only changes weights, which no loader can tell.
    for (let i = 0; i < flips; i++) copy[rng.int(0, dataOffset - 1)] ^= 1 << rng.int(0, 7);
    variants.push({ name: `${flips} bit flips in the first ${dataOffset} bytes (#${variants.length})`, bytes: copy });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-fuzz-gguf-"));
  const result = { refused: 0, loaded: 0, crashed: [], messages: new Map() };
  try {
    for (const v of variants) {
      const file = path.join(dir, "damaged.gguf");
      fs.writeFileSync(file, v.bytes);
      const outcome = await tryLoad(opts.server, file, token);
      if (outcome.kind === "refused") {
        result.refused++;
        const key = outcome.message.replace(file, "FILE").replace(/\d+/g, "N").slice(0, 140);
        result.messages.set(key, (result.messages.get(key) ?? 0) + 1);
        if (!outcome.message.includes(file)) result.crashed.push(`${v.name}: the message does not name the file: ${outcome.message}`);
      } else if (outcome.kind === "loaded") result.loaded++;
      else result.crashed.push(`${v.name}: ${outcome.detail}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

/** Starts the server on `file`: refused (exit 1 + error line), loaded (ready, answers a trace), or a crash. */
async function tryLoad(binary, file, token) {
  let server;
  try {
    server = await Server.start(binary, file, token);
  } catch (err) {
    // Refused means: one error line, then exit status 1.
    const message = String(err.message ?? err);
    const timer = setTimeout(() => err.server?.child.kill("SIGKILL"), 30_000);
    const exit = err.server ? await err.server.exited : { code: null, signal: "unknown" };
    clearTimeout(timer);
    if (exit.code !== 1 || /exited before it was ready/.test(message)) return { kind: "crash", detail: `${exit.signal ?? `status ${exit.code}`}: ${message}` };
    return { kind: "refused", message };
  }
  const t = await exchange(server.port, requestBytes("POST", "/v1/trace", { token, body: '{"text":"a short text"}' }), { waitMs: 30_000 });
  const e = await server.stop();
  if (!t.responded || t.status >= 500) return { kind: "crash", detail: `loaded, but a trace got ${t.status || "no response"}` };
  if (e.signal && e.signal !== "SIGKILL") return { kind: "crash", detail: `exited with ${e.signal}: ${server.stderrTail.slice(-3).join(" | ")}` };
  return { kind: "loaded" };
}

// ---- main ---------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opts.server)) usage(`no server binary at ${opts.server}; run \`npm run build:native\``);
  if (!fs.existsSync(opts.model)) usage(`no model at ${opts.model}`);
  const token = randomBytes(32).toString("hex");
  const t0 = Date.now();
  const report = {
    byStatus: {},
    noResponse: [],
    fiveXX: [],
    badErrorBody: [],
    streamErrors: [],
    crashes: [],
    noRetryAfter: 0,
    disconnects: 0,
    sent: 0,
    secondsByKind: {},
    slowEvaluations: [],
  };

  let server = await Server.start(opts.server, opts.model, token);
  const info = JSON.parse((await exchange(server.port, requestBytes("GET", "/v1/model", { token }))).body.toString());
  const corpus = Buffer.concat([
    fs.readFileSync(path.join(ROOT, "test", "fixtures", "heldout-mixed.txt")),
    fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md")),
  ]);
  const predictorDir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-fuzz-pred-"));
  const predictorFiles = writePredictorFiles(predictorDir, info, createHash("sha256").update(fs.readFileSync(opts.model)).digest("hex"));
  const ctx = {
    token,
    corpus,
    predictorFiles,
    model: { nExpert: info.n_expert, nLayer: info.n_layer, moeLayers: info.moe_layers, k: info.n_expert_used, nVocab: info.n_vocab },
  };

  const before = await fixedOutputs(server, ctx);
  await waitIdle(server);
  const rssBefore = server.rss();
  const tFuzz = Date.now();

  let next = 0;
  let stoppedAtTimeLimit = false;
  const worker = async () => {
    for (;;) {
      if (Date.now() - t0 > opts.timeLimit * 1000) {
        stoppedAtTimeLimit = true;
        return;
      }
      const i = next++;
      if (i >= opts.requests) return;
      const c = makeCase(opts.seed, i, ctx);
      c.method = c.parts[0].subarray(0, 8).toString("latin1").split(" ")[0];
      if (!server.running) return;
      const tCase = Date.now();
      const res = await exchange(server.port, c.parts, c);
      report.sent++;
      report.secondsByKind[c.kind] = (report.secondsByKind[c.kind] ?? 0) + (Date.now() - tCase) / 1000;
      if (process.env.FUZZ_DEBUG)
        console.error(
          `${i} ${c.kind} ${c.route} ${Date.now() - tCase} ms ${res.status} ${Buffer.concat(c.parts)
            .toString("utf8")
            .split("\r\n\r\n")[1]
            ?.replace(/"(text|prompt)":"([^"\\]|\\.)*"/g, "T")
            .slice(0, 300)}`,
        );
      if (!server.running) {
        const e = server.exit;
        report.crashes.push(
          `case ${i} (${c.kind} ${c.route}) in flight when the server died (${e.signal ?? `status ${e.code}`}):\n    ${server.stderrTail.slice(-25).join("\n    ")}`,
        );
        return;
      }
      // A request still unanswered after RESPONSE_WAIT_MS while the server reports itself busy
      // is a long evaluation (a stateful policy over many tiny perplexity chunks on a loaded
      // machine can take minutes), not a silent server: counted apart, not a failure.
      if (res.timedOut && !res.responded && (await serverBusy(server))) report.slowEvaluations.push(`${c.kind} ${c.route}`);
      else checkResponse(c, res, report);
    }
  };
  // A crash ends the run: the workers stop, the server is started again for the checks below.
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  const fuzzSeconds = (Date.now() - tFuzz) / 1000;
  if (!server.running) server = await Server.start(opts.server, opts.model, token);

  await waitIdle(server);
  const after = await fixedOutputs(server, ctx);
  await waitIdle(server);
  const rssAfter = server.rss();
  const exitAtEnd = await server.stop();
  fs.rmSync(predictorDir, { recursive: true, force: true });
  const tGguf = Date.now();
  const gguf = opts.gguf > 0 ? await fuzzGguf(opts, opts.gguf, token) : null;
  const ggufSeconds = (Date.now() - tGguf) / 1000;

  // ---- the report ----
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  const mb = (b) => (b == null ? "n/a" : `${(b / 1048576).toFixed(1)} MB`);
  const rssGrowth = rssBefore && rssAfter ? (rssAfter.total - rssBefore.total) / rssBefore.total : null;
  const traceSame = before.trace === after.trace,
    pplSame = before.perplexity === after.perplexity;
  const failures = [];
  const line = (label, list, limit = 5) => {
    const n = typeof list === "number" ? list : list.length;
    console.log(`  ${label}: ${n}`);
    if (Array.isArray(list)) for (const x of list.slice(0, limit)) console.log(`      ${x}`);
    if (n > 0) failures.push(label);
  };
  console.log(
    `fuzz: ${report.sent} requests (seed ${opts.seed}, ${opts.concurrency} clients) against ${path.relative(ROOT, opts.server) || opts.server} on ${path.relative(ROOT, opts.model)} in ${seconds} s (requests ${fuzzSeconds.toFixed(1)} s, GGUF files ${ggufSeconds.toFixed(1)} s)${stoppedAtTimeLimit ? ` (stopped at the ${opts.timeLimit} s time limit)` : ""}`,
  );
  console.log(
    `  responses by status: ${Object.entries(report.byStatus)
      .map(([s, n]) => `${s}: ${n}`)
      .join(", ")}; deliberate client disconnects: ${report.disconnects}`,
  );
  console.log(
    `  client seconds by kind: ${Object.entries(report.secondsByKind)
      .sort((a, b) => b[1] - a[1])
      .map(([k, t]) => `${k} ${t.toFixed(0)}`)
      .join(", ")}`,
  );
  line("crashes", report.crashes);
  if (report.slowEvaluations.length)
    console.log(
      `  evaluations the client gave up on after ${RESPONSE_WAIT_MS / 1000} s, the server still busy with them (not failures): ${report.slowEvaluations.length} (${report.slowEvaluations.slice(0, 3).join("; ")})`,
    );
  line("requests without a response", report.noResponse);
  line("5xx responses", report.fiveXX);
  line("4xx without a JSON error body", report.badErrorBody);
  line("429 without Retry-After: 1", report.noRetryAfter);
  line("error records inside 200 streams", report.streamErrors);
  const rssOk = rssGrowth === null || rssGrowth <= 0.2;
  const rssText = (r) => (r ? `${mb(r.total)} (anonymous ${mb(r.anon)}, file ${mb(r.file)})` : "n/a");
  console.log(
    `  RSS: before ${rssText(rssBefore)}, after ${rssText(rssAfter)}${rssGrowth === null ? "" : `: ${rssGrowth >= 0 ? "+" : ""}${(rssGrowth * 100).toFixed(1)} %`}${rssOk ? "" : " — more than 20 % above"}`,
  );
  if (!rssOk) failures.push("RSS");
  console.log(
    `  fixed trace after the fuzz: ${traceSame ? "identical" : "DIFFERENT"} (${before.trace.length} bytes, elapsed_ms aside); fixed perplexity: ${pplSame ? "identical" : "DIFFERENT"}`,
  );
  if (!traceSame) failures.push("trace");
  if (!pplSame) failures.push("perplexity");
  if (exitAtEnd.code !== 0) {
    console.log(`  exit at the end (stdin closed): ${exitAtEnd.signal ?? `status ${exitAtEnd.code}`}`);
    failures.push("exit");
  }
  if (gguf) {
    console.log(
      `  GGUF loader: ${opts.gguf} damaged copies: ${gguf.refused} refused with a message, ${gguf.loaded} loaded, ${gguf.crashed.length} crashed or unclear`,
    );
    for (const [m, n] of gguf.messages) console.log(`      ${n} × ${m}`);
    for (const x of gguf.crashed) console.log(`      CRASH ${x}`);
    if (gguf.crashed.length) failures.push("gguf");
  }
  console.log(failures.length ? `fuzz: FAIL (${failures.join(", ")})` : "fuzz: PASS");
  if (opts.json) {
    console.log(
      JSON.stringify({
        requests: report.sent,
        seconds: Number(seconds),
        byStatus: report.byStatus,
        crashes: report.crashes.length,
        noResponse: report.noResponse.length,
        slowEvaluations: report.slowEvaluations.length,
        fiveXX: report.fiveXX.length,
        badErrorBody: report.badErrorBody.length,
        noRetryAfter: report.noRetryAfter,
        streamErrors: report.streamErrors.length,
        rssBefore: rssBefore?.total ?? null,
        rssAfter: rssAfter?.total ?? null,
        traceIdentical: traceSame,
        perplexityIdentical: pplSame,
        gguf: gguf && { refused: gguf.refused, loaded: gguf.loaded, crashed: gguf.crashed.length },
        pass: failures.length === 0,
      }),
    );
  }
  process.exit(failures.length ? 1 : 0);
}

/** A valid-looking predictor file for the loaded model, and broken ones (issue 17, item 8). */
function writePredictorFiles(dir, info, sha256) {
  const E = info.n_expert;
  const W = Buffer.alloc(E * (2 * E + 1) * 4).toString("base64");
  const good = {
    format: "moe-lens-ant-predictor",
    version: 1,
    model_sha256: sha256,
    n_expert: E,
    moe_layers: info.moe_layers,
    beta: 0.9,
    layers: info.moe_layers.map((l) => ({ layer: l, W })),
  };
  const variants = [
    good,
    { ...good, version: "1" },
    { ...good, layers: undefined },
    { ...good, layers: [1, 2, 3, 4] },
    { ...good, format: 5 },
    { ...good, n_expert: String(E) },
    { ...good, beta: "x" },
    { ...good, model_sha256: 7 },
    { ...good, model_sha256: "0".repeat(64) },
    { ...good, layers: good.layers.map((l) => ({ ...l, W: 5 })) },
    [good],
    "text",
  ];
  return variants.map((v, i) => {
    const f = path.join(dir, `p${i}.moe-ant.json`);
    fs.writeFileSync(f, JSON.stringify(v));
    return f;
  });
}

main().catch((err) => {
  console.error(`fuzz: ${err.stack ?? err}`);
  process.exit(1);
});
