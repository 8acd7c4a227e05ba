/**
 * An LB node's own links to the workers the master names (slaves, receiver
 * threads): connect to each member, keep the link while it is one, drop it
 * when it leaves.
 *
 * @module
 */

import { setTimeout as sleep } from "node:timers/promises";
import { parseHostPort } from "./addr.ts";
import { type Balancer, WorkerLink } from "./balancer.ts";
import { closeQuietly, noDelay } from "./conn.ts";
import { ProtocolError } from "./errors.ts";
import { FrameReader } from "./frame.ts";
import type { Logger } from "./log.ts";
import { encodeJson, W_LB_HELLO } from "./wire.ts";
import { FrameWriter } from "./writer.ts";

/** A worker as the master announces it. */
export interface Member {
  id: string;
  addr: string;
}

/** The links from one balancer to the member workers. */
export class WorkerLinks {
  #balancer: Balancer;
  #node: string;
  #log: Logger;
  #links = new Map<string, { addr: string; link: WorkerLink | null }>();
  #tasks = new Set<Promise<void>>();
  #abort = new AbortController();

  /** `node` names this LB node to the workers (`W_LB_HELLO`). */
  constructor(balancer: Balancer, node: string, logger: Logger) {
    this.#balancer = balancer;
    this.#node = node;
    this.#log = logger;
  }

  /** Makes the links match the membership: connect to new, drop gone. */
  sync(members: Member[]): void {
    const want = new Map(members.map((w) => [w.id, w.addr]));
    for (const [id, w] of this.#links) if (want.get(id) !== w.addr) this.drop(id);
    for (const [id, addr] of want) {
      if (this.#links.has(id)) continue;
      this.#links.set(id, { addr, link: null });
      const task = this.#keep(id, addr);
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  /** Drops one worker's link (it left, or another link replaces it). */
  drop(id: string): void {
    const w = this.#links.get(id);
    if (w === undefined) return;
    this.#links.delete(id);
    if (w.link !== null) this.#balancer.detachWorker(w.link);
  }

  /** Keeps a link to one worker while it is a member, reconnecting. */
  async #keep(id: string, addr: string): Promise<void> {
    const signal = this.#abort.signal;
    let backoff = 50;
    while (!signal.aborted && this.#links.get(id)?.addr === addr) {
      try {
        const conn = await Deno.connect(parseHostPort(addr));
        noDelay(conn);
        const entry = this.#links.get(id);
        if (signal.aborted || entry?.addr !== addr) {
          closeQuietly(conn);
          return;
        }
        const writer = new FrameWriter(conn);
        writer.writeRaw(encodeJson(W_LB_HELLO, { node: this.#node }));
        const link = new WorkerLink(id, addr, conn, writer);
        entry.link = link;
        backoff = 50;
        const done = this.#balancer.attachWorker(link, new FrameReader(conn), (type) => {
          throw new ProtocolError(`unexpected worker frame 0x${type.toString(16)}`);
        });
        this.#balancer.enable(link);
        this.#log.info(`connected to worker ${id} at ${addr}`);
        await done;
        entry.link = null;
      } catch (err) {
        this.#log.debug(`worker ${id} at ${addr}: ${(err as Error).message}`);
      }
      try {
        await sleep(backoff, undefined, { signal });
      } catch {
        return;
      }
      backoff = Math.min(backoff * 2, 1000);
    }
  }

  /** Drops every link and waits for the reconnect loops to end. */
  async close(): Promise<void> {
    this.#abort.abort();
    for (const id of [...this.#links.keys()]) this.drop(id);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }
}
