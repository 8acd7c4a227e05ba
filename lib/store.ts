/**
 * The worker's key-value map with last-writer-wins versions, tombstones and
 * an order-independent digest.
 *
 * @module
 */

import { compareVersion } from "./hlc.ts";

/** One key's newest write; `value === null` is a tombstone. */
export interface Entry {
  /** The key bytes. */
  key: Uint8Array;
  /** The value bytes, or `null` for a tombstone. */
  value: Uint8Array | null;
  /** The write's hybrid-logical-clock version. */
  ver: number;
  /** Node number of the writer, breaking version ties. */
  node: number;
}

/** Maps key bytes to a string usable as a Map key, one char per byte. */
export function keyString(key: Uint8Array): string {
  if (key.length <= 16) {
    let s = "";
    for (let i = 0; i < key.length; i++) s += String.fromCharCode(key[i]);
    return s;
  }
  return String.fromCharCode.apply(null, key as unknown as number[]);
}

/** FNV-1a over the key bytes: computed once per key, kept in its entry. */
function keyHash(key: Uint8Array, seed: number): number {
  let h = seed;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i], 0x01000193);
  return h;
}

/** The key's hash with the version and node mixed in, finalised. */
function entryHash(kh: number, ver: number, node: number): number {
  const lo = ver % 0x100000000;
  const hi = Math.floor(ver / 0x100000000);
  let h = Math.imul(kh ^ lo, 0x01000193);
  h = Math.imul(h ^ hi, 0x01000193);
  h = Math.imul(h ^ node, 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** An entry as the store holds it: with its key's two hash lanes. */
interface Stored extends Entry {
  kh0: number;
  kh1: number;
}

const SEED0 = 0x811c9dc5;
const SEED1 = 0x050c5d1f;

/** A key-value map whose replicas converge by keeping the newest version. */
export class Store {
  #map = new Map<string, Stored>();
  #live = 0;
  #tombstones = 0;
  #d0 = 0;
  #d1 = 0;

  /** Keys with a live value. */
  get size(): number {
    return this.#live;
  }

  /** Tombstones held. */
  get tombstones(): number {
    return this.#tombstones;
  }

  /**
   * Order-independent digest of the live contents: XOR of a 64-bit hash per
   * key and version, as 16 hex digits.
   */
  get digest(): string {
    return this.#d1.toString(16).padStart(8, "0") + this.#d0.toString(16).padStart(8, "0");
  }

  /** The entry for a key, tombstones included. */
  entry(k: string): Entry | undefined {
    return this.#map.get(k);
  }

  /** The live value of a key. */
  get(k: string): Uint8Array | undefined {
    return this.#map.get(k)?.value ?? undefined;
  }

  /**
   * Applies a write if it is newer than what the key holds. `value === null`
   * deletes (leaves a tombstone). Copies `key` when it inserts (so a view
   * into a read buffer is fine); keeps `value` as given: pass a copy.
   * Returns true when applied.
   */
  apply(k: string, key: Uint8Array, value: Uint8Array | null, ver: number, node: number): boolean {
    return this.write(k, key, value, ver, node) !== undefined;
  }

  /** {@linkcode apply}, returning the entry written (or `undefined` when older). */
  write(
    k: string,
    key: Uint8Array,
    value: Uint8Array | null,
    ver: number,
    node: number,
  ): Entry | undefined {
    const old = this.#map.get(k);
    if (old !== undefined) {
      if (compareVersion(ver, node, old.ver, old.node) <= 0) return undefined;
      if (old.value !== null) {
        this.#xor(old);
        this.#live--;
      } else this.#tombstones--;
      old.value = value;
      old.ver = ver;
      old.node = node;
      this.#count(old);
      return old;
    }
    const e: Stored = {
      key: key.slice(),
      value,
      ver,
      node,
      kh0: keyHash(key, SEED0),
      kh1: keyHash(key, SEED1),
    };
    this.#map.set(k, e);
    this.#count(e);
    return e;
  }

  /** Removes tombstones written before `beforeVer`; returns how many. */
  purgeTombstones(beforeVer: number): number {
    let n = 0;
    for (const [k, e] of this.#map) {
      if (e.value === null && e.ver < beforeVer) {
        this.#map.delete(k);
        n++;
      }
    }
    this.#tombstones -= n;
    return n;
  }

  /** Every entry, tombstones included (for a full export). */
  entries(): IterableIterator<Entry> {
    return this.#map.values();
  }

  #count(e: Stored): void {
    if (e.value !== null) {
      this.#xor(e);
      this.#live++;
    } else this.#tombstones++;
  }

  #xor(e: Stored): void {
    this.#d0 = (this.#d0 ^ entryHash(e.kh0, e.ver, e.node)) >>> 0;
    this.#d1 = (this.#d1 ^ entryHash(e.kh1, e.ver, e.node)) >>> 0;
  }
}
