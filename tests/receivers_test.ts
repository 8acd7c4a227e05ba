/**
 * Receiver threads (`--threads N`): the client port served by the main
 * thread and N-1 Web Workers, one global rotation, figures that add up.
 */

import { equal, ok } from "node:assert/strict";
import { Client } from "../lib/client.ts";
import { Slave } from "../lib/slave.ts";
import { startCluster, waitFor } from "./helpers.ts";

Deno.test("master with 3 receiver threads", async (t) => {
  const c = await startCluster(3, { threads: 3 });
  const clients: Client[] = [];
  try {
    // Many connections so the kernel spreads them over the three listeners.
    for (let i = 0; i < 24; i++) clients.push(await Client.connect(c.master.addrs.clients));
    await waitFor(
      () => (c.master.status().receivers?.threadTotals.workers ?? 0) === 6,
      3000,
      "both threads linked to the 3 workers",
    );
    await t.step("every connection works, values read back through any thread", async () => {
      await Promise.all(clients.map((cl, i) => cl.set(`t-${i}`, `v${i}`)));
      for (const [i, cl] of clients.entries()) {
        const v = await cl.get(`t-${(i + 7) % clients.length}`);
        equal(new TextDecoder().decode(v!), `v${(i + 7) % clients.length}`);
      }
    });
    await t.step("connections spread over the threads, figures add up", async () => {
      await new Promise((r) => setTimeout(r, 400));
      const s = c.master.status();
      const inThreads = s.receivers!.threadTotals.clients;
      equal(s.balancer.clients + inThreads, clients.length);
      ok(inThreads > 0, "some connections went to the worker threads");
      ok(s.balancer.clients > 0, "some stayed on the main thread");
    });
    await t.step("the rotation is global: 3,000 GETs spread 1,000 ± 1 per worker", async () => {
      const before = c.workers.map((w) => w.stats().served);
      const jobs: Promise<unknown>[] = [];
      for (let i = 0; i < 3000; i++) jobs.push(clients[i % clients.length].get("t-0"));
      await Promise.all(jobs);
      const served = c.workers.map((w, i) => w.stats().served - before[i]);
      equal(served.reduce((a, b) => a + b, 0), 3000);
      for (const n of served) ok(Math.abs(n - 1000) <= 1, `served ${served}`);
    });
  } finally {
    for (const cl of clients) {
      cl.close();
      await cl.done;
    }
    await c.stop();
  }
});

Deno.test("slave with 2 receiver threads balances over the master's workers", async () => {
  const c = await startCluster(2, { heartbeat: 100 });
  const s = new Slave({
    master: c.master.addrs.slaves,
    hostname: "127.0.0.1",
    port: 0,
    heartbeat: 100,
    loadInterval: 100,
    threads: 2,
  });
  await s.start();
  const clients: Client[] = [];
  try {
    await waitFor(
      () =>
        s.balancer.workers === 2 &&
        (s.status().receivers as { threadTotals: { workers: number } }).threadTotals.workers === 2,
      3000,
      "slave threads linked",
    );
    for (let i = 0; i < 12; i++) clients.push(await Client.connect(s.addr));
    await Promise.all(clients.map((cl, i) => cl.set(`s-${i}`, `v${i}`)));
    for (const [i, cl] of clients.entries()) {
      equal(new TextDecoder().decode((await cl.get(`s-${i}`))!), `v${i}`);
    }
    const before = c.workers.map((w) => w.stats().served);
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 1000; i++) jobs.push(clients[i % clients.length].get("s-0"));
    await Promise.all(jobs);
    const served = c.workers.map((w, i) => w.stats().served - before[i]);
    for (const n of served) ok(Math.abs(n - 500) <= 1, `served ${served}`);
  } finally {
    for (const cl of clients) {
      cl.close();
      await cl.done;
    }
    await s.stop();
    await c.stop();
  }
});
