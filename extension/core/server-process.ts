// Starts moe-lens-server as a child process, waits for its ready line (native/API.md,
// "Process") and hands back a client bound to its port and per-session token.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import readline from "node:readline";
import { ServerClient } from "./server-client";

export interface ServerStartOptions {
  binary: string;
  model: string;
  ctx?: number;
  threads?: number;
  gpuLayers?: number;
  overrideKv?: string[];
  predictor?: string;
  /** A router pack (docs/router-packs.md) every evaluation routes with. */
  routerPack?: string;
  /** ggml-rpc-server workers (HOST:PORT) the offloaded layers are spread over (with gpuLayers). */
  rpcServers?: string[];
  /** Receives every stderr line (llama.cpp's log) and lifecycle notes. */
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Give up waiting for the ready line after this long (ms). */
  readyTimeoutMs?: number;
}

export interface ServerExit {
  code: number | null;
  signal: string | null;
}

export class ServerProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly client: ServerClient,
    readonly port: number,
    readonly exited: Promise<ServerExit>,
  ) {}

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  static start(opts: ServerStartOptions): Promise<ServerProcess> {
    if (!fs.existsSync(opts.binary)) {
      return Promise.reject(new Error(`moe-lens-server not found at ${opts.binary}; build it with \`npm run build:native\``));
    }
    const token = randomBytes(32).toString("hex");
    // --exit-with-stdin: the server stops when the pipe below closes, which happens whenever
    // this process ends, even by SIGKILL, so a killed CLI or extension host never leaks one.
    const args = ["-m", opts.model, "--host", "127.0.0.1", "--port", "0", "--exit-with-stdin"];
    if (opts.ctx) args.push("-c", String(opts.ctx));
    if (opts.threads) args.push("-t", String(opts.threads));
    if (opts.gpuLayers) args.push("-ngl", String(opts.gpuLayers));
    for (const kv of opts.overrideKv ?? []) args.push("--override-kv", kv);
    if (opts.predictor) args.push("--predictor", opts.predictor);
    if (opts.routerPack) args.push("--router-pack", opts.routerPack);
    if (opts.rpcServers?.length) args.push("--rpc", opts.rpcServers.join(","));

    const log = opts.log ?? (() => undefined);
    log(`starting ${opts.binary} ${args.join(" ")}`);
    const child = spawn(opts.binary, args, {
      env: { ...process.env, MOE_LENS_TOKEN: token },
      stdio: ["pipe", "pipe", "pipe"],
    });
    // Never written; an error on it (EPIPE once the server is gone) is not ours to report.
    child.stdin!.on("error", () => undefined);
    const exited = new Promise<ServerExit>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const stderrTail: string[] = [];
    readline.createInterface({ input: child.stderr! }).on("line", (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 20) stderrTail.shift();
      log(line);
    });

    return new Promise<ServerProcess>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | null, value?: ServerProcess) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) {
          if (child.exitCode === null) child.kill("SIGKILL");
          reject(err);
        } else resolve(value!);
      };
      const onAbort = () => finish(new Error("server start cancelled"));
      opts.signal?.addEventListener("abort", onAbort);
      const timer = setTimeout(() => finish(new Error("moe-lens-server did not become ready in time")), opts.readyTimeoutMs ?? 120_000);

      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        let msg: { event?: string; port?: number; message?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          return;
        }
        if (msg.event === "ready" && msg.port) {
          log(`ready on 127.0.0.1:${msg.port} (pid ${child.pid})`);
          finish(null, new ServerProcess(child, new ServerClient(`http://127.0.0.1:${msg.port}`, token), msg.port, exited));
        } else if (msg.event === "error") {
          finish(new Error(msg.message ?? "moe-lens-server failed to start"));
        }
      });
      child.once("error", (err) => finish(new Error(`cannot start moe-lens-server: ${err.message}`)));
      void exited.then(({ code, signal }) => {
        const tail = stderrTail
          .filter((l) => l.trim())
          .slice(-3)
          .join(" | ");
        finish(new Error(`moe-lens-server exited (${signal ?? `status ${code}`}) before it was ready${tail ? `: ${tail}` : ""}`));
      });
    });
  }

  /** Asks the server to stop (SIGTERM), then kills it if it lingers. */
  async stop(timeoutMs = 3000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}
