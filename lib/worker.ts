/**
 * `lbkit worker`: the in-memory key-value store (seed 000's Worker). It
 * registers with the master, serves requests from any LB node, and keeps a
 * versioned map whose replicas converge.
 *
 * @module
 */

import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { formatHostPort, type HostPort, listenerAddr, parseHostPort } from "./addr.ts";
import { closeQuietly, isConnGone, noDelay, remote, sendErrorAndClose } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import { Hlc, TICKS_PER_MS } from "./hlc.ts";
import { decodePeerWrite, helloId, Mesh } from "./peers.ts";
import { type Logger, silentLogger } from "./log.ts";
import { fromUtf8, readU32, REQUEST_HEADER, utf8, writeU32 } from "./messages.ts";
import { Store } from "./store.ts";
import {
  encodeJson,
  isWorkerRequest,
  NOT_READY,
  P_ACK,
  P_DEL,
  P_EXPORT_DONE,
  P_HELLO,
  P_SET,
  W_DEL,
  W_ERR,
  W_EXPORT,
  W_GET,
  W_LB_HELLO,
  W_NIL,
  W_OK,
  W_PEER_DOWN,
  W_PEER_FAILED,
  W_PEER_UP,
  W_READY,
  W_REGISTER,
  W_SET,
  W_STATUS,
  W_VALUE,
  W_WELCOME,
} from "./wire.ts";
import { FrameWriter } from "./writer.ts";

/** Options for {@linkcode Worker}. */
export interface WorkerOptions {
  /**
   * The master's worker port, `host:port`; `null` runs standalone (tests,
   * the benchmark's direct baseline).
   * @default {"127.0.0.1:5060"}
   */
  master?: string | null;
  /**
   * Interface for the worker's own listener (LB nodes and peers).
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Port of the worker's own listener; 0 picks a free one.
   * @default {0}
   */
  port?: number;
  /**
   * Stable id for this process.
   * @default {a random "w-xxxxxx"}
   */
  id?: string;
  /**
   * Longest wait between reconnection attempts to the master, in ms.
   * @default {2000}
   */
  maxBackoff?: number;
  /**
   * When a write is acknowledged: `"all"` once every live peer applied it
   * (read-your-writes through any LB node), `"local"` after the local apply.
   * @default {"all"}
   */
  ack?: "all" | "local";
  /**
   * Milliseconds a peer has to confirm a write before it is dropped.
   * @default {1000}
   */
  peerTimeout?: number;
  /**
   * The master is taken for dead (and redialled) after this long without a
   * frame from it; it asks for our status every heartbeat (at most 1 s).
   * @default {3000}
   */
  masterDeadAfter?: number;
  /**
   * Milliseconds a tombstone is kept (every live replica has it well before).
   * @default {60000}
   */
  tombstoneTtl?: number;
  /**
   * Where to log.
   * @default {silentLogger}
   */
  logger?: Logger;
}

/** What `status` shows of a worker. */
export interface WorkerStats {
  /** The worker's id. */
  id: string;
  /** The worker's advertised `host:port`. */
  addr: string;
  /** The master address it registers with (empty when none). */
  master: string;
  /** Whether the master has accepted the registration. */
  registered: boolean;
  /** Keys with a live value. */
  keys: number;
  /** Tombstones held. */
  tombstones: number;
  /** The store's order-independent digest. */
  digest: string;
  /** Requests served in all. */
  served: number;
  /** Client writes (`SET`/`DEL`) applied here. */
  writes: number;
  /** Connections open to this worker. */
  connections: number;
  /** Whether the worker has its full data and may take traffic. */
  ready: boolean;
  /** Ids of the peer workers it replicates to. */
  peers: string[];
  /** When writes are acknowledged: after every peer, or locally. */
  ack: "all" | "local";
}

