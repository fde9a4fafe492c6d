// The expert atlas of a folder: traces each text file one at a time with the running server
// and adds its routing to an ExpertAtlas (shared/expert-stats.ts), which keeps class ×
// expert counts per layer only, so a corpus of any size fits in memory. Batches are counted
// as they stream in and dropped; no trace is kept. A document's class is its language id
// (from its file extension, languageIdOf) unless the caller gives a labelling function.
// Also the per-layer summary the CLI prints (MI, top experts per class, balance). Node code:
// it reads the folder; `moe-lens atlas` (extension/cli/atlas.ts) is its command.
import fs from "node:fs";
import path from "node:path";
import { balance, ExpertAtlas, topExpertsByClass, type BalanceFigures, type ExpertForClass } from "../../shared/expert-stats";
import type { Policy } from "../../shared/policy";
import type { AtlasView } from "../../shared/protocol";
import type { ServerClient } from "./server-client";
import { NotTextError, readTextFile } from "./text-input";

/** Folders never walked into: version control, dependencies, build output. */
const SKIPPED_DIRS = new Set(["node_modules", "out", "dist", "build", "__pycache__"]);

/**
 * A glob as a regular expression over a path relative to the folder, with `/` separators:
 * `**` any run of folders (also none), `*` any characters but `/`, `?` one character but `/`.
 * A pattern without `/` matches the file name in any folder (as in .gitignore).
 */
export function globToRegExp(pattern: string): RegExp {
  if (!pattern.trim()) throw new Error("a --glob pattern is empty");
  const p = pattern.includes("/") ? pattern.replace(/^\.?\//, "") : `**/${pattern}`;
  let re = "";
  for (let i = 0; i < p.length; i++) {
    const ch = p[i];
    if (ch === "*" && p[i + 1] === "*") {
      // `**/` is zero or more whole folders; a trailing `**` is anything.
      if (p[i + 2] === "/") {
        re += "(?:.*/)?";
        i += 2;
      } else {
        re += ".*";
        i += 1;
      }
    } else if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * The files under `dir` (paths relative to it, `/`-separated, sorted), matching any of
 * `globs` when given. Hidden files and folders (a leading dot) and SKIPPED_DIRS are not walked.
 */
export function listCorpusFiles(dir: string, globs: readonly string[] = []): string[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`no such folder: ${dir}`);
  const patterns = globs.map(globToRegExp);
  const found: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      if (entry.name.startsWith(".")) continue;
      const relPath = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (!SKIPPED_DIRS.has(entry.name)) walk(relPath);
      } else if (entry.isFile() && (!patterns.length || patterns.some((re) => re.test(relPath)))) found.push(relPath);
    }
  };
  walk("");
  return found.sort();
}

/** Language ids (VS Code's) of common file extensions. */
const LANGUAGE_BY_EXTENSION: Record<string, string> = {
  ".c": "c",
  ".h": "c",
  ".cc": "cpp",
  ".cpp": "cpp",
  ".hpp": "cpp",
  ".cs": "csharp",
  ".css": "css",
  ".go": "go",
  ".html": "html",
  ".java": "java",
  ".js": "javascript",
  ".mjs": "javascript",
  ".cjs": "javascript",
  ".json": "json",
  ".md": "markdown",
  ".py": "python",
  ".rb": "ruby",
  ".rs": "rust",
  ".sh": "shellscript",
  ".sql": "sql",
  ".tex": "latex",
  ".ts": "typescript",
  ".tsx": "typescriptreact",
  ".txt": "plaintext",
  ".xml": "xml",
  ".yaml": "yaml",
  ".yml": "yaml",
};

/** A file's class by folder: the first folder under DIR ("." for files directly in it); `file` is relative to DIR, `/`-separated. */
export function folderClassOf(file: string): string {
  return file.includes("/") ? file.slice(0, file.indexOf("/")) : ".";
}

/** A file's language id by its extension: VS Code's id for common ones, else the extension itself, "plaintext" when there is none. */
export function languageIdOf(file: string): string {
  const ext = path.extname(file).toLowerCase();
  return LANGUAGE_BY_EXTENSION[ext] ?? (ext ? ext.slice(1) : "plaintext");
}

export interface AtlasDocument {
  /** Path relative to the folder. */
  file: string;
  className: string;
  tokens: number;
}

export interface AtlasBuild {
  atlas: ExpertAtlas;
  documents: AtlasDocument[];
  /** Files not traced, and why (not UTF-8 text, empty). */
  skipped: { file: string; reason: string }[];
}

