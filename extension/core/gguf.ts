// Reads GGUF metadata with node-llama-cpp's readGgufFileInfo, without loading the model,
// so a wrong file is refused before the server is (re)started and the running one is kept.
//
// readGgufFileInfo does not notice a file that ends early: it reads past the end as zeros,
// and a GGUF cut inside its metadata came out as "a dense model (, 0 layers)". So the file's
// size is checked against what its header describes: the header, metadata and tensor table
// must fit, and so must every tensor's data (its offset, plus its size for the ggml types
// whose size is known here).
import fs from "node:fs";
// The deep import keeps the bundle to the GGUF reader (the package root pulls in native bindings);
// tools/build.mjs resolves it past the package's "exports" map.
import { readGgufFileInfo } from "node-llama-cpp/dist/gguf/readGgufFileInfo.js";

export interface ModelSummary {
  path: string;
  architecture: string;
  nLayer: number;
  nExpert: number;
  nExpertUsed: number;
  isMoe: boolean;
  name?: string;
}

/** A file that cannot be a usable GGUF model: missing, not a file, not GGUF, truncated or corrupt. */
export class ModelFileError extends Error {
  override name = "ModelFileError";
}

/**
 * Bytes per block and elements per block of the ggml tensor types (ggml.c, type_traits):
 * the plain types and the common quantisations. A type not listed is checked by its data
 * offset only.
 */
const GGML_TYPE_SIZES: Record<number, [bytes: number, elements: number]> = {
  0: [4, 1], // F32
  1: [2, 1], // F16
  2: [18, 32], // Q4_0
  3: [20, 32], // Q4_1
  6: [22, 32], // Q5_0
  7: [24, 32], // Q5_1
  8: [34, 32], // Q8_0
  10: [84, 256], // Q2_K
  11: [110, 256], // Q3_K
  12: [144, 256], // Q4_K
  13: [176, 256], // Q5_K
  14: [210, 256], // Q6_K
  24: [1, 1], // I8
  25: [2, 1], // I16
  26: [4, 1], // I32
  27: [8, 1], // I64
  28: [8, 1], // F64
  30: [2, 1], // BF16
};

const MiB = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

export async function inspectModel(path: string): Promise<ModelSummary> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch {
    throw new ModelFileError(`model file not found: ${path}`);
  }
  if (stat.isDirectory()) throw new ModelFileError(`${path} is a folder, not a model file: pick the .gguf file inside it`);
  if (!stat.isFile()) throw new ModelFileError(`${path} is not a regular file`);
  const magic = Buffer.alloc(4);
  let n: number;
  try {
    const fd = fs.openSync(path, "r");
    try {
      n = fs.readSync(fd, magic, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw new ModelFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (n < 4 || magic.toString("latin1") !== "GGUF") throw new ModelFileError(`not a GGUF file: ${path}`);

  let info: Awaited<ReturnType<typeof readGgufFileInfo>>;
  try {
    info = await readGgufFileInfo(path, { readTensorInfo: true, logWarnings: false });
  } catch (err) {
    throw new ModelFileError(`cannot read the GGUF metadata of ${path} (corrupt or truncated file?): ${(err as Error).message}`);
  }
  checkExtent(path, stat.size, info);
  const meta = info.metadata as unknown as Record<string, Record<string, unknown>>;
  const architecture = String(meta.general?.architecture ?? "");
  if (!architecture) throw new ModelFileError(`${path} is a corrupt GGUF file: its metadata names no architecture (general.architecture)`);
  const archMeta = (meta[architecture] ?? {}) as Record<string, unknown>;
  const nExpert = Number(archMeta.expert_count ?? 0);
  return {
    path,
    architecture,
    nLayer: Number(archMeta.block_count ?? 0),
    nExpert,
    nExpertUsed: Number(archMeta.expert_used_count ?? 0),
    isMoe: nExpert > 1,
    name: meta.general?.name as string | undefined,
  };
}

/** Throws unless the file holds everything its header describes (see the top of the file). */
function checkExtent(path: string, size: number, info: Awaited<ReturnType<typeof readGgufFileInfo>>): void {
  const truncated = (what: string, needed: number) =>
    new ModelFileError(
      `${path} is truncated or corrupt: ${what} needs ${MiB(needed)} (${needed} bytes) but the file has ${MiB(size)} (${size} bytes). Download or convert it again.`,
    );
  const infoEnd = info.infoEndOffset ?? 0;
  if (infoEnd > size) throw truncated("its header and metadata", infoEnd);
  let end = infoEnd;
  for (const t of info.tensorInfo ?? []) {
    const start = Number(t.fileOffset);
    const type = GGML_TYPE_SIZES[t.ggmlType];
    const elements = t.dimensions.reduce<number>((a, d) => a * Number(d), 1);
    const bytes = type ? Math.ceil(elements / type[1]) * type[0] : 1;
    if (start + bytes > end) end = start + bytes;
    if (end > size) throw truncated(`tensor "${t.name}"`, end);
  }
}

/** Throws a user-facing error unless the file is a readable MoE GGUF. */
export async function requireMoeModel(path: string): Promise<ModelSummary> {
  const s = await inspectModel(path);
  if (!s.isMoe) {
    throw new Error(`this model has no experts: ${path} is a dense ${s.architecture} model, so there is no routing to show. Pick a Mixture-of-Experts GGUF.`);
  }
  return s;
}