/** Hash of an id to a u32 node number for version tie-breaks. */
export function nodeNumber(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A key-value worker. */
export class Worker {
  /** The worker's id. */
  readonly id: string;
  /** The node number for version tie-breaks, from the id. */
  readonly node: number;
  /** The key-value data. */
  readonly store: Store = new Store();
  /** The clock that versions writes. */
  readonly hlc: Hlc;
  #opts: WorkerOptions;
  #log: Logger;
  #listener: Deno.Listener | null = null;
  #addr: HostPort | null = null;
  #advertised = "";
  #conns = new Set<Deno.Conn>();
  #masterConn: Deno.Conn | null = null;
  #registered = false;
  #stopping = false;
  #abort = new AbortController();
  #tasks = new Set<Promise<void>>();
  #served = 0;
  #writes = 0;
  #mesh: Mesh;
  #ackAll: boolean;
  #ready = false;
  /** Registered with an export to wait for, not yet arrived. */
  #awaitingExport = false;
  /**
   * A `P_EXPORT_DONE` arrived since the last `W_REGISTER`: over a link kept
   * from before (a failover), the export can beat the `W_WELCOME`.
   */
  #exportDoneSeen = false;
  #masterWriter: FrameWriter | null = null;
  #purge: ReturnType<typeof setInterval> | undefined;
  /** Last tick of the stall detector: wall clock and CPU time (ms). */
  #beat = 0;
  #beatCpu = 0;
  /** A stall longer than this (ms) may have got us expelled: resync. */
  #stallLimit: number;
  #stallTimer: ReturnType<typeof setInterval> | undefined;
  /** Period of the stall detector's timer (ms). */
  #beatEvery: number;
  /** Set by a stall; requests are refused until the master welcomes us again. */
  #stalled = false;
  /**
   * Wall time (ms) read once per batch of frames and by the stall timer: a
   * `Date.now()` per request cost as much as a GET's lookup.
   */
  #clock = Date.now();

  /** Creates a worker; `start()` binds it and registers with the master. */
  constructor(options: WorkerOptions = {}) {
    this.#opts = options;
    this.id = options.id ?? `w-${crypto.randomUUID().slice(0, 6)}`;
    this.node = nodeNumber(this.id);
    this.#log = options.logger ?? silentLogger;
    this.hlc = new Hlc({ now: () => this.#clock });
    this.#ackAll = (options.ack ?? "all") === "all";
    this.#stallLimit = Math.max(100, (options.peerTimeout ?? 1000) / 2);
    this.#beatEvery = Math.max(10, Math.min(100, this.#stallLimit / 4));
    this.#mesh = new Mesh(this.id, {
      peerTimeout: options.peerTimeout,
      logger: this.#log,
      onPeerFailed: (peer) => this.#masterWriter?.writeRaw(encodeJson(W_PEER_FAILED, { id: peer })),
    });
  }

  /** True once the full export (if any) has been applied. */
  get ready(): boolean {
    return this.#ready;
  }

  /** The listener's bound address. */
  get addr(): HostPort {
    if (this.#addr === null) throw new TypeError("worker not started");
    return this.#addr;
  }

  /** True while registered with the master. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Binds the listener and starts registering with the master. */
  start(): Promise<void> {
    const l = Deno.listen({
      hostname: this.#opts.hostname ?? "0.0.0.0",
      port: this.#opts.port ?? 0,
    });
    this.#listener = l;
    this.#addr = listenerAddr(l);
    this.#track(this.#acceptLoop(l));
    const ttl = this.#opts.tombstoneTtl ?? 60000;
    this.#purge = setInterval(
      () => this.store.purgeTombstones(this.hlc.tick() - ttl * TICKS_PER_MS),
      Math.min(10000, ttl),
    );
    this.#beat = Date.now();
    this.#beatCpu = cpuMs();
    this.#stallTimer = setInterval(() => {
      this.#clock = Date.now();
      this.#checkStall(this.#clock);
      this.#beat = this.#clock;
      this.#beatCpu = cpuMs();
    }, this.#beatEvery);
    const master = this.#opts.master === undefined ? "127.0.0.1:5060" : this.#opts.master;
    if (master !== null) this.#track(this.#masterLoop(parseHostPort(master)));
    // Standalone, this store is the only replica: it serves at once.
    else this.#ready = true;
    return Promise.resolve();
  }

  /**
   * Detects that this process did not run for a while (SIGSTOP, a long
   * pause). Meanwhile its peers may have timed it out and the master may
   * have expelled it and sent its requests to other workers; the requests
   * still buffered in its sockets are stale, and applying them now, with new
   * versions, would overwrite writes acknowledged since. So: refuse requests,
   * drop the master link, and re-register for a full export.
   *
   * A stall is a long gap in wall time during which the process hardly ran
   * (CPU time under a tenth of the gap, plus one timer period). A gap while
   * busy is not one: reads that keep finding data (a large export arriving)
   * can hold the timers off for a second, and a loaded machine slows a busy
   * process without stopping it.
   */
  #checkStall(now: number): void {
    const gap = now - this.#beat;
    if (gap <= this.#stallLimit) return;
    const cpu = cpuMs();
    // Up to one period of CPU may have been used before the process stopped.
    if (cpu - this.#beatCpu < gap / 10 + this.#beatEvery) this.#stall(gap);
    this.#beat = now;
    this.#beatCpu = cpu;
  }

  /**
   * Updates the clock. Checks for a stall here too, not only on the timer:
   * after one, the socket's backlog may be read before the timer runs.
   */
  #readClock(): void {
    const now = Date.now();
    this.#clock = now;
    if (now - this.#beat > this.#stallLimit) this.#checkStall(now);
  }

  #stall(ms: number): void {
    if (this.#stalled || !this.#registered) return;
    this.#stalled = true;
    this.#ready = false;
    this.#log.warn(`stalled for ${ms} ms: refusing requests and re-registering for a resync`);
    if (this.#masterConn !== null) closeQuietly(this.#masterConn);
  }

  /** Counters and the digest, for `status`. */
  stats(): WorkerStats {
    return {
      id: this.id,
      addr: this.#advertised || formatHostPort(this.addr),
      master: this.#opts.master ?? "",
      registered: this.#registered,
      keys: this.store.size,
      tombstones: this.store.tombstones,
      digest: this.store.digest,
      served: this.#served,
      writes: this.#writes,
      connections: this.#conns.size,
      ready: this.#ready,
      peers: this.#mesh.ids,
      ack: this.#ackAll ? "all" : "local",
    };
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #acceptLoop(l: Deno.Listener): Promise<void> {
    try {
      for await (const conn of l) {
        this.#track(this.#serve(conn, null));
      }
    } catch (err) {
      if (!this.#stopping) this.#log.error(`listener: ${err}`);
    }
  }

  /**
   * Serves requests on one connection (the master link, or another LB
   * node's). `onControl` takes the frames that are not requests.
   */
  async #serve(
    conn: Deno.Conn,
    onControl: ((type: number, payload: Uint8Array) => void) | null,
    writer: FrameWriter = new FrameWriter(conn),
  ): Promise<void> {
    this.#conns.add(conn);
    noDelay(conn);
    const reader = new FrameReader(conn);
    let fresh = true;
    const onFrame = (type: number, buf: Uint8Array, start: number, end: number) => {
      // The first frame of a read: read the clock, and check for a stall
      // before serving anything that may have waited out one in the socket.
      if (fresh) {
        fresh = false;
        this.#readClock();
      }
      if (isWorkerRequest(type)) return this.#request(type, buf, start, end, writer);
      const payload = buf.subarray(start, end);
      if (type === P_SET || type === P_DEL) return this.#peerWrite(type, payload, writer);
      if (type === P_HELLO) {
        this.#log.debug(`peer ${helloId(payload)} connected from ${remote(conn)}`);
        return;
      }
      if (type === P_EXPORT_DONE) return this.#exportDone(payload);
      if (onControl !== null) return onControl(type, payload);
      if (type === W_LB_HELLO) {
        this.#log.info(`LB node ${fromUtf8(payload)} connected from ${remote(conn)}`);
        return;
      }
      throw new ProtocolError(`unexpected frame 0x${type.toString(16).padStart(4, "0")}`);
    };
    try {
      while (await reader.readRaw(onFrame)) {
        fresh = true;
        if (writer.full) await writer.ready;
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#log.warn(`${remote(conn)}: protocol error: ${err.message}`);
        await sendErrorAndClose(writer, err.message);
      } else if (!isConnGone(err) && !this.#stopping) {
        this.#log.warn(`${remote(conn)}: ${err}`);
      }
    } finally {
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
  }

  /**
   * Serves the request in `buf[start, end)`; the reply goes out with the
   * writer's next batch. Fields are read in place, no views made.
   */
  #request(type: number, buf: Uint8Array, start: number, end: number, writer: FrameWriter): void {
    if (end - start < REQUEST_HEADER) throw new ProtocolError("request shorter than 6 bytes");
    const id = readU32(buf, start);
    const keyLen = (buf[start + 4] << 8) | buf[start + 5];
    const keyStart = start + REQUEST_HEADER;
    const keyEnd = keyStart + keyLen;
    if (keyEnd > end) throw new ProtocolError(`keyLen ${keyLen} runs past the payload`);
    this.#served++;
    // Stalled, or waiting for a full export: our data may be stale.
    if (this.#stalled || !this.#ready) return writer.writeReply(W_ERR, id, NOT_READY_REPLY);
    if (keyLen === 0) return writer.writeReply(W_ERR, id, utf8("empty key"));
    switch (type) {
      case W_GET: {
        const v = this.store.getAt(buf, keyStart, keyEnd);
        return v === undefined ? writer.writeReply(W_NIL, id) : writer.writeReply(W_VALUE, id, v);
      }
      case W_SET:
        return this.#write(buf, keyStart, keyEnd, end, id, writer);
      case W_DEL:
        if (this.store.getAt(buf, keyStart, keyEnd) === undefined) {
          return writer.writeReply(W_NIL, id);
        }
        return this.#write(buf, keyStart, keyEnd, -1, id, writer);
    }
  }

  /**
   * Applies a client write here (key then value in `buf`, as
   * {@linkcode Store.writeAt} takes them), sends it to every peer, acks per
   * `--ack`.
   */
  #write(
    buf: Uint8Array,
    keyStart: number,
    keyEnd: number,
    valueEnd: number,
    id: number,
    writer: FrameWriter,
  ): void {
    this.#writes++;
    const e = this.store.writeAt(buf, keyStart, keyEnd, valueEnd, this.hlc.tick(), this.node)!;
    if (!this.#ackAll || this.#mesh.size === 0) {
      this.#mesh.replicate(e, null);
      return writer.writeReply(W_OK, id);
    }
    const wait = { remaining: 0, done: () => writer.writeReply(W_OK, id) };
    if (!this.#mesh.replicate(e, wait)) writer.writeReply(W_OK, id);
  }

  /** A write from a peer (replication or export): newest wins; ack if asked. */
  #peerWrite(type: number, payload: Uint8Array, writer: FrameWriter): void {
    const w = decodePeerWrite(type, payload);
    this.hlc.observe(w.ver);
    const e = this.store.write(w.key, w.value, w.ver, w.node);
    if (e !== undefined) this.#mesh.forward(e);
    if (w.seq !== 0) {
      const view = writer.reserve(P_ACK, 4);
      writeU32(view, 0, w.seq);
    }
  }

  #exportDone(payload: Uint8Array): void {
    this.#exportDoneSeen = true;
    if (!this.#awaitingExport) return;
    this.#awaitingExport = false;
    this.#ready = true;
    this.#log.info(`full export applied (${fromUtf8(payload)}); ${this.store.size} keys`);
    this.#masterWriter?.writeRaw(encodeJson(W_READY, {}));
  }

  /** Frames from the master besides requests. */
  #control(type: number, payload: Uint8Array, writer: FrameWriter, master: HostPort): void {
    const msg = type === W_STATUS ? null : parseJson(payload);
    switch (type) {
      case W_WELCOME: {
        this.#registered = true;
        this.#stalled = false;
        this.#log.info(`registered with master ${formatHostPort(master)}`);
        // Keep the links that still stand: writes waiting on them stay honest.
        // Links to peers missing from the list are kept too: after a failover
        // the new master lists only the workers that re-registered before
        // this one, and dropping the others would leave them without the
        // writes acknowledged here until they re-register, when they may be
        // judged in sync and get no export. A peer really gone closes its
        // link or times out.
        for (const p of msg.peers as { id: string; addr: string }[]) this.#mesh.add(p.id, p.addr);
        this.#ready = false;
        if (msg.exportFrom === null || msg.exportFrom === undefined || this.#exportDoneSeen) {
          this.#awaitingExport = false;
          this.#ready = true;
          writer.writeRaw(encodeJson(W_READY, {}));
        } else {
          this.#awaitingExport = true;
          this.#log.info(`waiting for a full export from ${msg.exportFrom}`);
        }
        return;
      }
      case W_STATUS:
        return writer.writeRaw(encodeJson(W_STATUS, this.stats()));
      case W_PEER_UP:
      case W_EXPORT:
        this.#log.info(
          `peer ${msg.id} at ${msg.addr}${msg.exportTo || type === W_EXPORT ? " (export)" : ""}`,
        );
        this.#mesh.add(
          String(msg.id),
          String(msg.addr),
          msg.exportTo || type === W_EXPORT ? () => this.store.entries() : undefined,
        );
        return;
      case W_PEER_DOWN:
        this.#mesh.remove(String(msg.id));
        return;
      default:
        throw new ProtocolError(`unexpected master frame 0x${type.toString(16)}`);
    }
  }

  /** Registers with the master; reconnects with backoff, data kept. */
  async #masterLoop(master: HostPort): Promise<void> {
    const signal = this.#abort.signal;
    const maxBackoff = this.#opts.maxBackoff ?? 2000;
    let backoff = 50;
    let announced = false;
    while (!this.#stopping) {
      let conn: Deno.Conn | null = null;
      try {
        conn = await Deno.connect(master);
        this.#masterConn = conn;
        if (this.#stopping) break;
        const local = conn.localAddr as Deno.NetAddr;
        const bound = this.addr;
        // Advertise an address others can dial, not the wildcard.
        const host = bound.hostname === "0.0.0.0" || bound.hostname === "::"
          ? local.hostname
          : bound.hostname;
        this.#advertised = formatHostPort({ hostname: host, port: bound.port });
        const writer = new FrameWriter(conn);
        this.#masterWriter = writer;
        // `ready` and the digest let a new master (after a failover) skip the
        // full export when this replica is already in sync.
        writer.writeRaw(encodeJson(W_REGISTER, {
          id: this.id,
          addr: this.#advertised,
          ready: this.#ready,
          digest: this.store.digest,
        }));
        this.#exportDoneSeen = false;
        this.#awaitingExport = false;
        backoff = 50;
        // A hung master (or a cut link) says nothing: redial after dead-after.
        const deadAfter = this.#opts.masterDeadAfter ?? 3000;
        let heard = Date.now();
        const c = conn;
        const watchdog = setInterval(() => {
          if (Date.now() - heard <= deadAfter) return;
          this.#log.warn(`master silent for ${Date.now() - heard} ms; redialling`);
          closeQuietly(c);
        }, Math.max(10, deadAfter / 4));
        try {
          await this.#serve(conn, (t, p) => {
            heard = Date.now();
            this.#control(t, p, writer, master);
          }, writer);
        } finally {
          clearInterval(watchdog);
        }
      } catch (err) {
        if (!announced || !(err instanceof Deno.errors.ConnectionRefused)) {
          this.#log.warn(`master ${formatHostPort(master)}: ${(err as Error).message}`);
          announced = true;
        }
      } finally {
        if (conn !== null) closeQuietly(conn);
        this.#masterConn = null;
        this.#masterWriter = null;
        if (this.#registered) this.#log.warn("lost the master; reconnecting");
        this.#registered = false;
      }
      if (this.#stopping) break;
      try {
        await sleep(backoff, undefined, { signal });
      } catch {
        break;
      }
      backoff = Math.min(backoff * 2, maxBackoff);
    }
  }

  /** Stops listening, closes every connection, waits for the tasks. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#abort.abort();
    clearInterval(this.#purge);
    clearInterval(this.#stallTimer);
    await this.#mesh.close();
    if (this.#listener !== null) closeQuietly(this.#listener);
    if (this.#masterConn !== null) closeQuietly(this.#masterConn);
    for (const c of this.#conns) closeQuietly(c);
    // Tasks may be added while we wait (an accept in progress).
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}

/** CPU time this process has used (all threads), in ms. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const NOT_READY_REPLY = utf8(NOT_READY);

// deno-lint-ignore no-explicit-any
function parseJson(payload: Uint8Array): any {
  try {
    return JSON.parse(fromUtf8(payload));
  } catch {
    throw new ProtocolError("control frame is not JSON");
  }
}
