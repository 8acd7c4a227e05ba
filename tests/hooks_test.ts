/**
 * VIP hooks: `--vip-up` runs on promotion before the VIP is bound,
 * `--vip-down` after stepping down; `--allow-run` only when a hook is given.
 */

import { deepEqual, ok } from "node:assert/strict";
import { Master } from "../lib/master.ts";
import { Slave } from "../lib/slave.ts";
import { encodeJson, T_CLAIM } from "../lib/wire.ts";
import { permissionFlags } from "../cli/permissions.ts";
import { spawnRole, waitFor } from "./helpers.ts";

const log = `/tmp/lbkit-hooks-${crypto.randomUUID()}`;
const hook = `echo "$LBKIT_EVENT $LBKIT_TERM $LBKIT_VIP_HOST" >> ${log}`;

async function lines(): Promise<string[]> {
  try {
    return (await Deno.readTextFile(log)).trim().split("\n");
  } catch {
    return [];
  }
}

async function cleanup(): Promise<void> {
  await new Deno.Command("rm", { args: ["-f", log] }).output();
}

Deno.test("vip-down runs when a master sees a higher term", async () => {
  const m = new Master({
    hostname: "127.0.0.41",
    port: 0,
    workerPort: 0,
    slavePort: 0,
    vipDown: hook,
  });
  await m.start();
  const conn = await Deno.connect({ hostname: "127.0.0.41", port: m.vip.slavePort });
  try {
    await conn.write(encodeJson(T_CLAIM, { term: 5, id: "other" }));
    await waitFor(() => m.state === "DOWN", 2000, "step-down");
    const until = Date.now() + 3000;
    while ((await lines()).length === 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    deepEqual(await lines(), ["down 5 127.0.0.41"]);
  } finally {
    conn.close();
    await m.stop(0);
    await cleanup();
  }
});

Deno.test("vip-up runs on promotion, before the VIP is bound", async () => {
  const master = await spawnRole("master", [
    "--host",
    "127.0.0.42",
    "--port",
    "0",
    "--worker-port",
    "0",
    "--slave-port",
    "0",
    "--heartbeat",
    "100",
  ]);
  const s = new Slave({
    master: master.addrs.slaves,
    hostname: "127.0.0.1",
    port: 0,
    id: "hooked",
    heartbeat: 100,
    loadInterval: 100,
    vipUp: hook,
  });
  try {
    await s.start();
    await waitFor(() => s.state === "PUSH_LOAD_INFO", 3000, "slave up");
    await new Promise((r) => setTimeout(r, 300));
    await master.stop();
    await waitFor(() => s.role === "master", 3000, "promotion");
    deepEqual(await lines(), ["up 2 127.0.0.42"]);
  } finally {
    await master.stop();
    await s.stop();
    await cleanup();
  }
});

Deno.test("--allow-run only when a hook is given", () => {
  ok(!permissionFlags("master", []).includes("--allow-run"));
  ok(!permissionFlags("slave", ["--port", "0"]).includes("--allow-run"));
  ok(permissionFlags("master", ["--vip-up", "true"]).includes("--allow-run"));
  ok(permissionFlags("slave", ["--vip-down=true"]).includes("--allow-run"));
});
