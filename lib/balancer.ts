/**
 * The load balancer core shared by master and slave (seed 000's Load
 * Balancer): client receivers -> bounded request queue -> round-robin
 * dispatcher -> worker links -> response queue -> response dispatcher -> the
 * client that asked, under its own request id.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import {
  ERR,
  isRequestType,
  NODE,
  NODE_ADDR,
  OK,
  PING,
  readU32,
  REQUEST_HEADER,
  requestProblem,
  utf8,
  writeU32,
} from "./messages.ts";
import { BlockingQueue, QueueClosedError } from "./queue.ts";
import { Ring } from "./ring.ts";
import { type Logger, silentLogger } from "./log.ts";
import { isNotReady, isWorkerReply, W_ERR, WORKER_OFFSET } from "./wire.ts";
import { FrameWriter, type FrameWriterOptions } from "./writer.ts";
import { flushWithin, isConnGone, remote, sendErrorAndClose } from "./conn.ts";
import { RateMeter } from "./rate.ts";
import { copyBytes } from "./copy.ts";
import { Slab } from "./slab.ts";
import { PendingTable } from "./pending.ts";

const EMPTY = new Uint8Array(0);
/** Answered requests kept for reuse. */
const POOL_MAX = 4096;
/** Smallest frame buffer given to a request (64-byte values fit). */
const FRAME_MIN = 96;
/** Frame buffers above this are not kept in the pool. */
const FRAME_KEEP = 1024;

/** Options for {@linkcode Balancer}. */
export interface BalancerOptions {
  /**
   * Capacity of the request queue and of the response queue.
   * @default {4096}
   */
  queueSize?: number;
  /**
   * Request deadline in milliseconds, from the moment it is read.
   * @default {5000}
   */
  timeout?: number;
  /**
   * Requests one client connection may have unanswered before its reads stop.
   * @default {1024}
   */
  maxInflightPerClient?: number;
  /**
   * Answers `NODE`: the least loaded LB node's `host:port`.
   * @default {undefined} `NODE` gets `ERR no node table`
   */
  nodeAddr?: (local: Deno.NetAddr) => string | Promise<string>;
  /**
   * Where to log.
   * @default {silentLogger}
   */
  logger?: Logger;
  /**
   * Per-connection writer settings.
   * @default {{}}
   */
  writer?: FrameWriterOptions;
  /**
   * A round-robin counter shared by several balancers (receiver threads over
   * one `SharedArrayBuffer`): each pick takes the next value, so the rotation
   * stays global. Members are then ordered by id, the same in every thread.
   * @default {undefined} the balancer's own `Ring`
   */
  rotation?: Int32Array;
}

/** One client connection. */
class ClientConn {
  conn: Deno.Conn;
  writer: FrameWriter;
  inflight = 0;
  closed = false;
  /** Resolved when inflight falls back under the limit. */
  wake: (() => void) | null = null;

  constructor(conn: Deno.Conn, writerOptions: FrameWriterOptions) {
    this.conn = conn;
    this.writer = new FrameWriter(conn, writerOptions);
  }
}

/** A request between the client's read and its reply. */
interface Pending {
  lbId: number;
  client: ClientConn;
  clientId: number;
  /** The worker-bound frame, LB id in place of the client's: `frame[0, frameLen)`. */
  frame: Uint8Array;
  frameLen: number;
  deadline: number;
  attempts: number;
  worker: WorkerLink | null;
  replyType: number;
  replyBody: Uint8Array | null;
}

/** A connection to one worker, as seen by one balancer. */
export class WorkerLink {
  /** The worker's id (known once it registered). */
  id: string;
  /** The worker's `host:port` listener. */
  addr: string;
  /** The connection to the worker. */
  readonly conn: Deno.Conn;
  /** Queues frames to the worker. */
  readonly writer: FrameWriter;
  /** Requests sent and not answered. */
  inflight = 0;
  /** Requests sent in all. */
  sent = 0;
  /** Set once the link has been dropped. */
  closed = false;

