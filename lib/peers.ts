/**
 * The worker's replication mesh (seed 000's Peer Manager and export
 * thread): one outbound link per peer carries this worker's writes and full
 * exports; each write waits for its peers' acks, or for them to be dropped.
 *
 * @module
 */

import { setTimeout as sleep } from "node:timers/promises";
import { parseHostPort } from "./addr.ts";
import { closeQuietly, isConnGone, noDelay } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import type { Logger } from "./log.ts";
import { readU32, writeU32 } from "./messages.ts";
import type { Entry } from "./store.ts";
import { encodeJson, P_ACK, P_DEL, P_EXPORT_DONE, P_HEADER, P_HELLO, P_SET } from "./wire.ts";
import { FrameWriter } from "./writer.ts";

/** A write waiting for its peers. */
export interface WriteWait {
  remaining: number;
  done: () => void;
}

/** One outbound link to a peer. */
class PeerLink {
  readonly id: string;
  readonly addr: string;
  conn: Deno.Conn | null = null;
  writer: FrameWriter | null = null;
  /** seq -> (wait, sent at); acks come back in order, so the first is oldest. */
  waits = new Map<number, { w: WriteWait; at: number }>();
  seq = 0;
  closed = false;
  /** Frames queued before the connection is up. */
  backlog: Uint8Array[] = [];
  /** An export asked for before the connection is up. */
  pendingExport: (() => Iterable<Entry>) | null = null;

  constructor(id: string, addr: string) {
    this.id = id;
    this.addr = addr;
  }
}

/** Options for {@linkcode Mesh}. */
export interface MeshOptions {
  /**
   * Milliseconds a peer has to confirm a write before it is dropped.
   * @default {1000}
   */
  peerTimeout?: number;
  /** Where to log. */
  logger: Logger;
  /** Called when a peer is dropped for not confirming (report to the master). */
  onPeerFailed: (id: string) => void;
}

/** The set of outbound peer links of one worker. */
export class Mesh {
  #selfId: string;
  #links = new Map<string, PeerLink>();
  #timeout: number;
  #log: Logger;
  #onPeerFailed: (id: string) => void;
  #sweep: ReturnType<typeof setInterval>;
  #tasks = new Set<Promise<void>>();
  /** Links that also get every write applied here from other peers. */
  #forwardTo = new Set<PeerLink>();
  /** Aborted by {@linkcode close}: ends the exports' grace periods. */
  #closing = new AbortController();
  /** When {@linkcode #expire} last ran. */
  #lastSweep = Date.now();

  constructor(selfId: string, options: MeshOptions) {
    this.#selfId = selfId;
    this.#timeout = options.peerTimeout ?? 1000;
    this.#log = options.logger;
    this.#onPeerFailed = options.onPeerFailed;
    this.#sweep = setInterval(() => this.#expire(), Math.max(10, this.#timeout / 5));
  }

