/**
 * The lbkit client library: pipelined requests over one connection to any LB
 * node, each a promise settled by the reply with its id.
 *
 * @module
 */

import { setTimeout as sleep } from "node:timers/promises";
import { parseHostPort } from "./addr.ts";
import { closeQuietly, isConnGone, noDelay } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { FrameReader, MAX_PAYLOAD } from "./frame.ts";
import {
  DEL,
  ERR,
  ERROR,
  fromUtf8,
  GET,
  isReplyType,
  MAX_KEY,
  NIL,
  NODE,
  NODE_ADDR,
  OK,
  PING,
  readU32,
  REQUEST_HEADER,
  SET,
  utf8,
  VALUE,
  writeU32,
} from "./messages.ts";
import { FrameWriter } from "./writer.ts";

/** The server answered `ERR`; `message` is its reason. */
export class ReplyError extends Error {
  /** The error name, `"ReplyError"`. */
  override name = "ReplyError";
}

/** The connection closed or failed before the reply came. */
export class ConnectionLostError extends Error {
  /** The error name, `"ConnectionLostError"`. */
  override name = "ConnectionLostError";
}

/** Options for {@linkcode Client}. */
export interface ClientOptions {
  /**
   * Milliseconds a request waits for its reply before it fails with
   * `ReplyError("timeout")`; 0 waits for ever.
   * @default {10000}
   */
  timeout?: number;
  /**
   * After the connection is lost, keep reconnecting to the same address
   * (the VIP) with backoff for this many ms; 0 gives up at once. Requests
   * that are safe to send again (`GET`, `PING`, `NODE`, and writes that
   * never left this process) are resent on the new connection; a write that
   * may have reached the LB fails with `ReplyError`, never silently twice.
   * @default {0}
   */
  reconnect?: number;
}

/** A raw reply. `body` is a copy the caller owns. */
export interface ClientReply {
  /** The reply frame type (`OK`, `VALUE`, `NIL`, `NODE_ADDR` or `ERR`). */
  type: number;
  /** The reply payload after the request id. */
  body: Uint8Array;
}

interface Waiting {
  resolve(r: ClientReply): void;
  reject(e: Error): void;
  deadline: number;
  type: number;
  key: Uint8Array;
  value: Uint8Array;
  /** Writer offset just past this request's frame; -1 while unsent. */
  end: number;
}

/** A key or value: a UTF-8 string or raw bytes. */
export type Bytes = string | Uint8Array;
const asBytes = (b: Bytes): Uint8Array => typeof b === "string" ? utf8(b) : b;

/** Safe to send twice: reads and probes. */
function idempotent(type: number): boolean {
  return type === GET || type === PING || type === NODE;
}

/**
 * A pipelining client.
 *
 * @example
 * ```ts ignore
 * const c = await Client.connect("127.0.0.1:5059");
 * await c.set("a", "1");
 * console.log(new TextDecoder().decode((await c.get("a"))!));
 * c.close();
 * ```
 */
export class Client {
  #addr: Deno.ConnectOptions;
  #conn: Deno.Conn | null;
  #writer: FrameWriter | null;
  #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #timeout: number;
  #reconnect: number;
  #closed = false;
  #lost: Error | null = null;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #readLoop: Promise<void>;
  #abort = new AbortController();
  #reconnects = 0;

  private constructor(addr: Deno.ConnectOptions, conn: Deno.Conn, options: ClientOptions) {
    this.#addr = addr;
    this.#conn = conn;
    this.#writer = this.#newWriter(conn);
    this.#timeout = options.timeout ?? 10000;
    this.#reconnect = options.reconnect ?? 0;
    if (this.#timeout > 0) {
      this.#sweep = setInterval(() => this.#expire(), Math.min(100, this.#timeout / 4));
    }
    this.#readLoop = this.#run();
  }

  /** Connects to an LB node at `host:port`. */
  static async connect(addr: string, options: ClientOptions = {}): Promise<Client> {
    const a = parseHostPort(addr);
    const conn = await Deno.connect(a);
    return new Client(a, conn, options);
  }

