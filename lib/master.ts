/**
 * `lbkit master`: the front door. A full balancer for clients, and the
 * authority on membership: workers register on its worker port.
 *
 * @module
 */

import { formatHostPort, listenerAddr, parseHostPort } from "./addr.ts";
import { Balancer, type BalancerStats, WorkerLink } from "./balancer.ts";
import { closeQuietly, noDelay, remote } from "./conn.ts";
import type { NodeLoad } from "./least_loaded.ts";
import { SlaveHub, type SlaveRow } from "./slave_hub.ts";
import { runHook } from "./hooks.ts";
import { ReceiverPool, type ThreadStats } from "./receivers.ts";
import { masterMachine, type MasterState, type StateMachine } from "./tier_state.ts";
import { ProtocolError } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import { type Logger, silentLogger } from "./log.ts";
import { fromUtf8 } from "./messages.ts";
import {
  encodeJson,
  W_EXPORT,
  W_PEER_DOWN,
  W_PEER_FAILED,
  W_PEER_UP,
  W_READY,
  W_REGISTER,
  W_STATUS,
  W_WELCOME,
} from "./wire.ts";
import { FrameWriter } from "./writer.ts";

/** Options for {@linkcode Master}. */
export interface MasterOptions {
  /**
   * Interface for every listener.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Client port; 0 picks a free one.
   * @default {5059}
   */
  port?: number;
  /**
   * Worker registration port.
   * @default {5060}
   */
  workerPort?: number;
  /**
   * Slave port (LB tier).
   * @default {5061}
   */
  slavePort?: number;
  /**
   * Request and response queue capacity.
   * @default {4096}
   */
  queueSize?: number;
  /**
   * Request deadline in ms.
   * @default {5000}
   */
  timeout?: number;
  /**
   * Heartbeat interval with the slaves, ms.
   * @default {1000}
   */
  heartbeat?: number;
  /**
   * A slave silent this long is DOWN, ms.
   * @default {3 * heartbeat}
   */
  deadAfter?: number;
  /**
   * The cluster term this master serves; each promotion adds one.
   * @default {1}
   */
  term?: number;
  /**
   * A balancer to serve with instead of a new one (a slave promoted to
   * master keeps its own, with its worker links); {@linkcode Master.stop}
   * then leaves it running.
   * @default {undefined}
   */
  balancer?: Balancer;
  /**
   * Called once when a higher term shows up: this master must step down.
   * The master has already closed its listeners when it is called.
   * @default {undefined}
   */
  onStepDown?: (term: number) => void;
  /**
   * This node's own address (not the VIP). When set, the master also
   * listens for slaves there, on the slave port, so that after a failover
   * across hosts the new master can tell it the higher term.
   * @default {undefined}
   */
  nodeHost?: string;
  /**
   * Shell command run before binding the VIP (see lib/hooks.ts).
   * @default {undefined}
   */
  vipUp?: string;
  /**
   * Shell command run after stepping down and releasing the VIP.
   * @default {undefined}
   */
  vipDown?: string;
  /**
   * Called when a worker becomes ready (in the ring) under this master.
   * @default {undefined}
   */
  onWorkerReady?: (id: string) => void;
  /**
   * Receiver threads for the client port: the main thread and `threads - 1`
   * Web Workers, each with its own listener on the port (`reusePort`).
   * @default {1}
   */
  threads?: number;
  /**
   * Log level inside receiver threads.
   * @default {"warn"}
   */
  threadLogLevel?: string;
  /**
   * Where to log.
   * @default {silentLogger}
   */
  logger?: Logger;
}

/** The VIP: the master's host and ports, as slaves learn them. */
export interface Vip {
  /** The VIP host. */
  host: string;
  /** The client port. */
  port: number;
  /** The port workers register on. */
  workerPort: number;
  /**
   * Where the master that holds the VIP can be told of a higher term at its
   * own address (`host:port`), if it listens there: across hosts, the VIP
   * itself leads to the new master once it moved.
   */
  node?: string;
  /** The port slaves connect to. */
  slavePort: number;
}

/** The bound addresses. */
export interface MasterAddrs {
  /** The client listener's `host:port`. */
  clients: string;
  /** The worker listener's `host:port`. */
  workers: string;
  /** The slave listener's `host:port`. */
  slaves: string;
}

