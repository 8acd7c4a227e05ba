/**
 * Coalescing frame writer with backpressure.
 *
 * Frames are built straight into a buffer (one copy, no per-frame
 * allocation). Everything queued while the previous write is in flight, or
 * during the same turn of the event loop, goes out in one `write` call.
 *
 * @module
 */

import { copyBytes } from "./copy.ts";
import { HEADER_SIZE, MAX_PAYLOAD, writeHeader } from "./frame.ts";
import { writeU32 } from "./messages.ts";

/** Anything with Deno.Conn's `write`. */
export interface Writable {
  /** Writes bytes from `p`; resolves to the number written. */
  write(p: Uint8Array): Promise<number>;
}

/** Options for {@linkcode FrameWriter}. */
export interface FrameWriterOptions {
  /**
   * Bytes queued above which {@linkcode FrameWriter.ready} waits.
   * @default {1048576}
   */
  highWaterMark?: number;
  /**
   * Called once when a write fails (peer gone); later frames are dropped.
   * @default {undefined}
   */
  onError?: (err: unknown) => void;
}

const INITIAL = 16 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * Queues frames for one connection and writes them in batches.
 *
 * @example
 * ```ts ignore
 * const w = new FrameWriter(conn);
 * w.write(0x0001, new Uint8Array()); // HELLO
 * await w.ready; // waits while the socket is behind
 * ```
 */
export class FrameWriter {
  #dst: Writable;
  #cur = new Uint8Array(INITIAL);
  #spare = new Uint8Array(INITIAL);
  #len = 0;
  #inflight = 0;
  #writing = false;
  #scheduled = false;
  #failed = false;
  #hwm: number;
  #onError: ((err: unknown) => void) | undefined;
  #drainWaiters: Array<() => void> = [];
  #flushWaiters: Array<() => void> = [];
  #flush = () => this.#run();
  #queuedTotal = 0;
  #writtenTotal = 0;

  /** Creates a writer that queues frames for `dst`. */
  constructor(dst: Writable, options: FrameWriterOptions = {}) {
    this.#dst = dst;
    this.#hwm = options.highWaterMark ?? 1024 * 1024;
    this.#onError = options.onError;
  }

  /** Bytes queued and not yet written. */
  get buffered(): number {
    return this.#len + this.#inflight;
  }

  /** Bytes queued since the writer was made (monotonic). */
  get queuedBytes(): number {
    return this.#queuedTotal;
  }

  /**
   * Bytes handed to the socket since the writer was made (monotonic). A frame
   * whose end is past this never left the process.
   */
  get writtenBytes(): number {
    return this.#writtenTotal;
  }

