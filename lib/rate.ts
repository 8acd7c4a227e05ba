/**
 * Events per second over a sliding window of one-second buckets.
 *
 * @module
 */

/** Options for {@linkcode RateMeter}. */
export interface RateMeterOptions {
  /**
   * Window length in seconds.
   * @default {5}
   */
  window?: number;
  /**
   * Clock in milliseconds.
   * @default {Date.now}
   */
  now?: () => number;
}

/** Counts events in per-second buckets; `rate()` averages the full ones. */
export class RateMeter {
  #buckets: Float64Array;
  #sec: number;
  #now: () => number;

  constructor(options: RateMeterOptions = {}) {
    this.#buckets = new Float64Array((options.window ?? 5) + 1);
    this.#now = options.now ?? Date.now;
    this.#sec = Math.floor(this.#now() / 1000);
  }

  /** Records `n` events now. */
  add(n: number): void {
    this.#roll();
    this.#buckets[this.#sec % this.#buckets.length] += n;
  }

  /** Events per second over the last full seconds of the window. */
  rate(): number {
    this.#roll();
    const len = this.#buckets.length;
    let sum = 0;
    for (let i = 1; i < len; i++) sum += this.#buckets[(this.#sec - i + len * 2) % len];
    return sum / (len - 1);
  }

  #roll(): void {
    const sec = Math.floor(this.#now() / 1000);
    if (sec === this.#sec) return;
    const len = this.#buckets.length;
    const steps = Math.min(sec - this.#sec, len);
    for (let i = 1; i <= steps; i++) this.#buckets[(this.#sec + i) % len] = 0;
    this.#sec = sec;
  }
}
