/**
 * Hybrid logical clock: versions that follow wall time, never go backwards,
 * and order a write after every write this node has seen.
 *
 * A version is one number, `ms * 1024 + counter`, exact below 2^53 for the
 * next few centuries; ties between nodes are broken by the node number.
 *
 * @module
 */

/** Logical ticks per millisecond. */
export const TICKS_PER_MS = 1024;

/** Options for {@linkcode Hlc}. */
export interface HlcOptions {
  /**
   * Wall clock in milliseconds.
   * @default {Date.now}
   */
  now?: () => number;
}

/** A hybrid logical clock. */
export class Hlc {
  #last = 0;
  #now: () => number;

  /** Creates a clock that reads wall time from `options.now`. */
  constructor(options: HlcOptions = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** The last version issued or observed. */
  get last(): number {
    return this.#last;
  }

  /** A new version, greater than every version issued or observed before. */
  tick(): number {
    const wall = this.#now() * TICKS_PER_MS;
    this.#last = wall > this.#last ? wall : this.#last + 1;
    return this.#last;
  }

  /** Moves the clock past a version seen from another node. */
  observe(version: number): void {
    if (version > this.#last) this.#last = version;
  }
}

/** Orders two versions with node tie-break: negative, zero or positive. */
export function compareVersion(aVer: number, aNode: number, bVer: number, bNode: number): number {
  return aVer !== bVer ? aVer - bVer : aNode - bNode;
}
