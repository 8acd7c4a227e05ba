/**
 * The worker's key-value map with last-writer-wins versions, tombstones and
 * an order-independent digest.
 *
 * Keys are bytes, looked up without building a string: an open-addressing
 * table (linear probing) of entries that keep their key's hash. A lookup
 * hashes the request's key view in place and compares bytes, so serving a
 * request allocates nothing for the key (a `Map<string>` cost a string per
 * request and a third of the worker's time per GET).
 *
 * @module
 */

import { copyBytes } from "./copy.ts";
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

/** FNV-1a over `bytes[start, end)`: computed once per lookup, kept in the entry. */
function keyHash(bytes: Uint8Array, start: number, end: number, seed: number): number {
  let h = seed;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h;
}

/** Spreads a key hash over the table's low bits (FNV's low bits see only the bytes' low bits). */
function slotOf(kh: number, mask: number): number {
  let h = kh ^ (kh >>> 16);
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h & mask;
}

/** Whether `key` holds the bytes of `bytes[start, end)`. */
function sameBytes(key: Uint8Array, bytes: Uint8Array, start: number, end: number): boolean {
  const n = key.length;
  if (n !== end - start) return false;
  for (let i = 0; i < n; i++) if (key[i] !== bytes[start + i]) return false;
  return true;
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
  /** The bytes `value` views; an overwrite that fits reuses them. */
  buf: Uint8Array | null;
}

/**
 * Holds `value` in `buf` when it fits (and `buf` is not far too big),
 * else in a new buffer. Every `ArrayBuffer` costs about 1.5 us here (a
 * backing store and external-memory accounting), as much as the rest of a
 * SET, so an overwrite of a key with a value of about the same size
 * allocates nothing.
 */
function hold(buf: Uint8Array | null, src: Uint8Array, start: number, end: number): Uint8Array {
  const n = end - start;
  if (buf === null || buf.length < n || buf.length > 2 * n + 64) {
    buf = new Uint8Array(Math.max(16, (n + 15) & ~15));
  }
  copyBytes(buf, 0, src, start, end);
  return buf;
}

const SEED0 = 0x811c9dc5;
const SEED1 = 0x050c5d1f;
const INITIAL_SLOTS = 1024;

function emptySlots(n: number): (Stored | undefined)[] {
  return new Array<Stored | undefined>(n).fill(undefined);
}

/** A key-value map whose replicas converge by keeping the newest version. */
export class Store {
  /** Open addressing, at most half full, so probe runs stay short. */
  #slots: (Stored | undefined)[] = emptySlots(INITIAL_SLOTS);
  #mask = INITIAL_SLOTS - 1;
  #held = 0;
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
  entry(key: Uint8Array): Entry | undefined {
    return this.#find(key, 0, key.length, keyHash(key, 0, key.length, SEED0));
  }

  /**
   * The live value of a key: the store's own bytes, overwritten in place by
   * the next write to the key. Copy them to keep them.
   */
  get(key: Uint8Array): Uint8Array | undefined {
    return this.#find(key, 0, key.length, keyHash(key, 0, key.length, SEED0))?.value ?? undefined;
  }

  /**
   * {@linkcode get} for the key in `bytes[start, end)`, without a view of it
   * (the worker serves from its read buffer).
   */
  getAt(bytes: Uint8Array, start: number, end: number): Uint8Array | undefined {
    return this.#find(bytes, start, end, keyHash(bytes, start, end, SEED0))?.value ?? undefined;
  }

  /**
   * Applies a write if it is newer than what the key holds. `value === null`
   * deletes (leaves a tombstone). Copies `key` and `value` (views into a read
   * buffer are fine). Returns true when applied.
   */
  apply(key: Uint8Array, value: Uint8Array | null, ver: number, node: number): boolean {
    return this.write(key, value, ver, node) !== undefined;
  }