  /** True once a write has failed; queued frames are then dropped. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Resolves at once, or when the queue falls under the high-water mark. */
  get ready(): Promise<void> {
    if (this.#failed || this.buffered <= this.#hwm) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** True while the queue is over the high-water mark. */
  get full(): boolean {
    return !this.#failed && this.buffered > this.#hwm;
  }

  /**
   * Reserves a frame of `payloadLen` bytes and returns its payload to fill in
   * synchronously (before the next await).
   */
  reserve(type: number, payloadLen: number): Uint8Array {
    if (!(payloadLen >= 0 && payloadLen <= MAX_PAYLOAD) || payloadLen % 1 !== 0) {
      throw new RangeError(`payload of ${payloadLen} bytes is not 0..${MAX_PAYLOAD}`);
    }
    if (!(type >= 0 && type <= 0xffff) || type % 1 !== 0) {
      throw new RangeError(`frame type ${type} is not a u16`);
    }
    const size = HEADER_SIZE + payloadLen;
    const start = this.#grow(size);
    writeHeader(this.#cur, start, type, payloadLen);
    this.#len += size;
    this.#queuedTotal += size;
    this.#schedule();
    return this.#cur.subarray(start + HEADER_SIZE, start + size);
  }

  /** Queues one frame, copying `payload`. */
  write(type: number, payload?: Uint8Array): void {
    const len = payload?.length ?? 0;
    const view = this.reserve(type, len);
    if (len > 0) view.set(payload!);
  }

  /**
   * Queues a frame whose payload is a u32 id then `body` (the shape of every
   * reply), written in place: no view is made, as {@linkcode reserve} must.
   */
  writeReply(type: number, id: number, body?: Uint8Array): void {
    if (body === undefined) this.writeReplyAt(type, id, EMPTY, 0, 0);
    else this.writeReplyAt(type, id, body, 0, body.length);
  }

  /** {@linkcode writeReply} with the body in `src[start, end)`: no view needed. */
  writeReplyAt(type: number, id: number, src: Uint8Array, start: number, end: number): void {
    if (!(start >= 0 && end >= start && end <= src.length)) {
      throw new RangeError(`body range [${start}, ${end}) is not within ${src.length} bytes`);
    }
    const len = 4 + end - start;
    if (len > MAX_PAYLOAD) throw new RangeError(`payload of ${len} bytes is over ${MAX_PAYLOAD}`);
    if (!(type >= 0 && type <= 0xffff) || type % 1 !== 0) {
      throw new RangeError(`frame type ${type} is not a u16`);
    }
    const off = this.#grow(HEADER_SIZE + len);
    const buf = this.#cur;
    writeHeader(buf, off, type, len);
    writeU32(buf, off + 4, id);
    copyBytes(buf, off + 8, src, start, end);
    this.#len += HEADER_SIZE + len;
    this.#queuedTotal += HEADER_SIZE + len;
    this.#schedule();
  }

  /** Queues bytes that already hold whole frames: `bytes[0, length)`. */
  writeRaw(bytes: Uint8Array, length: number = bytes.length): void {
    if (!(length >= 0 && length <= bytes.length)) {
      throw new RangeError(`length ${length} is not within ${bytes.length} bytes`);
    }
    const start = this.#grow(length);
    copyBytes(this.#cur, start, bytes, 0, length);
    this.#len += length;
    this.#queuedTotal += length;
    this.#schedule();
  }

  /** Resolves when everything queued so far has been written (or failed). */
  flush(): Promise<void> {
    if (this.#failed || (this.#len === 0 && !this.#writing)) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push(resolve));
  }

  #grow(size: number): number {
    if (this.#failed) {
      // Keep accepting (and discarding) so callers need not check each time.
      this.#len = 0;
    }
    const need = this.#len + size;
    if (need > this.#cur.length) {
      let cap = this.#cur.length * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.#cur.subarray(0, this.#len));
      this.#cur = next;
    }
    return this.#len;
  }

  #schedule(): void {
    if (this.#writing || this.#scheduled || this.#failed) return;
    this.#scheduled = true;
    queueMicrotask(this.#flush);
  }

  async #run(): Promise<void> {
    this.#scheduled = false;
    this.#writing = true;
    try {
      while (this.#len > 0 && !this.#failed) {
        // Swap buffers: frames queued while this batch is written go to the other.
        const batch = this.#cur;
        const n = this.#len;
        this.#cur = this.#spare.length >= INITIAL ? this.#spare : new Uint8Array(INITIAL);
        this.#len = 0;
        this.#inflight = n;
        let off = 0;
        while (off < n) {
          const w = await this.#dst.write(batch.subarray(off, n));
          off += w;
          this.#writtenTotal += w;
          this.#inflight = n - off;
        }
        // Reuse the written buffer unless it grew large during a burst.
        this.#spare = batch.length <= 1024 * 1024 ? batch : new Uint8Array(INITIAL);
        this.#wakeDrain();
      }
    } catch (err) {
      this.#failed = true;
      this.#len = 0;
      this.#inflight = 0;
      try {
        this.#onError?.(err);
      } catch {
        // A failing error handler must not become an unhandled rejection.
      }
    } finally {
      this.#writing = false;
      this.#inflight = 0;
      this.#wakeDrain();
      const waiters = this.#flushWaiters;
      this.#flushWaiters = [];
      for (const w of waiters) w();
    }
  }

  #wakeDrain(): void {
    if (this.#drainWaiters.length === 0) return;
    if (!this.#failed && this.buffered > this.#hwm) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }
}
