// Fitting the Ant predictor (anticipatory routing) for a frozen model: per MoE layer, a
// ridge regression in closed form of the next router logits on [z_t; U_t; 1], with
// U_t = β·U_{t-1} + (1-β)·z_t. Saved beside the model as `<model>.moe-ant.json`
// (format: native/API.md, "Ant predictor file"), tied to the model file's SHA-256.
import { createHash } from "node:crypto";
import fs from "node:fs";
import { float32ToB64 } from "./b64";
import type { CalibrationData, ServerClient } from "./server-client";

export const PREDICTOR_FORMAT = "moe-lens-ant-predictor";
export const PREDICTOR_VERSION = 1;

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Solves (A + λI) X = B for symmetric positive definite A (n×n) and B (n×m), row-major, by Cholesky. */
export function solveRidge(A: Float64Array, B: Float64Array, n: number, m: number, lambda: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * n + j] + (i === j ? lambda : 0);
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      if (i === j) {
        if (s <= 0) throw new Error("ridge system is not positive definite; raise the ridge parameter");
        L[i * n + i] = Math.sqrt(s);
      } else L[i * n + j] = s / L[j * n + j];
    }
  }
  const X = new Float64Array(n * m);
  for (let c = 0; c < m; c++) {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = B[i * m + c];
      for (let k = 0; k < i; k++) s -= L[i * n + k] * y[k];
      y[i] = s / L[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = y[i];
      for (let k = i + 1; k < n; k++) s -= L[k * n + i] * X[k * m + c];
      X[i * m + c] = s / L[i * n + i];
    }
  }
  return X;
}

/** Fits W (E × (2E+1), row-major) for one layer's logits [T][E]. */
export function fitLayer(logits: Float32Array, T: number, E: number, beta: number, ridge: number): Float32Array {
  const D = 2 * E + 1;
  const XtX = new Float64Array(D * D);
  const XtY = new Float64Array(D * E);
  const U = new Float64Array(E);
  const x = new Float64Array(D);
  for (let t = 0; t + 1 < T; t++) {
    for (let e = 0; e < E; e++) {
      const z = logits[t * E + e];
      U[e] = beta * U[e] + (1 - beta) * z;
      x[e] = z;
      x[E + e] = U[e];
    }
    x[2 * E] = 1;
    if (!x.every(Number.isFinite)) continue;
    for (let i = 0; i < D; i++) {
      for (let j = 0; j < D; j++) XtX[i * D + j] += x[i] * x[j];
      for (let e = 0; e < E; e++) XtY[i * E + e] += x[i] * logits[(t + 1) * E + e];
    }
  }
  const Wt = solveRidge(XtX, XtY, D, E, ridge); // D × E
  const W = new Float32Array(E * D);
  for (let r = 0; r < E; r++) for (let c = 0; c < D; c++) W[r * D + c] = Wt[c * E + r];
  return W;
}

export function buildPredictorFile(
  cal: CalibrationData,
  meta: { modelSha256: string; modelFile: string; architecture: string; textSha256: string; beta: number; ridge: number },
): object {
  return {
    format: PREDICTOR_FORMAT,
    version: PREDICTOR_VERSION,
    model_sha256: meta.modelSha256,
    model_file: meta.modelFile,
    architecture: meta.architecture,
    n_expert: cal.n_expert,
    moe_layers: cal.moe_layers,
    beta: meta.beta,
    ridge: meta.ridge,
    calibration: { tokens: cal.n_tokens, text_sha256: meta.textSha256 },
    layers: cal.moe_layers.map((layer, m) => ({ layer, W: float32ToB64(fitLayer(cal.logits[m], cal.n_tokens, cal.n_expert, meta.beta, meta.ridge)) })),
  };
}

export function predictorPathFor(modelPath: string): string {
  return `${modelPath}.moe-ant.json`;
}

/** Calibrates on `text`, saves the fit beside the model, loads it into the server; returns its path. */
export async function fitAntPredictor(
  client: ServerClient,
  text: string,
  modelPath: string,
  opts: { beta?: number; ridge?: number; outPath?: string; signal?: AbortSignal } = {},
): Promise<string> {
  const info = await client.modelInfo(opts.signal);
  const cal = await client.calibrate(text, opts.signal);
  if (cal.n_tokens < 16) throw new Error(`calibration text too short (${cal.n_tokens} tokens); use at least a few hundred tokens`);
  const file = buildPredictorFile(cal, {
    modelSha256: await sha256File(modelPath),
    modelFile: modelPath.split(/[\\/]/).pop()!,
    architecture: info.architecture,
    textSha256: createHash("sha256").update(text).digest("hex"),
    beta: opts.beta ?? 0.9,
    ridge: opts.ridge ?? 1.0,
  });
  const out = opts.outPath ?? predictorPathFor(modelPath);
  fs.writeFileSync(out, JSON.stringify(file));
  await client.loadPredictor(out, opts.signal);
  return out;
}