/** What the master knows of a registered worker. */
interface WorkerInfo {
  link: WorkerLink;
  status: Record<string, unknown> | null;
  /** Has its full export (or needed none): may take traffic and be a source. */
  ready: boolean;
  /** The worker streaming this one its export, while not ready. */
  exportFrom: string | null;
  /** Its digest, from registration and then from status reports. */
  digest: string;
  /** When the worker last sent a control frame (its status answers). */
  heard: number;
}

/** The master LB node. */
export class Master {
  /** Routes client requests to the workers. */
  readonly balancer: Balancer;
  /** The connected slaves and their load table. */
  readonly slaves: SlaveHub;
  #state: StateMachine<MasterState>;
  #opts: MasterOptions;
  #log: Logger;
  #listeners: Deno.Listener[] = [];
  #addrs: MasterAddrs | null = null;
  #workers = new Map<string, WorkerInfo>();
  #tasks = new Set<Promise<void>>();
  #stopping = false;
  #statusTimer: ReturnType<typeof setInterval> | undefined;
  #term: number;
  #ownsBalancer: boolean;
  #vip: Vip | null = null;
  #rotation: SharedArrayBuffer | null;
  #pool: ReceiverPool | null = null;
  /** Workers dropped for failing a peer: their next registration gets an export. */
  #resync = new Set<string>();
  #tableTimer: ReturnType<typeof setInterval> | undefined;