  /** Peer ids with a link. */
  get ids(): string[] {
    return [...this.#links.keys()];
  }

  /** Number of peers. */
  get size(): number {
    return this.#links.size;
  }

  /**
   * Opens a link to a peer. With `exportFrom`, streams every entry of it to
   * the peer, then `P_EXPORT_DONE`; while that runs and for a grace period
   * after, writes this worker applies from other peers are forwarded too, so
   * the newcomer misses nothing that crossed the export.
   */
  add(id: string, addr: string, exportFrom?: () => Iterable<Entry>): void {
    if (id === this.#selfId) return;
    const old = this.#links.get(id);
    if (old !== undefined && old.addr === addr && !old.closed) {
      // Same peer announced again (a new master): keep the link.
      if (exportFrom !== undefined) {
        if (old.writer !== null) this.#track(this.#export(old, exportFrom));
        else old.pendingExport = exportFrom;
      }
      return;
    }
    if (old !== undefined) this.#drop(old, "replaced");
    const link = new PeerLink(id, addr);
    this.#links.set(id, link);
    this.#track(this.#run(link, exportFrom));
  }

  /** Makes the links match `peers`: drops the others, adds the missing. */
  sync(peers: { id: string; addr: string }[]): void {
    const want = new Map(peers.map((p) => [p.id, p.addr]));
    for (const link of [...this.#links.values()]) {
      if (want.get(link.id) !== link.addr) this.#drop(link, "not a member");
    }
    for (const [id, addr] of want) this.add(id, addr);
  }

  /** Drops a peer (it left the cluster). */
  remove(id: string): void {
    const link = this.#links.get(id);
    if (link !== undefined) this.#drop(link, "left");
  }

  /** Drops every peer (re-registration starts a fresh mesh). */
  clear(): void {
    for (const l of [...this.#links.values()]) this.#drop(l, "reset");
  }

  /**
   * Sends a write to every peer. `wait` (if given) counts the peers that
   * still have to confirm; its `done` is called once they all did or were
   * dropped. Returns false when there was no peer to wait for.
   */
  replicate(e: Entry, wait: WriteWait | null): boolean {
    // No peers (one worker): not even an iterator to make.
    if (this.#links.size === 0) return false;
    let n = 0;
    for (const link of this.#links.values()) {
      const seq = wait === null ? 0 : (link.seq = (link.seq + 1) >>> 0 || 1);
      send(link, e, seq);
      if (wait !== null) {
        link.waits.set(seq, { w: wait, at: Date.now() });
        n++;
      }
    }
    if (wait !== null) wait.remaining = n;
    return n > 0;
  }

  /** Forwards a write applied from another peer to links under export. */
  forward(e: Entry): void {
    for (const link of this.#forwardTo) send(link, e, 0);
  }

  async #run(link: PeerLink, exportFrom?: () => Iterable<Entry>): Promise<void> {
    let attempt = 0;
    while (!link.closed) {
      try {
        const conn = await Deno.connect(parseHostPort(link.addr));
        if (link.closed) {
          closeQuietly(conn);
          return;
        }
        noDelay(conn);
        link.conn = conn;
        link.writer = new FrameWriter(conn, { onError: () => closeQuietly(conn) });
        break;
      } catch (err) {
        if (++attempt >= 20 || link.closed) {
          this.#log.warn(`peer ${link.id} at ${link.addr}: ${(err as Error).message}; dropped`);
          this.#drop(link, "unreachable");
          this.#onPeerFailed(link.id);
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const writer = link.writer!;
    writer.writeRaw(encodeJson(P_HELLO, { id: this.#selfId }));
    for (const f of link.backlog) writer.writeRaw(f);
    link.backlog = [];
    const exp = exportFrom ?? link.pendingExport;
    link.pendingExport = null;
    if (exp !== undefined && exp !== null) this.#track(this.#export(link, exp));
    const reader = new FrameReader(link.conn!);
    const onFrame = (type: number, payload: Uint8Array) => {
      if (type !== P_ACK || payload.length !== 4) {
        throw new ProtocolError(`unexpected peer frame 0x${type.toString(16)}`);
      }
      const seq = readU32(payload, 0);
      const w = link.waits.get(seq);
      if (w === undefined) return;
      link.waits.delete(seq);
      if (--w.w.remaining === 0) w.w.done();
    };
    try {
      while (await reader.read(onFrame));
    } catch (err) {
      if (!isConnGone(err) && !link.closed) this.#log.warn(`peer ${link.id}: ${err}`);
    }
    if (!link.closed && !this.#closing.signal.aborted) {
      // The link broke under us: writes it missed from now on would never
      // reach that replica, so it must be resynchronised; tell the master.
      this.#log.info(`peer ${link.id} connection closed`);
      this.#drop(link, "closed");
      this.#onPeerFailed(link.id);
    }
  }

  async #export(link: PeerLink, entries: () => Iterable<Entry>): Promise<void> {
    const writer = link.writer!;
    this.#forwardTo.add(link);
    const started = Date.now();
    let n = 0;
    // Snapshot the entries first: the map changes while we wait for the socket.
    const all = [...entries()];
    for (const e of all) {
      if (link.closed) return;
      send(link, e, 0);
      if (++n % 512 === 0 && writer.full) await writer.ready;
    }
    writer.writeRaw(encodeJson(P_EXPORT_DONE, { count: n }));
    this.#log.info(`exported ${n} entries to ${link.id} in ${Date.now() - started} ms`);
    // Writes that crossed the export are still arriving from slower peers.
    try {
      await sleep(2 * this.#timeout, undefined, { signal: this.#closing.signal });
    } catch {
      // closing: stop() need not wait for the grace period
    }
    this.#forwardTo.delete(link);
  }

  #drop(link: PeerLink, why: string): void {
    if (link.closed) return;
    link.closed = true;
    this.#forwardTo.delete(link);
    if (this.#links.get(link.id) === link) this.#links.delete(link.id);
    if (link.conn !== null) closeQuietly(link.conn);
    for (const { w } of link.waits.values()) if (--w.remaining === 0) w.done();
    link.waits.clear();
    this.#log.info(`peer ${link.id} dropped (${why})`);
  }

  /** A peer whose oldest unconfirmed write is past the timeout is dropped. */
  #expire(): void {
    const now = Date.now();
    const gap = now - this.#lastSweep;
    this.#lastSweep = now;
    if (gap > this.#timeout / 2) {
      // This process did not run for a while (a stall, SIGSTOP): the acks
      // may be waiting in our own sockets. Blame no peer for our pause.
      for (const link of this.#links.values()) for (const w of link.waits.values()) w.at = now;
      return;
    }
    for (const link of [...this.#links.values()]) {
      const first = link.waits.values().next();
      if (!first.done && now - first.value.at > this.#timeout) {
        this.#log.warn(`peer ${link.id} did not confirm within ${this.#timeout} ms`);
        this.#drop(link, "timeout");
        this.#onPeerFailed(link.id);
      }
    }
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  /** Closes every link and waits for their tasks. */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    this.#closing.abort();
    this.clear();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}

/** Encodes a write into the link's writer (or its backlog until connected). */
function send(link: PeerLink, e: Entry, seq: number): void {
  const type = e.value === null ? P_DEL : P_SET;
  const len = P_HEADER + e.key.length + (e.value?.length ?? 0);
  let view: Uint8Array;
  let frame: Uint8Array | null = null;
  if (link.writer !== null) view = link.writer.reserve(type, len);
  else {
    frame = new Uint8Array(4 + len);
    frame[0] = type >>> 8;
    frame[1] = type & 0xff;
    frame[2] = len >>> 8;
    frame[3] = len & 0xff;
    view = frame.subarray(4);
  }
  writeU32(view, 0, seq);
  new DataView(view.buffer, view.byteOffset, view.byteLength).setFloat64(4, e.ver);
  writeU32(view, 12, e.node);
  view[16] = e.key.length >>> 8;
  view[17] = e.key.length & 0xff;
  view.set(e.key, P_HEADER);
  if (e.value !== null) view.set(e.value, P_HEADER + e.key.length);
  if (frame !== null) link.backlog.push(frame);
}

/** A decoded `P_SET`/`P_DEL`. Views into the payload. */
export interface PeerWrite {
  seq: number;
  ver: number;
  node: number;
  key: Uint8Array;
  value: Uint8Array | null;
}

/** Decodes a `P_SET`/`P_DEL` payload. */
export function decodePeerWrite(type: number, payload: Uint8Array): PeerWrite {
  if (payload.length < P_HEADER) throw new ProtocolError("peer write shorter than 18 bytes");
  const keyLen = (payload[16] << 8) | payload[17];
  if (P_HEADER + keyLen > payload.length) throw new ProtocolError("peer keyLen past the payload");
  if (type === P_DEL && payload.length !== P_HEADER + keyLen) {
    throw new ProtocolError("peer delete carries a value");
  }
  return {
    seq: readU32(payload, 0),
    ver: new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getFloat64(4),
    node: readU32(payload, 12),
    key: payload.subarray(P_HEADER, P_HEADER + keyLen),
    value: type === P_DEL ? null : payload.subarray(P_HEADER + keyLen),
  };
}

/** JSON helper for the worker's inbound `P_HELLO`. */
export function helloId(payload: Uint8Array): string {
  try {
    return String(JSON.parse(new TextDecoder().decode(payload)).id);
  } catch {
    throw new ProtocolError("P_HELLO is not JSON");
  }
}