  /** Creates a link over `conn`, written through `writer`. */
  constructor(id: string, addr: string, conn: Deno.Conn, writer: FrameWriter) {
    this.id = id;
    this.addr = addr;
    this.conn = conn;
    this.writer = writer;
  }
}

/** Counters shown by `status` and pushed as load. */
export interface BalancerStats {
  /** Client connections open. */
  clients: number;
  /** Client requests accepted and not yet answered. */
  inflight: number;
  /** Requests waiting in the request queue. */
  requestQueue: number;
  /** Replies waiting in the response queue. */
  responseQueue: number;
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
  /** Each worker link: id, address, requests in flight and sent, and whether it is in the ring. */
  workers: { id: string; addr: string; inflight: number; sent: number; inRing: boolean }[];
}

/** Handles a worker frame the balancer does not know (registration, status). */
export type ControlHandler = (type: number, payload: Uint8Array) => void;

/**
 * The balancer. Feed it client connections with {@linkcode serveClient} and
 * worker connections with {@linkcode attachWorker}.
 */
export class Balancer {
  #requests: BlockingQueue<Pending>;
  #responses: BlockingQueue<Pending>;
  #ring = new Ring<WorkerLink>();
  #rotation: Int32Array | undefined;
  /** With a shared rotation: the ring's members sorted by id. */
  #byId: WorkerLink[] = [];
  #links = new Set<WorkerLink>();
  #pending = new PendingTable<Pending>();
  #pool: Pending[] = [];
  #clients = new Set<ClientConn>();
  #nextId = 1;
  #timeout: number;
  #maxInflight: number;
  #nodeAddr: ((local: Deno.NetAddr) => string | Promise<string>) | undefined;
  #log: Logger;
  #writerOptions: FrameWriterOptions;
  #sweep: ReturnType<typeof setInterval>;
  #closing = false;
  #loops: Promise<void>[] = [];
  #accepted = 0;
  #answered = 0;
  #errors = 0;
  #timeouts = 0;
  #retries = 0;
  #rate = new RateMeter();
  /** Replies not yet counted into the rate meter (flushed by the sweep). */
  #unrated = 0;
  /** A clock refreshed by the sweep timer: deadlines need no finer grain. */
  #clock = Date.now();
  /** Request frames are carved from here, not allocated one by one. */
  #slab = new Slab();
  #idle: (() => void) | null = null;

  /** Creates a balancer with empty queues and no workers. */
  constructor(options: BalancerOptions = {}) {
    const size = options.queueSize ?? 4096;
    this.#requests = new BlockingQueue(size);
    this.#responses = new BlockingQueue(size);
    this.#timeout = options.timeout ?? 5000;
    this.#maxInflight = options.maxInflightPerClient ?? 1024;
    this.#nodeAddr = options.nodeAddr;
    this.#log = options.logger ?? silentLogger;
    this.#writerOptions = options.writer ?? {};
    this.#rotation = options.rotation;
    this.#loops.push(this.#dispatchRequests(), this.#dispatchResponses());
    this.#sweep = setInterval(() => this.#expire(), Math.max(5, Math.min(100, this.#timeout / 10)));
  }

  /** Replaces the `NODE` answerer (a slave promoted to master). */
  set nodeAddr(fn: (local: Deno.NetAddr) => string | Promise<string>) {
    this.#nodeAddr = fn;
  }

  /** Workers in the ring. */
  get workers(): number {
    return this.#ring.size;
  }

