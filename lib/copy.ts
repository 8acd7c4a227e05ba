/**
 * Copying a short byte range on the data path.
 *
 * @module
 */

/** Up to this many bytes, a loop beats making a view to `set()` from. */
const LOOP_MAX = 128;

/**
 * Copies `src[start, end)` to `dst` at `at`. Short ranges go byte by byte:
 * `src.subarray()` would make a view object per request, and views were
 * most of what the data path allocated.
 */
export function copyBytes(
  dst: Uint8Array,
  at: number,
  src: Uint8Array,
  start: number,
  end: number,
): void {
  if (end - start <= LOOP_MAX) {
    for (let i = start; i < end; i++) dst[at + i - start] = src[i];
  } else dst.set(src.subarray(start, end), at);
}
