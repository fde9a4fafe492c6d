// Trace export formats. JSON schema "moe-lens-trace" version 1:
// {
//   "schema": "moe-lens-trace", "version": 1,
//   "model": ModelInfo (see native/API.md /v1/model), "policy": Policy, "k": slots per layer,
//   "moe_layers": [model layer index per MoE layer], "windows": [...as the trace header],
//   "summary": TraceSummary,
//   "tokens": [{ "index", "id", "text", "byte_start", "byte_end", "nll" (nats, null for the last),
//                "layers": [{ "layer", "experts": [ids], "weights": [final weights, 0 = dropped],
//                             "entropy" (nats), "active", "top": [[id, prob], ...] when recorded }] }]
// }
// CSV: one row per (token, MoE layer), experts and weights space-separated in selection order.
import type { Trace } from "../../shared/trace";

export function traceToJsonObject(trace: Trace): unknown {
  const { header, columns: c, summary } = trace;
  const L = header.n_moe_layers, K = header.k, N = header.top_n;
  const tokens = [];
  for (let t = 0; t < c.count; t++) {
    const layers = [];
    for (let m = 0; m < L; m++) {
      const at = (t * L + m) * K;
      const layer: Record<string, unknown> = {
        layer: header.model.moe_layers[m],
        experts: Array.from(c.experts.subarray(at, at + K)),
        weights: Array.from(c.weights.subarray(at, at + K)),
        entropy: c.entropy[t * L + m],
        active: c.active[t * L + m],
      };
      if (N > 0 && c.topIds && c.topProbs) {
        const tp = (t * L + m) * N;
        layer.top = Array.from({ length: N }, (_, i) => [c.topIds![tp + i], c.topProbs![tp + i]]);
      }
      layers.push(layer);
    }
    tokens.push({
      index: c.start + t,
      id: c.tokenIds[t],
      text: c.pieces[t],
      byte_start: c.byteStart[t],
      byte_end: c.byteEnd[t],
      nll: Number.isFinite(c.nll[t]) ? c.nll[t] : null,
      layers,
    });
  }
  return {
    schema: "moe-lens-trace",
    version: 1,
    model: header.model,
    policy: header.policy,
    k: K,
    moe_layers: header.model.moe_layers,
    windows: header.windows,
    summary,
    tokens,
  };
}

export function traceToJson(trace: Trace): string {
  return JSON.stringify(traceToJsonObject(trace), null, 1);
}

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function traceToCsv(trace: Trace): string {
  const { header, columns: c } = trace;
  const L = header.n_moe_layers, K = header.k;
  const rows = ["token_index,token_id,text,byte_start,byte_end,nll,layer,active,entropy,experts,weights"];
  for (let t = 0; t < c.count; t++)
    for (let m = 0; m < L; m++) {
      const at = (t * L + m) * K;
      rows.push([
        c.start + t, c.tokenIds[t], csvField(c.pieces[t]), c.byteStart[t], c.byteEnd[t],
        Number.isFinite(c.nll[t]) ? c.nll[t].toFixed(6) : "",
        header.model.moe_layers[m], c.active[t * L + m], c.entropy[t * L + m].toFixed(6),
        Array.from(c.experts.subarray(at, at + K)).join(" "),
        Array.from(c.weights.subarray(at, at + K), (w) => w.toFixed(6)).join(" "),
      ].join(","));
    }
  return rows.join("\n") + "\n";
}
