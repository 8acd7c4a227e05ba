/**
 * The master's side of the LB tier (seed 003): slaves connect, heart-beat
 * with `HELLO`/`HELLO_ACK`, push their load, and get the worker membership
 * and the load table back.
 *
 * @module
 */

import { closeQuietly, isConnGone, noDelay, remote, sendErrorAndClose } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { encodeFrame, FrameReader } from "./frame.ts";
import { leastLoaded, type NodeLoad } from "./least_loaded.ts";
import type { Logger } from "./log.ts";
import {
  decodeLoadInfo,
  ERROR,
  fromUtf8,
  HELLO,
  HELLO_ACK,
  type LoadInfo,
  PUSH_LOAD_INFO,
} from "./messages.ts";
import { slaveMachine, type SlaveState, type StateMachine } from "./tier_state.ts";
import { encodeJson, T_CLAIM, T_MEMBERS, T_SUBSCRIBE, T_TABLE } from "./wire.ts";
import { FrameWriter } from "./writer.ts";

/** Options for {@linkcode SlaveHub}. */
export interface SlaveHubOptions {
  /**
   * Heartbeat interval in ms.
   * @default {1000}
   */
  heartbeat?: number;
  /**
   * A slave from which nothing arrived for this long is DOWN, in ms.
   * @default {3 * heartbeat}
   */
  deadAfter?: number;
  /** Where to log. */
  logger: Logger;
  /** The ready workers, sent to subscribed slaves. */
  members: () => { id: string; addr: string }[];
  /** The master's own load row, for the table sent to slaves. */
  self: () => NodeLoad;
  /**
   * The cluster term carried in membership messages.
   * @default {() => 1}
   */
  term?: () => number;
  /**
   * The VIP (the master's addresses), sent to slaves for failover.
   * @default {() => null}
   */
  vip?: () => unknown;
  /**
   * Called when a peer shows a term higher than ours (`T_CLAIM`, or a
   * `term` field in `PUSH_LOAD_INFO`): the caller steps down.
   * @default {undefined}
   */
  onHigherTerm?: (term: number, from: string) => void;
}

/** One slave connection. */
class SlaveEntry {
  conn: Deno.Conn;
  writer: FrameWriter;
  sm: StateMachine<SlaveState>;
  load: LoadInfo | null = null;
  lastFrame = Date.now();
  lastLoad = 0;
  subscribed = false;

  constructor(conn: Deno.Conn, sm: StateMachine<SlaveState>) {
    this.conn = conn;
    this.writer = new FrameWriter(conn);
    this.sm = sm;
  }
}

/** A row of the master's load table, for `status`. */
export interface SlaveRow {
  /** The slave's node name (`?` before its first load report). */
  node: string;
  /** The slave's client `host:port`, or its connection's remote address. */
  addr: string;
  /** The connection's protocol state. */
  state: SlaveState;
  /** Client connections reported. */
  connections: number;
  /** Requests in flight reported. */
  inflight: number;
  /** Requests per second reported. */
  rps: number;
  /** Milliseconds since the last load report, or -1 if none came. */
  ageMs: number;
}

const HELLO_FRAME = encodeFrame(HELLO);
const HELLO_ACK_FRAME = encodeFrame(HELLO_ACK);

/** The slaves connected to this master and their load table. */
export class SlaveHub {
  #heartbeat: number;
  #deadAfter: number;
  #log: Logger;
  #members: () => { id: string; addr: string }[];
  #self: () => NodeLoad;
  #term: () => number;
  #vip: () => unknown;
  #onHigherTerm: ((term: number, from: string) => void) | undefined;
  #slaves = new Set<SlaveEntry>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastHello = 0;
  #lastTick = 0;
  #stalledAt = -Infinity;

