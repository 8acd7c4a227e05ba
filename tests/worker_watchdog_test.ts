/**
 * A worker redials a master that has gone silent (hung, or cut off) after
 * its dead-after, and stays on one that keeps talking.
 */

import { ok } from "node:assert/strict";
import { encodeFrame } from "../lib/frame.ts";
import { Worker } from "../lib/worker.ts";
import { encodeJson, W_STATUS, W_WELCOME } from "../lib/wire.ts";

async function fakeMaster(talk: boolean, ms: number): Promise<number[]> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const accepted: number[] = [];
  const conns: Deno.Conn[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];
  const loop = (async () => {
    for await (const c of l) {
      accepted.push(Date.now());
      conns.push(c);
      await c.write(encodeJson(W_WELCOME, { peers: [], exportFrom: null }));
      // Drain what the worker sends so its writes never block.
      (async () => {
        const buf = new Uint8Array(4096);
        try {
          while (await c.read(buf) !== null);
        } catch {
          // closed
        }
      })();
      if (talk) timers.push(setInterval(() => c.write(encodeFrame(W_STATUS)).catch(() => {}), 50));
    }
  })();
  const w = new Worker({
    master: `127.0.0.1:${port}`,
    hostname: "127.0.0.1",
    masterDeadAfter: 200,
  });
  const start = Date.now();
  await w.start();
  await new Promise((r) => setTimeout(r, ms));
  await w.stop();
  for (const t of timers) clearInterval(t);
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // closed by the worker
    }
  }
  l.close();
  await loop.catch(() => {});
  return accepted.map((t) => t - start);
}

Deno.test("a worker redials a silent master after its dead-after", async () => {
  const silent = await fakeMaster(false, 700);
  ok(silent.length >= 2, `redialled a silent master (connections at ${silent} ms)`);
  ok(silent[1] - silent[0] >= 150, `not before dead-after (${silent})`);
  const talking = await fakeMaster(true, 700);
  ok(talking.length === 1, `stayed on a talking master (connections at ${talking} ms)`);
});
