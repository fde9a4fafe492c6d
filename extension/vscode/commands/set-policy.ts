import * as vscode from "vscode";
import { describePolicy, type Policy } from "../../../shared/policy";
import { validatePolicy } from "../../core/policy-parse";
import type { Services } from "../services";
import { errorMessage } from "../server-manager";

type Item = vscode.QuickPickItem & { build?: (cur: Policy) => Promise<Policy | undefined> };

/** Asks for a number with validation; undefined when dismissed. */
async function askNumber(prompt: string, value: number, check: (n: number) => string | undefined): Promise<number | undefined> {
  const v = await vscode.window.showInputBox({
    prompt,
    value: String(value),
    validateInput: (s) => {
      const n = Number(s);
      return s.trim() === "" || !Number.isFinite(n) ? "Enter a number" : check(n);
    },
  });
  return v === undefined ? undefined : Number(v);
}

const inRange =
  (lo: number, hi: number, loOpen = false, hiOpen = false) =>
  (n: number) =>
    (loOpen ? n <= lo : n < lo) || (hiOpen ? n >= hi : n > hi) ? `Must be in ${loOpen ? "(" : "["}${lo}, ${hi}${hiOpen ? ")" : "]"}` : undefined;

/**
 * MoE Lens: Set Gating Policy… — a quick pick of the policies (baseline, AMG, Top-P, max_k,
 * β, Π, Ant, JSON), each with validated inputs; the result goes through validatePolicy
 * and the last text is re-traced with it. Also callable with a policy object argument.
 */
export function register(svc: Services): vscode.Disposable {
  return vscode.commands.registerCommand("moeLens.setPolicy", async (arg?: unknown) => {
    let next: Policy | undefined;
    try {
      if (arg !== undefined) next = validatePolicy(arg);
      else next = await pick(svc);
    } catch (e) {
      void vscode.window.showErrorMessage(`MoE Lens: invalid policy: ${errorMessage(e)}`);
      return;
    }
    if (!next) return;
    svc.policy.set(next);
    svc.output.info(`policy: ${describePolicy(next)} ${JSON.stringify(next)}`);
    return svc.tracer.retrace();
  });
}

async function pick(svc: Services): Promise<Policy | undefined> {
  const model = svc.server.modelInfo;
  const k = model?.n_expert_used_trained ?? 8;
  const E = model?.n_expert ?? 256;
  const items: Item[] = [
    { label: "Baseline", description: "unmodified routing", build: async () => ({}) },
    {
      label: "AMG",
      description: "adaptive gate: cumulative threshold τ over the selected experts",
      build: async (cur) => {
        const t = await askNumber("AMG threshold τ (0 < τ ≤ 1)", cur.amg?.threshold ?? 0.5, inRange(0, 1, true));
        if (t === undefined) return undefined;
        const m = await askNumber(`Minimum experts kept (1…${k})`, cur.amg?.min_k ?? 1, (n) =>
          Number.isInteger(n) && n >= 1 && n <= k ? undefined : `An integer in 1…${k}`,
        );
        return m === undefined ? undefined : { ...cur, amg: { threshold: t, min_k: m, mode: "selected" } };
      },
    },
    {
      label: "Top-P routing",
      description: "the same rule over the full router distribution",
      build: async (cur) => {
        const t = await askNumber("Top-P threshold (0 < p ≤ 1)", cur.amg?.threshold ?? 0.6, inRange(0, 1, true));
        if (t === undefined) return undefined;
        const mk = await askNumber(`Expert slots max_k (1…${E})`, cur.max_k ?? k, (n) =>
          Number.isInteger(n) && n >= 1 && n <= E ? undefined : `An integer in 1…${E}`,
        );
        return mk === undefined ? undefined : { ...cur, amg: { threshold: t, min_k: 1, mode: "full" }, max_k: mk };
      },
    },
    {
      label: "Expert slots (max_k)",
      description: `cap below k=${k}, or reload with more experts`,
      build: async (cur) => {
        const mk = await askNumber(`max_k (1…${E}; trained k = ${k})`, cur.max_k ?? k, (n) =>
          Number.isInteger(n) && n >= 1 && n <= E ? undefined : `An integer in 1…${E}`,
        );
        return mk === undefined ? undefined : { ...cur, max_k: mk };
      },
    },
    {
      label: "β temporal memory",
      description: "route on a membrane U = βU + (1−β)z",
      build: async (cur) => {
        const b = await askNumber("β (0 ≤ β < 1)", cur.beta?.beta ?? 0.9, inRange(0, 1, false, true));
        if (b === undefined) return undefined;
        const form = await vscode.window.showQuickPick(
          [
            { label: "scale_preserving", description: "U = βU + (1−β)z" },
            { label: "raw", description: "U = βU + z (sharpens the softmax)" },
          ],
          { title: "β form" },
        );
        if (!form) return undefined;
        const mix = await askNumber("Mix α (0 = logits only, 1 = membrane only)", cur.beta?.mix ?? 1, inRange(0, 1));
        return mix === undefined ? undefined : { ...cur, beta: { beta: b, form: form.label as "raw" | "scale_preserving", mix } };
      },
    },
    {
      label: "Π precision weighting",
      description: "scale logits by normalised inverse error variance",
      build: async (cur) => {
        const m = await askNumber("Momentum m (0 ≤ m < 1)", cur.pi?.momentum ?? 0.95, inRange(0, 1, false, true));
        return m === undefined ? undefined : { ...cur, pi: { momentum: m } };
      },
    },
    {
      label: "Ant anticipatory routing",
      description:
        svc.policy.antAvailable || model?.predictor_loaded ? "adds γ·ẑ(t+1) from the fitted predictor" : "needs a fitted predictor: run Calibrate Ant first",
      build: async (cur) => {
        const g = await askNumber("γ (0…10)", cur.ant?.gamma ?? 0.5, inRange(0, 10));
        return g === undefined ? undefined : { ...cur, ant: { gamma: g } };
      },
    },
    {
      label: "Edit as JSON…",
      description: "the server's policy object",
      build: async (cur) => {
        const v = await vscode.window.showInputBox({
          prompt: "Policy JSON (see native/API.md)",
          value: JSON.stringify(cur),
          validateInput: (s) => {
            try {
              validatePolicy(JSON.parse(s));
              return undefined;
            } catch (e) {
              return errorMessage(e);
            }
          },
        });
        return v === undefined ? undefined : validatePolicy(JSON.parse(v));
      },
    },
  ];
  const chosen = await vscode.window.showQuickPick(items, {
    title: `MoE Lens: gating policy (now: ${svc.policy.label})`,
    placeHolder: "Pick a policy; AMG, β, Π and Ant combine with the current one",
  });
  if (!chosen?.build) return undefined;
  const p = await chosen.build(svc.policy.current);
  return p === undefined ? undefined : validatePolicy(p);
}