export interface AtlasOptions {
  globs?: readonly string[];
  /** The class of a file (its path relative to the folder); default languageIdOf. */
  classOf?: (file: string) => string;
  policy?: Policy;
  /** An atlas to add to (its shape must match the model's); default a new one. */
  into?: ExpertAtlas;
  /** Called after each file, traced or skipped. */
  onFile?: (done: number, total: number, file: string) => void;
  signal?: AbortSignal;
}

/** Streams one text's trace into the atlas under one class; returns its token count. The atlas is created from the trace's header when absent. */
export async function addTextToAtlas(
  client: ServerClient,
  text: string,
  className: string,
  atlas: ExpertAtlas | undefined,
  policy: Policy = {},
  signal?: AbortSignal,
): Promise<{ atlas: ExpertAtlas; tokens: number }> {
  let shape: { L: number; K: number; E: number } | undefined;
  let tokens = 0;
  await client.traceStream(
    { text, policy },
    {
      onHeader: (h) => {
        shape = { L: h.n_moe_layers, K: h.k, E: h.model.n_expert };
        atlas ??= new ExpertAtlas(shape.L, shape.K, shape.E);
      },
      onBatch: (b) => {
        // Every token of the document is of its class; each batch is counted and dropped.
        atlas!.addTokens({ count: b.count, ...shape!, experts: b.experts, weights: b.weights }, new Int32Array(b.count), [className]);
        tokens += b.count;
      },
    },
    signal,
  );
  if (!atlas) throw new Error("the server's trace had no header");
  atlas.documents++;
  return { atlas, tokens };
}

/** Traces each text file under `dir` (one at a time) into an atlas. Files that are not UTF-8 text, or are empty, are skipped and listed. */
export async function buildAtlas(client: ServerClient, dir: string, opts: AtlasOptions = {}): Promise<AtlasBuild> {
  const files = listCorpusFiles(dir, opts.globs);
  if (!files.length) throw new Error(`no files in ${dir}${opts.globs?.length ? ` match ${opts.globs.join(", ")}` : ""}`);
  const classOf = opts.classOf ?? languageIdOf;
  let atlas = opts.into;
  const documents: AtlasDocument[] = [],
    skipped: AtlasBuild["skipped"] = [];
  for (const [i, file] of files.entries()) {
    let text: string | undefined;
    try {
      text = readTextFile(path.join(dir, file));
    } catch (err) {
      if (!(err instanceof NotTextError)) throw err;
      skipped.push({ file, reason: "not UTF-8 text" });
    }
    if (text !== undefined && !text.trim()) skipped.push({ file, reason: "empty" });
    else if (text !== undefined) {
      const className = classOf(file);
      const r = await addTextToAtlas(client, text, className, atlas, opts.policy, opts.signal);
      atlas = r.atlas;
      documents.push({ file, className, tokens: r.tokens });
    }
    opts.onFile?.(i + 1, files.length, file);
  }
  if (!atlas) throw new Error(`none of the ${files.length} files in ${dir} is text that can be traced`);
  return { atlas, documents, skipped };
}

/** What the atlas says about one layer: class–expert mutual information, the top experts of each class by lift, and the layer's balance. */
export interface AtlasLayerSummary {
  layer: number;
  miBits: number;
  balance: BalanceFigures;
  /** Per class name, its top experts by lift. */
  topExperts: Record<string, ExpertForClass[]>;
}

export function atlasLayerSummaries(atlas: ExpertAtlas, topN: number): AtlasLayerSummary[] {
  return Array.from({ length: atlas.L }, (_, layer) => {
    const s = atlas.specialisation(layer);
    const top = topExpertsByClass(s, topN);
    return {
      layer,
      miBits: s.miBits,
      balance: balance(atlas.layerLoad(layer)),
      topExperts: Object.fromEntries(atlas.classNames.map((name, c) => [name, top[c]])),
    };
  });
}

/** The atlas as the panel's `atlas` message shows it (shared/protocol.ts AtlasView): per-layer MI, balance and each class's top `topN` experts by lift; no counts. */
export function atlasView(atlas: ExpertAtlas, title: string, topN: number): AtlasView {
  if (!Number.isInteger(topN) || topN < 1) throw new Error(`the number of top experts per class must be a positive integer, got ${topN}`);
  const summaries = atlasLayerSummaries(atlas, topN);
  return {
    title,
    documents: atlas.documents,
    tokens: atlas.layerTokens(0),
    L: atlas.L,
    K: atlas.K,
    E: atlas.E,
    classes: [...atlas.classNames],
    classTokens: Array.from(atlas.specialisation(0).classTokens),
    topN,
    layers: summaries.map((s) => ({ miBits: s.miBits, balance: s.balance, top: atlas.classNames.map((name) => s.topExperts[name]) })),
  };
}
