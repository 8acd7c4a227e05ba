/**
 * Carves short-lived byte arrays out of large chunks, so the data path does
 * not allocate one `ArrayBuffer` per request (each costs a backing store and
 * external-memory accounting that drives the garbage collector).
 *
 * @module
 */

/** A bump allocator over 64 KiB chunks; a chunk is freed when no view of it is left. */
export class Slab {
  #chunk: Uint8Array;
  #off = 0;
  #size: number;

  /** `size`: bytes per chunk. */
  constructor(size = 64 * 1024) {
    this.#size = size;
    this.#chunk = new Uint8Array(size);
  }

  /** A fresh view of `n` bytes (contents unspecified: fill it all). */
  alloc(n: number): Uint8Array {
    if (this.#off + n > this.#chunk.length) {
      this.#chunk = new Uint8Array(Math.max(this.#size, n));
      this.#off = 0;
    }
    const v = this.#chunk.subarray(this.#off, this.#off + n);
    this.#off += n;
    return v;
  }

  /** A copy of `src` in the slab. */
  copy(src: Uint8Array): Uint8Array {
    const v = this.alloc(src.length);
    v.set(src);
    return v;
  }
}
