// Supervises the moe-lens-server process, in the manner of vscode-eslint's client: starts it
// on first use with the configured model (default: the bundled demo model), waits for the
// ready line, checks /health periodically, restarts it after a crash with exponential
// backoff and a visible message, gives up after repeated crashes, and stops it on
// deactivate. Logs go to the "MoE Lens" output channel; state changes go to listeners (the
// status bar).

import * as fs from "node:fs";
import * as os from "node:os";
import * as vscode from "vscode";
import { defaultServerBinary, demoModelPath } from "../core/paths";
import { ServerProcess } from "../core/server-process";
import type { ServerClient } from "../core/server-client";
import type { RouterPackInfo, ServerModelInfo } from "../../shared/wire";
import { expandPath, type MoeLensSettings } from "../core/settings";
import { modelLabel } from "./format";

export type ServerState = "stopped" | "starting" | "ready" | "restarting" | "failed";

const HEALTH_INTERVAL_MS = 15_000;
const HEALTH_TIMEOUT_MS = 5_000;
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** Crashes within this window count towards giving up. */
const CRASH_WINDOW_MS = 3 * 60_000;
const MAX_CRASHES = 5;

export interface ServerSnapshot {
  state: ServerState;
  modelPath: string;
  model?: ServerModelInfo;
  pid?: number;
  error?: string;
  restartInMs?: number;
}