  /** Client connections open now. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Requests accepted and not yet answered. */
  get inflight(): number {
    let n = 0;
    for (const c of this.#clients) n += c.inflight;
    return n;
  }

  /** Requests answered per second, recent. */
  get rps(): number {
    this.#flushRate();
    return this.#rate.rate();
  }

  /** Counters for `status`. */
  stats(): BalancerStats {
    return {
      clients: this.#clients.size,
      inflight: this.inflight,
      requestQueue: this.#requests.size,
      responseQueue: this.#responses.size,
      accepted: this.#accepted,
      answered: this.#answered,
      errors: this.#errors,
      timeouts: this.#timeouts,
      retries: this.#retries,
      rps: Math.round(this.rps * 10) / 10,
      workers: [...this.#links].map((w) => ({
        id: w.id,
        addr: w.addr,
        inflight: w.inflight,
        sent: w.sent,
        inRing: this.#ring.has(w),
      })),
    };
  }

  /** Serves one client connection until it closes. */
  async serveClient(conn: Deno.Conn): Promise<void> {
    const client = new ClientConn(conn, this.#writerOptions);
    this.#clients.add(client);
    const reader = new FrameReader(conn, { accept: isRequestType });
    const overflow: Pending[] = [];
    // Pauses the decoding (rest stays buffered) as soon as this client must
    // wait, so one read cannot pour thousands of requests into the queue.
    const onFrame = (type: number, buf: Uint8Array, start: number, end: number): boolean => {
      const p = this.#accept(client, type, buf, start, end);
      if (p !== undefined) {
        // The dispatcher waits on an empty queue: dispatch here and spare
        // the hand-off (a promise and a turn per request at depth 1). FIFO
        // holds: nothing is queued ahead. Not when every worker is behind:
        // then the queue (and its bound) must absorb the requests.
        if (
          this.#requests.waitingTakers > 0 && this.#requests.size === 0 && !this.#allFull()
        ) this.#dispatch(p);
        else if (!this.#requests.tryPut(p)) overflow.push(p);
      }
      return overflow.length === 0 && client.inflight < this.#maxInflight && !client.writer.full;
    };
    try {
      while (!this.#closing && await reader.readRaw(onFrame)) {
        // Backpressure: a full queue, a client that does not read its replies,
        // or too many requests in flight stop the reads from this connection.
        for (const p of overflow) await this.#requests.put(p);
        overflow.length = 0;
        while (!client.closed && !client.writer.failed) {
          if (client.writer.full) await client.writer.ready;
          else if (client.inflight >= this.#maxInflight) {
            await new Promise<void>((r) => client.wake = r);
          } else break;
        }
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#log.warn(`client ${remote(conn)}: protocol error: ${err.message}`);
        await sendErrorAndClose(client.writer, err.message);
      } else if (!(err instanceof QueueClosedError) && !isConnGone(err)) {
        this.#log.warn(`client ${remote(conn)}: ${err}`);
      }
    } finally {
      await this.#closeClient(client, this.#timeout + 1000);
    }
  }

  /**
   * Decodes the request in `buf[start, end)`; answers at once what needs no
   * worker.
   */
  #accept(
    client: ClientConn,
    type: number,
    buf: Uint8Array,
    start: number,
    end: number,
  ): Pending | undefined {
    const len = end - start;
    if (len < REQUEST_HEADER) {
      throw new ProtocolError(`request payload of ${len} bytes is shorter than 6`);
    }
    const keyLen = (buf[start + 4] << 8) | buf[start + 5];
    if (REQUEST_HEADER + keyLen > len) {
      throw new ProtocolError(`keyLen ${keyLen} runs past the payload`);
    }
    const clientId = readU32(buf, start);
    this.#accepted++;
    client.inflight++;
    const problem = requestProblem(type, keyLen, len - REQUEST_HEADER - keyLen);
    if (problem !== undefined) {
      this.#reply(client, clientId, ERR, utf8(problem));
      return undefined;
    }
    if (type === PING) {
      this.#reply(client, clientId, OK, undefined);
      return undefined;
    }
    if (type === NODE) {
      this.#answerNode(client, clientId);
      return undefined;
    }
    const lbId = this.#nextId;
    this.#nextId = (this.#nextId + 1) >>> 0 || 1;
    // A request object and its frame buffer from the pool when one is free
    // (in steady state nothing is allocated per request: live garbage was a
    // fifth of the balancer's time); the frame is built now because the
    // read buffer is reused.
    let p = this.#pool.pop();
    if (p === undefined) {
      p = {
        lbId,
        client,
        clientId,
        frame: EMPTY,
        frameLen: 0,
        deadline: 0,
        attempts: 0,
        worker: null,
        replyType: 0,
        replyBody: null,
      };
    }
    if (p.frame.length < 4 + len) p.frame = this.#slab.alloc(Math.max(4 + len, FRAME_MIN));
    const frame = p.frame;
    p.frameLen = 4 + len;
    const wtype = type + WORKER_OFFSET;
    frame[0] = wtype >>> 8;
    frame[1] = wtype & 0xff;
    frame[2] = len >>> 8;
    frame[3] = len & 0xff;
    writeU32(frame, 4, lbId);
    copyBytes(frame, 8, buf, start + 4, end); // the key and value
    p.lbId = lbId;
    p.client = client;
    p.clientId = clientId;
    p.deadline = this.#clock + this.#timeout;
    p.attempts = 0;
    p.worker = null;
    p.replyType = 0;
    p.replyBody = null;
    return p;
  }

  /**
   * Returns an answered request to the pool. Only once it is in no queue or
   * table: its reply is written and it left `#pending`.
   */
  #release(p: Pending): void {
    if (this.#pool.length >= POOL_MAX) return;
    p.worker = null;
    p.replyBody = null;
    // Do not keep a large frame buffer for the small requests to come.
    if (p.frame.length > FRAME_KEEP) p.frame = EMPTY;
    this.#pool.push(p);
  }

  #answerNode(client: ClientConn, id: number): void {
    if (this.#nodeAddr === undefined) {
      this.#reply(client, id, ERR, utf8("no node table"));
      return;
    }
    Promise.resolve()
      .then(() => this.#nodeAddr!(client.conn.localAddr as Deno.NetAddr))
      .then(
        (addr) => this.#reply(client, id, NODE_ADDR, utf8(addr)),
        (err) => this.#reply(client, id, ERR, utf8(`node: ${(err as Error).message ?? err}`)),
      );
  }

  /** Writes a reply and settles the client's accounting. */
  #reply(client: ClientConn, id: number, type: number, body: Uint8Array | undefined): void {
    if (body === undefined) this.#replyAt(client, id, type, EMPTY, 0, 0);
    else this.#replyAt(client, id, type, body, 0, body.length);
  }

  /** {@linkcode #reply} with the body in `src[start, end)`. */
  #replyAt(
    client: ClientConn,
    id: number,
    type: number,
    src: Uint8Array,
    start: number,
    end: number,
  ): void {
    if (client.closed) return;
    client.writer.writeReplyAt(type, id, src, start, end);
    if (type === ERR) this.#errors++;
    this.#answered++;
    this.#unrated++;
    client.inflight--;
    if (client.wake !== null && (client.inflight < this.#maxInflight || client.inflight === 0)) {
      const w = client.wake;
      client.wake = null;
      w();
    }
    if (this.#idle !== null && this.#pending.size === 0 && this.#requests.size === 0) this.#idle();
  }

  #fail(p: Pending, reason: string): void {
    this.#pending.delete(p);
    this.#reply(p.client, p.clientId, ERR, utf8(reason));
  }

  async #dispatchRequests(): Promise<void> {
    const q = this.#requests;
    try {
      for (;;) {
        const p = q.tryTake() ?? await q.take();
        this.#dispatch(p);
        // Every worker is behind (the skip in #next found none free): wait.
        const w = p.worker;
        if (w !== null && w.writer.full && this.#allFull()) await w.writer.ready;
      }
    } catch (err) {
      if (!(err instanceof QueueClosedError)) throw err;
    }
  }

  /** The next worker: the local ring, or the shared rotation over ids. */
  #next(): WorkerLink | undefined {
    // Round-robin, passing over a worker whose socket is far behind (hung,
    // or slow): one stuck worker must not hold up the others.
    const n = this.#rotation === undefined ? this.#ring.size : this.#byId.length;
    let w: WorkerLink | undefined;
    for (let i = 0; i < n; i++) {
      w = this.#rotation === undefined
        ? this.#ring.next()
        : this.#byId[(Atomics.add(this.#rotation, 0, 1) >>> 0) % n];
      if (!w!.writer.full) return w;
    }
    return w;
  }

  #allFull(): boolean {
    for (const w of this.#ring) if (!w.writer.full) return false;
    return true;
  }

  #reindex(): void {
    if (this.#rotation === undefined) return;
    this.#byId = [...this.#ring].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }

  /** Sends a request to the next worker in the ring, or fails it. */
  #dispatch(p: Pending): void {
    if (p.client.closed) return;
    if (this.#clock > p.deadline) {
      this.#timeouts++;
      this.#fail(p, "timeout");
      return;
    }
    const w = this.#next();
    if (w === undefined) {
      this.#fail(p, p.attempts > 0 ? "every worker failed" : "no workers");
      return;
    }
    p.worker = w;
    w.inflight++;
    w.sent++;
    this.#pending.set(p);
    w.writer.writeRaw(p.frame, p.frameLen);
  }

  async #dispatchResponses(): Promise<void> {
    const q = this.#responses;
    try {
      for (;;) {
        const p = q.tryTake() ?? await q.take();
        this.#reply(p.client, p.clientId, p.replyType, p.replyBody ?? undefined);
        this.#release(p);
      }
    } catch (err) {
      if (!(err instanceof QueueClosedError)) throw err;
    }
  }

  /**
   * Adds a worker connection whose reader and writer the caller made (the
   * master has already read its registration). Replies are routed; other
   * frames go to `onControl`. Resolves when the connection closes. The
   * worker takes traffic once {@linkcode enable}d.
   */
  async attachWorker(
    link: WorkerLink,
    reader: FrameReader,
    onControl: ControlHandler,
  ): Promise<void> {
    this.#links.add(link);
    const overflow: Pending[] = [];
    const onFrame = (type: number, buf: Uint8Array, start: number, end: number) => {
      if (!isWorkerReply(type)) return onControl(type, buf.subarray(start, end));
      if (end - start < 4) throw new ProtocolError("worker reply shorter than 4 bytes");
      const p = this.#pending.get(readU32(buf, start));
      // A reply after its deadline, or from a worker we already gave up on.
      if (p === undefined || p.worker !== link) return;
      this.#pending.delete(p);
      link.inflight--;
      // A replica that is resyncing refuses; another one can answer.
      if (
        type === W_ERR && isNotReady(buf.subarray(start, end)) && p.attempts < this.#ring.size
      ) {
        return this.#retry(p);
      }
      p.replyType = type - WORKER_OFFSET;
      // Fast path: with nothing queued ahead, the response dispatcher would
      // write this reply next anyway; write it now, straight from the read
      // buffer, and skip the copy and the queue hop.
      if (this.#responses.size === 0 && overflow.length === 0) {
        this.#replyAt(p.client, p.clientId, p.replyType, buf, start + 4, end);
        return this.#release(p);
      }
      p.replyBody = end - start > 4 ? this.#slab.copy(buf.subarray(start + 4, end)) : null;
      if (!this.#responses.tryPut(p)) overflow.push(p);
    };
    try {
      while (await reader.readRaw(onFrame)) {
        for (const p of overflow) await this.#responses.put(p);
        overflow.length = 0;
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#log.warn(`worker ${link.id}: protocol error: ${err.message}`);
        await sendErrorAndClose(link.writer, err.message);
      } else if (!(err instanceof QueueClosedError) && !isConnGone(err)) {
        this.#log.warn(`worker ${link.id}: ${err}`);
      }
    } finally {
      this.detachWorker(link);
    }
  }

  /** Puts an attached worker in the ring. */
  enable(link: WorkerLink): void {
    if (link.closed || !this.#links.has(link)) return;
    if (this.#ring.add(link)) {
      this.#reindex();
      this.#log.info(`worker ${link.id} in the ring (${this.#ring.size})`);
    }
  }

  /** The attached worker links. */
  links(): WorkerLink[] {
    return [...this.#links];
  }

  /** Drops a worker: out of the ring, its requests sent to the next worker. */
  detachWorker(link: WorkerLink): void {
    if (link.closed) return;
    link.closed = true;
    this.#links.delete(link);
    const wasInRing = this.#ring.remove(link);
    if (wasInRing) this.#reindex();
    try {
      link.conn.close();
    } catch {
      // already closed
    }
    if (wasInRing) this.#log.info(`worker ${link.id} left the ring (${this.#ring.size})`);
    const orphans: Pending[] = [];
    for (const p of this.#pending.values()) if (p.worker === link) orphans.push(p);
    // Resent in the order they were first sent (the table is not ordered).
    orphans.sort((a, b) => a.deadline - b.deadline || (a.lbId - b.lbId) | 0);
    for (const p of orphans) this.#retry(p);
    link.inflight = 0;
  }

  /** Sends a request that its worker did not answer to the next one. */
  #retry(p: Pending): void {
    this.#pending.delete(p);
    p.attempts++;
    this.#retries++;
    this.#dispatch(p);
  }

  #flushRate(): void {
    if (this.#unrated === 0) return;
    this.#rate.add(this.#unrated);
    this.#unrated = 0;
  }

  /** Fails requests past their deadline (retried ones keep their first). */
  #expire(): void {
    const now = Date.now();
    this.#clock = now;
    this.#flushRate();
    this.#pending.expire(now, this.#timeout_);
  }

  #timeout_ = (p: Pending): void => {
    if (p.worker !== null) p.worker.inflight--;
    this.#timeouts++;
    this.#fail(p, "timeout");
  };

  /** Closes a client once what it asked is answered (bounded by `waitMs`). */
  async #closeClient(client: ClientConn, waitMs: number): Promise<void> {
    if (client.closed) return;
    const until = Date.now() + waitMs;
    while (
      client.inflight > 0 && !client.closed && !client.writer.failed && Date.now() < until
    ) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        client.wake = r;
        timer = setTimeout(r, until - Date.now());
      });
      clearTimeout(timer);
    }
    if (client.closed) return;
    await flushWithin(client.writer, 1000);
    client.closed = true;
    this.#clients.delete(client);
    client.wake?.();
    try {
      client.conn.close();
    } catch {
      // already closed
    }
  }

  /**
   * Stops: waits up to `graceMs` for what is in flight to be answered, fails
   * the rest, closes every connection.
   */
  async close(graceMs = 0): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    if (graceMs > 0 && (this.#pending.size > 0 || this.#requests.size > 0)) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#idle = resolve;
        timer = setTimeout(resolve, graceMs);
      });
      clearTimeout(timer);
      this.#idle = null;
    }
    clearInterval(this.#sweep);
    for (let p = this.#requests.tryTake(); p !== undefined; p = this.#requests.tryTake()) {
      this.#fail(p, "shutting down");
    }
    for (const p of [...this.#pending.values()]) this.#fail(p, "shutting down");
    this.#requests.close();
    this.#responses.close();
    await Promise.all(this.#loops);
    for (const l of [...this.#links]) this.detachWorker(l);
    await Promise.all([...this.#clients].map((c) => this.#closeClient(c, 0)));
  }
}
