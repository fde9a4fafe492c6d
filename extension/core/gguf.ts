// Reads a model's GGUF metadata without loading the model, so a wrong file is refused before
// the server is (re)started and the running one is kept.
//
// The header is read by gguf-file.ts's reader, which checks every length, count and tensor
// extent against the file's size, so a truncated or corrupt file is reported as such, with
// the reason. node-llama-cpp's readGgufFileInfo, used before, read past the end of a short
// file as zeros (a GGUF cut inside its metadata came out as "a dense model (, 0 layers)"),
// and a corrupt string length in the metadata made it abort the whole process inside
// fs.read — in VS Code, the extension host.
import fs from "node:fs";
import { decodeKv, findKv, GgufError, readGgufLayout, type GgufLayout } from "./gguf-file";

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

export async function inspectModel(path: string): Promise<ModelSummary> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch {
    throw new ModelFileError(`model file not found: ${path}`);
  }
  if (stat.isDirectory()) throw new ModelFileError(`${path} is a folder, not a model file: pick the .gguf file inside it`);
  if (!stat.isFile()) throw new ModelFileError(`${path} is not a regular file`);

  let layout: GgufLayout;
  try {
    layout = readGgufLayout(path);
  } catch (err) {
    if (!(err instanceof GgufError)) throw new ModelFileError(`cannot read ${path}: ${(err as Error).message}`);
    // Most of the reader's messages name the file; the per-tensor ones do not.
    throw new ModelFileError(err.message.includes(path) ? err.message : `${path}: ${err.message}`);
  }
  const meta = (key: string) => {
    const kv = findKv(layout, key);
    return kv ? decodeKv(kv) : undefined;
  };
  const architecture = String(meta("general.architecture") ?? "");
  if (!architecture) throw new ModelFileError(`${path} is a corrupt GGUF file: its metadata names no architecture (general.architecture)`);
  const nExpert = Number(meta(`${architecture}.expert_count`) ?? 0);
  const name = meta("general.name");
  return {
    path,
    architecture,
    nLayer: Number(meta(`${architecture}.block_count`) ?? 0),
    nExpert,
    nExpertUsed: Number(meta(`${architecture}.expert_used_count`) ?? 0),
    isMoe: nExpert > 1,
    name: name === undefined ? undefined : String(name),
  };
}

/** Throws a user-facing error unless the file is a readable MoE GGUF. */
export async function requireMoeModel(path: string): Promise<ModelSummary> {
  const s = await inspectModel(path);
  if (!s.isMoe) {
    throw new Error(`this model has no experts: ${path} is a dense ${s.architecture} model, so there is no routing to show. Pick a Mixture-of-Experts GGUF.`);
  }
  return s;
}
