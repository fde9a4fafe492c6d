// The host↔server wire contract (shared/wire.ts, shared/policy.ts) against the real
// moe-lens-server on the demo model: for every route and every record type, the keys the
// server sends must be exactly the listed keys — a key the server adds, renames or drops, or
// one the list names and the server never sends, fails here. Raw HTTP, so nothing on the
// client side (decoding, defaults) hides a difference.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fitAntPredictor } from "../../extension/core/ant";
import type { ServerProcess } from "../../extension/core/server-process";
import { AMG_KEYS, ANT_KEYS, BETA_KEYS, PI_KEYS, POLICY_KEYS, type Policy } from "../../shared/policy";
import {
  BATCH_EXPERT_NORMS_KEYS,
  BATCH_KEYS,
  BATCH_PROBS_KEYS,
  BATCH_TOP_N_KEYS,
  CALIBRATE_KEYS,
  ERROR_BODY_KEYS,
  ERROR_KEYS,
  HEALTH_KEYS,
  MODEL_INFO_KEYS,
  PERPLEXITY_KEYS,
  PREDICTOR_KEYS,
  SERVER_MODEL_INFO_KEYS,
  SPEED_KEYS,
  SUMMARY_KEYS,
  TOKENIZE_KEYS,
  TRACE_HEADER_KEYS,
  TRACE_WINDOW_KEYS,
} from "../../shared/wire";
import { DEMO_MODEL, rawRequest, ROOT, startServer } from "../helpers";

const SAMPLE = fs.readFileSync(path.join(ROOT, "test", "fixtures", "demo-sample.md"), "utf8");
/** Every policy field, so the normalised echo shows every key (Ant needs the predictor fitted in before()). */
const FULL_POLICY: Policy = {
  amg: { threshold: 0.9, min_k: 1, mode: "selected" },
  max_k: 2,
  beta: { beta: 0.5, theta: 3, form: "scale_preserving", mix: 0.5 },
  pi: { momentum: 0.9, eps: 1e-6 },
  ant: { gamma: 0.1 },
  disable: [[0, 7]],
  boost: [[1, 3, 0.5]],
  skip: false, // echoed only when false (true is the default)
};

let server: ServerProcess;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-wire-"));

before(async () => {
  server = await startServer(DEMO_MODEL, { ctx: 256 }); // a small context, so a 600-token trace shifts it
  await fitAntPredictor(server.client, SAMPLE, DEMO_MODEL, { outPath: path.join(dir, "demo.moe-ant.json") });
});
after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Exactly `expected` as keys of `obj`, with what is missing and what is unexpected in the message. */
function assertKeys(obj: unknown, expected: readonly string[], what: string): void {
  assert.ok(obj && typeof obj === "object" && !Array.isArray(obj), `${what} is an object: ${JSON.stringify(obj)?.slice(0, 200)}`);
  const got = Object.keys(obj);
  const missing = expected.filter((k) => !got.includes(k));
  const unexpected = got.filter((k) => !expected.includes(k));
  assert.deepEqual({ missing, unexpected }, { missing: [], unexpected: [] }, `${what}: the server's keys differ from shared/wire.ts`);
}

function assertPolicyEcho(policy: unknown, what: string): void {
  assertKeys(policy, POLICY_KEYS, `${what} policy`);
  const p = policy as Record<string, unknown>;
  assertKeys(p.amg, AMG_KEYS, `${what} policy.amg`);
  assertKeys(p.beta, BETA_KEYS, `${what} policy.beta`);
  assertKeys(p.pi, PI_KEYS, `${what} policy.pi`);
  assertKeys(p.ant, ANT_KEYS, `${what} policy.ant`);
}

async function post(route: string, body: unknown): Promise<{ status: number; json: unknown; text: string }> {
  return rawRequest(server.port, route, { token: server.client.token, body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
}

/** The records of an NDJSON stream, grouped by type. */
async function stream(route: string, body: unknown): Promise<Map<string, Array<Record<string, unknown>>>> {
  const r = await post(route, body);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  const byType = new Map<string, Array<Record<string, unknown>>>();
  for (const line of r.text.split("\n")) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line) as Record<string, unknown>;
    const type = String(rec.type);
    byType.set(type, [...(byType.get(type) ?? []), rec]);
  }
  return byType;
}

/** The batch keys sent without the optional columns, plus those asked for. */
function batchKeys(asked: { topN?: boolean; norms?: boolean; probs?: boolean }): string[] {
  const optional: string[] = [...BATCH_TOP_N_KEYS, ...BATCH_EXPERT_NORMS_KEYS, ...BATCH_PROBS_KEYS];
  return [
    ...BATCH_KEYS.filter((k) => !optional.includes(k)),
    ...(asked.topN ? BATCH_TOP_N_KEYS : []),
    ...(asked.norms ? BATCH_EXPERT_NORMS_KEYS : []),
    ...(asked.probs ? BATCH_PROBS_KEYS : []),
  ];
}