  /** Creates a master; `start()` binds its listeners and serves. */
  constructor(options: MasterOptions = {}) {
    this.#opts = options;
    this.#log = options.logger ?? silentLogger;
    this.#term = options.term ?? 1;
    this.#ownsBalancer = options.balancer === undefined;
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be an integer >= 1, got ${threads}`);
    }
    if (threads > 1 && !this.#ownsBalancer) {
      throw new TypeError("receiver threads need the master's own balancer");
    }
    this.#rotation = threads > 1 ? new SharedArrayBuffer(4) : null;
    this.balancer = options.balancer ?? new Balancer({
      queueSize: options.queueSize,
      timeout: options.timeout,
      logger: this.#log,
      rotation: this.#rotation === null ? undefined : new Int32Array(this.#rotation),
    });
    this.slaves = new SlaveHub({
      heartbeat: options.heartbeat,
      deadAfter: options.deadAfter,
      logger: this.#log,
      members: () => this.members(),
      self: () => this.#selfLoad(null),
      term: () => this.#term,
      vip: () => this.#vip,
      onHigherTerm: (term, from) => this.#stepDown(term, from),
    });
    this.#state = masterMachine((from, to) => this.#log.info(`master: ${from} -> ${to}`));
  }

  /** The term this master serves. */
  get term(): number {
    return this.#term;
  }

  /** The VIP this master holds (after {@linkcode start}). */
  get vip(): Vip {
    if (this.#vip === null) throw new TypeError("master not started");
    return this.#vip;
  }

  /** A higher term exists: release the VIP at once and tell the owner. */
  #stepDown(term: number, from: string): void {
    if (this.#stopping) return;
    this.#log.warn(
      `term ${term} (from ${from}) is higher than ours (${this.#term}): stepping down`,
    );
    for (const l of this.#listeners) closeQuietly(l);
    this.#listeners = [];
    this.stop(0).catch((err) => this.#log.error(`step-down: ${err}`));
    const down = this.#opts.vipDown;
    if (down !== undefined) {
      const host = this.#vip?.host ?? "";
      runHook(down, { event: "down", host, term }, { logger: this.#log });
    }
    this.#opts.onStepDown?.(term);
  }

  /** `UP_LISTENING` while serving, `DOWN` otherwise. */
  get state(): MasterState {
    return this.#state.state;
  }

  /** The ready workers: the ring every LB node balances over. */
  members(): { id: string; addr: string }[] {
    return [...this.#workers.values()].filter((w) => w.ready).map((w) => ({
      id: w.link.id,
      addr: w.link.addr,
    }));
  }

  #selfLoad(local: Deno.NetAddr | null): NodeLoad {
    const addr = local === null
      ? this.#dialable(this.addrs.clients, { hostname: "127.0.0.1", port: 0, transport: "tcp" })
      : this.#dialable(this.addrs.clients, local);
    const t = this.#pool?.totals();
    return {
      addr,
      connections: this.balancer.clientCount + (t?.clients ?? 0),
      inflight: this.balancer.inflight + (t?.inflight ?? 0),
    };
  }

  /** A wildcard-bound address made dialable with the interface `local` came in on. */
  #dialable(addr: string, local: Deno.NetAddr): string {
    const a = parseHostPort(addr);
    if (a.hostname !== "0.0.0.0" && a.hostname !== "::") return addr;
    return formatHostPort({ hostname: local.hostname, port: a.port });
  }

  /** Bound addresses (after {@linkcode start}). */
  get addrs(): MasterAddrs {
    if (this.#addrs === null) throw new TypeError("master not started");
    return this.#addrs;
  }

  /** Binds the client, worker and slave listeners and starts serving. */
  async start(): Promise<void> {
    const hostname = this.#opts.hostname ?? "0.0.0.0";
    if (this.#opts.vipUp !== undefined) {
      await runHook(this.#opts.vipUp, { event: "up", host: hostname, term: this.#term }, {
        logger: this.#log,
      });
    }
    const threads = this.#opts.threads ?? 1;
    const bind = (port: number, reusePort = false) => {
      const l = reusePort
        ? Deno.listen({ hostname, port, reusePort } as Deno.TcpListenOptions)
        : Deno.listen({ hostname, port });
      this.#listeners.push(l);
      return l;
    };
    try {
      const clients = bind(this.#opts.port ?? 5059, threads > 1);
      const workers = bind(this.#opts.workerPort ?? 5060);
      const slaves = bind(this.#opts.slavePort ?? 5061);
      this.#addrs = {
        clients: formatHostPort(listenerAddr(clients)),
        workers: formatHostPort(listenerAddr(workers)),
        slaves: formatHostPort(listenerAddr(slaves)),
      };
      this.balancer.nodeAddr = (local) => this.slaves.leastLoaded(this.#selfLoad(local));
      const nodeHost = this.#opts.nodeHost;
      const own = nodeHost !== undefined && nodeHost !== hostname
        ? Deno.listen({ hostname: nodeHost, port: listenerAddr(slaves).port })
        : null;
      if (own !== null) {
        this.#listeners.push(own);
        this.#track(this.#accept(own, (c) => this.slaves.serve(c)));
      }
      this.#vip = {
        host: hostname,
        port: listenerAddr(clients).port,
        workerPort: listenerAddr(workers).port,
        slavePort: listenerAddr(slaves).port,
        ...(own !== null ? { node: formatHostPort(listenerAddr(own)) } : {}),
      };
      this.#track(this.#accept(clients, (c) => this.balancer.serveClient(c)));
      this.#track(this.#accept(workers, (c) => this.#serveWorker(c)));
      this.#track(this.#accept(slaves, (c) => this.slaves.serve(c)));
      if (threads > 1) {
        this.#pool = new ReceiverPool(threads - 1, {
          node: "master",
          hostname,
          port: this.#vip.port,
          rotation: this.#rotation!,
          queueSize: this.#opts.queueSize,
          timeout: this.#opts.timeout,
          logLevel: this.#opts.threadLogLevel,
          logger: this.#log,
        });
        await this.#pool.start();
        this.#tableTimer = setInterval(() => {
          this.#pool?.table(this.slaves.rows(), this.#selfLoad(null));
        }, 250);
      }
    } catch (err) {
      for (const l of this.#listeners) closeQuietly(l);
      this.#listeners = [];
      throw err;
    }
    // Workers report their digest and key count; asking every heartbeat (at
    // most 1 s) is also what tells them this master is alive.
    this.#statusTimer = setInterval(() => {
      // A worker that stops answering (hung, its socket still open) leaves
      // the ring after dead-after, and gets a full export when it returns.
      const now = Date.now();
      const deadAfter = this.#opts.deadAfter ?? 3 * (this.#opts.heartbeat ?? 1000);
      for (const w of [...this.#workers.values()]) {
        if (now - w.heard > Math.max(deadAfter, 2500)) {
          this.#log.warn(`worker ${w.link.id} silent for ${now - w.heard} ms; dropping it`);
          this.#resync.add(w.link.id);
          this.balancer.detachWorker(w.link);
          continue;
        }
        w.link.writer.writeRaw(STATUS_REQUEST);
      }
    }, Math.min(1000, this.#opts.heartbeat ?? 1000));
    this.slaves.start();
    this.#state.to("UP_LISTENING");
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #accept(l: Deno.Listener, serve: (c: Deno.Conn) => Promise<void>): Promise<void> {
    try {
      for await (const conn of l) {
        if (this.#stopping) {
          closeQuietly(conn);
          continue;
        }
        noDelay(conn);
        this.#track(serve(conn));
      }
    } catch (err) {
      if (!this.#stopping) this.#log.error(`listener: ${err}`);
    }
  }

  /** A worker link: first frame `W_REGISTER`, then requests and replies. */
  async #serveWorker(conn: Deno.Conn): Promise<void> {
    const writer = new FrameWriter(conn);
    const link = new WorkerLink("?", "", conn, writer);
    const reader = new FrameReader(conn);
    let info: WorkerInfo | null = null;
    await this.balancer.attachWorker(link, reader, (type, payload) => {
      if (info === null) {
        if (type !== W_REGISTER) throw new ProtocolError("a worker's first frame must be REGISTER");
        info = this.#register(link, parseRegister(payload), remote(conn));
        return;
      }
      switch (type) {
        case W_STATUS:
          info.heard = Date.now();
          info.status = parseJson(payload);
          if (typeof info.status?.digest === "string") info.digest = info.status.digest;
          return;
        case W_READY:
          this.#markReady(info);
          return;
        case W_PEER_FAILED: {
          const failed = this.#workers.get(String(parseJson(payload).id));
          // Only a replica in good standing may have another dropped.
          if (info.ready && failed !== undefined && failed !== info) {
            this.#log.warn(
              `worker ${failed.link.id} failed to confirm writes to ${link.id}; resyncing it`,
            );
            // Whatever its digest says when it comes back, it gets an export.
            this.#resync.add(failed.link.id);
            this.balancer.detachWorker(failed.link);
          }
          return;
        }
        default:
          throw new ProtocolError(`unexpected worker frame 0x${type.toString(16)}`);
      }
    });
    if (info !== null && this.#workers.get(link.id) === info) this.#unregister(info);
  }

  /**
   * A worker registered: tell the others (they connect to it), tell it its
   * peers, and have the least busy ready worker stream it a full export.
   */
  #register(link: WorkerLink, reg: Registration, from: string): WorkerInfo {
    link.id = reg.id;
    link.addr = reg.addr;
    const old = this.#workers.get(reg.id);
    if (old !== undefined) {
      // The same id again: the old link is stale (a restart or a resync).
      this.#log.warn(`worker ${reg.id} registered again; dropping its old link`);
      this.#workers.delete(reg.id);
      this.balancer.detachWorker(old.link);
      this.#announceDown(old);
      if (old.ready) {
        this.slaves.broadcastMembers();
        this.#pool?.members(this.members());
      }
    }
    const others = [...this.#workers.values()];
    // After a failover, a replica that was in sync re-registers with its data:
    // when its digest matches a ready replica's it needs no export.
    const resync = this.#resync.delete(reg.id);
    const inSync = !resync && reg.ready &&
      others.some((o) => o.ready && o.digest === reg.digest);
    const source = inSync ? undefined : this.#pickSource(others);
    const info: WorkerInfo = {
      link,
      status: null,
      ready: false,
      exportFrom: source?.link.id ?? null,
      digest: reg.digest,
      heard: Date.now(),
    };
    this.#workers.set(reg.id, info);
    this.#log.info(
      `worker ${reg.id} registered from ${from} (listens ${reg.addr})` +
        (source ? `; export from ${source.link.id}` : ""),
    );
    for (const o of others) {
      o.link.writer.writeRaw(
        encodeJson(W_PEER_UP, { id: reg.id, addr: reg.addr, exportTo: o === source }),
      );
    }
    link.writer.writeRaw(encodeJson(W_WELCOME, {
      peers: others.map((o) => ({ id: o.link.id, addr: o.link.addr })),
      exportFrom: info.exportFrom,
    }));
    return info;
  }

