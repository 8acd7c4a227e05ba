/**
 * The LB tier (seed 003): HELLO/HELLO_ACK, PUSH_LOAD_INFO, least-loaded NODE,
 * slaves as full balancers.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { Client } from "../lib/client.ts";
import { FrameDecoder } from "../lib/frame.ts";
import { HELLO, HELLO_ACK, PUSH_LOAD_INFO } from "../lib/messages.ts";
import { Slave } from "../lib/slave.ts";
import { type Proc, spawnRole, startCluster, waitFor } from "./helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A slave made of raw frames: no lbkit code on its side but the frame header. */
class RawSlave {
  conn: Deno.Conn;
  frames: { type: number; at: number }[] = [];
  #decoder = new FrameDecoder();
  #loop: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#loop = this.#read();
  }

  static async connect(addr: string): Promise<RawSlave> {
    const [hostname, port] = addr.split(":");
    return new RawSlave(await Deno.connect({ hostname, port: Number(port) }));
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) return;
        this.#decoder.push(buf.subarray(0, n), (type) => {
          this.frames.push({ type, at: Date.now() });
        });
      }
    } catch {
      // closed
    }
  }

  send(type: number, payload?: Uint8Array): Promise<number> {
    // Header by hand, as a foreign program would write it.
    const len = payload?.length ?? 0;
    const f = new Uint8Array(4 + len);
    new DataView(f.buffer).setUint16(0, type);
    new DataView(f.buffer).setUint16(2, len);
    if (payload) f.set(payload, 4);
    return this.conn.write(f);
  }

  push(node: string, addr: string, connections: number): Promise<number> {
    const info = { node, addr, connections, inflight: 0, rps: 0, extra: "ignored" };
    return this.send(PUSH_LOAD_INFO, enc.encode(JSON.stringify(info)));
  }

  count(type: number): number {
    return this.frames.filter((f) => f.type === type).length;
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
    await this.#loop;
  }
}