function assertTraceRecords(
  records: Map<string, Array<Record<string, unknown>>>,
  asked: { topN?: boolean; norms?: boolean; probs?: boolean },
  what: string,
): void {
  assert.deepEqual([...records.keys()].sort(), ["batch", "header", "summary"], `${what}: record types`);
  const [header] = records.get("header")!;
  assertKeys(header, TRACE_HEADER_KEYS, `${what} header`);
  assertKeys(header.model, MODEL_INFO_KEYS, `${what} header.model`);
  const windows = header.windows as unknown[];
  assert.ok(windows.length >= 1);
  for (const w of windows) assertKeys(w, TRACE_WINDOW_KEYS, `${what} header.windows[]`);
  for (const b of records.get("batch")!) assertKeys(b, batchKeys(asked), `${what} batch (${JSON.stringify(asked)})`);
  assertKeys(records.get("summary")![0], SUMMARY_KEYS, `${what} summary`);
}

describe("wire contract: what the server sends, key by key", () => {
  test("GET /health", async () => {
    assertKeys((await rawRequest(server.port, "/health", { token: server.client.token })).json, HEALTH_KEYS, "/health");
  });

  test("GET /v1/model", async () => {
    assertKeys((await rawRequest(server.port, "/v1/model", { token: server.client.token })).json, SERVER_MODEL_INFO_KEYS, "/v1/model");
  });

  test("POST /v1/tokenize", async () => {
    assertKeys((await post("/v1/tokenize", { text: "hello world" })).json, TOKENIZE_KEYS, "/v1/tokenize");
  });

  test("POST /v1/trace: header (model, windows, every policy field), batches without and with top_n, summary", async () => {
    const plain = await stream("/v1/trace", { text: SAMPLE, policy: FULL_POLICY });
    assertTraceRecords(plain, {}, "/v1/trace");
    assertPolicyEcho(plain.get("header")![0].policy, "/v1/trace header");
    assertTraceRecords(await stream("/v1/trace", { text: SAMPLE, top_n: 4 }), { topN: true }, "/v1/trace with top_n");
    assertTraceRecords(await stream("/v1/trace", { text: SAMPLE, expert_norms: true }), { norms: true }, "/v1/trace with expert_norms");
    assertTraceRecords(await stream("/v1/trace", { text: SAMPLE, probs: true }), { probs: true }, "/v1/trace with probs");
    // Text longer than the context: the context shifts, and the records keep their keys.
    const windowed = await stream("/v1/trace", { tokens: Array.from({ length: 600 }, (_, i) => 10 + (i % 50)) });
    assert.equal(windowed.get("header")![0].kv_shift, 128, "the 600 tokens shift the 256-token context by half");
    assertTraceRecords(windowed, {}, "/v1/trace of 600 tokens");
  });

  test("POST /v1/generate streams the same record types", async () => {
    assertTraceRecords(await stream("/v1/generate", { prompt: "The river", n_predict: 4, seed: 1 }), {}, "/v1/generate");
    assertTraceRecords(await stream("/v1/generate", { prompt: "The river", n_predict: 2, seed: 1, top_n: 3 }), { topN: true }, "/v1/generate with top_n");
  });

  test("POST /v1/perplexity", async () => {
    const r = await post("/v1/perplexity", { text: SAMPLE, n_ctx: 64, policy: FULL_POLICY });
    assert.equal(r.status, 200, r.text);
    assertKeys(r.json, PERPLEXITY_KEYS, "/v1/perplexity");
    assertPolicyEcho((r.json as { policy: unknown }).policy, "/v1/perplexity");
  });

  test("POST /v1/speed", async () => {
    const r = await post("/v1/speed", { text: SAMPLE, policy: FULL_POLICY, n_prefill: 64, n_prompt: 8, n_decode: 4 });
    assert.equal(r.status, 200, r.text);
    assertKeys(r.json, SPEED_KEYS, "/v1/speed");
    assertPolicyEcho((r.json as { policy: unknown }).policy, "/v1/speed");
  });

  test("POST /v1/calibrate", async () => {
    assertKeys((await post("/v1/calibrate", { text: "The river ran quietly past the old mill." })).json, CALIBRATE_KEYS, "/v1/calibrate");
  });

  test("POST /v1/predictor", async () => {
    assertKeys((await post("/v1/predictor", { path: path.join(dir, "demo.moe-ant.json") })).json, PREDICTOR_KEYS, "/v1/predictor");
  });

  test("error bodies", async () => {
    const bad = await post("/v1/tokenize", { nope: 1 });
    assert.equal(bad.status, 400);
    assertKeys(bad.json, ERROR_BODY_KEYS, "a 400 body");
    assertKeys((bad.json as { error: unknown }).error, ERROR_KEYS, "a 400 body's error");
    const unknown = await rawRequest(server.port, "/v1/nope", { token: server.client.token });
    assert.equal(unknown.status, 404);
    assertKeys((unknown.json as { error: unknown }).error, ERROR_KEYS, "a 404 body's error");
  });
});
