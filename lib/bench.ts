/**
 * The load generator behind `lbkit bench`: C connections, each keeping D
 * requests in flight, a GET/SET mix over a key space it fills first, a
 * warm-up excluded from the figures, latencies in a {@linkcode Histogram}.
 *
 * It speaks raw frames (built in place with `FrameWriter.reserve`, read with
 * `FrameReader`), one slot per request in flight: a request's id is its slot,
 * so a reply finds its send time without a map or a promise.
 *
 * Two protocols: `client` (PROTOCOL.md client frames, to an LB node) and
 * `worker` (the LB<->worker frames, straight to a worker's listener: the
 * store's ceiling without a balancer in between).
 *
 * @module
 */

import process from "node:process";
import { parseHostPort } from "./addr.ts";
import { closeQuietly, isConnGone, noDelay } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { FrameReader, MAX_PAYLOAD } from "./frame.ts";
import { Histogram } from "./histogram.ts";
import {
  ERR,
  ERROR,
  fromUtf8,
  GET,
  NIL,
  OK,
  readU32,
  REQUEST_HEADER,
  SET,
  VALUE,
} from "./messages.ts";
import { WORKER_OFFSET } from "./wire.ts";
import { FrameWriter } from "./writer.ts";

/** Which frames the generator speaks. */
export type BenchProtocol = "client" | "worker";

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  /** `host:port` of an LB node (`client`) or a worker's listener (`worker`). */
  addr: string;
  /**
   * `client` frames to an LB node, or LB<->worker frames to a worker.
   * @default {"client"}
   */
  protocol?: BenchProtocol;
  /**
   * Connections.
   * @default {50}
   */
  connections?: number;
  /**
   * Requests each connection keeps in flight.
   * @default {1}
   */
  depth?: number;
  /**
   * Bytes per SET value.
   * @default {64}
   */
  valueSize?: number;
  /**
   * Distinct keys; all are SET before the warm-up so GETs hit.
   * @default {10000}
   */
  keys?: number;
  /**
   * Fraction of requests that are GETs (the rest are SETs).
   * @default {0.5}
   */
  getRatio?: number;
  /**
   * Seconds measured (ignored when `requests` is set).
   * @default {5}
   */
  duration?: number;
  /**
   * Stop after this many measured replies instead of after `duration`.
   * @default {undefined}
   */
  requests?: number;
  /**
   * Seconds of load before measuring starts.
   * @default {1}
   */
  warmup?: number;
  /**
   * SET every key before the warm-up.
   * @default {true}
   */
  populate?: boolean;
  /** Ends the run early (the result says `aborted`). */
  signal?: AbortSignal;
  /**
   * Called, synchronously, as each phase begins (e.g. to sample other
   * processes' CPU at the edges of the measured window).
   * @default {undefined}
   */
  onPhase?: (phase: LoadPhase) => void;
  /**
   * Longest wait in ms for the replies in flight when the run ends.
   * @default {1000}
   */
  drainMs?: number;
}

/** Where a run is. */
export type LoadPhase = "connect" | "populate" | "warmup" | "measure" | "drain" | "done";

/** A live view of a run, for progress lines. */
export interface LoadSnapshot {
  /** Where the run is. */
  phase: LoadPhase;
  /** Successful replies in all phases (for a rate between two snapshots). */
  replies: number;
  /** Successful replies measured so far. */
  ops: number;
  /** ERR replies measured so far. */
  errors: number;
  /** Seconds measured so far. */
  seconds: number;
  /** Keys SET by the populate phase so far. */
  populated: number;
}

/** What a run measured. */
export interface LoadResult {
  /** Successful replies (OK, VALUE, NIL) in the measured window. */
  ops: number;
  /** `ERR` replies in the measured window. */
  errors: number;
  /** GETs answered NIL in the measured window (keys missing). */
  misses: number;
  /** Length of the measured window in seconds. */
  seconds: number;
  /** `ops / seconds`. */
  rate: number;
  /** Latency of every successful measured reply, microseconds. */
  histogram: Histogram;
  /** `ERR` reasons and how often each came (at most 16 kept). */
  errorReasons: Record<string, number>;
  /** Keys SET successfully before the warm-up. */
  populated: number;
  /** Populating SETs that failed. */
  populateErrors: number;
  /** CPU of this process (user + system) over the window, % of one core. */
  cpu: number;
  /** True when `signal` ended the run. */
  aborted: boolean;
  /** Why the run ended early (every connection lost), if it did. */
  failure: string | null;
}

// Slot states.
const FREE = 0;
const OP_SET = 1;
const OP_GET = 2;
const OP_FILL = 3;

