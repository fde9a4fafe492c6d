// Policy controls (@vscode-elements/elements). Changes are applied live: after a short
// debounce the panel posts `applyPolicy` and the host re-traces with it. The host's
// `policy` message (after every change, from any command) sets the controls to its policy,
// so they never show a policy other than the one traces use. The block folds to one line
// (a toggle and the policy's label) so the heatmap gets the height; the fold is kept in the
// webview state with the values.
import "@vscode-elements/elements/dist/vscode-button/index.js";
import "@vscode-elements/elements/dist/vscode-checkbox/index.js";
import "@vscode-elements/elements/dist/vscode-option/index.js";
import "@vscode-elements/elements/dist/vscode-single-select/index.js";
import "@vscode-elements/elements/dist/vscode-textfield/index.js";
import { describePolicy, policyNumber, type Policy } from "../shared/policy";
import { fileName } from "../shared/format";
import type { RouterPackChoice } from "../shared/protocol";

type Field = HTMLElement & { value: string; disabled: boolean };
type Check = HTMLElement & { checked: boolean; disabled: boolean };

export interface ControlValues {
  amg: boolean;
  threshold: string;
  minK: string;
  amgMode: string;
  maxK: string;
  beta: boolean;
  betaValue: string;
  betaForm: string;
  betaMix: string;
  betaTheta: string;
  pi: boolean;
  piMomentum: string;
  ant: boolean;
  gamma: string;
  /** The controls folded to one line (layout, not policy). */
  collapsed?: boolean;
}

export class PolicyControls {
  readonly root: HTMLElement;
  private readonly els: Record<string, HTMLElement> = {};
  private readonly sliders: Record<string, HTMLInputElement> = {};
  private timer = 0;
  private error: HTMLElement;
  /** Policy fields the controls do not show (disable, boost): kept from the host's policy and posted back unchanged. */
  private untouched: Pick<Policy, "disable" | "boost"> = {};
  private readonly packSelect: Field;
  private readonly packRow: HTMLElement;
  /** The router pack the host routes with ("" = the model's own routers). */
  private packShown = "";
  /** Largest expert count the model allows (max k, min k); 4096 until the host says. */
  private nExpert = 4096;
  /** The fold toggle, and the policy's label shown beside it (what the folded rows hold). */
  private readonly toggle: HTMLButtonElement;
  private readonly foldedLabel: HTMLElement;

  constructor(
    parent: HTMLElement,
    private readonly onApply: (p: Policy) => void,
    private readonly onCompare: (p: Policy) => void,
    private readonly onChange: (v: ControlValues) => void,
    private readonly onRouterPack: (path: string | null) => void,
  ) {
    this.root = document.createElement("section");
    this.root.className = "controls";
    this.root.setAttribute("aria-label", "Gating policy");
    this.toggle = document.createElement("button");
    this.toggle.id = "controls-toggle";
    this.toggle.className = "controls-toggle";
    this.toggle.setAttribute("aria-controls", "controls-rows");
    this.toggle.addEventListener("click", () => {
      this.setCollapsed(!this.collapsed);
      this.onChange(this.values());
    });
    this.foldedLabel = document.createElement("span");
    this.foldedLabel.className = "controls-policy";
    const head = document.createElement("div");
    head.className = "controls-head";
    head.append(this.toggle, this.foldedLabel);
    this.root.append(head);
    const rows = document.createElement("div");
    rows.id = "controls-rows";
    rows.className = "controls-rows";
    this.root.append(rows);
    this.setCollapsed(false);
    const row = (...children: HTMLElement[]) => {
      const d = document.createElement("div");
      d.className = "control-row";
      d.append(...children);
      rows.append(d);
    };
    row(
      this.check("amg", "AMG"),
      this.field("threshold", "τ", "0.9", [0.05, 1, 0.05]),
      this.field("minK", "min k", "1"),
      this.select("amgMode", "AMG over", [
        ["selected", "selected experts"],
        ["full", "full distribution (top-p)"],
      ]),
      this.field("maxK", "max k", ""),
    );
    // β: route on (1-α)·z + α·U with membrane U (θ: optional clamp, blank = none).
    row(
      this.check("beta", "β memory"),
      this.field("betaValue", "β", "0.9", [0, 0.99, 0.01]),
      this.select("betaForm", "β form", [
        ["raw", "raw"],
        ["scale_preserving", "scale-preserving"],
      ]),
      this.field("betaMix", "mix α", "1", [0, 1, 0.05]),
      this.field("betaTheta", "θ", ""),
    );
    row(this.check("pi", "Π precision"), this.field("piMomentum", "momentum", "0.95"), this.check("ant", "Ant"), this.field("gamma", "γ", "0.5", [0, 4, 0.1]));
    // Trained routers (router packs beside the model): switched at once, not with Apply, since
    // the server swaps routers without a reload. Hidden while the model has none.
    this.packSelect = document.createElement("vscode-single-select") as Field;
    this.packSelect.id = "ctl-routerPack";
    this.packSelect.setAttribute("aria-label", "Router");
    this.packSelect.addEventListener("change", () => {
      const v = this.packSelect.value;
      if (v !== this.packShown) this.onRouterPack(v === "" ? null : v);
    });
    this.packRow = document.createElement("label");
    this.packRow.className = "field router-pack";
    this.packRow.append("router ", this.packSelect);
    this.packRow.hidden = true;
    row(this.packRow);
    const apply = document.createElement("vscode-button");
    apply.textContent = "Apply";
    apply.id = "apply-policy";
    apply.addEventListener("click", () => this.apply());
    const compare = document.createElement("vscode-button");
    compare.textContent = "Compare with baseline";
    compare.id = "compare-policy";
    compare.setAttribute("secondary", "");
    compare.addEventListener("click", () => {
      const p = this.policy();
      if (p) this.onCompare(p);
    });
    this.error = document.createElement("span");
    this.error.className = "control-error";
    this.error.setAttribute("role", "alert");
    row(apply, compare, this.error);
    parent.append(this.root);
  }

