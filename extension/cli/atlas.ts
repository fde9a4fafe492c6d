// `moe-lens atlas DIR`: the expert atlas of a folder (extension/core/atlas.ts). Traces each
// text file one at a time, keeps only class × expert counts per layer, then prints per layer
// the class–expert mutual information, each class's top experts by lift and the layer's
// balance figures (docs/metrics.md, "Per-layer expert figures"); --out writes the atlas.
import fs from "node:fs";
import path from "node:path";
import { COMMON_FLAGS, policyFromFlags, POLICY_FLAGS, withServer } from "./server-session";
import { checkKnownFlags, flagInt, flagString, formatTable, UsageError, type ParsedArgs } from "./args";
import { atlasLayerSummaries, buildAtlas, folderClassOf, languageIdOf, listCorpusFiles } from "../core/atlas";
import { writeExportFile } from "../core/export";
import { ExpertAtlas } from "../../shared/expert-stats";
import { formatNumber } from "../../shared/format";

export const ATLAS_HELP = `  moe-lens atlas DIR [--model M] [--out ATLAS.json] [--glob PATTERN,...] [--class-by language|folder]
                  [--top N] [--add-to ATLAS.json] [--json] [policy flags]
                                                     expert atlas of a folder: traces each file, keeps per-layer
                                                     class × expert counts; prints per layer the MI (bits), each
                                                     class's top experts by lift, and the balance figures`;

/** The class of a file: its language id by extension, or the first folder under DIR ("." for files directly in it). */
function classifier(by: string): (file: string) => string {
  if (by === "language") return languageIdOf;
  if (by === "folder") return folderClassOf;
  throw new UsageError(`--class-by must be "language" or "folder", got "${by}"`);
}

function readAtlasFile(file: string): ExpertAtlas {
  if (!fs.existsSync(file)) throw new UsageError(`--add-to ${file}: no such file`);
  try {
    return ExpertAtlas.fromJSON(JSON.parse(fs.readFileSync(file, "utf8")));
  } catch (err) {
    throw new UsageError(`--add-to ${file}: ${(err as Error).message}`);
  }
}

async function cmdAtlas(args: ParsedArgs): Promise<void> {
  checkKnownFlags(args, [...COMMON_FLAGS, ...POLICY_FLAGS, "out", "glob", "class-by", "top", "add-to"]);
  const dir = args.positional[0];
  if (!dir) throw new UsageError("a folder DIR is required");
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`no such folder: ${dir}`);
  const globs = (flagString(args, "glob") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const classOf = classifier(flagString(args, "class-by") ?? "language");
  // Before the server starts: a glob that matches nothing is a usage error, not a wait.
  if (!listCorpusFiles(dir, globs).length) throw new UsageError(`no files in ${dir}${globs.length ? ` match ${globs.join(", ")}` : ""}`);
  const topN = flagInt(args, "top", 1, 1000) ?? 3;
  const out = flagString(args, "out");
  const addTo = flagString(args, "add-to");
  const into = addTo ? readAtlasFile(addTo) : undefined;
  const policy = policyFromFlags(args);
  const json = args.flags.get("json") === true;
  await withServer(args, async (server) => {
    const build = await buildAtlas(server.client, dir, {
      globs,
      classOf,
      policy,
      into,
      onFile: (done, total) => {
        if (!json) process.stderr.write(`\ratlas: ${done}/${total} files traced`);
      },
    });
    if (!json) process.stderr.write("\n");
    const { atlas } = build;
    if (out) await writeExportFile(out, async (sink) => sink(JSON.stringify(atlas)));
    const layers = atlasLayerSummaries(atlas, topN);
    if (json) return void console.log(JSON.stringify({ documents: build.documents, skipped: build.skipped, out, layers, atlas }));
    const tokens = build.documents.reduce((s, d) => s + d.tokens, 0);
    console.log(
      `${build.documents.length} files, ${tokens} tokens traced into an atlas of ${atlas.documents} documents, ${atlas.L} MoE layers × ${atlas.E} experts, k = ${atlas.K}; classes: ${atlas.classNames.join(", ")}\n`,
    );
    console.log(
      formatTable(
        ["layer", "MI (bits)", "cv", "max/mean", "entropy (norm.)", "dead", ...atlas.classNames.map((c) => `top experts of ${c} (lift)`)],
        layers.map((l) => [
          String(l.layer),
          formatNumber(l.miBits, 4),
          formatNumber(l.balance.cv, 3),
          formatNumber(l.balance.maxOverMean, 2),
          formatNumber(l.balance.normalisedEntropy, 3),
          String(l.balance.dead),
          ...atlas.classNames.map((c) => l.topExperts[c].map((e) => `e${e.expert} ×${formatNumber(e.lift, 2)}`).join(" ")),
        ]),
      ),
    );
    for (const s of build.skipped) console.log(`skipped ${s.file}: ${s.reason}`);
    if (out) console.log(`\natlas: ${path.resolve(out)}`);
  });
}

export const atlasCommands: Record<string, (a: ParsedArgs) => Promise<void>> = { atlas: cmdAtlas };