const MAX_DEPTH = 65536;

/** One connection and its slots. */
class LoadConn {
  readonly conn: Deno.Conn;
  readonly writer: FrameWriter;
  readonly reader: FrameReader;
  /** Send time (performance.now) of the request in each slot. */
  readonly sent: Float64Array;
  /** What is in each slot: FREE, OP_SET, OP_GET, OP_FILL. */
  readonly op: Uint8Array;
  inflight = 0;
  /** performance.now() of the batch being handled, 0 between batches. */
  now = 0;
  closed = false;

  constructor(
    conn: Deno.Conn,
    depth: number,
    accept: (type: number) => boolean,
    onError: () => void,
  ) {
    this.conn = conn;
    this.writer = new FrameWriter(conn, { onError });
    this.reader = new FrameReader(conn, { accept });
    this.sent = new Float64Array(depth);
    this.op = new Uint8Array(depth);
  }
}

/** The key bytes of key `i`: `k` and the index, zero-padded to one width. */
export function keyBytes(keys: number): { bytes: Uint8Array; width: number } {
  const digits = String(Math.max(0, keys - 1)).length;
  const width = 1 + digits;
  const bytes = new Uint8Array(keys * width);
  for (let i = 0; i < keys; i++) {
    const s = "k" + String(i).padStart(digits, "0");
    for (let j = 0; j < width; j++) bytes[i * width + j] = s.charCodeAt(j);
  }
  return { bytes, width };
}

function positive(name: string, v: number, integer: boolean, min: number, max = Infinity): number {
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new RangeError(
      `${name} must be ${integer ? "an integer" : "a number"} >= ${min}` +
        (max < Infinity ? ` and <= ${max}` : "") + `, got ${v}`,
    );
  }
  return v;
}

