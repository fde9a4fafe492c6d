// What the commands and providers share. One instance per activation.

import type * as vscode from "vscode";
import type { TraceStore } from "../core/trace-store";
import type { MoeLensSettings } from "../core/settings";
import type { ServerManager } from "./server-manager";
import type { PolicyState } from "./policy-state";
import type { StatusBar } from "./status-bar";
import type { RoutingPanel } from "./panel";
import type { Tracer } from "./tracer";
import type { Decorations } from "./decorations";

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
  settings(): MoeLensSettings;
}