  /** Creates a hub with no slaves. */
  constructor(options: SlaveHubOptions) {
    this.#heartbeat = options.heartbeat ?? 1000;
    this.#deadAfter = options.deadAfter ?? 3 * this.#heartbeat;
    this.#log = options.logger;
    this.#members = options.members;
    this.#self = options.self;
    this.#term = options.term ?? (() => 1);
    this.#vip = options.vip ?? (() => null);
    this.#onHigherTerm = options.onHigherTerm;
  }

  /** Starts the heartbeat and dead-after timer. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#lastTick = Date.now();
    this.#timer = setInterval(
      () => this.#tick(),
      Math.max(5, Math.min(this.#heartbeat, this.#deadAfter) / 4),
    );
  }

  /** Serves one slave connection until it closes or goes DOWN. */
  async serve(conn: Deno.Conn): Promise<void> {
    noDelay(conn);
    const who = remote(conn);
    const entry: SlaveEntry = new SlaveEntry(
      conn,
      slaveMachine((from, to) =>
        this.#log.info(`slave ${entry.load?.node ?? who}: ${from} -> ${to}`)
      ),
    );
    this.#slaves.add(entry);
    this.#log.info(`slave connected from ${who}: CONNECTED`);
    entry.writer.writeRaw(HELLO_FRAME);
    const reader = new FrameReader(conn);
    const onFrame = (type: number, payload: Uint8Array) => {
      entry.lastFrame = Date.now();
      switch (type) {
        case HELLO:
          entry.writer.writeRaw(HELLO_ACK_FRAME);
          return;
        case HELLO_ACK:
          return;
        case PUSH_LOAD_INFO: {
          const info = decodeLoadInfo(payload);
          if (
            typeof info.term === "number" && info.term > this.#term() && this.#yields(info.node)
          ) {
            this.#onHigherTerm?.(info.term, info.node);
          }
          return this.#push(entry, info);
        }
        case T_CLAIM: {
          const claim = JSON.parse(fromUtf8(payload)) as { term?: unknown; id?: unknown };
          if (typeof claim.term !== "number") throw new ProtocolError("T_CLAIM needs a term");
          if (claim.term > this.#term() && this.#yields(String(claim.id))) {
            // Step down; no answer, the claimant binds the VIP once we let go.
            this.#onHigherTerm?.(claim.term, String(claim.id));
            return;
          }
          // Alive and in touch with the tier: refuse; our answer (our term)
          // tells the claimant to rejoin as a slave.
          entry.subscribed = true;
          this.#sendMembers(entry);
          return;
        }
        case T_SUBSCRIBE:
          entry.subscribed = true;
          this.#sendMembers(entry);
          this.#sendTable(entry);
          return;
        case ERROR:
          throw new ProtocolError(`slave sent ERROR: ${fromUtf8(payload)}`);
        default:
          throw new ProtocolError(
            `unexpected frame 0x${type.toString(16).padStart(4, "0")} from a slave`,
          );
      }
    };
    try {
      while (await reader.read(onFrame));
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#log.warn(`slave ${who}: protocol error: ${err.message}`);
        await sendErrorAndClose(entry.writer, err.message);
      } else if (!isConnGone(err)) this.#log.warn(`slave ${who}: ${err}`);
    } finally {
      this.#down(entry, "connection closed");
    }
  }

  #push(entry: SlaveEntry, info: LoadInfo): void {
    // The table is keyed by addr: a newer connection for the same addr wins.
    for (const other of this.#slaves) {
      if (other !== entry && other.load?.addr === info.addr && other.sm.state !== "DOWN") {
        this.#down(other, `replaced by a new connection for ${info.addr}`);
      }
    }
    const first = entry.load === null;
    entry.load = info;
    entry.lastLoad = Date.now();
    entry.sm.to("PUSH_LOAD_INFO");
    // The slave list (who may be elected) changed: tell every slave.
    if (first) this.broadcastMembers();
  }

  #down(entry: SlaveEntry, why: string): void {
    if (!this.#slaves.delete(entry)) return;
    if (entry.sm.state !== "DOWN") {
      entry.sm.to("DOWN");
      this.#log.info(`slave ${entry.load?.node ?? remote(entry.conn)} DOWN (${why})`);
    }
    closeQuietly(entry.conn);
    if (entry.load !== null) this.broadcastMembers();
  }

  /**
   * Whether a higher-term claim wins: when this master was paused (its timer
   * did not run for dead-after) or no other slave is still in touch with it.
   * A healthy master with live slaves refuses a claim from one slave that
   * only lost its own connection for a moment.
   */
  #yields(claimant: string): boolean {
    const now = Date.now();
    if (now - this.#lastTick > this.#deadAfter || now - this.#stalledAt < 5 * this.#deadAfter) {
      return true;
    }
    return !this.#fresh(now).some((f) => f.load!.node !== claimant);
  }

  #tick(): void {
    const now = Date.now();
    // A gap in our own timer: this process did not run (SIGSTOP, a pause).
    if (this.#lastTick !== 0 && now - this.#lastTick > this.#deadAfter) this.#stalledAt = now;
    this.#lastTick = now;
    const hello = now - this.#lastHello >= this.#heartbeat;
    if (hello) this.#lastHello = now;
    for (const s of [...this.#slaves]) {
      if (now - s.lastFrame > this.#deadAfter) {
        this.#down(s, `nothing for ${now - s.lastFrame} ms`);
        continue;
      }
      if (hello) {
        s.writer.writeRaw(HELLO_FRAME);
        if (s.subscribed) this.#sendTable(s);
      }
    }
  }

  /** Slaves whose last load push is younger than dead-after. */
  #fresh(now = Date.now()): SlaveEntry[] {
    return [...this.#slaves].filter((s) =>
      s.sm.state === "PUSH_LOAD_INFO" && s.load !== null && now - s.lastLoad < this.#deadAfter
    );
  }

  /** The fresh slaves' load rows. */
  rows(): NodeLoad[] {
    return this.#fresh().map((f) => ({
      addr: f.load!.addr,
      connections: f.load!.connections,
      inflight: f.load!.inflight,
    }));
  }

  /** PROTOCOL.md least loaded among this master (`self`) and fresh slaves. */
  leastLoaded(self: NodeLoad): string {
    const rows: NodeLoad[] = [self];
    for (const s of this.#fresh()) rows.push(s.load!);
    return leastLoaded(rows)!.addr;
  }

  /** The load table for `status`. */
  table(): SlaveRow[] {
    const now = Date.now();
    return [...this.#slaves].map((s) => ({
      node: s.load?.node ?? "?",
      addr: s.load?.addr ?? remote(s.conn),
      state: s.sm.state,
      connections: s.load?.connections ?? 0,
      inflight: s.load?.inflight ?? 0,
      rps: s.load?.rps ?? 0,
      ageMs: s.lastLoad === 0 ? -1 : now - s.lastLoad,
    }));
  }

  /** Sends the worker membership to every subscribed slave (after a change). */
  broadcastMembers(): void {
    for (const s of this.#slaves) if (s.subscribed) this.#sendMembers(s);
  }

  #sendMembers(s: SlaveEntry): void {
    s.writer.writeRaw(encodeJson(T_MEMBERS, {
      term: this.#term(),
      vip: this.#vip(),
      workers: this.#members(),
      slaves: this.#fresh().map((f) => ({ id: f.load!.node, addr: f.load!.addr })),
    }));
  }

  #sendTable(s: SlaveEntry): void {
    const nodes: NodeLoad[] = [this.#self()];
    for (const f of this.#fresh()) {
      nodes.push({
        addr: f.load!.addr,
        connections: f.load!.connections,
        inflight: f.load!.inflight,
      });
    }
    s.writer.writeRaw(encodeJson(T_TABLE, { nodes }));
  }

  /** Closes every slave connection and the timer. */
  close(): void {
    clearInterval(this.#timer);
    for (const s of [...this.#slaves]) this.#down(s, "master stopping");
  }
}
