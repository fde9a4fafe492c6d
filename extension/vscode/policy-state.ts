// The active gating policy for new traces: starts from the setting moeLens.defaultPolicy,
// changed by "Set Gating Policy…", "Toggle AMG" and the panel's controls, remembered per
// workspace.

import * as vscode from "vscode";
import { describePolicy, type Policy } from "../../shared/policy";

const KEY = "moeLens.policy";
const LAST_AMG_KEY = "moeLens.lastAmg";
export const DEFAULT_AMG = { threshold: 0.5, min_k: 1, mode: "selected" as const };

export class PolicyState implements vscode.Disposable {
  private policy: Policy;
  private readonly emitter = new vscode.EventEmitter<Policy>();
  readonly onDidChange = this.emitter.event;
  /** Whether the server has an Ant predictor loaded. */
  antAvailable = false;

  constructor(
    private readonly memento: vscode.Memento,
    defaultPolicy: Policy,
  ) {
    this.policy = memento.get<Policy>(KEY) ?? defaultPolicy;
  }

  get current(): Policy {
    return this.policy;
  }

  get label(): string {
    return describePolicy(this.policy);
  }

  set(p: Policy): void {
    this.policy = p;
    void this.memento.update(KEY, p);
    if (p.amg) void this.memento.update(LAST_AMG_KEY, p.amg);
    this.emitter.fire(p);
  }

  /** AMG off → on (with the last threshold used, default τ=0.5) or on → off. Returns the new state. */
  toggleAmg(): boolean {
    const { amg, ...rest } = this.policy;
    if (amg) {
      void this.memento.update(LAST_AMG_KEY, amg);
      this.set(rest);
      return false;
    }
    this.set({ ...rest, amg: this.memento.get(LAST_AMG_KEY) ?? DEFAULT_AMG });
    return true;
  }

  /** The setting changed: adopt it unless the user picked a policy in this workspace. */
  defaultChanged(p: Policy): void {
    if (this.memento.get(KEY) === undefined) {
      this.policy = p;
      this.emitter.fire(p);
    }
  }

  dispose(): void {
    this.emitter.dispose();
  }
}
