/**
 * Receiver threads for an LB node (`--threads N`): N-1 Web Workers, each a
 * listener on the same client port (`reusePort`, so the kernel spreads the
 * connections) with its own balancer; the main thread is the N-th. The
 * round-robin counter lives in a `SharedArrayBuffer`, so the rotation over
 * the workers stays global; membership reaches every thread at once and
 * their figures add up in `status` and in the load the node reports.
 *
 * @module
 */

import type { NodeLoad } from "./least_loaded.ts";
import type { Logger } from "./log.ts";
import type { Member } from "./worker_links.ts";

/** Messages to a receiver thread. */
export type ThreadIn =
  | {
    type: "init";
    index: number;
    node: string;
    hostname: string;
    port: number;
    queueSize: number;
    timeout: number;
    rotation: SharedArrayBuffer;
    logLevel: string;
  }
  | { type: "members"; workers: Member[] }
  | { type: "table"; rows: NodeLoad[]; self: NodeLoad }
  | { type: "stop"; graceMs: number };

/** A receiver thread's figures. */
export interface ThreadStats {
  /** Client connections open. */
  clients: number;
  /** Requests accepted and not yet answered. */
  inflight: number;
  /** Requests accepted in all. */
  accepted: number;
  /** Replies sent in all. */
  answered: number;
  /** `ERR` replies sent. */
  errors: number;
  /** Requests failed by timeout. */
  timeouts: number;
  /** Requests resent after their worker was lost. */
  retries: number;
  /** Requests answered per second, recent. */
  rps: number;
  /** Workers in the thread's ring. */
  workers: number;
}

type ThreadOut =
  | { type: "ready"; addr: string }
  | { type: "stats"; stats: ThreadStats }
  | { type: "error"; message: string }
  | { type: "stopped" };

/** Options for {@linkcode ReceiverPool}. */
export interface ReceiverPoolOptions {
  /** Name of the LB node, for logs and `W_LB_HELLO`. */
  node: string;
  /** Interface of the shared client port. */
  hostname: string;
  /** The client port, already bound by the main thread with `reusePort`. */
  port: number;
  /** The shared round-robin counter (4 bytes). */
  rotation: SharedArrayBuffer;
  /**
   * Queue capacity per thread.
   * @default {4096}
   */
  queueSize?: number;
  /**
   * Request deadline in ms.
   * @default {5000}
   */
  timeout?: number;
  /**
   * Log level inside the threads.
   * @default {"warn"}
   */
  logLevel?: string;
  /** Where the pool logs. */
  logger: Logger;
}

const ZERO: ThreadStats = {
  clients: 0,
  inflight: 0,
  accepted: 0,
  answered: 0,
  errors: 0,
  timeouts: 0,
  retries: 0,
  rps: 0,
  workers: 0,
};

/** The extra receiver threads of one LB node. */
export class ReceiverPool {
  #n: number;
  #opts: ReceiverPoolOptions;
  #threads: { worker: Worker; stats: ThreadStats }[] = [];

  /** `n` threads besides the main one. */
  constructor(n: number, options: ReceiverPoolOptions) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`threads must be >= 1, got ${n}`);
    this.#n = n;
    this.#opts = options;
  }

  /** Starts the threads; resolves once every one listens. */
  async start(): Promise<void> {
    const o = this.#opts;
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.#n; i++) {
      const worker = new Worker(new URL("./receiver_thread.ts", import.meta.url), {
        type: "module",
      });
      const t = { worker, stats: { ...ZERO } };
      this.#threads.push(t);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.onmessage = (e: MessageEvent<ThreadOut>) => {
            const m = e.data;
            if (m.type === "ready") resolve();
            else if (m.type === "stats") t.stats = m.stats;
            else if (m.type === "error") {
              o.logger.error(`receiver thread ${i + 1}: ${m.message}`);
              reject(new Error(m.message));
            }
          };
          worker.onerror = (e) => {
            e.preventDefault();
            const hint = /read access/.test(e.message)
              ? ` (from a checkout, receiver threads need --allow-read=${
                new URL(".", import.meta.url).pathname
              })`
              : "";
            reject(new Error(`receiver thread ${i + 1}: ${e.message}${hint}`));
          };
        }),
      );
      const init: ThreadIn = {
        type: "init",
        index: i + 1,
        node: o.node,
        hostname: o.hostname,
        port: o.port,
        queueSize: o.queueSize ?? 4096,
        timeout: o.timeout ?? 5000,
        rotation: o.rotation,
        logLevel: o.logLevel ?? "warn",
      };
      worker.postMessage(init);
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      for (const t of this.#threads) t.worker.terminate();
      this.#threads = [];
      throw err;
    }
  }

  /** Sends the ready workers to every thread. */
  members(workers: Member[]): void {
    for (const t of this.#threads) t.worker.postMessage({ type: "members", workers });
  }

  /** Sends the load table (other nodes) and this node's total row. */
  table(rows: NodeLoad[], self: NodeLoad): void {
    for (const t of this.#threads) t.worker.postMessage({ type: "table", rows, self });
  }

  /** Each thread's last figures. */
  perThread(): ThreadStats[] {
    return this.#threads.map((t) => t.stats);
  }

  /** The threads' figures added up. */
  totals(): ThreadStats {
    const sum = { ...ZERO };
    for (const { stats } of this.#threads) {
      for (const k of Object.keys(sum) as (keyof ThreadStats)[]) sum[k] += stats[k];
    }
    return sum;
  }

  /** Stops every thread (answering what is in flight, up to `graceMs`). */
  async stop(graceMs = 0): Promise<void> {
    await Promise.all(this.#threads.map((t) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          t.worker.terminate();
          resolve();
        }, graceMs + 2000);
        t.worker.onmessage = (e: MessageEvent<ThreadOut>) => {
          if (e.data.type === "stats") t.stats = e.data.stats;
          if (e.data.type === "stopped") {
            clearTimeout(timer);
            t.worker.terminate();
            resolve();
          }
        };
        t.worker.postMessage({ type: "stop", graceMs });
      })
    ));
    this.#threads = [];
  }
}
