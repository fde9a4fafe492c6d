// Base64 <-> little-endian typed arrays, for the compact arrays of trace records.

function bytesOf(b64: string): Uint8Array {
  const buf = Buffer.from(b64, "base64");
  // Copy into a fresh, aligned ArrayBuffer: typed-array views need aligned offsets.
  const out = new Uint8Array(buf.length);
  out.set(buf);
  return out;
}

export function b64ToInt32(b64: string): Int32Array {
  const b = bytesOf(b64);
  return new Int32Array(b.buffer, 0, b.length >> 2);
}

export function b64ToFloat32(b64: string): Float32Array {
  const b = bytesOf(b64);
  return new Float32Array(b.buffer, 0, b.length >> 2);
}

export function b64ToUint16(b64: string): Uint16Array {
  const b = bytesOf(b64);
  return new Uint16Array(b.buffer, 0, b.length >> 1);
}

export function b64ToUint8(b64: string): Uint8Array {
  return bytesOf(b64);
}

export function float32ToB64(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}
