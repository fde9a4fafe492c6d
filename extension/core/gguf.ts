// Reads GGUF metadata with node-llama-cpp's readGgufFileInfo, without loading the model,
// so a wrong file is refused before the server is (re)started and the running one is kept.
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

export async function inspectModel(path: string): Promise<ModelSummary> {
  if (!fs.existsSync(path)) throw new Error(`model file not found: ${path}`);
  const fd = fs.openSync(path, "r");
  const magic = Buffer.alloc(4);
  const n = fs.readSync(fd, magic, 0, 4, 0);
  fs.closeSync(fd);
  if (n < 4 || magic.toString("latin1") !== "GGUF") throw new Error(`not a GGUF file: ${path}`);

  let info: Awaited<ReturnType<typeof readGgufFileInfo>>;
  try {
    info = await readGgufFileInfo(path, { readTensorInfo: false, logWarnings: false });
  } catch (err) {
    throw new Error(`cannot read the GGUF metadata of ${path} (corrupt or truncated file?): ${(err as Error).message}`);
  }
  const meta = info.metadata as unknown as Record<string, Record<string, unknown>>;
  const architecture = String(meta.general?.architecture ?? "");
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

/** Throws a user-facing error unless the file is a readable MoE GGUF. */
export async function requireMoeModel(path: string): Promise<ModelSummary> {
  const s = await inspectModel(path);
  if (!s.isMoe) {
    throw new Error(`this model has no experts: ${path} is a dense ${s.architecture || "unknown-architecture"} model, so there is no routing to show. Pick a Mixture-of-Experts GGUF.`);
  }
  return s;
}
