// What the commands and providers share. One instance per activation.

import type * as vscode from "vscode";
import type { TraceRecord, TraceStore } from "../core/trace-store";
import type { MoeLensSettings } from "../core/settings";
import type { ServerManager } from "./server-manager";
import type { PolicyState } from "./policy-state";
import type { StatusBar } from "./status-bar";
import type { RoutingPanel } from "./panel";
import type { Tracer } from "./tracer";
import type { Decorations } from "./decorations";
import type { EditorSegments } from "./segments";
import type { ExperimentRun } from "./experiment-view";
import type { SaliencyFile } from "../core/saliency";
import type { SaliencyMessage } from "./prune-view";
import type { HostMessage } from "../../shared/protocol";

export interface Services {
  context: vscode.ExtensionContext;
  extensionRoot: string;
  output: vscode.LogOutputChannel;
  server: ServerManager;
  store: TraceStore;
  policy: PolicyState;
  status: StatusBar;
  panel: RoutingPanel;
  tracer: Tracer;
  decorations: Decorations;
  /** Domain segments and transition metrics of finished traces (tracer.ts computes them). */
  segments: WeakMap<TraceRecord, EditorSegments>;
  /** The last finished experiment (shown in the panel, exported by "Export…"). */
  lastExperiment?: ExperimentRun;
  /** The last Prune Experts… saliency and its chart (shown in the panel, exported by Export Expert Saliency…). */
  lastPrune?: { saliency: SaliencyFile; chart: SaliencyMessage };
  /** The last Build Expert Atlas for Folder… result as the panel shows it (replayed when the panel reloads). */
  lastAtlas?: Extract<HostMessage, { type: "atlas" }>;
  settings(): MoeLensSettings;
}
