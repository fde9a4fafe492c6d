// Policies from untrusted input (settings, webview messages, CLI flags) into `Policy`,
// with the same ranges the server enforces (native/API.md). Their short labels are
// `describePolicy` in shared/policy.ts (the panel shows them too).
import { POLICY_KEYS, type Policy } from "../../shared/policy";

export class PolicyError extends Error {}

function num(v: unknown, what: string, lo: number, hi: number, loOpen = false): number {
  const x = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  if (typeof x !== "number" || !Number.isFinite(x) || x < lo || x > hi || (loOpen && x === lo)) {
    throw new PolicyError(`${what} must be a number in ${loOpen ? "(" : "["}${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return x;
}

function int(v: unknown, what: string, lo: number, hi: number): number {
  const x = num(v, what, lo, hi);
  if (!Number.isInteger(x)) throw new PolicyError(`${what} must be an integer, got ${JSON.stringify(v)}`);
  return x;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new PolicyError(`${what} must be an object`);
  return v as Record<string, unknown>;
}

/** Validates an untrusted policy object. `nExpert` bounds expert ids and k (default 4096). */
export function validatePolicy(input: unknown, nExpert = 4096): Policy {
  if (input === undefined || input === null) return {};
  const p = obj(input, "policy");
  for (const k of Object.keys(p)) if (!(POLICY_KEYS as readonly string[]).includes(k)) throw new PolicyError(`unknown policy field "${k}"`);
  const out: Policy = {};
  if (p.amg != null) {
    const a = obj(p.amg, "amg");
    out.amg = { threshold: num(a.threshold, "AMG threshold", 0, 1, true) };
    if (a.min_k != null) out.amg.min_k = int(a.min_k, "AMG min_k", 1, nExpert);
    if (a.mode != null) {
      if (a.mode !== "selected" && a.mode !== "full") throw new PolicyError(`AMG mode must be "selected" or "full"`);
      out.amg.mode = a.mode;
    }
  }
  if (p.max_k != null) out.max_k = int(p.max_k, "max_k", 1, nExpert);
  if (p.skip != null) {
    if (typeof p.skip !== "boolean") throw new PolicyError("skip must be true or false");
    if (!p.skip) out.skip = false;
  }
  if (p.beta != null) {
    const b = obj(p.beta, "beta");
    out.beta = { beta: num(b.beta, "β", 0, 0.9999) };
    if (b.theta != null) out.beta.theta = num(b.theta, "β threshold θ", -1e6, 1e6);
    if (b.form != null) {
      if (b.form !== "raw" && b.form !== "scale_preserving") throw new PolicyError(`β form must be "raw" or "scale_preserving"`);
      out.beta.form = b.form;
    }
    if (b.mix != null) out.beta.mix = num(b.mix, "β mix", 0, 1);
  }
  if (p.pi != null) {
    const q = obj(p.pi, "pi");
    out.pi = {};
    if (q.momentum != null) out.pi.momentum = num(q.momentum, "Π momentum", 0, 0.9999);
    if (q.eps != null) out.pi.eps = num(q.eps, "Π eps", 1e-12, 1);
  }
  if (p.ant != null) out.ant = { gamma: num(obj(p.ant, "ant").gamma, "Ant γ", 0, 10) };
  if (p.disable != null) {
    if (!Array.isArray(p.disable)) throw new PolicyError("disable must be a list of [layer, expert]");
    out.disable = p.disable.map((e, i) => {
      if (!Array.isArray(e) || e.length !== 2) throw new PolicyError(`disable[${i}] must be [layer, expert]`);
      return [int(e[0], "disable layer", 0, 1 << 16), int(e[1], "disable expert", 0, nExpert - 1)] as [number, number];
    });
  }
  if (p.boost != null) {
    if (!Array.isArray(p.boost)) throw new PolicyError("boost must be a list of [layer, expert, bias]");
    out.boost = p.boost.map((e, i) => {
      if (!Array.isArray(e) || e.length !== 3) throw new PolicyError(`boost[${i}] must be [layer, expert, bias]`);
      return [int(e[0], "boost layer", 0, 1 << 16), int(e[1], "boost expert", 0, nExpert - 1), num(e[2], "boost bias", -100, 100)] as [number, number, number];
    });
  }
  return out;
}

/**
 * Compact policy specs for the command line and experiments: terms joined by "+",
 * e.g. "baseline", "amg:0.75", "k:12+amg:0.9", "beta:0.9+pi+ant:0.5", "amg:0.5:2" (min_k 2),
 * "topp:0.9" (AMG over the full distribution), "disable:0:3", "boost:1:5:2", "k:4+noskip" (dropped
 * experts zero-gated but still computed, for comparing with the default skip).
 */
export function parsePolicySpec(spec: string): Policy {
  const p: Policy = {};
  for (const term of spec
    .split("+")
    .map((t) => t.trim())
    .filter(Boolean)) {
    const [name, ...args] = term.split(":");
    switch (name.toLowerCase()) {
      case "baseline":
      case "none":
        break;
      case "amg":
      case "topp":
        p.amg = {
          threshold: num(args[0], `${name} threshold`, 0, 1, true),
          ...(args[1] ? { min_k: int(args[1], "min_k", 1, 4096) } : {}),
          ...(name === "topp" ? { mode: "full" as const } : {}),
        };
        break;
      case "k":
      case "max_k":
        p.max_k = int(args[0], "max_k", 1, 4096);
        break;
      case "beta":
        p.beta = { beta: num(args[0] ?? 0.9, "β", 0, 0.9999), ...(args[1] === "sp" ? { form: "scale_preserving" as const } : {}) };
        break;
      case "pi":
        p.pi = args[0] ? { momentum: num(args[0], "Π momentum", 0, 0.9999) } : {};
        break;
      case "ant":
        p.ant = { gamma: num(args[0] ?? 0.5, "Ant γ", 0, 10) };
        break;
      case "disable":
        (p.disable ??= []).push([int(args[0], "layer", 0, 1 << 16), int(args[1], "expert", 0, 4095)]);
        break;
      case "boost":
        (p.boost ??= []).push([int(args[0], "layer", 0, 1 << 16), int(args[1], "expert", 0, 4095), num(args[2], "bias", -100, 100)]);
        break;
      case "noskip":
        p.skip = false;
        break;
      default:
        throw new PolicyError(
          `unknown policy term "${term}" in "${spec}" (use baseline, amg:T[:MIN_K], topp:T, k:N, beta:B[:sp], pi, ant:G, disable:L:E, boost:L:E:B, noskip)`,
        );
    }
  }
  return p;
}

/** Parses `LAYER:EXPERT[,..]` (disable) or `LAYER:EXPERT:BIAS[,..]` (boost) flag values. */
export function parseExpertList(value: string, withBias: boolean): Array<[number, number] | [number, number, number]> {
  return value
    .split(",")
    .filter(Boolean)
    .map((item) => {
      const f = item.split(":");
      if (f.length !== (withBias ? 3 : 2)) throw new PolicyError(`"${item}" must be ${withBias ? "LAYER:EXPERT:BIAS" : "LAYER:EXPERT"}`);
      const l = int(f[0], "layer", 0, 1 << 16),
        e = int(f[1], "expert", 0, 4095);
      return withBias ? [l, e, num(f[2], "bias", -100, 100)] : [l, e];
    }) as Array<[number, number] | [number, number, number]>;
}
