/**
 * Failover: the master dies (or hangs), a slave takes over the VIP, nothing
 * acknowledged is lost.
 */

import { equal, ok } from "node:assert/strict";
import { Client, ReplyError } from "../lib/client.ts";
import { createLogger, type LogLevel } from "../lib/log.ts";
import { Slave } from "../lib/slave.ts";
import { Worker } from "../lib/worker.ts";
import { type Proc, spawnMaster, spawnRole, startCluster, waitFor } from "./helpers.ts";
import { encodeJson, T_CLAIM, T_MEMBERS } from "../lib/wire.ts";
import { FrameReader } from "../lib/frame.ts";

const HEARTBEAT = 100;
const DEAD_AFTER = 300;
const LOG: LogLevel = Deno.env.get("LBKIT_TEST_STDERR") ? "info" : "silent";
const dec = new TextDecoder();

/** A free loopback address per test so a VIP never collides. */
let vipCounter = 20;
function nextVip(): string {
  return `127.0.0.${vipCounter++}`;
}

function tierFlags(): string[] {
  return [
    "--heartbeat",
    String(HEARTBEAT),
    "--dead-after",
    String(DEAD_AFTER),
    "--log-level",
    "warn",
  ];
}

/** Writers: each client writes its own keys one at a time through the VIP. */
class Writers {
  clients: Client[] = [];
  /** key -> last acknowledged value, and values sent after it with no answer. */
  acked = new Map<string, string>();
  uncertain = new Map<string, Set<string>>();
  ackTimes: number[] = [];
  errors = 0;
  #stop = false;
  #loops: Promise<void>[] = [];

  async start(vip: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const c = await Client.connect(vip, { timeout: 1000, reconnect: 10000 });
      this.clients.push(c);
      this.#loops.push(this.#loop(c, i));
    }
  }

  async #loop(c: Client, i: number): Promise<void> {
    for (let seq = 0; !this.#stop && seq < 100000; seq++) {
      const key = `c${i}-k${seq % 40}`;
      const value = `v${seq}`;
      try {
        await c.set(key, value);
        this.acked.set(key, value);
        this.uncertain.delete(key);
        this.ackTimes.push(Date.now());
      } catch (err) {
        if (!(err instanceof ReplyError) && !c.closed) throw err;
        if (c.closed) return;
        this.errors++;
        // Unknown outcome: the write may or may not have been applied.
        const u = this.uncertain.get(key) ?? new Set();
        u.add(value);
        this.uncertain.set(key, u);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }

  /** First ack at or after `t`. */
  firstAckAfter(t: number): number | undefined {
    return this.ackTimes.find((x) => x >= t);
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#loops);
    for (const c of this.clients) {
      c.close();
      await c.done;
    }
  }

  /** Every acknowledged write reads back (or a later write of unknown outcome). */
  async verify(vip: string): Promise<number> {
    const c = await Client.connect(vip, { timeout: 3000, reconnect: 3000 });
    try {
      for (const [key, value] of this.acked) {
        const got = await c.get(key);
        const s = got === null ? null : dec.decode(got);
        const allowed = new Set([value, ...(this.uncertain.get(key) ?? [])]);
        ok(s !== null && allowed.has(s), `${key}: acked ${value}, read ${s}`);
      }
      return this.acked.size;
    } finally {
      c.close();
      await c.done;
    }
  }
}

async function startWorkers(vip: string, workerPort: string, n: number): Promise<Worker[]> {
  const ws: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker({
      master: `${vip}:${workerPort}`,
      hostname: "127.0.0.1",
      id: `w${i}`,
      maxBackoff: 100,
      logger: createLogger(`w${i}`, LOG),
    });
    await w.start();
    ws.push(w);
  }
  await waitFor(() => ws.every((w) => w.registered && w.ready), 5000, "workers registered");
  return ws;
}

Deno.test("crash failover: SIGKILL the master, then the new master", async (t) => {
  const vipHost = nextVip();
  const procs: Proc[] = [];
  const writers = new Writers();
  let workers: Worker[] = [];
  try {
    const master = await spawnMaster(vipHost, [
      ...tierFlags(),
    ]);
    procs.push(master);
    const vip = master.addrs.clients;
    workers = await startWorkers(vipHost, master.addrs.workers.split(":")[1], 3);
    for (const id of ["slave-a", "slave-b"]) {
      procs.push(
        await spawnRole("slave", [
          "--master",
          master.addrs.slaves,
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--id",
          id,
          "--load-interval",
          String(HEARTBEAT),
          ...tierFlags(),
        ]),
      );
    }
    // Both slaves must know each other (the electorate) and the workers.
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT));
    await writers.start(vip, 4);
    await waitFor(() => writers.acked.size >= 20, 5000, "writes before the kill");

    for (const [round, victim] of [[1, 0], [2, 1]] as const) {
      await t.step(`kill ${round === 1 ? "the master" : "the new master (slave-a)"}`, async () => {
        const killedAt = Date.now();
        await procs[victim].stop();
        await waitFor(() => writers.firstAckAfter(killedAt + 1) !== undefined, 5000, "an ack");
        const first = writers.firstAckAfter(killedAt + 1)! - killedAt;
        console.log(`round ${round}: first acknowledged write ${first} ms after SIGKILL`);
        ok(first <= 1000, `first ack after ${first} ms`);
        // Every worker re-registers with the new master.
        await waitFor(
          () => workers.every((w) => w.registered && w.ready),
          3000,
          "workers re-registered",
        );
        const before = writers.ackTimes.length;
        await waitFor(() => writers.ackTimes.length > before + 100, 5000, "writes flowing");
      });
    }
    await t.step("every acknowledged write reads back through the VIP", async () => {
      await writers.stop();
      const n = await writers.verify(vip);
      console.log(`verified ${n} keys, ${writers.ackTimes.length} acks, ${writers.errors} errors`);
      ok(n >= 100);
    });
  } finally {
    await writers.stop();
    for (const p of procs) await p.stop();
    await Promise.all(workers.map((w) => w.stop()));
  }
});