Deno.test("a hand-written slave of raw frames", async (t) => {
  const heartbeat = 100;
  const deadAfter = 300;
  const c = await startCluster(1, { heartbeat, deadAfter });
  const a = await RawSlave.connect(c.master.addrs.slaves);
  const b = await RawSlave.connect(c.master.addrs.slaves);
  const client = await Client.connect(c.master.addrs.clients);
  try {
    await t.step("HELLO gets HELLO_ACK within one interval", async () => {
      const sent = Date.now();
      await a.send(HELLO);
      await waitFor(() => a.count(HELLO_ACK) > 0, heartbeat, "HELLO_ACK");
      ok(a.frames.find((f) => f.type === HELLO_ACK)!.at - sent <= heartbeat);
    });
    await t.step("the master sends HELLOs too", async () => {
      await waitFor(() => a.count(HELLO) >= 2, 3 * heartbeat, "two HELLOs from the master");
      equal(a.frames.some((f) => f.type !== HELLO && f.type !== HELLO_ACK), false);
    });
    await t.step("NODE names the slave with the fewest connections", async () => {
      await a.push("raw-a", "127.0.0.1:7001", 0);
      await b.push("raw-b", "127.0.0.1:7002", 50);
      await waitFor(() => c.master.slaves.table().length === 2, 1000, "two rows");
      equal(await client.node(), "127.0.0.1:7001");
    });
    await t.step("a slave gone silent leaves the answers after dead-after", async () => {
      const silentSince = Date.now();
      // b keeps talking; a keeps its connection open and says nothing.
      let answer = "";
      while (Date.now() - silentSince < deadAfter + 2 * heartbeat) {
        await b.send(HELLO);
        await b.push("raw-b", "127.0.0.1:7002", 50);
        answer = await client.node();
        if (answer !== "127.0.0.1:7001") break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const gone = Date.now() - silentSince;
      // Now the master itself (one connection) beats raw-b (50).
      equal(answer, c.master.addrs.clients);
      ok(gone >= deadAfter - 50, `dropped after ${gone} ms, before dead-after`);
      ok(gone <= deadAfter + 2 * heartbeat, `dropped after ${gone} ms`);
      await waitFor(() => c.master.slaves.table().every((r) => r.node !== "raw-a"), 1000, "DOWN");
    });
  } finally {
    client.close();
    await client.done;
    await a.close();
    await b.close();
    await c.stop();
  }
});

Deno.test("master + 2 slaves + 2 workers: slaves balance, NODE, kill and restart", async (t) => {
  const heartbeat = 100;
  const deadAfter = 300;
  const c = await startCluster(2, { heartbeat, deadAfter });
  const slaveFlags = (port: string, id: string) => [
    "--master",
    c.master.addrs.slaves,
    "--host",
    "127.0.0.1",
    "--port",
    port,
    "--id",
    id,
    "--heartbeat",
    String(heartbeat),
    "--dead-after",
    String(deadAfter),
    "--load-interval",
    String(heartbeat),
  ];
  const procs: Proc[] = [];
  const clients: Client[] = [];
  try {
    procs.push(await spawnRole("slave", slaveFlags("0", "slave-a")));
    procs.push(await spawnRole("slave", slaveFlags("0", "slave-b")));
    const addrA = procs[0].addrs.clients;
    const addrB = procs[1].addrs.clients;
    await waitFor(
      () => c.master.slaves.table().filter((r) => r.state === "PUSH_LOAD_INFO").length === 2,
      3000,
      "both slaves pushing load",
    );

    await t.step("keys written through the master read back through each slave", async () => {
      const m = await Client.connect(c.master.addrs.clients);
      clients.push(m);
      for (let i = 0; i < 50; i++) await m.set(`tier-${i}`, `v${i}`);
      for (const addr of [addrA, addrB]) {
        const s = await Client.connect(addr);
        // The slave learns the workers from the master: wait for its ring.
        const until = Date.now() + 3000;
        for (;;) {
          try {
            await s.ping();
            if (await s.get("tier-0") !== null) break;
          } catch (err) {
            if (Date.now() > until) throw err;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        for (let i = 0; i < 50; i++) equal(dec.decode((await s.get(`tier-${i}`))!), `v${i}`);
        s.close();
        await s.done;
      }
    });

    await t.step("NODE names an idle slave", async () => {
      // The master holds our connection; both slaves are idle: the lower addr wins.
      await new Promise((r) => setTimeout(r, 3 * heartbeat));
      const want = [addrA, addrB].sort()[0];
      equal(await clients[0].node(), want);
      // A slave answers NODE from the master's table, with its own row current.
      const viaSlave = await Client.connect(addrA);
      clients.push(viaSlave);
      const other = addrB;
      equal(await viaSlave.node(), other);
    });

    await t.step("a SIGKILLed slave leaves the NODE answers, and comes back", async () => {
      const victim = procs[0].addrs.clients < procs[1].addrs.clients ? 0 : 1;
      const victimAddr = procs[victim].addrs.clients;
      const killedAt = Date.now();
      await procs[victim].stop();
      await waitFor(async_(clients[0], victimAddr), deadAfter + heartbeat + 200, "victim gone");
      const gone = Date.now() - killedAt;
      ok(gone <= deadAfter + heartbeat + 200, `gone after ${gone} ms`);
      const port = victimAddr.split(":")[1];
      procs[victim] = await spawnRole("slave", slaveFlags(port, "slave-again"));
      await waitFor(
        () =>
          c.master.slaves.table().some((r) =>
            r.addr === victimAddr && r.state === "PUSH_LOAD_INFO"
          ),
        3000,
        "restarted slave pushing",
      );
      // Idle again and the lowest addr: named again.
      const seen = new Set<string>();
      const until = Date.now() + 2000;
      while (!seen.has(victimAddr) && Date.now() < until) {
        seen.add(await clients[0].node());
        await new Promise((r) => setTimeout(r, 50));
      }
      ok(seen.has(victimAddr), `restarted slave named by NODE (saw ${[...seen]})`);
    });
  } finally {
    for (const cl of clients) {
      cl.close();
      await cl.done;
    }
    for (const p of procs) await p.stop();
    await c.stop();
  }
});

/** A sync predicate over the last NODE answer, refreshed in the background. */
function async_(client: Client, notAddr: string): () => boolean {
  let last = notAddr;
  let busy = false;
  return () => {
    if (!busy) {
      busy = true;
      client.node().then((a) => last = a, () => {}).finally(() => busy = false);
    }
    return last !== notAddr;
  };
}

Deno.test("an in-process slave: discover and state", async () => {
  const c = await startCluster(1, { heartbeat: 100 });
  const s = new Slave({
    master: c.master.addrs.slaves,
    hostname: "127.0.0.1",
    port: 0,
    heartbeat: 100,
    loadInterval: 100,
  });
  await s.start();
  try {
    await waitFor(() => s.state === "PUSH_LOAD_INFO" && s.balancer.workers === 1, 3000, "slave up");
    await waitFor(() => c.master.slaves.table().length === 1, 3000, "row at the master");
    // The master has the asking connection; the idle slave is least loaded.
    const d = await Client.discover(c.master.addrs.clients);
    try {
      await d.set("x", "1");
      equal(dec.decode((await d.get("x"))!), "1");
      deepEqual(s.balancer.clientCount, 1);
    } finally {
      d.close();
      await d.done;
    }
  } finally {
    await s.stop();
    await c.stop();
  }
});
