// The extension's settings (package.json `contributes.configuration`, section "moeLens"),
// read and validated without `vscode`: the thin layer passes a getter over
// `workspace.getConfiguration("moeLens")`. Out-of-range numbers fall back to the default
// and are reported, so a typo in settings.json gives a message, not a crash.

import type { Policy } from "../../shared/policy";

export interface MoeLensSettings {
  /** GGUF model; "" = the bundled demo model. */
  modelPath: string;
  /** CPU threads; 0 = the server's default (physical cores). */
  threads: number;
  contextSize: number;
  gpuLayers: number;
  /** moe-lens-server binary override; "" = the bundled one. */
  serverPath: string;
  defaultPolicy: Policy;
  /** ggml-rpc-server workers (HOST:PORT) the offloaded layers (gpuLayers) are spread over; [] = none. */
  rpcServers: string[];
  /** A router pack (docs/router-packs.md) every evaluation routes with; "" = the model's own routers. Applied without a restart. */
  routerPack: string;
  /** Memory cap of the trace history, all documents together (oldest traces evicted first). */
  traceHistoryMegabytes: number;
}

export const SETTINGS_SECTION = "moeLens";

export const SETTING_LIMITS = {
  threads: { min: 0, max: 256, default: 0 },
  contextSize: { min: 64, max: 131072, default: 2048 },
  gpuLayers: { min: 0, max: 999, default: 0 },
  traceHistoryMegabytes: { min: 16, max: 65536, default: 512 },
} as const;

export const DEFAULT_SETTINGS: MoeLensSettings = {
  modelPath: "",
  threads: SETTING_LIMITS.threads.default,
  contextSize: SETTING_LIMITS.contextSize.default,
  gpuLayers: SETTING_LIMITS.gpuLayers.default,
  serverPath: "",
  defaultPolicy: {},
  rpcServers: [],
  routerPack: "",
  traceHistoryMegabytes: SETTING_LIMITS.traceHistoryMegabytes.default,
};

/** Settings whose change needs a server restart. */
export const RESTART_KEYS: ReadonlyArray<keyof MoeLensSettings> = ["modelPath", "threads", "contextSize", "gpuLayers", "serverPath", "rpcServers"];

/** HOST:PORT, HOST a name, an IPv4 address or a bracketed IPv6 address. */
export const RPC_ENDPOINT = /^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):\d{1,5}$/;

export interface ReadResult {
  settings: MoeLensSettings;
  /** One line per ignored value, for the output channel / a warning. */
  problems: string[];
}

/**
 * Reads and validates the settings. `get(key)` returns the raw value (undefined when unset).
 * `validatePolicy` (from policy-parse.ts) checks the default policy; when it throws, the
 * default policy falls back to baseline and the message is reported.
 */
export function readSettings(get: (key: string) => unknown, validatePolicy?: (p: unknown) => Policy): ReadResult {
  const problems: string[] = [];
  const str = (key: "modelPath" | "serverPath" | "routerPack"): string => {
    const v = get(key);
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") {
      problems.push(`moeLens.${key} must be a string; ignored`);
      return "";
    }
    return v.trim();
  };
  const int = (key: keyof typeof SETTING_LIMITS): number => {
    const lim = SETTING_LIMITS[key];
    const v = get(key);
    if (v === undefined || v === null) return lim.default;
    if (typeof v !== "number" || !Number.isInteger(v) || v < lim.min || v > lim.max) {
      problems.push(`moeLens.${key} must be an integer in ${lim.min}…${lim.max}; using ${lim.default}`);
      return lim.default;
    }
    return v;
  };
  let defaultPolicy: Policy = {};
  const rawPolicy = get("defaultPolicy");
  if (rawPolicy !== undefined && rawPolicy !== null) {
    if (typeof rawPolicy !== "object" || Array.isArray(rawPolicy)) {
      problems.push("moeLens.defaultPolicy must be an object; using baseline");
    } else if (validatePolicy) {
      try {
        defaultPolicy = validatePolicy(rawPolicy);
      } catch (e) {
        problems.push(`moeLens.defaultPolicy: ${(e as Error).message}; using baseline`);
      }
    } else {
      defaultPolicy = rawPolicy as Policy;
    }
  }
  let rpcServers: string[] = [];
  const rawRpc = get("rpcServers");
  if (rawRpc !== undefined && rawRpc !== null) {
    if (!Array.isArray(rawRpc) || rawRpc.some((e) => typeof e !== "string" || !RPC_ENDPOINT.test(e.trim()))) {
      problems.push("moeLens.rpcServers must be a list of HOST:PORT strings; ignored");
    } else {
      rpcServers = (rawRpc as string[]).map((e) => e.trim());
    }
  }
  return {
    settings: {
      modelPath: str("modelPath"),
      threads: int("threads"),
      contextSize: int("contextSize"),
      gpuLayers: int("gpuLayers"),
      serverPath: str("serverPath"),
      defaultPolicy,
      rpcServers,
      routerPack: str("routerPack"),
      traceHistoryMegabytes: int("traceHistoryMegabytes"),
    },
    problems,
  };
}

/** True when going from `a` to `b` needs the server restarted. */
export function needsRestart(a: MoeLensSettings, b: MoeLensSettings): boolean {
  return RESTART_KEYS.some((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

/** Expands a leading "~" and "${workspaceFolder}" in a path setting. */
export function expandPath(p: string, home: string, workspaceFolder?: string): string {
  let out = p;
  if (out === "~" || out.startsWith("~/")) out = home + out.slice(1);
  if (workspaceFolder) out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  return out;
}