  /**
   * Asks the LB node at `addr` for the least loaded node (`NODE`) and
   * connects there (or stays, when that is the same node).
   */
  static async discover(addr: string, options: ClientOptions = {}): Promise<Client> {
    const first = await Client.connect(addr, options);
    let target: string;
    try {
      target = await first.node();
    } catch (err) {
      first.close();
      await first.done;
      throw err;
    }
    if (target === addr) return first;
    first.close();
    await first.done;
    return await Client.connect(target, options);
  }

  /** Requests sent and not yet answered. */
  get pending(): number {
    return this.#waiting.size;
  }

  /** True once the connection is closed or lost for good. */
  get closed(): boolean {
    return this.#closed;
  }

  /** How many times the client reconnected. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Resolves when the write queue is under its high-water mark. */
  get ready(): Promise<void> {
    return this.#writer?.ready ?? Promise.resolve();
  }

  /**
   * Sends one request and resolves with its reply, whatever the type
   * (`ERR` included). Rejects with {@linkcode ConnectionLostError} when the
   * connection goes first, `RangeError` for a key or value over its limit.
   */
  request(type: number, key?: Bytes, value?: Bytes): Promise<ClientReply> {
    const k = key === undefined ? EMPTY : asBytes(key);
    const v = value === undefined ? EMPTY : asBytes(value);
    if (k.length > MAX_KEY) return Promise.reject(new RangeError("key too long"));
    const len = REQUEST_HEADER + k.length + v.length;
    if (len > MAX_PAYLOAD) return Promise.reject(new RangeError("value too large"));
    if (this.#closed) {
      return Promise.reject(this.#lost ?? new ConnectionLostError("client closed"));
    }
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 1) >>> 0;
    return new Promise((resolve, reject) => {
      const w: Waiting = {
        resolve,
        reject,
        deadline: this.#timeout > 0 ? Date.now() + this.#timeout : Infinity,
        type,
        key: k,
        value: v,
        end: -1,
      };
      this.#waiting.set(id, w);
      // While reconnecting the request waits; it is sent on the new connection.
      if (this.#writer !== null) this.#send(id, w);
    });
  }

  #send(id: number, w: Waiting): void {
    const writer = this.#writer!;
    const k = w.key;
    const view = writer.reserve(w.type, REQUEST_HEADER + k.length + w.value.length);
    writeU32(view, 0, id);
    view[4] = k.length >>> 8;
    view[5] = k.length & 0xff;
    view.set(k, REQUEST_HEADER);
    view.set(w.value, REQUEST_HEADER + k.length);
    w.end = writer.queuedBytes;
  }

  /** `SET`: resolves on `OK`. */
  async set(key: Bytes, value: Bytes): Promise<void> {
    check(await this.request(SET, key, value), OK);
  }

  /** `GET`: the value, or `null` where the key is absent. */
  async get(key: Bytes): Promise<Uint8Array | null> {
    const r = check(await this.request(GET, key), VALUE, NIL);
    return r.type === NIL ? null : r.body;
  }

  /** `DEL`: true where the key existed. */
  async del(key: Bytes): Promise<boolean> {
    return check(await this.request(DEL, key), OK, NIL).type === OK;
  }

  /** `PING`. */
  async ping(): Promise<void> {
    check(await this.request(PING), OK);
  }

  /** `NODE`: the least loaded LB node's `host:port`. */
  async node(): Promise<string> {
    return fromUtf8(check(await this.request(NODE), NODE_ADDR).body);
  }

