/**
 * A receiver thread (a Web Worker): one more client listener on the master's
 * client port (`reusePort`), with its own balancer and its own links to the
 * workers. The main thread sends it the membership and the load table; it
 * reports its figures back. The round-robin counter is shared.
 *
 * @module
 */

import { formatHostPort, listenerAddr, parseHostPort } from "./addr.ts";
import { Balancer } from "./balancer.ts";
import { closeQuietly, noDelay } from "./conn.ts";
import { leastLoaded, type NodeLoad } from "./least_loaded.ts";
import { createLogger, type LogLevel } from "./log.ts";
import { type Member, WorkerLinks } from "./worker_links.ts";
import type { ThreadIn, ThreadStats } from "./receivers.ts";

let balancer: Balancer | null = null;
let links: WorkerLinks | null = null;
let listener: Deno.Listener | null = null;
let table: NodeLoad[] = [];
let selfRow: NodeLoad | null = null;
let statsTimer: ReturnType<typeof setInterval> | undefined;
const serving = new Set<Promise<void>>();

function init(msg: Extract<ThreadIn, { type: "init" }>): void {
  const log = createLogger(`${msg.node}/t${msg.index}`, msg.logLevel as LogLevel);
  balancer = new Balancer({
    queueSize: msg.queueSize,
    timeout: msg.timeout,
    logger: log,
    rotation: new Int32Array(msg.rotation),
    nodeAddr: (local) => {
      // The main thread's table, with this node's row made current.
      const a = parseHostPort(selfRow?.addr ?? `${local.hostname}:${msg.port}`);
      const row = { ...(selfRow ?? { connections: 0, inflight: 0 }), addr: formatHostPort(a) };
      return leastLoaded([...table.filter((r) => r.addr !== row.addr), row])!.addr;
    },
  });
  links = new WorkerLinks(balancer, `${msg.node}/t${msg.index}`, log);
  listener = Deno.listen({
    hostname: msg.hostname,
    port: msg.port,
    reusePort: true,
  } as Deno.TcpListenOptions);
  const l = listener;
  const b = balancer;
  (async () => {
    try {
      for await (const conn of l) {
        noDelay(conn);
        const task = b.serveClient(conn);
        serving.add(task);
        task.finally(() => serving.delete(task));
      }
    } catch {
      // listener closed
    }
  })();
  statsTimer = setInterval(report, 250);
  self_post({ type: "ready", addr: formatHostPort(listenerAddr(l)) });
}

function report(): void {
  if (balancer === null) return;
  const s = balancer.stats();
  const stats: ThreadStats = {
    clients: s.clients,
    inflight: s.inflight,
    accepted: s.accepted,
    answered: s.answered,
    errors: s.errors,
    timeouts: s.timeouts,
    retries: s.retries,
    rps: balancer.rps,
    workers: s.workers.filter((w) => w.inRing).length,
  };
  self_post({ type: "stats", stats });
}

async function stop(graceMs: number): Promise<void> {
  clearInterval(statsTimer);
  if (listener !== null) closeQuietly(listener);
  if (balancer !== null) await balancer.close(graceMs);
  if (links !== null) await links.close();
  await Promise.allSettled([...serving]);
  report();
  self_post({ type: "stopped" });
  (globalThis as unknown as { close(): void }).close();
}

function self_post(msg: unknown): void {
  (globalThis as unknown as { postMessage(m: unknown): void }).postMessage(msg);
}

(globalThis as unknown as { onmessage: (e: MessageEvent<ThreadIn>) => void }).onmessage = (e) => {
  const msg = e.data;
  try {
    switch (msg.type) {
      case "init":
        return init(msg);
      case "members":
        return links?.sync(msg.workers as Member[]);
      case "table":
        table = msg.rows;
        selfRow = msg.self;
        return;
      case "stop":
        stop(msg.graceMs);
        return;
    }
  } catch (err) {
    self_post({ type: "error", message: (err as Error).message });
  }
};