  /** The ready worker with the least work in flight. */
  #pickSource(candidates: WorkerInfo[]): WorkerInfo | undefined {
    let best: WorkerInfo | undefined;
    for (const w of candidates) {
      if (!w.ready || w.link.closed) continue;
      if (best === undefined || w.link.inflight < best.link.inflight) best = w;
    }
    return best;
  }

  #markReady(info: WorkerInfo): void {
    if (info.ready) return;
    info.ready = true;
    info.exportFrom = null;
    this.balancer.enable(info.link);
    this.slaves.broadcastMembers();
    this.#pool?.members(this.members());
    this.#opts.onWorkerReady?.(info.link.id);
  }

  #unregister(info: WorkerInfo): void {
    this.#workers.delete(info.link.id);
    if (this.#stopping) return;
    this.#log.info(`worker ${info.link.id} left`);
    this.#announceDown(info);
    if (info.ready) {
      this.slaves.broadcastMembers();
      this.#pool?.members(this.members());
    }
  }

  /** Tells the others a worker left; re-sources exports it was giving. */
  #announceDown(gone: WorkerInfo): void {
    for (const o of this.#workers.values()) {
      o.link.writer.writeRaw(encodeJson(W_PEER_DOWN, { id: gone.link.id }));
    }
    for (const w of this.#workers.values()) {
      if (w.ready || w.exportFrom !== gone.link.id) continue;
      const source = this.#pickSource([...this.#workers.values()]);
      if (source === undefined) {
        // No replica left to copy from: what it has is all there is.
        this.#log.warn(`worker ${w.link.id} lost its export source and none is left`);
        this.#markReady(w);
        continue;
      }
      w.exportFrom = source.link.id;
      this.#log.info(`worker ${w.link.id}: export now from ${source.link.id}`);
      source.link.writer.writeRaw(encodeJson(W_EXPORT, { id: w.link.id, addr: w.link.addr }));
    }
  }

  /** Everything `status` shows. */
  status(): {
    state: MasterState;
    addrs: MasterAddrs;
    slaves: SlaveRow[];
    balancer: BalancerStats;
    receivers: { threads: number; threadTotals: ThreadStats } | null;
    workers: Record<string, unknown>[];
    replicasAgree: boolean | null;
  } {
    const workers: Record<string, unknown>[] = [...this.#workers.values()].map((w) => ({
      ...(w.status ?? {}),
      id: w.link.id,
      addr: w.link.addr,
      ready: w.ready,
      inflight: w.link.inflight,
    }));
    const digests = new Set(workers.map((w) => w.digest).filter((d) => d !== undefined));
    return {
      state: this.state,
      addrs: this.addrs,
      slaves: this.slaves.table(),
      balancer: this.balancer.stats(),
      receivers: this.#pool === null
        ? null
        : { threads: 1 + this.#pool.perThread().length, threadTotals: this.#pool.totals() },
      workers,
      replicasAgree: digests.size === 0 ? null : digests.size === 1,
    };
  }

  /**
   * Stops accepting, answers or fails what is in flight (waiting at most
   * `graceMs`), closes everything.
   */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#statusTimer);
    clearInterval(this.#tableTimer);
    if (this.#state.state === "UP_LISTENING") this.#state.to("DOWN");
    for (const l of this.#listeners) closeQuietly(l);
    this.slaves.close();
    if (this.#pool !== null) await this.#pool.stop(graceMs);
    if (this.#ownsBalancer) await this.balancer.close(graceMs);
    else for (const w of this.#workers.values()) this.balancer.detachWorker(w.link);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}

const STATUS_REQUEST = encodeJson(W_STATUS, {});

// deno-lint-ignore no-explicit-any
function parseJson(payload: Uint8Array): any {
  try {
    return JSON.parse(fromUtf8(payload));
  } catch {
    throw new ProtocolError("worker control frame is not JSON");
  }
}

/** A worker's `W_REGISTER`. */
interface Registration {
  id: string;
  addr: string;
  ready: boolean;
  digest: string;
}

function parseRegister(payload: Uint8Array): Registration {
  let v: unknown;
  try {
    v = JSON.parse(fromUtf8(payload));
  } catch {
    throw new ProtocolError("REGISTER is not JSON");
  }
  const o = v as { id?: unknown; addr?: unknown; ready?: unknown; digest?: unknown };
  if (typeof o?.id !== "string" || o.id === "" || typeof o.addr !== "string") {
    throw new ProtocolError("REGISTER needs string id and addr");
  }
  return {
    id: o.id,
    addr: o.addr,
    ready: o.ready === true,
    digest: typeof o.digest === "string" ? o.digest : "",
  };
}