Deno.test("hang failover: SIGSTOP the master past dead-after, SIGCONT, it steps down", async () => {
  const vipHost = nextVip();
  const procs: Proc[] = [];
  const writers = new Writers();
  const slaves: Slave[] = [];
  let workers: Worker[] = [];
  try {
    const master = await spawnMaster(vipHost, [
      "--id",
      "old-master",
      ...tierFlags(),
    ]);
    procs.push(master);
    const vip = master.addrs.clients;
    workers = await startWorkers(vipHost, master.addrs.workers.split(":")[1], 3);
    for (const id of ["slave-a", "slave-b"]) {
      const s = new Slave({
        master: master.addrs.slaves,
        hostname: "127.0.0.1",
        port: 0,
        id,
        heartbeat: HEARTBEAT,
        deadAfter: DEAD_AFTER,
        loadInterval: HEARTBEAT,
        logger: createLogger(id, LOG),
      });
      await s.start();
      slaves.push(s);
    }
    await waitFor(() => slaves.every((s) => s.balancer.workers === 3), 3000, "slaves see workers");
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT));
    await writers.start(vip, 4);
    await waitFor(() => writers.acked.size >= 20, 5000, "writes before the stop");

    const stoppedAt = Date.now();
    master.kill("SIGSTOP");
    await waitFor(() => slaves.some((s) => s.term >= 2), DEAD_AFTER + HEARTBEAT + 200, "election");
    const elected = Date.now() - stoppedAt;
    console.log(`elected ${elected} ms after SIGSTOP`);
    ok(elected <= DEAD_AFTER + HEARTBEAT + 100, `elected after ${elected} ms`);
    // The paused process still holds the VIP's ports: nobody can bind them.
    await new Promise((r) => setTimeout(r, 3 * DEAD_AFTER - elected));
    equal(slaves.filter((s) => s.role === "master").length, 0);

    const contAt = Date.now();
    master.kill("SIGCONT");
    await waitFor(() => slaves.some((s) => s.role === "master"), 2000, "VIP taken over");
    const took = Date.now() - contAt;
    console.log(`new master holds the VIP ${took} ms after SIGCONT`);
    ok(took <= HEARTBEAT + 200, `VIP moved ${took} ms after SIGCONT`);
    equal(slaves.filter((s) => s.role === "master").length, 1);
    await waitFor(() => writers.firstAckAfter(Date.now()) !== undefined, 5000, "writes again");
    await waitFor(() => workers.every((w) => w.registered && w.ready), 3000, "workers back");
    await writers.stop();
    const n = await writers.verify(vip);
    console.log(`verified ${n} keys; ${writers.errors} writes of unknown outcome`);
  } finally {
    await writers.stop();
    master_cont(procs);
    for (const p of procs) await p.stop();
    for (const s of slaves) await s.stop();
    await Promise.all(workers.map((w) => w.stop()));
  }
});

/** A stopped process cannot die of SIGKILL until continued on some kernels. */
function master_cont(procs: Proc[]): void {
  for (const p of procs) p.kill("SIGCONT");
}

Deno.test("a healthy master in touch with its slaves refuses a higher-term claim", async () => {
  const c = await startCluster(1, { heartbeat: HEARTBEAT, deadAfter: DEAD_AFTER });
  const slaves: Slave[] = [];
  let conn: Deno.Conn | null = null;
  try {
    for (const id of ["a", "b"]) {
      const s = new Slave({
        master: c.master.addrs.slaves,
        hostname: "127.0.0.1",
        port: 0,
        id,
        heartbeat: HEARTBEAT,
        deadAfter: DEAD_AFTER,
        loadInterval: HEARTBEAT,
      });
      await s.start();
      slaves.push(s);
    }
    await waitFor(() => c.master.slaves.table().length === 2, 3000, "two slaves");
    const [host, port] = c.master.addrs.slaves.split(":");
    conn = await Deno.connect({ hostname: host, port: Number(port) });
    await conn.write(encodeJson(T_CLAIM, { term: 9, id: "a" }));
    let term: number | null = null;
    const reader = new FrameReader(conn);
    const until = Date.now() + 2000;
    while (term === null && Date.now() < until) {
      await reader.read((type, payload) => {
        if (type === T_MEMBERS) term = JSON.parse(new TextDecoder().decode(payload)).term;
      });
    }
    equal(term, 1, "answered with its own term");
    equal(c.master.state, "UP_LISTENING");
    equal(c.master.term, 1);
  } finally {
    conn?.close();
    for (const s of slaves) await s.stop();
    await c.stop();
  }
});