  private check(id: string, label: string): HTMLElement {
    const c = document.createElement("vscode-checkbox") as Check;
    c.id = `ctl-${id}`;
    c.setAttribute("label", label);
    c.addEventListener("change", () => this.changed());
    this.els[id] = c;
    return c;
  }

  private field(id: string, label: string, value: string, range?: [number, number, number]): HTMLElement {
    const f = document.createElement("vscode-textfield") as Field;
    f.id = `ctl-${id}`;
    f.setAttribute("aria-label", label);
    f.setAttribute("placeholder", label);
    f.className = "num";
    f.value = value;
    f.addEventListener("change", () => this.changed());
    const wrap = document.createElement("label");
    wrap.className = "field";
    wrap.append(`${label} `, f);
    if (range) {
      // A slider bound to the text field: drag for a quick look, type for an exact value.
      const slider = document.createElement("input");
      slider.type = "range";
      slider.id = `ctl-${id}-slider`;
      [slider.min, slider.max, slider.step] = range.map(String);
      slider.value = value;
      slider.setAttribute("aria-label", `${label} slider`);
      slider.addEventListener("input", () => {
        f.value = slider.value;
        this.changed();
      });
      f.addEventListener("change", () => (slider.value = f.value));
      this.sliders[id] = slider;
      wrap.append(slider);
    }
    this.els[id] = f;
    return wrap;
  }

  private select(id: string, label: string, options: Array<[string, string]>): HTMLElement {
    const s = document.createElement("vscode-single-select") as Field;
    s.id = `ctl-${id}`;
    s.setAttribute("aria-label", label);
    for (const [value, text] of options) {
      const o = document.createElement("vscode-option");
      o.setAttribute("value", value);
      o.textContent = text;
      s.append(o);
    }
    s.addEventListener("change", () => this.changed());
    this.els[id] = s;
    return s;
  }

  values(): ControlValues {
    const v = (id: string) => (this.els[id] as Field).value ?? "";
    const c = (id: string) => !!(this.els[id] as Check).checked;
    return {
      amg: c("amg"),
      threshold: v("threshold"),
      minK: v("minK"),
      amgMode: v("amgMode") || "selected",
      maxK: v("maxK"),
      beta: c("beta"),
      betaValue: v("betaValue"),
      betaForm: v("betaForm") || "raw",
      betaMix: v("betaMix"),
      betaTheta: v("betaTheta"),
      pi: c("pi"),
      piMomentum: v("piMomentum"),
      ant: c("ant"),
      gamma: v("gamma"),
      collapsed: this.collapsed,
    };
  }

  get collapsed(): boolean {
    return this.root.classList.contains("collapsed");
  }

  /** Folds the controls to their one-line head (the toggle and the policy label), or unfolds them. */
  setCollapsed(collapsed: boolean): void {
    this.root.classList.toggle("collapsed", collapsed);
    this.toggle.textContent = collapsed ? "▸ Gating policy" : "▾ Gating policy";
    this.toggle.setAttribute("aria-expanded", String(!collapsed));
    this.toggle.title = collapsed ? "Show the policy controls" : "Fold the policy controls to one line";
  }

  setValues(v: Partial<ControlValues>): void {
    if (v.collapsed !== undefined) this.setCollapsed(v.collapsed);
    for (const [k, val] of Object.entries(v)) {
      const el = this.els[k];
      if (!el) continue;
      if (typeof val === "boolean") (el as Check).checked = val;
      else {
        (el as Field).value = String(val);
        if (this.sliders[k]) this.sliders[k].value = String(val);
      }
    }
  }