/** One run of the generator; see {@linkcode runLoad}. */
class LoadRun {
  #o: Required<Omit<LoadOptions, "requests" | "signal" | "onPhase">> & {
    requests: number | undefined;
  };
  #signal: AbortSignal | undefined;
  #onPhase: ((phase: LoadPhase) => void) | undefined;
  #base: number;
  #keys: Uint8Array;
  #keyLen: number;
  #value: Uint8Array;
  #getThreshold: number;
  #rng = 0x9e3779b9;
  #conns: LoadConn[] = [];
  #hist = new Histogram();
  #phase: LoadPhase = "connect";
  #inflight = 0;
  // Populate.
  #fillNext = 0;
  #fillDone = 0;
  #fillErrors = 0;
  // Measure.
  #replies = 0;
  #ops = 0;
  #errors = 0;
  #misses = 0;
  #issued = 0;
  #reasons: Record<string, number> = {};
  #start = 0;
  #end = 0;
  #cpuStart = { user: 0, system: 0 };
  #cpu = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #finished = Promise.withResolvers<void>();
  #drained: (() => void) | null = null;
  #aborted = false;
  #failure: string | null = null;
  #closing = false;

  constructor(options: LoadOptions) {
    const o = {
      addr: options.addr,
      protocol: options.protocol ?? "client",
      connections: positive("connections", options.connections ?? 50, true, 1, 100_000),
      depth: positive("depth", options.depth ?? 1, true, 1, MAX_DEPTH),
      valueSize: positive("valueSize", options.valueSize ?? 64, true, 0),
      keys: positive("keys", options.keys ?? 10_000, true, 1),
      getRatio: positive("getRatio", options.getRatio ?? 0.5, false, 0, 1),
      duration: positive("duration", options.duration ?? 5, false, 0),
      requests: options.requests === undefined
        ? undefined
        : positive("requests", options.requests, true, 1),
      warmup: positive("warmup", options.warmup ?? 1, false, 0),
      populate: options.populate ?? true,
      drainMs: options.drainMs ?? 1000,
    };
    if (o.requests === undefined && !(o.duration > 0)) {
      throw new RangeError("duration must be > 0 when requests is not set");
    }
    if (o.protocol !== "client" && o.protocol !== "worker") {
      throw new RangeError(`protocol must be client or worker, got ${o.protocol}`);
    }
    this.#o = o;
    this.#signal = options.signal;
    this.#onPhase = options.onPhase;
    this.#base = o.protocol === "worker" ? WORKER_OFFSET : 0;
    const k = keyBytes(o.keys);
    this.#keys = k.bytes;
    this.#keyLen = k.width;
    if (REQUEST_HEADER + k.width + o.valueSize > MAX_PAYLOAD) {
      throw new RangeError(
        `valueSize must be at most ${MAX_PAYLOAD - REQUEST_HEADER - k.width}, got ${o.valueSize}`,
      );
    }
    this.#value = new Uint8Array(o.valueSize);
    for (let i = 0; i < o.valueSize; i++) this.#value[i] = 0x61 + (i % 26);
    this.#getThreshold = Math.floor(o.getRatio * 0x100000000);
  }

  snapshot(): LoadSnapshot {
    const now = this.#phase === "measure" ? performance.now() : this.#end;
    return {
      phase: this.#phase,
      replies: this.#replies,
      ops: this.#ops,
      errors: this.#errors,
      seconds: this.#start === 0 ? 0 : Math.max(0, now - this.#start) / 1000,
      populated: this.#fillDone,
    };
  }

  async run(): Promise<LoadResult> {
    const signal = this.#signal;
    const onAbort = () => {
      this.#aborted = true;
      this.#finish();
    };
    signal?.addEventListener("abort", onAbort);
    const loops: Promise<void>[] = [];
    try {
      if (signal?.aborted) onAbort();
      await this.#connect();
      if (!this.#aborted) {
        for (const c of this.#conns) loops.push(this.#readLoop(c));
        if (this.#o.populate) this.#startPopulate();
        else this.#startWarmup();
        await this.#finished.promise;
        // Let what is in flight come back (bounded), so the server sees a clean close.
        if (this.#inflight > 0 && this.#failure === null && !this.#aborted) {
          let t: ReturnType<typeof setTimeout> | undefined;
          await new Promise<void>((resolve) => {
            this.#drained = resolve;
            t = setTimeout(resolve, this.#o.drainMs);
          });
          clearTimeout(t);
          this.#drained = null;
        }
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(this.#timer);
      this.#closing = true;
      for (const c of this.#conns) closeQuietly(c.conn);
      await Promise.all(loops);
      this.#setPhase("done");
    }
    const seconds = Math.max(0, this.#end - this.#start) / 1000;
    return {
      ops: this.#ops,
      errors: this.#errors,
      misses: this.#misses,
      seconds,
      rate: seconds > 0 ? this.#ops / seconds : 0,
      histogram: this.#hist,
      errorReasons: this.#reasons,
      populated: this.#fillDone - this.#fillErrors,
      populateErrors: this.#fillErrors,
      cpu: this.#cpu,
      aborted: this.#aborted,
      failure: this.#failure,
    };
  }

  async #connect(): Promise<void> {
    const { connections, depth, addr } = this.#o;
    const target = parseHostPort(addr);
    const base = this.#base;
    const accept = (t: number) =>
      t === ERROR || t === OK + base || t === VALUE + base || t === NIL + base || t === ERR + base;
    const results = await Promise.allSettled(
      Array.from({ length: connections }, () => Deno.connect(target)),
    );
    const failed = results.find((r) => r.status === "rejected");
    for (const r of results) {
      if (r.status !== "fulfilled") continue;
      noDelay(r.value);
      const c: LoadConn = new LoadConn(r.value, depth, accept, () => this.#lost(c, "write failed"));
      this.#conns.push(c);
    }
    if (failed !== undefined) {
      for (const c of this.#conns) closeQuietly(c.conn);
      this.#conns = [];
      const err = (failed as PromiseRejectedResult).reason;
      throw new Error(`cannot connect to ${addr}: ${(err as Error).message ?? err}`);
    }
  }

  #nextRandom(): number {
    // xorshift32
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x >>> 0;
    return this.#rng;
  }

  /** Queues one request in `slot` of `c`. */
  #send(c: LoadConn, slot: number, op: number, key: number, now: number): void {
    const L = this.#keyLen;
    const withValue = op !== OP_GET;
    const vlen = withValue ? this.#value.length : 0;
    const type = (op === OP_GET ? GET : SET) + this.#base;
    const view = c.writer.reserve(type, REQUEST_HEADER + L + vlen);
    view[0] = 0;
    view[1] = slot >>> 16;
    view[2] = (slot >>> 8) & 0xff;
    view[3] = slot & 0xff;
    view[4] = L >>> 8;
    view[5] = L & 0xff;
    const keys = this.#keys;
    const off = key * L;
    for (let i = 0; i < L; i++) view[REQUEST_HEADER + i] = keys[off + i];
    if (vlen > 0) view.set(this.#value, REQUEST_HEADER + L);
    c.op[slot] = op;
    c.sent[slot] = now;
    c.inflight++;
    this.#inflight++;
  }

  /** Fills a free slot with the next request of the current phase, if any. */
  #issue(c: LoadConn, slot: number, now: number): void {
    if (c.closed) return;
    const phase = this.#phase;
    if (phase === "populate") {
      if (this.#fillNext < this.#o.keys) this.#send(c, slot, OP_FILL, this.#fillNext++, now);
      return;
    }
    if (phase !== "warmup" && phase !== "measure") return;
    if (phase === "measure" && this.#o.requests !== undefined) {
      if (this.#issued >= this.#o.requests) return;
      this.#issued++;
    }
    const op = this.#nextRandom() < this.#getThreshold ? OP_GET : OP_SET;
    this.#send(c, slot, op, this.#nextRandom() % this.#o.keys, now);
  }

  #fillAll(): void {
    const now = performance.now();
    for (const c of this.#conns) {
      for (let s = 0; s < this.#o.depth; s++) if (c.op[s] === FREE) this.#issue(c, s, now);
    }
  }

  #setPhase(phase: LoadPhase): void {
    this.#phase = phase;
    this.#onPhase?.(phase);
  }

  #startPopulate(): void {
    this.#setPhase("populate");
    this.#fillAll();
    if (this.#inflight === 0) this.#startWarmup();
  }

  #startWarmup(): void {
    if (this.#phase === "drain") return;
    this.#setPhase("warmup");
    this.#fillAll();
    if (this.#o.warmup > 0) {
      this.#timer = setTimeout(() => this.#startMeasure(), this.#o.warmup * 1000);
    } else this.#startMeasure();
  }

  #startMeasure(): void {
    if (this.#phase === "drain") return;
    this.#start = performance.now();
    this.#cpuStart = process.cpuUsage();
    this.#setPhase("measure");
    if (this.#o.requests === undefined) {
      this.#timer = setTimeout(() => this.#finish(), this.#o.duration * 1000);
    } else {
      // Slots left free by the warm-up (none) or by a smaller request budget.
      this.#fillAll();
    }
  }

  /** Ends the measured window; requests in flight are no longer counted. */
  #finish(): void {
    if (this.#phase === "drain" || this.#phase === "done") return;
    const measured = this.#phase === "measure";
    clearTimeout(this.#timer);
    this.#end = performance.now();
    if (measured) {
      const cpu = process.cpuUsage(this.#cpuStart);
      const us = (this.#end - this.#start) * 1000;
      this.#cpu = us > 0 ? ((cpu.user + cpu.system) / us) * 100 : 0;
    } else this.#start = this.#end;
    this.#setPhase("drain");
    this.#finished.resolve();
  }

  /** Handles one reply frame on `c`. */
  #onFrame(c: LoadConn, type: number, payload: Uint8Array): void {
    if (type === ERROR) {
      throw new ProtocolError(`server closed the connection: ${fromUtf8(payload)}`);
    }
    if (payload.length < 4) throw new ProtocolError("reply shorter than 4 bytes");
    const slot = readU32(payload, 0);
    const op = slot < c.op.length ? c.op[slot] : FREE;
    if (op === FREE) throw new ProtocolError(`reply for id ${slot}, which is not in flight`);
    const now = c.now || (c.now = performance.now());
    c.op[slot] = FREE;
    c.inflight--;
    this.#inflight--;
    const t = type - this.#base;
    const ok = t !== ERR;
    if (op === OP_FILL) {
      this.#fillDone++;
      if (!ok) {
        this.#fillErrors++;
        this.#reason(fromUtf8(payload.subarray(4)), false);
      }
      this.#issue(c, slot, now);
      if (this.#fillDone === this.#o.keys) this.#startWarmup();
    } else {
      if (ok) this.#replies++;
      if (this.#phase === "measure") {
        if (ok) {
          this.#ops++;
          this.#hist.record((now - c.sent[slot]) * 1000);
          if (t === NIL && op === OP_GET) this.#misses++;
        } else {
          this.#errors++;
          this.#reason(fromUtf8(payload.subarray(4)), true);
        }
        if (this.#o.requests !== undefined && this.#ops + this.#errors >= this.#o.requests) {
          this.#finish();
        }
      }
      this.#issue(c, slot, now);
    }
    if (this.#inflight === 0 && this.#drained !== null) this.#drained();
  }

  #reason(reason: string, measured: boolean): void {
    const key = measured ? reason : `${reason} (populate)`;
    if (key in this.#reasons || Object.keys(this.#reasons).length < 16) {
      this.#reasons[key] = (this.#reasons[key] ?? 0) + 1;
    }
  }

  async #readLoop(c: LoadConn): Promise<void> {
    const onFrame = (type: number, payload: Uint8Array) => this.#onFrame(c, type, payload);
    try {
      while (await c.reader.read(onFrame)) {
        c.now = 0;
        if (c.writer.full) await c.writer.ready;
      }
      this.#lost(c, "connection closed by the server");
    } catch (err) {
      if (this.#closing && (isConnGone(err) || err instanceof Deno.errors.BadResource)) return;
      this.#lost(
        c,
        err instanceof ProtocolError || !isConnGone(err) ? String(err) : "connection lost",
      );
    }
  }

  /** A connection is gone; the run ends when the last one goes. */
  #lost(c: LoadConn, why: string): void {
    if (c.closed) return;
    c.closed = true;
    this.#inflight -= c.inflight;
    c.inflight = 0;
    closeQuietly(c.conn);
    if (this.#closing) return;
    this.#reason(`connection: ${why}`, true);
    // The keys it was filling are lost: count them failed, do not wait for them.
    let fills = 0;
    for (let s = 0; s < c.op.length; s++) if (c.op[s] === OP_FILL) fills++;
    c.op.fill(FREE);
    this.#fillDone += fills;
    this.#fillErrors += fills;
    if (this.#conns.every((x) => x.closed)) {
      this.#failure = `every connection was lost (last: ${why})`;
      this.#finish();
    } else if (fills > 0 && this.#phase === "populate" && this.#fillDone === this.#o.keys) {
      this.#startWarmup();
    }
    if (this.#inflight === 0 && this.#drained !== null) this.#drained();
  }
}

/**
 * Runs the generator against `options.addr` and resolves with what it
 * measured. `onStart` receives a snapshot function for progress lines.
 * Rejects only when it cannot connect; a run that loses every connection
 * resolves with `failure` set.
 *
 * @example
 * ```ts ignore
 * const r = await runLoad({ addr: "127.0.0.1:5059", connections: 50, depth: 16 });
 * console.log(r.rate, r.histogram.percentile(99));
 * ```
 */
export async function runLoad(
  options: LoadOptions,
  onStart?: (snapshot: () => LoadSnapshot) => void,
): Promise<LoadResult> {
  const run = new LoadRun(options);
  onStart?.(() => run.snapshot());
  return await run.run();
}

/** Options for {@linkcode waitReady}. */
export interface WaitReadyOptions {
  /** Target `host:port`. */
  addr: string;
  /**
   * Frames to speak.
   * @default {"client"}
   */
  protocol?: BenchProtocol;
  /**
   * Give up after this many ms.
   * @default {15000}
   */
  timeoutMs?: number;
  /** Stops waiting (rejects). */
  signal?: AbortSignal;
}

/**
 * Resolves once a `SET` through `addr` is answered `OK` (an LB node with a
 * worker in its ring, or a worker). Retries every 100 ms; rejects with the
 * last reason after `timeoutMs`.
 */
export async function waitReady(options: WaitReadyOptions): Promise<void> {
  const base = options.protocol === "worker" ? WORKER_OFFSET : 0;
  const until = Date.now() + (options.timeoutMs ?? 15000);
  const key = new TextEncoder().encode("bench-probe");
  let last = "no attempt";
  for (;;) {
    options.signal?.throwIfAborted();
    let conn: Deno.Conn | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      conn = await Deno.connect(parseHostPort(options.addr));
      const c = conn;
      timer = setTimeout(() => closeQuietly(c), Math.max(1, Math.min(1000, until - Date.now())));
      const writer = new FrameWriter(conn);
      const view = writer.reserve(SET + base, REQUEST_HEADER + key.length + 1);
      view.set([0, 0, 0, 1, 0, key.length], 0);
      view.set(key, REQUEST_HEADER);
      view[REQUEST_HEADER + key.length] = 0x31;
      const reader = new FrameReader(conn);
      let reply: { type: number; body: string } | null = null;
      while (reply === null) {
        const more = await reader.read((type, payload) => {
          reply = type === ERROR
            ? { type: ERROR, body: fromUtf8(payload) }
            : { type: type - base, body: fromUtf8(payload.subarray(4)) };
        });
        if (!more) break;
      }
      const r = reply as { type: number; body: string } | null;
      if (r !== null && r.type === OK) return;
      last = r === null
        ? "connection closed"
        : r.type === ERR
        ? r.body
        : `reply 0x${r.type.toString(16)}`;
    } catch (err) {
      last = (err as Error).message ?? String(err);
    } finally {
      clearTimeout(timer);
      if (conn !== null) closeQuietly(conn);
    }
    if (Date.now() >= until) throw new Error(`${options.addr} not ready: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
