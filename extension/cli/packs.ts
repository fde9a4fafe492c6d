// `moe-lens packs`: the router packs of a model (docs/router-packs.md). `list` shows the packs
// kept beside a model; `base` writes the model's own routers as a pack, the starting point of
// a router-only fine-tune (tools/train/) and the pack that must reproduce the model exactly.
// Any evaluating command routes with a pack through --router-pack FILE|NAME.
import path from "node:path";
import { checkKnownFlags, flagString, formatTable, type ParsedArgs } from "./args";
import { modelPath } from "./server-session";
import { packsForModel, routerPackDir, writeBaseRouterPack } from "../core/router-pack";

export const PACKS_HELP = `  moe-lens packs list [--model M] [--json]          the model's router packs (in <model folder>/packs/<model name>/)
  moe-lens packs base [--model M] [--out F.gguf]     write the model's own routers as the pack "base"`;

async function cmdPacks(args: ParsedArgs): Promise<void> {
  const [action] = args.positional;
  const model = modelPath(args);
  if (action === "list") {
    checkKnownFlags(args, ["model", "json"]);
    const packs = packsForModel(model);
    if (args.flags.get("json") === true) {
      process.stdout.write(JSON.stringify(packs, null, 2) + "\n");
      return;
    }
    if (!packs.length) {
      process.stdout.write(`no router packs in ${routerPackDir(model)} (moe-lens packs base writes one)\n`);
      return;
    }
    process.stdout.write(
      formatTable(
        ["name", "mechanisms", "file", "description"],
        packs.map((p) => [p.name, p.mechanisms || "–", path.relative(process.cwd(), p.path), p.description]),
      ) + "\n",
    );
    return;
  }
  if (action === "base") {
    checkKnownFlags(args, ["model", "out"]);
    const out = flagString(args, "out") ?? path.join(routerPackDir(model), "base.gguf");
    const pack = await writeBaseRouterPack(model, out);
    process.stdout.write(`wrote ${pack.path} (base pack of ${path.basename(model)}, sha256 ${pack.baseSha256.slice(0, 12)}…)\n`);
    return;
  }
  throw new Error(`moe-lens packs: say "list" or "base"\n${PACKS_HELP}`);
}

export const packsCommands = { packs: cmdPacks };
