/**
 * `lbkit slave`: another balancer in the tier (seed 003's slave LB node). It
 * heart-beats with the master, pushes its load, learns the worker membership
 * from the master and balances its own clients over the same workers.
 *
 * @module
 */

import { setTimeout as sleep } from "node:timers/promises";
import { formatHostPort, type HostPort, listenerAddr, parseHostPort } from "./addr.ts";
import { Balancer } from "./balancer.ts";
import { WorkerLinks } from "./worker_links.ts";
import { ReceiverPool } from "./receivers.ts";
import { runHook } from "./hooks.ts";
import { closeQuietly, isConnGone, noDelay, sendErrorAndClose } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { encodeFrame, FrameReader } from "./frame.ts";
import { leastLoaded, type NodeLoad } from "./least_loaded.ts";
import { type Logger, silentLogger } from "./log.ts";
import { ERROR, fromUtf8, HELLO, HELLO_ACK, PUSH_LOAD_INFO, utf8 } from "./messages.ts";
import { slaveMachine, type SlaveState, type StateMachine } from "./tier_state.ts";
import { encodeJson, T_CLAIM, T_MEMBERS, T_SUBSCRIBE, T_TABLE } from "./wire.ts";
import { Master, type Vip } from "./master.ts";
import { FrameWriter } from "./writer.ts";

/** Options for {@linkcode Slave}. */
export interface SlaveOptions {
  /**
   * The master's slave port.
   * @default {"127.0.0.1:5061"}
   */
  master?: string;
  /**
   * Interface for the client listener.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Client port; 0 picks a free one.
   * @default {5069}
   */
  port?: number;
  /**
   * Unique id in the cluster.
   * @default {a random "s-xxxxxx"}
   */
  id?: string;
  /**
   * Heartbeat interval in ms.
   * @default {1000}
   */
  heartbeat?: number;
  /**
   * The master is DOWN after this long without a frame, ms.
   * @default {3 * heartbeat}
   */
  deadAfter?: number;
  /**
   * Load push interval in ms.
   * @default {1000}
   */
  loadInterval?: number;
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
   * This node's own address, given to the master it may become (see the
   * master's `nodeHost`).
   * @default {undefined}
   */
  nodeHost?: string;
  /**
   * Shell command run on promotion, before binding the VIP (lib/hooks.ts).
   * @default {undefined}
   */
  vipUp?: string;
  /**
   * Shell command run when, promoted, this node steps down again.
   * @default {undefined}
   */
  vipDown?: string;
  /**
   * Receiver threads on the client port (as the master's `threads`).
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

/** A slave LB node. */
export class Slave {
  /** The slave's id. */
  readonly id: string;
  /** Routes client requests to the workers. */
  readonly balancer: Balancer;
  #opts: SlaveOptions;
  #log: Logger;
  #listener: Deno.Listener | null = null;
  #addr = "";
  #state: StateMachine<SlaveState>;
  #stopping = false;
  #abort = new AbortController();
  #tasks = new Set<Promise<void>>();
  #masterConn: Deno.Conn | null = null;
  /** Worker id -> our link to it. */
  #workers: WorkerLinks;
  #table: NodeLoad[] = [];
  #term = 0;
  /** The VIP, as the master last told us; needed to take it over. */
  #vip: Vip | null = null;
  /** The live slaves the master last reported: the electorate. */
  #slaveIds: string[] = [];
  /** Set while this node has been promoted and holds the VIP. */
  #master: Master | null = null;
  #demoted: (() => void) | null = null;
  /** The worker membership the master last sent. */
  #members_: { id: string; addr: string }[] = [];
  #rotation: SharedArrayBuffer | null;
  #pool: ReceiverPool | null = null;
  #tableTimer: ReturnType<typeof setInterval> | undefined;

