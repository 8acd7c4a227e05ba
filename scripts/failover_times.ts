/**
 * Failover timings over N runs (default 10), printed as min/median/max:
 *
 * - crash: SIGKILL the master; time to the first acknowledged write through
 *   the VIP (a client writing continuously, reconnecting).
 * - hang: SIGSTOP the master; time to the election (a slave takes term 2);
 *   then SIGCONT after 3 x dead-after and the time to the first acknowledged
 *   write through the VIP (the old master steps down, the new one binds).
 *
 * `deno run --allow-net --allow-run --allow-read scripts/failover_times.ts [N]`
 *
 * @module
 */

import { Client } from "../lib/client.ts";
import { Slave } from "../lib/slave.ts";
import { Worker } from "../lib/worker.ts";
import { spawnMaster, waitFor } from "../tests/helpers.ts";

const HEARTBEAT = 100;
const DEAD_AFTER = 300;
const runs = Number(Deno.args[0] ?? 10);

async function scenario(kind: "crash" | "hang", vipHost: string): Promise<number[]> {
  const master = await spawnMaster(vipHost, [
    "--heartbeat",
    String(HEARTBEAT),
    "--dead-after",
    String(DEAD_AFTER),
    "--log-level",
    "error",
  ]);
  const workers: Worker[] = [];
  const slaves: Slave[] = [];
  let client: Client | null = null;
  let stop = false;
  const acks: number[] = [];
  let loop: Promise<void> = Promise.resolve();
  try {
    for (let i = 0; i < 3; i++) {
      const w = new Worker({
        master: master.addrs.workers,
        hostname: "127.0.0.1",
        maxBackoff: 100,
      });
      await w.start();
      workers.push(w);
    }
    for (const id of ["slave-a", "slave-b"]) {
      const s = new Slave({
        master: master.addrs.slaves,
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
    await waitFor(() => slaves.every((s) => s.balancer.workers === 3), 5000, "slaves ready");
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT));
    client = await Client.connect(master.addrs.clients, { timeout: 300, reconnect: 20000 });
    const c = client;
    loop = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await c.set(`k${i % 100}`, `v${i}`);
          acks.push(Date.now());
        } catch {
          if (c.closed) return;
          await new Promise((r) => setTimeout(r, 2));
        }
      }
    })();
    await waitFor(() => acks.length > 50, 5000, "writes");
    const t0 = Date.now();
    const firstAck = () => acks.find((a) => a > t0);
    if (kind === "crash") {
      master.kill("SIGKILL");
      await waitFor(() => firstAck() !== undefined, 10000, "ack after kill");
      return [firstAck()! - t0];
    }
    master.kill("SIGSTOP");
    await waitFor(() => slaves.some((s) => s.term >= 2), 5000, "election");
    const elected = Date.now() - t0;
    await new Promise((r) => setTimeout(r, Math.max(0, 3 * DEAD_AFTER - (Date.now() - t0))));
    const t1 = Date.now();
    master.kill("SIGCONT");
    await waitFor(() => acks.some((a) => a > t1), 10000, "ack after SIGCONT");
    return [elected, acks.find((a) => a > t1)! - t1];
  } finally {
    stop = true;
    master.kill("SIGCONT");
    client?.close();
    await loop;
    if (client) await client.done;
    await master.stop();
    for (const s of slaves) await s.stop();
    for (const w of workers) await w.stop();
  }
}

function summary(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `min ${s[0]} ms, median ${s[Math.floor(s.length / 2)]} ms, max ${s[s.length - 1]} ms`;
}

const crash: number[] = [];
const elect: number[] = [];
const resume: number[] = [];
for (let i = 0; i < runs; i++) {
  crash.push(...await scenario("crash", `127.0.0.${60 + (i % 100)}`));
  const [e, r] = await scenario("hang", `127.0.1.${60 + (i % 100)}`);
  elect.push(e);
  resume.push(r);
  console.error(
    `run ${i + 1}: crash ${crash[i]} ms; hang: elected ${e} ms, served ${r} ms after SIGCONT`,
  );
}
console.log(
  `crash (SIGKILL -> first acknowledged write via the VIP), ${runs} runs: ${summary(crash)}`,
);
console.log(`hang (SIGSTOP -> slave elected), ${runs} runs: ${summary(elect)}`);
console.log(
  `hang (SIGCONT -> first acknowledged write via the VIP), ${runs} runs: ${summary(resume)}`,
);
console.log(`(heartbeat ${HEARTBEAT} ms, dead-after ${DEAD_AFTER} ms)`);