  #newWriter(conn: Deno.Conn): FrameWriter {
    noDelay(conn);
    return new FrameWriter(conn, { onError: () => closeQuietly(conn) });
  }

  /** Reads replies; on a lost connection, reconnects (if allowed) and resends. */
  async #run(): Promise<void> {
    for (;;) {
      const err = await this.#readSession(this.#conn!);
      if (this.#closed) return;
      const sent = this.#writer!.writtenBytes;
      this.#conn = null;
      this.#writer = null;
      if (this.#reconnect <= 0) return this.#fail(err);
      // Triage: resend only what is safe; a write that may have been applied
      // is reported, never sent twice.
      for (const [id, w] of [...this.#waiting]) {
        if (idempotent(w.type) || w.end === -1 || w.end > sent) {
          w.end = -1;
          continue;
        }
        this.#waiting.delete(id);
        w.reject(
          new ReplyError("connection lost before the reply; the write may have been applied"),
        );
      }
      const conn = await this.#redial();
      if (conn === null) return this.#fail(err);
      this.#reconnects++;
      this.#conn = conn;
      this.#writer = this.#newWriter(conn);
      for (const [id, w] of this.#waiting) if (w.end === -1) this.#send(id, w);
    }
  }

  /** Dials the same address with backoff within the reconnect budget. */
  async #redial(): Promise<Deno.Conn | null> {
    const until = Date.now() + this.#reconnect;
    let backoff = 10;
    while (!this.#closed && Date.now() < until) {
      try {
        return await Deno.connect(this.#addr);
      } catch {
        // not there yet: the VIP is moving
      }
      const wait = Math.min(backoff, Math.max(0, until - Date.now()));
      await sleep(wait, undefined, { signal: this.#abort.signal }).catch(() => {});
      backoff = Math.min(backoff * 2, 500);
    }
    return null;
  }

  /** One connection's replies; resolves with why it ended. */
  async #readSession(conn: Deno.Conn): Promise<Error> {
    const reader = new FrameReader(conn);
    const onFrame = (type: number, payload: Uint8Array) => {
      if (type === ERROR) throw new ConnectionLostError(`server: ${fromUtf8(payload)}`);
      if (!isReplyType(type) || payload.length < 4) {
        throw new ProtocolError(`unexpected frame 0x${type.toString(16)}`);
      }
      const id = readU32(payload, 0);
      const w = this.#waiting.get(id);
      if (w === undefined) return; // timed out already
      this.#waiting.delete(id);
      w.resolve({ type, body: payload.slice(4) });
    };
    try {
      while (await reader.read(onFrame));
      return new ConnectionLostError("connection closed by the server");
    } catch (err) {
      return err instanceof Error && !isConnGone(err) ? err : new ConnectionLostError(String(err));
    } finally {
      closeQuietly(conn);
    }
  }

  #fail(err: unknown): void {
    if (this.#lost === null) {
      this.#lost = err instanceof Error ? err : new ConnectionLostError(String(err));
    }
    this.#closed = true;
    this.#abort.abort();
    clearInterval(this.#sweep);
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) {
      w.reject(
        this.#lost instanceof ConnectionLostError
          ? this.#lost
          : new ConnectionLostError(this.#lost.message),
      );
    }
    if (this.#conn !== null) closeQuietly(this.#conn);
  }

  #expire(): void {
    const now = Date.now();
    let expired = false;
    for (const [id, w] of this.#waiting) {
      if (w.deadline > now) break;
      this.#waiting.delete(id);
      w.reject(new ReplyError("timeout"));
      expired = true;
    }
    // A node that stopped answering may be hung with its socket open (or
    // the VIP moved under us): with reconnect on, dial the address again.
    if (expired && this.#reconnect > 0 && this.#conn !== null) closeQuietly(this.#conn);
  }

  /** Closes the connection; requests in flight reject. */
  close(): void {
    if (!this.#closed) this.#fail(new ConnectionLostError("client closed"));
  }

  /** Resolves once the read loop has ended (after close). */
  get done(): Promise<void> {
    return this.#readLoop;
  }
}

const EMPTY = new Uint8Array(0);

function check(r: ClientReply, ...want: number[]): ClientReply {
  if (r.type === ERR) throw new ReplyError(fromUtf8(r.body));
  if (!want.includes(r.type)) throw new ProtocolError(`unexpected reply 0x${r.type.toString(16)}`);
  return r;
}