export class ServerManager implements vscode.Disposable {
  private proc: ServerProcess | undefined;
  private starting: Promise<ServerProcess> | undefined;
  private startAbort: AbortController | undefined;
  private state: ServerState = "stopped";
  private model: ServerModelInfo | undefined;
  private error: string | undefined;
  private crashes: number[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private restartAt = 0;
  private healthTimer: NodeJS.Timeout | undefined;
  private healthFailures = 0;
  private disposed = false;
  /** Model to load; "" = bundled demo model. */
  private modelPath: string;
  /** Fitted Ant predictor to load at start (kept across restarts). */
  predictorPath: string | undefined;
  private readonly emitter = new vscode.EventEmitter<ServerSnapshot>();
  readonly onDidChangeState = this.emitter.event;

  constructor(
    private readonly extensionRoot: string,
    private readonly output: vscode.LogOutputChannel,
    private settings: MoeLensSettings,
  ) {
    this.modelPath = settings.modelPath;
  }

  snapshot(): ServerSnapshot {
    return {
      state: this.state,
      modelPath: this.resolvedModelPath(),
      model: this.model,
      pid: this.proc?.pid,
      error: this.error,
      restartInMs: this.restartTimer ? Math.max(0, this.restartAt - Date.now()) : undefined,
    };
  }

  get client(): ServerClient | undefined {
    return this.state === "ready" ? this.proc?.client : undefined;
  }

  get modelInfo(): ServerModelInfo | undefined {
    return this.model;
  }

  private setState(s: ServerState, error?: string): void {
    this.state = s;
    this.error = error;
    this.emitter.fire(this.snapshot());
  }

  private workspaceFolder(): string | undefined {
    return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  }

  resolvedModelPath(path = this.modelPath): string {
    return path ? expandPath(path, os.homedir(), this.workspaceFolder()) : demoModelPath(this.extensionRoot);
  }

  resolvedBinary(): string {
    const s = this.settings.serverPath;
    return s ? expandPath(s, os.homedir(), this.workspaceFolder()) : defaultServerBinary(this.extensionRoot);
  }

  /** The router pack moeLens.routerPack names (an absolute path), or undefined for the model's own routers. */
  resolvedRouterPack(): string | undefined {
    const p = this.settings.routerPack;
    return p ? expandPath(p, os.homedir(), this.workspaceFolder()) : undefined;
  }

  /** Applies moeLens.routerPack to the running server without reloading the model (POST /v1/router-pack). */
  async applyRouterPack(): Promise<RouterPackInfo | null | undefined> {
    const client = this.client;
    if (!client) return undefined;
    const pack = await client.loadRouterPack(this.resolvedRouterPack() ?? null);
    this.output.info(pack ? `router pack: ${pack.name} (${pack.path})` : "router pack: none (the model's own routers)");
    return pack;
  }

  updateSettings(s: MoeLensSettings): void {
    this.settings = s;
  }

  /** Changes the model for the next start (when the server is not running). */
  setModelPath(p: string): void {
    this.modelPath = p;
    this.emitter.fire(this.snapshot());
  }

  get currentModelSetting(): string {
    return this.modelPath;
  }

  /** A ready client, starting the server (with a progress notification) when needed. */
  async ensureClient(signal?: AbortSignal): Promise<ServerClient> {
    if (this.state === "ready" && this.proc) return this.proc.client;
    if (this.restartTimer) {
      // A restart is scheduled: do it now rather than make the user wait out the backoff.
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
    }
    const p = this.starting ?? this.startWithProgress();
    const proc = await raceAbort(p, signal);
    return proc.client;
  }

  /** Starts the server (no-op when running), showing progress with Cancel. */
  async start(): Promise<void> {
    if (this.state === "ready") return;
    await (this.starting ?? this.startWithProgress());
  }

  private startWithProgress(modelPath = this.modelPath): Promise<ServerProcess> {
    const label = modelLabel(this.resolvedModelPath(modelPath));
    const p = Promise.resolve(
      vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `MoE Lens: starting server with ${label}`, cancellable: true },
        (_progress, token) => {
          const ac = new AbortController();
          token.onCancellationRequested(() => ac.abort());
          return this.spawn(modelPath, ac);
        },
      ),
    );
    return p;
  }

  private spawn(modelPath: string, ac: AbortController): Promise<ServerProcess> {
    if (this.starting) return this.starting;
    this.startAbort = ac;
    this.setState(this.state === "restarting" ? "restarting" : "starting");
    const binary = this.resolvedBinary();
    const model = this.resolvedModelPath(modelPath);
    const run = (async () => {
      if (!fs.existsSync(binary)) {
        throw new Error(`the server binary ${binary} does not exist. Build it with \`npm run build:native\`, or point the setting moeLens.serverPath at one.`);
      }
      try {
        fs.accessSync(binary, fs.constants.X_OK);
      } catch {
        // A .vsix may not keep the executable bit on every platform.
        fs.chmodSync(binary, 0o755);
      }
      if (!fs.existsSync(model)) {
        throw new Error(
          modelPath
            ? `the model ${model} does not exist (setting moeLens.modelPath). Use "MoE Lens: Select Model…" to pick a GGUF file.`
            : `the bundled demo model ${model} is missing. Build it (see README) or pick a model with "MoE Lens: Select Model…".`,
        );
      }
      this.output.info(`starting ${binary} -m ${model}`);
      const proc = await ServerProcess.start({
        binary,
        model,
        ctx: this.settings.contextSize,
        threads: this.settings.threads || undefined,
        gpuLayers: this.settings.gpuLayers || undefined,
        predictor: this.predictorPath,
        routerPack: this.resolvedRouterPack(),
        rpcServers: this.settings.rpcServers.length ? this.settings.rpcServers : undefined,
        log: (line) => this.output.trace(`[server] ${line}`),
        signal: ac.signal,
      });
      let info: ServerModelInfo | undefined;
      try {
        info = await proc.client.modelInfo();
      } catch (e) {
        this.output.warn(`model info failed: ${(e as Error).message}`);
      }
      return { proc, info };
    })();
    this.starting = run.then(
      ({ proc, info }) => {
        this.starting = undefined;
        this.startAbort = undefined;
        if (this.disposed) {
          void proc.stop();
          throw new Error("MoE Lens was deactivated");
        }
        this.proc = proc;
        this.model = info;
        this.modelPath = modelPath;
        this.healthFailures = 0;
        this.output.info(
          `server ready (pid ${proc.pid}): ${info ? `${info.architecture}, ${info.n_expert} experts, k=${info.n_expert_used}, ${info.moe_layers.length} MoE layers` : model}`,
        );
        this.setState("ready");
        this.watch(proc);
        return proc;
      },
      (e: unknown) => {
        this.starting = undefined;
        this.startAbort = undefined;
        const msg = ac.signal.aborted ? "start cancelled" : errorMessage(e);
        this.output.error(`server start failed: ${msg}`);
        this.setState(ac.signal.aborted ? "stopped" : "failed", msg);
        throw ac.signal.aborted ? new CancelledError("server start cancelled") : new Error(`MoE Lens: could not start the server: ${msg}`);
      },
    );
    return this.starting;
  }

  private watch(proc: ServerProcess): void {
    void proc.exited.then(({ code, signal }) => {
      if (this.proc !== proc) return; // stopped on purpose or replaced
      this.proc = undefined;
      this.stopHealth();
      if (this.disposed) return;
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      this.output.error(`server (pid ${proc.pid}) stopped unexpectedly: ${how}`);
      this.onCrash(how);
    });
    this.stopHealth();
    this.healthTimer = setInterval(() => void this.checkHealth(proc), HEALTH_INTERVAL_MS);
  }

  private async checkHealth(proc: ServerProcess): Promise<void> {
    if (this.proc !== proc) return;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), HEALTH_TIMEOUT_MS);
    try {
      const h = await raceAbort(proc.client.health(), ac.signal);
      if (!h.ok) throw new Error("health reports not ok");
      this.healthFailures = 0;
    } catch (e) {
      if (this.proc !== proc) return;
      this.healthFailures++;
      this.output.warn(`health check failed (${this.healthFailures}): ${errorMessage(e)}`);
      if (this.healthFailures >= 2) {
        this.output.error("server is not responding; restarting it");
        this.proc = undefined;
        this.stopHealth();
        await proc.stop().catch(() => undefined);
        this.onCrash("not responding");
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private stopHealth(): void {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = undefined;
  }

  private onCrash(how: string): void {
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
    this.crashes.push(now);
    const n = this.crashes.length;
    if (n > MAX_CRASHES) {
      const msg = `the server crashed ${n} times in ${CRASH_WINDOW_MS / 60_000} minutes (last: ${how}); not restarting it`;
      this.setState("failed", msg);
      void vscode.window.showErrorMessage(`MoE Lens: ${msg}.`, "Restart Server", "Show Log").then((a) => {
        if (a === "Restart Server") void vscode.commands.executeCommand("moeLens.restartServer");
        if (a === "Show Log") this.output.show();
      });
      return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (n - 1));
    this.restartAt = now + delay;
    this.setState("restarting", `crashed (${how})`);
    void vscode.window
      .showWarningMessage(`MoE Lens: the server stopped unexpectedly (${how}). Restarting in ${Math.round(delay / 1000)} s…`, "Show Log")
      .then((a) => a === "Show Log" && this.output.show());
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.disposed || this.proc || this.starting) return;
      this.output.info(`restarting the server (attempt ${n})`);
      this.spawn(this.modelPath, new AbortController()).catch((e) => {
        this.output.error(errorMessage(e));
        this.onCrash("failed to restart");
      });
    }, delay);
  }

  /** Stops the server; waits for the process to exit. */
  async stop(): Promise<void> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.startAbort?.abort();
    this.stopHealth();
    const proc = this.proc;
    this.proc = undefined;
    if (proc) {
      this.output.info(`stopping server (pid ${proc.pid})`);
      await proc.stop().catch((e) => this.output.warn(`stop: ${errorMessage(e)}`));
    }
    this.crashes = [];
    if (!this.disposed) this.setState("stopped");
  }

  async restart(): Promise<void> {
    await this.stop();
    this.crashes = [];
    await this.start();
  }

  /**
   * Switches to another model (already checked with inspectModel). When the new model
   * fails to start, the previous one is started again and the error is rethrown.
   */
  /** True while a model switch runs (Select Model… sets it before it clears the router pack; switchModel clears it). */
  switchingModel = false;

  async switchModel(modelPath: string): Promise<void> {
    this.switchingModel = true;
    try {
      await this.switchModelNow(modelPath);
    } finally {
      this.switchingModel = false;
    }
  }

  private async switchModelNow(modelPath: string): Promise<void> {
    const previous = this.modelPath;
    const wasRunning = this.state === "ready" || this.state === "starting" || this.state === "restarting";
    await this.stop();
    try {
      await this.startWithProgress(modelPath);
    } catch (e) {
      this.modelPath = previous;
      if (wasRunning) {
        this.output.info(`going back to the previous model ${this.resolvedModelPath(previous)}`);
        this.startWithProgress(previous).catch((e2) => this.output.error(errorMessage(e2)));
      }
      throw e;
    }
  }

  async dispose(): Promise<void> {
    await this.stop();
    this.disposed = true;
    this.emitter.dispose();
  }
}

export class CancelledError extends Error {
  override name = "CancelledError";
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function isCancellation(e: unknown): boolean {
  return e instanceof CancelledError || (e instanceof Error && (e.name === "AbortError" || e.name === "CancelledError"));
}

/** Resolves/rejects with `p`, or rejects with CancelledError when `signal` aborts first. */
export function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new CancelledError("cancelled"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new CancelledError("cancelled"));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener("abort", onAbort), resolve(v)),
      (e) => (signal.removeEventListener("abort", onAbort), reject(e)),
    );
  });
}
