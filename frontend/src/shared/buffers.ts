/** The values of a float32 buffer as the widgets receive it (a DataView over the message's binary buffer). */
export function floats(view: DataView | null | undefined): Float32Array {
  if (!view || !view.byteLength) return new Float32Array(0);
  return new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4);
}
