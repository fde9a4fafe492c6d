// Router packs on the host side (docs/router-packs.md): where the packs of a model are kept,
// what one says about itself, and the one pack MoE Lens writes itself — `base`, the model's
// own routers copied out unchanged, which is the starting point of a router-only fine-tune
// and the pack whose numbers must equal the model's (test/integration/router-pack.test.ts).
// Trained packs (entropy, the {β, Π, Ant} ablation) come from tools/train/train_pack.py.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { decodeKv, encodeKv, findKv, GgufError, GgufType, readGgufLayout, writeGguf, type GgufLayout, type OutputTensor } from "./gguf-file";

export const ROUTER_PACK_ARCHITECTURE = "moe-lens-router-pack";
export const ROUTER_PACK_PREFIX = "moe_lens.router_pack.";
export const ROUTER_PACK_VERSION = 1;
const GGML_TYPE_F32 = 0;

/** What a pack file says about itself, read from its metadata alone. */
export interface RouterPackSummary {
  path: string;
  name: string;
  description: string;
  /** "+"-joined mechanisms ("beta+ant"), "" for routers only. */
  mechanisms: string;
  baseSha256: string;
}

/** The folder where the packs of `modelPath` live: `<model folder>/packs/<model file stem>/`. */
export function routerPackDir(modelPath: string): string {
  return path.join(path.dirname(modelPath), "packs", path.basename(modelPath).replace(/\.gguf$/i, ""));
}

/** The readable packs kept for `modelPath`, sorted by name; files that are not packs are skipped. */
export function packsForModel(modelPath: string): RouterPackSummary[] {
  return packsInDir(routerPackDir(modelPath));
}

/** The readable packs in a folder, sorted by name; files that are not packs are skipped. */
export function packsInDir(dir: string): RouterPackSummary[] {
  if (!fs.existsSync(dir)) return [];
  const packs: RouterPackSummary[] = [];
  for (const file of fs
    .readdirSync(dir)
    .filter((f) => f.toLowerCase().endsWith(".gguf"))
    .sort()) {
    try {
      packs.push(readRouterPackSummary(path.join(dir, file)));
    } catch {
      // not a pack, or damaged: the server names the cause if someone picks it by path
    }
  }
  return packs.sort((a, b) => a.name.localeCompare(b.name));
}

/** A pack's metadata; throws GgufError when the file is not a version-1 router pack. */
export function readRouterPackSummary(packPath: string): RouterPackSummary {
  const layout = readGgufLayout(packPath);
  const str = (key: string): string => {
    const kv = findKv(layout, key);
    if (!kv) throw new GgufError(`${packPath}: ${key} is missing (not a router pack)`);
    return String(decodeKv(kv));
  };
  if (str("general.architecture") !== ROUTER_PACK_ARCHITECTURE) throw new GgufError(`${packPath} is not a router pack`);
  const version = Number(decodeKv(findKv(layout, ROUTER_PACK_PREFIX + "version")!));
  if (version !== ROUTER_PACK_VERSION) throw new GgufError(`${packPath}: router pack version ${version} is not known (1 is)`);
  return {
    path: packPath,
    name: str(ROUTER_PACK_PREFIX + "name"),
    description: findKv(layout, ROUTER_PACK_PREFIX + "description") ? str(ROUTER_PACK_PREFIX + "description") : "",
    mechanisms: str(ROUTER_PACK_PREFIX + "mechanisms"),
    baseSha256: str(ROUTER_PACK_PREFIX + "base.sha256"),
  };
}

/** SHA-256 of a whole file, streamed (models are gigabytes). */
export async function fileSha256(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function modelNumber(layout: GgufLayout, key: string): number {
  const kv = findKv(layout, key);
  if (!kv) throw new GgufError(`the model has no ${key}`);
  return Number(decodeKv(kv));
}

/**
 * Writes the `base` pack of `modelPath`: every MoE layer's `ffn_gate_inp` copied byte for byte
 * as the pack's router, no mechanism. Routers stored in another type than F32 are refused: the
 * pack format is F32 and a converted copy would not route exactly as the model does.
 */
export async function writeBaseRouterPack(modelPath: string, outPath: string): Promise<RouterPackSummary> {
  const layout = readGgufLayout(modelPath);
  const arch = String(
    decodeKv(
      findKv(layout, "general.architecture") ??
        (() => {
          throw new GgufError(`${modelPath} has no general.architecture`);
        })(),
    ),
  );
  const nEmbd = modelNumber(layout, `${arch}.embedding_length`);
  const nExpert = modelNumber(layout, `${arch}.expert_count`);
  const nExpertUsed = modelNumber(layout, `${arch}.expert_used_count`);
  const routers = layout.tensors
    .map((t) => ({ t, m: /^blk\.(\d+)\.ffn_gate_inp\.weight$/.exec(t.name) }))
    .filter((x): x is { t: (typeof layout.tensors)[number]; m: RegExpExecArray } => x.m !== null)
    .map(({ t, m }) => ({ layer: Number(m[1]), tensor: t }))
    .sort((a, b) => a.layer - b.layer);
  if (!routers.length) throw new GgufError(`${modelPath} has no ffn_gate_inp tensors: not a MoE model`);
  for (const { tensor } of routers) {
    if (tensor.type !== GGML_TYPE_F32) throw new GgufError(`${tensor.name} is not F32 in ${modelPath}: a base pack copies F32 routers only`);
    if (tensor.dims[0] !== nEmbd || tensor.dims[1] !== nExpert)
      throw new GgufError(`${tensor.name} has shape [${tensor.dims.join(", ")}], not [${nEmbd}, ${nExpert}]`);
  }
  const sha = await fileSha256(modelPath);
  const p = ROUTER_PACK_PREFIX;
  const kvs = [
    encodeKv("general.architecture", GgufType.STRING, ROUTER_PACK_ARCHITECTURE),
    encodeKv("general.name", GgufType.STRING, "base"),
    encodeKv(p + "version", GgufType.UINT32, ROUTER_PACK_VERSION),
    encodeKv(p + "name", GgufType.STRING, "base"),
    encodeKv(p + "description", GgufType.STRING, `the routers of ${path.basename(modelPath)}, copied unchanged (moe-lens packs base)`),
    encodeKv(p + "base.sha256", GgufType.STRING, sha),
    encodeKv(p + "base.architecture", GgufType.STRING, arch),
    encodeKv(p + "n_embd", GgufType.UINT32, nEmbd),
    encodeKv(p + "n_expert", GgufType.UINT32, nExpert),
    encodeKv(p + "n_expert_used", GgufType.UINT32, nExpertUsed),
    encodeKv(
      p + "layers",
      GgufType.ARRAY,
      routers.map((r) => r.layer),
      GgufType.UINT32,
    ),
    encodeKv(p + "mechanisms", GgufType.STRING, ""),
  ];
  const tensors: OutputTensor[] = routers.map(({ layer, tensor }) => ({
    name: `blk.${layer}.router.weight`,
    dims: [nEmbd, nExpert],
    type: GGML_TYPE_F32,
    pieces: [{ offset: tensor.offset, length: tensor.nbytes }],
  }));
  fs.mkdirSync(path.dirname(path.resolve(outPath)), { recursive: true });
  const tmp = `${outPath}.partial`;
  await writeGguf(tmp, { version: 3, alignment: layout.alignment, path: layout.path, dataStart: layout.dataStart }, kvs, tensors);
  fs.renameSync(tmp, outPath);
  return readRouterPackSummary(outPath);
}