  /**
   * Shows the host's current policy. Numbers of a mechanism that is off keep what the user
   * last typed, so switching it on again restores them. Ignored while a change of the user's
   * is waiting to be applied: the host's answer to that change follows.
   */
  showPolicy(p: Policy): void {
    if (this.timer) return;
    const v: Partial<ControlValues> = { amg: !!p.amg, beta: !!p.beta, pi: !!p.pi, ant: !!p.ant, maxK: p.max_k === undefined ? "" : String(p.max_k) };
    if (p.amg) Object.assign(v, { threshold: policyNumber(p.amg.threshold), minK: String(p.amg.min_k ?? 1), amgMode: p.amg.mode ?? "selected" });
    if (p.beta) {
      Object.assign(v, {
        betaValue: policyNumber(p.beta.beta),
        betaForm: p.beta.form ?? "raw",
        betaMix: policyNumber(p.beta.mix ?? 1),
        betaTheta: p.beta.theta == null ? "" : policyNumber(p.beta.theta),
      });
    }
    if (p.pi?.momentum !== undefined) v.piMomentum = policyNumber(p.pi.momentum);
    if (p.ant) v.gamma = policyNumber(p.ant.gamma);
    this.untouched = { ...(p.disable ? { disable: p.disable } : {}), ...(p.boost ? { boost: p.boost } : {}) };
    this.foldedLabel.textContent = describePolicy(p);
    this.setValues(v);
    this.error.textContent = "";
    this.onChange(this.values());
  }

  /** The loaded model's expert counts: max k and min k are validated against them. */
  setModelLimits(trainedK: number, nExpert: number): void {
    if (nExpert > 0) this.nExpert = nExpert;
    const maxK = this.els.maxK as Field;
    maxK.setAttribute("placeholder", trainedK > 0 ? `k=${trainedK}` : "max k");
    maxK.title = trainedK > 0 ? `Expert slots, 1…${this.nExpert}; empty: the trained k (${trainedK}); above it the model is reloaded with more experts` : "";
  }

  /** The model's router packs and the one in use (null: the model's own routers). */
  setRouterPacks(packs: RouterPackChoice[], current: string | null): void {
    this.packShown = current ?? "";
    const options: Array<[string, string, string]> = [["", "model's own routers", ""]];
    for (const p of packs) options.push([p.path, p.mechanisms ? `${p.name} (trained ${p.mechanisms.replace(/\+/g, " + ")})` : p.name, p.description]);
    if (current && !packs.some((p) => p.path === current)) options.push([current, fileName(current), ""]);
    this.packSelect.replaceChildren(
      ...options.map(([value, text, title]) => {
        const o = document.createElement("vscode-option");
        o.setAttribute("value", value);
        o.textContent = text;
        if (title) o.title = title;
        return o;
      }),
    );
    this.packSelect.value = this.packShown;
    this.packRow.hidden = options.length === 1;
  }

  setAntAvailable(available: boolean): void {
    const ant = this.els.ant as Check;
    ant.disabled = !available;
    ant.title = available ? "" : "Ant needs a fitted predictor: run “MoE Lens: Calibrate Ant on Text…”";
    if (!available) ant.checked = false;
  }

  /** The policy the controls describe, or undefined (with a visible message) when a value is invalid. */
  policy(): Policy | undefined {
    const v = this.values();
    const num = (s: string, what: string, lo: number, hi: number, int = false): number => {
      const x = Number(s);
      if (s.trim() === "" || !Number.isFinite(x) || x < lo || x > hi || (int && !Number.isInteger(x)))
        throw new Error(`${what} must be ${int ? "an integer" : "a number"} in [${lo}, ${hi}]`);
      return x;
    };
    try {
      const p: Policy = {};
      if (v.amg)
        p.amg = {
          threshold: num(v.threshold, "τ", 0.01, 1),
          min_k: num(v.minK || "1", "min k", 1, this.nExpert, true),
          mode: v.amgMode === "full" ? "full" : "selected",
        };
      if (v.maxK.trim()) p.max_k = num(v.maxK, "max k", 1, this.nExpert, true);
      if (v.beta) {
        p.beta = {
          beta: num(v.betaValue, "β", 0, 0.999),
          form: v.betaForm === "scale_preserving" ? "scale_preserving" : "raw",
          mix: num(v.betaMix || "1", "mix α", 0, 1),
        };
        if (v.betaTheta.trim()) p.beta.theta = num(v.betaTheta, "θ", -1e6, 1e6);
      }
      if (v.pi) p.pi = { momentum: num(v.piMomentum || "0.95", "Π momentum", 0, 0.9999) };
      if (v.ant) p.ant = { gamma: num(v.gamma, "γ", 0, 10) };
      Object.assign(p, this.untouched);
      this.error.textContent = "";
      return p;
    } catch (err) {
      this.error.textContent = (err as Error).message;
      return undefined;
    }
  }

  private changed(): void {
    this.onChange(this.values());
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.apply(), 300);
  }

  apply(): void {
    clearTimeout(this.timer);
    this.timer = 0;
    const p = this.policy();
    if (p) this.onApply(p);
  }
}