  /** Creates a slave; `start()` binds its listener and links to the master. */
  constructor(options: SlaveOptions = {}) {
    this.#opts = options;
    this.id = options.id ?? `s-${crypto.randomUUID().slice(0, 6)}`;
    this.#log = options.logger ?? silentLogger;
    this.#state = slaveMachine(
      (from, to) => this.#log.info(`slave ${this.id}: ${from} -> ${to}`),
      "DOWN",
    );
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be an integer >= 1, got ${threads}`);
    }
    this.#rotation = threads > 1 ? new SharedArrayBuffer(4) : null;
    this.balancer = new Balancer({
      queueSize: options.queueSize,
      timeout: options.timeout,
      logger: this.#log,
      nodeAddr: (local) => this.#leastLoaded(local),
      rotation: this.#rotation === null ? undefined : new Int32Array(this.#rotation),
    });
    this.#workers = new WorkerLinks(this.balancer, this.id, this.#log);
  }

  /** `"master"` once promoted (holding the VIP), else `"slave"`. */
  get role(): "master" | "slave" {
    return this.#master === null ? "slave" : "master";
  }

  /** The promoted master, while this node is one. */
  get master(): Master | null {
    return this.#master;
  }

  /** The cluster term as this node knows it. */
  get term(): number {
    return this.#term;
  }

  /** `CONNECTED`, `PUSH_LOAD_INFO` or `DOWN` (no master). */
  get state(): SlaveState {
    return this.#state.state;
  }

  /** `host:port` where clients reach this slave. */
  get addr(): string {
    return this.#addr;
  }

  /** Binds the client listener (and receiver threads) and starts the master link. */
  async start(): Promise<void> {
    const hostname = this.#opts.hostname ?? "0.0.0.0";
    const threads = this.#opts.threads ?? 1;
    const l = Deno.listen({
      hostname,
      port: this.#opts.port ?? 5069,
      ...(threads > 1 ? { reusePort: true } : {}),
    } as Deno.TcpListenOptions);
    this.#listener = l;
    this.#addr = formatHostPort(listenerAddr(l));
    if (threads > 1) {
      this.#pool = new ReceiverPool(threads - 1, {
        node: this.id,
        hostname,
        port: listenerAddr(l).port,
        rotation: this.#rotation!,
        queueSize: this.#opts.queueSize,
        timeout: this.#opts.timeout,
        logLevel: this.#opts.threadLogLevel,
        logger: this.#log,
      });
      try {
        await this.#pool.start();
      } catch (err) {
        closeQuietly(l);
        throw err;
      }
      this.#tableTimer = setInterval(
        () => this.#pool?.table(this.#table, this.#selfLoad(null)),
        250,
      );
    }
    this.#track(this.#accept(l));
    this.#track(this.#masterLoop(parseHostPort(this.#opts.master ?? "127.0.0.1:5061")));
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #accept(l: Deno.Listener): Promise<void> {
    try {
      for await (const conn of l) {
        noDelay(conn);
        this.#track(this.balancer.serveClient(conn));
      }
    } catch (err) {
      if (!this.#stopping) this.#log.error(`listener: ${err}`);
    }
  }

  /** The address we advertise: a wildcard bind is made dialable. */
  #advertised(local: { hostname: string } | null): string {
    const a = parseHostPort(this.#addr);
    if (a.hostname !== "0.0.0.0" && a.hostname !== "::") return this.#addr;
    return formatHostPort({ hostname: local?.hostname ?? "127.0.0.1", port: a.port });
  }

  #selfLoad(local: { hostname: string } | null): NodeLoad & { rps: number } {
    const t = this.#pool?.totals();
    return {
      addr: this.#advertised(local),
      connections: this.balancer.clientCount + (t?.clients ?? 0),
      inflight: this.balancer.inflight + (t?.inflight ?? 0),
      rps: Math.round((this.balancer.rps + (t?.rps ?? 0)) * 10) / 10,
    };
  }

  /** NODE from the master's last table, with our own row made current. */
  #leastLoaded(local: Deno.NetAddr): string {
    const self = this.#selfLoad(local);
    const rows = this.#table.filter((n) => n.addr !== self.addr);
    rows.push(self);
    return leastLoaded(rows)!.addr;
  }

  async #masterLoop(configured: HostPort): Promise<void> {
    const signal = this.#abort.signal;
    let backoff = 50;
    let lastError = "";
    while (!this.#stopping) {
      if (this.#master !== null) {
        // Promoted: wait until a higher term makes us step down.
        await new Promise<void>((r) => this.#demoted = r);
        continue;
      }
      // The VIP's slave port once we know it (the same as --master normally).
      const master = this.#vip === null ? configured : {
        hostname: this.#vip.host,
        port: this.#vip.slavePort,
      };
      const served = await this.#attempt(master, (msg) => {
        if (msg !== lastError) this.#log.warn(`master ${formatHostPort(master)}: ${msg}`);
        lastError = msg;
      });
      if (served) {
        backoff = 50;
        lastError = "";
      }
      if (this.#stopping) break;
      if (served && this.#vip !== null) {
        // We had a master and lost it: elect, maybe ourselves.
        if (await this.#elect()) continue;
      }
      try {
        await sleep(backoff, undefined, { signal });
      } catch {
        break;
      }
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  /**
   * One connection attempt and session. Resolves true when the master spoke
   * to us (a live master), false when it could not be reached.
   */
  async #attempt(master: HostPort, onError: (msg: string) => void): Promise<boolean> {
    let conn: Deno.Conn | null = null;
    let heard = false;
    try {
      conn = await Deno.connect(master);
      if (this.#stopping) return false;
      this.#masterConn = conn;
      await this.#session(conn, master, () => heard = true);
    } catch (err) {
      onError((err as Error).message);
    } finally {
      if (conn !== null) closeQuietly(conn);
      this.#masterConn = null;
      if (this.#state.state !== "DOWN") {
        this.#state.to("DOWN");
        if (!this.#stopping) this.#log.warn("lost the master");
      }
    }
    return heard;
  }

  /**
   * The master is gone. Every slave ranks the electorate the same way
   * (sorted ids): rank r waits r x dead-after for a new master to show up on
   * the VIP, then promotes itself. Resolves true once this node is master.
   */
  async #elect(): Promise<boolean> {
    const deadAfter = this.#deadAfter();
    const ids = [...new Set([...this.#slaveIds, this.id])].sort();
    const rank = ids.indexOf(this.id);
    const lostTerm = this.#term;
    this.#log.info(`master lost (term ${lostTerm}); electorate [${ids}], our rank ${rank}`);
    const until = Date.now() + rank * deadAfter;
    const vip = this.#vip!;
    while (!this.#stopping && Date.now() < until) {
      // Someone of a lower rank may already serve the VIP: join it.
      const heard = await this.#attempt({ hostname: vip.host, port: vip.slavePort }, () => {});
      // We served under a new master, and lost it too: elect again.
      if (heard && !this.#stopping) return await this.#elect();
      await sleep(Math.min(50, deadAfter), undefined, { signal: this.#abort.signal }).catch(
        () => {},
      );
    }
    if (this.#stopping) return false;
    // Our own link may be what failed: a master that answers at once is alive.
    if (await this.#probe(vip)) {
      this.#log.info("the master answers on the VIP: rejoining, no election");
      return false;
    }
    return await this.#promote(lostTerm);
  }

  /** Resolves true when a master on the VIP says anything within a quarter heartbeat. */
  async #probe(vip: Vip): Promise<boolean> {
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ hostname: vip.host, port: vip.slavePort });
    } catch {
      return false;
    }
    // A master greets every slave connection with HELLO right away.
    const timer = setTimeout(
      () => closeQuietly(conn),
      Math.max(20, (this.#opts.heartbeat ?? 1000) / 4),
    );
    let heard = false;
    try {
      await new FrameReader(conn).read(() => {
        heard = true;
      });
    } catch {
      // closed by the timer
    } finally {
      clearTimeout(timer);
      closeQuietly(conn);
    }
    return heard;
  }

  /**
   * Takes over the VIP with term + 1: binds the master's listeners (retrying
   * while the old process holds them, and telling it our term so it steps
   * down), keeping this node's balancer, clients and worker links.
   */
  async #promote(lostTerm: number): Promise<boolean> {
    const vip = this.#vip!;
    const term = Math.max(this.#term, lostTerm) + 1;
    this.#term = term;
    this.#log.warn(`promoting to master for term ${term} (VIP ${vip.host}:${vip.port})`);
    const heartbeat = this.#opts.heartbeat ?? 1000;
    if (this.#opts.vipUp !== undefined) {
      await runHook(this.#opts.vipUp, { event: "up", host: vip.host, term }, { logger: this.#log });
    }
    while (!this.#stopping) {
      const master = new Master({
        vipDown: this.#opts.vipDown,
        nodeHost: this.#opts.nodeHost,
        hostname: vip.host,
        port: vip.port,
        workerPort: vip.workerPort,
        slavePort: vip.slavePort,
        balancer: this.balancer,
        term,
        heartbeat,
        deadAfter: this.#deadAfter(),
        logger: this.#log,
        onStepDown: (t) => this.#stepDown(t),
        onWorkerReady: (id) => this.#dropOwnLink(id),
      });
      try {
        await master.start();
        this.#master = master;
        this.#log.warn(`now master of term ${term} on the VIP`);
        // Across hosts the old master, if only paused, still thinks it holds
        // the VIP: tell it our term at its own address.
        if (vip.node !== undefined) this.#track(this.#tellOld(vip.node, term));
        return true;
      } catch (err) {
        if (!(err instanceof Deno.errors.AddrInUse)) throw err;
      }
      // The VIP is held: tell the holder our term; if it serves a term as
      // high as ours, we join it instead.
      const theirs = await this.#claim(vip, term);
      // A holder that answers is alive: with a term as high as ours it won,
      // with a lower one it refused our claim (it is in touch with the tier).
      if (theirs !== null) {
        this.#log.info(`the VIP's master answers (term ${theirs}); joining it as a slave`);
        this.#term = Math.max(theirs, lostTerm);
        if (this.#opts.vipDown !== undefined) {
          await runHook(this.#opts.vipDown, { event: "down", host: vip.host, term: theirs }, {
            logger: this.#log,
          });
        }
        return false;
      }
      await sleep(Math.min(50, heartbeat), undefined, { signal: this.#abort.signal }).catch(
        () => {},
      );
    }
    return false;
  }

  /** Sends `T_CLAIM` to the VIP's slave port; resolves the holder's term, if it answers. */
  async #claim(vip: Vip, term: number): Promise<number | null> {
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ hostname: vip.host, port: vip.slavePort });
    } catch {
      return null;
    }
    const writer = new FrameWriter(conn);
    writer.writeRaw(encodeJson(T_CLAIM, { term, id: this.id }));
    const reader = new FrameReader(conn);
    let theirs: number | null = null;
    const timer = setTimeout(() => closeQuietly(conn), Math.min(200, this.#opts.heartbeat ?? 1000));
    try {
      while (
        theirs === null && await reader.read((type, payload) => {
          if (type === T_MEMBERS) theirs = Number(JSON.parse(fromUtf8(payload)).term ?? 0);
        })
      );
    } catch {
      // closed by the timer or by a master stepping down
    } finally {
      clearTimeout(timer);
      await writer.flush();
      closeQuietly(conn);
    }
    return theirs;
  }

  /**
   * Sends `T_CLAIM` to the previous master at its own address until it has
   * read it (its connection closes or it answers) or a minute has passed.
   */
  async #tellOld(node: string, term: number): Promise<void> {
    const until = Date.now() + 60_000;
    const signal = this.#abort.signal;
    while (!signal.aborted && this.#master !== null && Date.now() < until) {
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect(parseHostPort(node));
      } catch {
        await sleep(this.#opts.heartbeat ?? 1000, undefined, { signal }).catch(() => {});
        continue;
      }
      const writer = new FrameWriter(conn);
      writer.writeRaw(encodeJson(T_CLAIM, { term, id: this.id }));
      // A paused process reads it when it resumes; wait for that (or a minute).
      const timer = setTimeout(() => closeQuietly(conn), Math.max(0, until - Date.now()));
      const onAbort = () => closeQuietly(conn);
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        await new FrameReader(conn).read(() => {});
        this.#log.info(`the previous master at ${node} has been told term ${term}`);
        return;
      } catch {
        // closed: it stepped down, or we gave up
        return;
      } finally {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        closeQuietly(conn);
      }
    }
  }

  /** A higher term exists: stop being master, rejoin the VIP as a slave. */
  #stepDown(term: number): void {
    this.#term = term;
    this.#master = null;
    this.balancer.nodeAddr = (local) => this.#leastLoaded(local);
    // Back to our own links to the workers until the new master's list comes.
    this.#workers.sync(this.#members_);
    this.#log.warn(`stepped down: term ${term} is higher; rejoining as a slave`);
    this.#demoted?.();
    this.#demoted = null;
  }

  /** A worker registered and ready at our master: its slave-era link goes. */
  #dropOwnLink(id: string): void {
    this.#workers.drop(id);
  }

  #deadAfter(): number {
    return this.#opts.deadAfter ?? 3 * (this.#opts.heartbeat ?? 1000);
  }

  /** One connection to the master: heartbeats, load pushes, membership. */
  async #session(conn: Deno.Conn, master: HostPort, onHeard: () => void): Promise<void> {
    noDelay(conn);
    const writer = new FrameWriter(conn);
    const heartbeat = this.#opts.heartbeat ?? 1000;
    const deadAfter = this.#opts.deadAfter ?? 3 * heartbeat;
    const loadInterval = this.#opts.loadInterval ?? 1000;
    this.#state.to("CONNECTED");
    this.#log.info(`connected to master ${formatHostPort(master)}`);
    let lastFrame = Date.now();
    const push = () => {
      const load = this.#selfLoad(conn.localAddr as Deno.NetAddr);
      writer.write(
        PUSH_LOAD_INFO,
        utf8(JSON.stringify({ node: this.id, ...load, term: this.#term })),
      );
      if (this.#state.state === "CONNECTED") this.#state.to("PUSH_LOAD_INFO");
    };
    writer.writeRaw(encodeFrame(T_SUBSCRIBE));
    writer.writeRaw(HELLO_FRAME);
    push();
    const hb = setInterval(() => {
      if (Date.now() - lastFrame > deadAfter) {
        this.#log.warn(`master silent for ${Date.now() - lastFrame} ms: DOWN`);
        closeQuietly(conn);
        return;
      }
      writer.writeRaw(HELLO_FRAME);
    }, heartbeat);
    // Check liveness more often than we say hello, so DOWN is noticed on time.
    const watch = setInterval(() => {
      if (Date.now() - lastFrame > deadAfter) closeQuietly(conn);
    }, Math.max(5, deadAfter / 10));
    const load = setInterval(push, loadInterval);
    const reader = new FrameReader(conn);
    try {
      await readAll(reader, (type, payload) => {
        lastFrame = Date.now();
        onHeard();
        switch (type) {
          case HELLO:
            return writer.writeRaw(HELLO_ACK_FRAME);
          case HELLO_ACK:
            return;
          case T_MEMBERS:
            return this.#members(JSON.parse(fromUtf8(payload)));
          case T_TABLE:
            this.#table = JSON.parse(fromUtf8(payload)).nodes ?? [];
            return;
          case ERROR:
            throw new ProtocolError(`master sent ERROR: ${fromUtf8(payload)}`);
          default:
            throw new ProtocolError(`unexpected frame 0x${type.toString(16)} from the master`);
        }
      });
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#log.warn(err.message);
        await sendErrorAndClose(writer, err.message);
      } else if (!isConnGone(err)) throw err;
    } finally {
      clearInterval(hb);
      clearInterval(watch);
      clearInterval(load);
    }
  }

  /** The master's membership: connect to new workers, drop gone ones. */
  #members(
    msg: {
      term?: number;
      vip?: Vip | null;
      slaves?: { id: string }[];
      workers: { id: string; addr: string }[];
    },
  ): void {
    this.#term = Math.max(this.#term, msg.term ?? 0);
    if (msg.vip) this.#vip = msg.vip;
    if (msg.slaves) this.#slaveIds = msg.slaves.map((s) => s.id);
    this.#members_ = msg.workers;
    this.#workers.sync(msg.workers);
    this.#pool?.members(msg.workers);
  }

  /** Everything `status` shows. */
  status(): Record<string, unknown> {
    return {
      id: this.id,
      role: this.role,
      state: this.state,
      vip: this.#vip,
      electorate: this.#slaveIds,
      ...(this.#master !== null ? { promoted: this.#master.status() } : {}),
      addr: this.#addr,
      term: this.#term,
      master: this.#opts.master ?? "127.0.0.1:5061",
      balancer: this.balancer.stats(),
      receivers: this.#pool === null
        ? null
        : { threads: 1 + this.#pool.perThread().length, threadTotals: this.#pool.totals() },
      table: this.#table,
    };
  }

  /** Stops: answers or fails what is in flight, closes everything. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#abort.abort();
    this.#demoted?.();
    if (this.#listener !== null) closeQuietly(this.#listener);
    if (this.#master !== null) await this.#master.stop(0);
    await this.#workers.close();
    clearInterval(this.#tableTimer);
    if (this.#pool !== null) await this.#pool.stop(graceMs);
    await this.balancer.close(graceMs);
    if (this.#masterConn !== null) closeQuietly(this.#masterConn);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}

const HELLO_FRAME = encodeFrame(HELLO);
const HELLO_ACK_FRAME = encodeFrame(HELLO_ACK);

async function readAll(
  reader: FrameReader,
  onFrame: (type: number, payload: Uint8Array) => void,
): Promise<void> {
  while (await reader.read(onFrame));
}
