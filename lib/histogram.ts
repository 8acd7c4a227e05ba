/**
 * An HDR-style latency histogram: log-linear buckets over integer
 * microseconds. Every power of two is cut into `2^precisionBits` equal
 * sub-buckets, so a bucket is at most 1/128 of its value wide by default
 * (values below 256 are exact) and a reported percentile, the bucket's
 * midpoint, is within 0.4% of the true sample. Recording is O(1) with no
 * allocation; histograms with the same layout merge by adding counts.
 *
 * @module
 */

/** Options for {@linkcode Histogram}. */
export interface HistogramOptions {
  /**
   * The largest value tracked; larger values count as this one (the exact
   * maximum is still reported).
   * @default {60000000} 60 s in microseconds
   */
  highest?: number;
  /**
   * Sub-buckets per power of two, as a power of two: 7 gives 128 (<= 0.78%
   * bucket width, <= 0.4% error at the midpoint).
   * @default {7}
   */
  precisionBits?: number;
}

/**
 * Log-linear histogram of positive integer values (microseconds by
 * convention), 1 to `highest`.
 *
 * @example
 * ```ts
 * import { Histogram } from "./histogram.ts";
 * const h = new Histogram();
 * for (let us = 1; us <= 1000; us++) h.record(us);
 * h.percentile(99); // 990, within 0.4%
 * ```
 */
export class Histogram {
  /** The largest value tracked. */
  readonly highest: number;
  /** log2 of the sub-buckets per power of two. */
  readonly precisionBits: number;
  #sub: number;
  #counts: Float64Array;
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #max = 0;

  /** An empty histogram; throws `RangeError` on a layout out of range. */
  constructor(options: HistogramOptions = {}) {
    const highest = options.highest ?? 60_000_000;
    const bits = options.precisionBits ?? 7;
    if (!Number.isInteger(bits) || bits < 1 || bits > 16) {
      throw new RangeError(`precisionBits must be an integer from 1 to 16, got ${bits}`);
    }
    if (!Number.isInteger(highest) || highest < 2 || highest > 0x7fffffff) {
      throw new RangeError(`highest must be an integer from 2 to 2^31-1, got ${highest}`);
    }
    this.highest = highest;
    this.precisionBits = bits;
    this.#sub = 1 << bits;
    this.#counts = new Float64Array(this.#index(highest) + 1);
  }

  /** Values recorded. */
  get count(): number {
    return this.#count;
  }

  /** Smallest value recorded (0 when empty). */
  get min(): number {
    return this.#count === 0 ? 0 : this.#min;
  }

  /** Largest value recorded, exact even past `highest` (0 when empty). */
  get max(): number {
    return this.#max;
  }

  /** Arithmetic mean of the values recorded (0 when empty). */
  get mean(): number {
    return this.#count === 0 ? 0 : this.#sum / this.#count;
  }

  /** Buckets in the layout (for tests and sizing). */
  get buckets(): number {
    return this.#counts.length;
  }

  /** The bucket of a value already clamped to 1..highest. */
  #index(v: number): number {
    const e = 31 - Math.clz32(v); // floor(log2 v)
    const shift = e - this.precisionBits;
    if (shift <= 0) return v; // exact below 2 * sub
    return this.#sub * shift + (v >>> shift);
  }

  /** Lowest value of bucket `i`. */
  #low(i: number): number {
    if (i < 2 * this.#sub) return i;
    const shift = Math.floor(i / this.#sub) - 1;
    return (i - this.#sub * shift) * 2 ** shift;
  }

  /** Width of bucket `i`. */
  #width(i: number): number {
    return i < 2 * this.#sub ? 1 : 2 ** (Math.floor(i / this.#sub) - 1);
  }

  /**
   * Records `value` (rounded to an integer, at least 1) `n` times. Values
   * past `highest` go to the top bucket; `max` keeps the exact one.
   */
  record(value: number, n = 1): void {
    let v = Math.round(value);
    if (!(v >= 1)) v = 1; // also NaN
    if (v > this.#max) this.#max = v;
    if (v < this.#min) this.#min = v;
    this.#sum += v * n;
    this.#count += n;
    this.#counts[this.#index(v > this.highest ? this.highest : v)] += n;
  }

  /**
   * The value at percentile `p` (0..100), nearest rank: the smallest value
   * with at least p% of the samples at or below it. Reported as its
   * bucket's midpoint, clamped to [min, max]; `percentile(100)` is `max`.
   */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be 0..100, got ${p}`);
    if (p === 100) return this.#max;
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    const counts = this.#counts;
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      seen += counts[i];
      if (seen >= rank) {
        const mid = this.#low(i) + (this.#width(i) - 1) / 2;
        return Math.min(this.#max, Math.max(this.min, Math.round(mid)));
      }
    }
    return this.#max;
  }

  /** Adds every sample of `other` (same layout) to this one. */
  merge(other: Histogram): this {
    if (other.highest !== this.highest || other.precisionBits !== this.precisionBits) {
      throw new RangeError("cannot merge histograms with different layouts");
    }
    const mine = this.#counts;
    const theirs = other.#counts;
    for (let i = 0; i < theirs.length; i++) mine[i] += theirs[i];
    this.#count += other.#count;
    this.#sum += other.#sum;
    if (other.#min < this.#min) this.#min = other.#min;
    if (other.#max > this.#max) this.#max = other.#max;
    return this;
  }

  /** Forgets every sample. */
  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#sum = 0;
    this.#min = Infinity;
    this.#max = 0;
  }
}