  /** {@linkcode apply}, returning the entry written (or `undefined` when older). */
  write(key: Uint8Array, value: Uint8Array | null, ver: number, node: number): Entry | undefined {
    return value === null
      ? this.#write(key, 0, key.length, null, 0, 0, ver, node)
      : this.#write(key, 0, key.length, value, 0, value.length, ver, node);
  }

  /**
   * {@linkcode write} for a request laid out as key then value: the key is
   * `bytes[keyStart, keyEnd)`, the value `bytes[keyEnd, valueEnd)`, or a
   * delete when `valueEnd` is -1. No views are made.
   */
  writeAt(
    bytes: Uint8Array,
    keyStart: number,
    keyEnd: number,
    valueEnd: number,
    ver: number,
    node: number,
  ): Entry | undefined {
    return this.#write(
      bytes,
      keyStart,
      keyEnd,
      valueEnd < 0 ? null : bytes,
      keyEnd,
      valueEnd,
      ver,
      node,
    );
  }

  #write(
    kb: Uint8Array,
    ks: number,
    ke: number,
    vb: Uint8Array | null,
    vs: number,
    ve: number,
    ver: number,
    node: number,
  ): Entry | undefined {
    const kh = keyHash(kb, ks, ke, SEED0);
    const old = this.#find(kb, ks, ke, kh);
    if (old !== undefined) {
      if (compareVersion(ver, node, old.ver, old.node) <= 0) return undefined;
      if (old.value !== null) {
        this.#xor(old);
        this.#live--;
      } else this.#tombstones--;
      if (vb === null) old.value = old.buf = null;
      else {
        const buf = old.buf = hold(old.buf, vb, vs, ve);
        old.value = buf.length === ve - vs ? buf : buf.subarray(0, ve - vs);
      }
      old.ver = ver;
      old.node = node;
      this.#count(old);
      return old;
    }
    const buf = vb === null ? null : hold(null, vb, vs, ve);
    const e: Stored = {
      key: kb.slice(ks, ke),
      value: buf === null || buf.length === ve - vs ? buf : buf.subarray(0, ve - vs),
      ver,
      node,
      kh0: kh,
      kh1: keyHash(kb, ks, ke, SEED1),
      buf,
    };
    if (2 * (this.#held + 1) > this.#slots.length) this.#rehash(2 * this.#slots.length);
    this.#place(e);
    this.#held++;
    this.#count(e);
    return e;
  }

  /** Removes tombstones written before `beforeVer`; returns how many. */
  purgeTombstones(beforeVer: number): number {
    const kept: Stored[] = [];
    for (const e of this.#slots) {
      if (e !== undefined && !(e.value === null && e.ver < beforeVer)) kept.push(e);
    }
    const n = this.#held - kept.length;
    if (n === 0) return 0;
    // Linear probing cannot simply blank a slot: rebuild from what is kept.
    let size = INITIAL_SLOTS;
    while (2 * kept.length > size) size *= 2;
    this.#slots = emptySlots(size);
    this.#mask = size - 1;
    for (const e of kept) this.#place(e);
    this.#held = kept.length;
    this.#tombstones -= n;
    return n;
  }

  /** Every entry, tombstones included (for a full export). */
  *entries(): IterableIterator<Entry> {
    for (const e of this.#slots) if (e !== undefined) yield e;
  }

  #find(bytes: Uint8Array, start: number, end: number, kh: number): Stored | undefined {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = slotOf(kh, mask);; i = (i + 1) & mask) {
      const e = slots[i];
      if (e === undefined || (e.kh0 === kh && sameBytes(e.key, bytes, start, end))) return e;
    }
  }

  #place(e: Stored): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = slotOf(e.kh0, mask);
    while (slots[i] !== undefined) i = (i + 1) & mask;
    slots[i] = e;
  }

  #rehash(size: number): void {
    const old = this.#slots;
    this.#slots = emptySlots(size);
    this.#mask = size - 1;
    for (const e of old) if (e !== undefined) this.#place(e);
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
