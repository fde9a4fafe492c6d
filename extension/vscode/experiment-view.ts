// Pure helpers of the experiment commands (no `vscode` import; test/unit/experiment-view.test.ts):
// the panel's `experiment` message from a result, export file contents per format, the
// evaluation files of a folder, and the sweep's input parsing.
import path from "node:path";
import {
  ablationNote,
  ablationSubtitle,
  ablationTable,
  ablationToCsv,
  experimentToJson,
  renderExperimentReport,
  sweepNote,
  sweepTable,
  sweepToCsv,
  type AblationResult,
  type SweepResult,
} from "../core/experiments";
import type { HostMessage } from "../../shared/protocol";

export { ablationSubtitle };

export type ExperimentRun = { kind: "sweep"; result: SweepResult; subtitle: string } | { kind: "ablation"; result: AblationResult; subtitle: string };

export type ExperimentMessage = Extract<HostMessage, { type: "experiment" }>;

export function experimentTitle(run: ExperimentRun): string {
  return run.kind === "sweep" ? "AMG sweep" : "Ablation of {β, Π, Ant} at domain transitions";
}

/** The panel's table for a result: the same table as the CLI and the report (sweepTable / ablationTable). */
export function experimentMessage(run: ExperimentRun): ExperimentMessage {
  const t = run.kind === "sweep" ? sweepTable(run.result) : ablationTable(run.result);
  const note = run.kind === "sweep" ? sweepNote(run.result) : ablationNote(run.result);
  return { type: "experiment", kind: run.kind, title: `${experimentTitle(run)}: ${run.subtitle}`, columns: t.header, rows: t.rows, note };
}

export type ExportFormat = "csv" | "json" | "html";

/** File contents of an export (the CLI's writers: sweepToCsv / ablationToCsv, experimentToJson, renderExperimentReport). */
export function experimentExport(run: ExperimentRun, format: ExportFormat): string {
  if (format === "json") return experimentToJson(run.kind === "sweep" ? "amg-sweep" : "ablation", run.result);
  if (format === "csv") return run.kind === "sweep" ? sweepToCsv(run.result) : ablationToCsv(run.result);
  return renderExperimentReport({
    title: run.kind === "sweep" ? "MoE Lens: AMG sweep" : "MoE Lens: {β, Π, Ant} ablation at domain transitions",
    subtitle: run.subtitle,
    ...(run.kind === "sweep" ? { sweep: run.result } : { ablation: run.result }),
  });
}

export function defaultExportName(run: ExperimentRun, format: ExportFormat): string {
  return `moe-lens-${run.kind === "sweep" ? "amg-sweep" : "ablation"}.${format}`;
}

/** Evaluation documents among a folder's entries: .txt / .md / .markdown files, sorted by name (as the CLI). */
export function evaluationFiles(names: string[]): string[] {
  return names.filter((f) => /\.(txt|md|markdown)$/i.test(f)).sort();
}

/** Thresholds "0.5, 0.75,0.9" → numbers in (0, 1]; an error message for bad input. */
export function parseThresholds(s: string): number[] | string {
  const xs = s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x <= 0 || x > 1)) return "comma-separated numbers in (0, 1], e.g. 0.5, 0.75, 0.9, 1.0";
  return xs;
}

/** Expert slots "8,16" → integers in [1, nExpert]; an error message for bad input. */
export function parseMaxK(s: string, nExpert: number): number[] | string {
  const xs = s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 1 || x > nExpert)) return `comma-separated integers in 1…${nExpert}`;
  return xs;
}

/** "3 documents on demo.gguf (qwen3moe, 8 experts, k=2)" and the like, as the CLI's subtitles. */
export function sweepSubtitle(file: string, r: SweepResult): string {
  return `${path.basename(file)} on ${path.basename(r.model.path)} (${r.model.architecture}, ${r.model.n_expert} experts, trained k=${r.trainedK})`;
}
