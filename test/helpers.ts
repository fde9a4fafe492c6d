// Shared test helpers: paths, a started server per suite, tiny random models from
// llama.cpp's test-llama-archs, and the llama-perplexity reference.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defaultServerBinary, demoModelPath, llamaToolBinary, type NativeBackend } from "../extension/core/paths";
import { ServerProcess } from "../extension/core/server-process";

export const ROOT = process.env.MOE_LENS_ROOT ?? path.resolve(__dirname, "..", "..", "..");
/** The server the tests start: out/bin/ by default; MOE_LENS_SERVER_BIN=out/bin-asan/moe-lens-server runs them against the sanitizer build. */
export const SERVER_BIN = process.env.MOE_LENS_SERVER_BIN ? path.resolve(process.env.MOE_LENS_SERVER_BIN) : defaultServerBinary(ROOT);
export const DEMO_MODEL = demoModelPath(ROOT);
/** The fine-grained demo model (64 experts, k = 8) and its router packs in media/models/packs/demo-moe-fine/. */
export const FINE_MODEL = path.join(ROOT, "media", "models", "demo-moe-fine.gguf");

export function requireFile(file: string, hint: string): string {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${hint}`);
  return file;
}

/** Starts out/bin/moe-lens-server, or with `binary` another build's (e.g. out/bin-vulkan/). */
export function startServer(
  model: string,
  extra: { ctx?: number; overrideKv?: string[]; predictor?: string; gpuLayers?: number; rpcServers?: string[]; binary?: string } = {},
): Promise<ServerProcess> {
  const binary = extra.binary ?? SERVER_BIN;
  requireFile(binary, "run `npm run build:native`");
  return ServerProcess.start({ model, threads: 2, ...extra, binary });
}

let tinyDir: string | undefined;
/** Writes (once per process) test-llama-archs's tiny random models and returns the file for `arch` ("qwen3moe-moe", "llama-dense", ...). */
export function tinyModel(name: string): string {
  if (!tinyDir) {
    tinyDir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-tiny-"));
    const bin = requireFile(llamaToolBinary(ROOT, "test-llama-archs"), "run `npm run build:native`");
    for (const arch of ["qwen3moe", "olmoe", "qwen2moe", "deepseek2", "gpt-oss", "granitemoe", "llama", "glm4moe"]) {
      spawnSync(bin, ["-a", `^${arch}$`, "-o", tinyDir], { stdio: "ignore" });
    }
  }
  return requireFile(path.join(tinyDir, `${name}.gguf`), "test-llama-archs did not write it");
}

/**
 * Runs llama-perplexity from the same tree and returns its final estimate as printed.
 * llama.cpp logs through an asynchronous worker that can lose the last lines at exit, so
 * the log also goes to a file (written on the same worker, flushed on close), and one
 * rerun is allowed when neither holds the final line.
 */
export function llamaPerplexity(
  model: string,
  textFile: string,
  nCtx: number,
  opts: { backend?: NativeBackend; gpuLayers?: number } = {},
): { ppl: string; err: string; chunks: string } {
  const bin = requireFile(
    llamaToolBinary(ROOT, "llama-perplexity", opts.backend),
    `run \`${opts.backend && opts.backend !== "cpu" ? `MOE_LENS_GPU=${opts.backend} ` : ""}npm run build:native\``,
  );
  const args = ["-m", model, "-f", textFile, "-c", String(nCtx), "-t", "2", ...(opts.gpuLayers ? ["-ngl", String(opts.gpuLayers)] : [])];
  let all = "";
  for (let attempt = 0; attempt < 2; attempt++) {
    const logFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-ppl-")), "log.txt");
    const r = spawnSync(bin, [...args, "--log-file", logFile], { encoding: "utf8" });
    all = `${r.stdout}\n${r.stderr}\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : ""}`;
    const m = /Final estimate: PPL = ([\d.]+) \+\/- ([\d.]+)/.exec(all);
    if (m) return { ppl: m[1], err: m[2], chunks: /(\[1\][^\n]*)/.exec(all)?.[1] ?? "" };
  }
  throw new Error(`llama-perplexity printed no final estimate:\n${all.slice(-2000)}`);
}

export function tempFile(name: string, content: string | Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moe-lens-test-"));
  const f = path.join(dir, name);
  fs.writeFileSync(f, content);
  return f;
}

/** Raw HTTP with a chosen token, for the auth and bad-input tests. */
export async function rawRequest(
  port: number,
  route: string,
  opts: { token?: string; body?: string | Buffer; method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; json: unknown; text: string; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${route}`, {
    method: opts.method ?? (opts.body === undefined ? "GET" : "POST"),
    headers: { ...(opts.token ? { Authorization: `Bearer ${opts.token}` } : {}), ...(opts.headers ?? {}) },
    body: typeof opts.body === "string" || opts.body === undefined ? opts.body : new Uint8Array(opts.body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

/** Deterministic, varied words (a repeated phrase gives random models a zero-variance NLL). */
export function variedText(words: number): string {
  const vocab = ["river", "mill", "code", "the", "data", "flows", "{", "}", "x", "=", "42", "und", "der", "fluss", "alpha", "beta", ";", "\n"];
  let s = 7;
  const out: string[] = [];
  for (let i = 0; i < words; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out.push(vocab[s % vocab.length]);
  }
  return out.join(" ");
}
