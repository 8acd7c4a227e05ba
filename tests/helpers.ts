/**
 * Test helpers: in-process clusters and spawned CLI processes on loopback.
 *
 * @module
 */

import { Master, type MasterOptions } from "../lib/master.ts";
import { Worker, type WorkerOptions } from "../lib/worker.ts";
import { type Role, roleCommand } from "../cli/permissions.ts";

/** Absolute path of cli/main.ts. */
export const MAIN: string = new URL("../cli/main.ts", import.meta.url).pathname;

/** Polls `cond` every 10 ms until true or `ms` pass; throws on time-out. */
export async function waitFor(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An in-process master and workers on 127.0.0.1, ephemeral ports. */
export interface Cluster {
  master: Master;
  workers: Worker[];
  addWorker(options?: WorkerOptions): Promise<Worker>;
  stop(): Promise<void>;
}

/** Starts a master and `n` workers in-process and waits for them to be in the ring. */
export async function startCluster(
  n: number,
  options: MasterOptions = {},
  workerOptions: WorkerOptions = {},
): Promise<Cluster> {
  const master = new Master({
    hostname: "127.0.0.1",
    port: 0,
    workerPort: 0,
    slavePort: 0,
    ...options,
  });
  await master.start();
  const workers: Worker[] = [];
  const addWorker = async (o: WorkerOptions = {}) => {
    const w = new Worker({
      master: master.addrs.workers,
      hostname: "127.0.0.1",
      ...workerOptions,
      ...o,
    });
    await w.start();
    workers.push(w);
    const before = master.balancer.workers;
    await waitFor(() => master.balancer.workers > before, 5000, `worker ${w.id} in the ring`);
    return w;
  };
  for (let i = 0; i < n; i++) await addWorker();
  return {
    master,
    workers,
    addWorker,
    async stop() {
      await master.stop(0);
      await Promise.all(workers.map((w) => w.stop()));
    },
  };
}

/** A spawned lbkit process and the start-up line it printed. */
export interface Proc {
  child: Deno.ChildProcess;
  line: string;
  /** `key=value` pairs of the start-up line. */
  addrs: Record<string, string>;
  kill(sig?: Deno.Signal): void;
  /** Kills (SIGKILL) if still running and waits for the exit. */
  stop(): Promise<void>;
}

/**
 * Spawns `cli/main.ts ROLE flags` with the role's permission set and waits
 * for its start-up line (the first stdout line containing "listening").
 */
export async function spawnRole(role: Role, flags: string[], ms = 15000): Promise<Proc> {
  const child = new Deno.Command(Deno.execPath(), {
    args: roleCommand(role, MAIN, flags),
    stdin: "null",
    stdout: "piped",
    stderr: Deno.env.get("LBKIT_TEST_STDERR") ? "inherit" : "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const timer = setTimeout(() => {
    if (!exited) child.kill("SIGKILL");
  }, ms);
  try {
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${role} exited before its start-up line`);
      buf += value;
    }
  } catch (err) {
    if (!exited) child.kill("SIGKILL");
    await status;
    throw err;
  } finally {
    clearTimeout(timer);
  }
  // Drain the rest of stdout so the pipe never fills.
  const drained = (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // closed
    }
  })();
  const line = buf.slice(0, buf.indexOf("\n"));
  const addrs: Record<string, string> = {};
  for (const m of line.matchAll(/(\S+)=(\S+)/g)) addrs[m[1]] = m[2];
  return {
    child,
    line,
    addrs,
    kill(sig: Deno.Signal = "SIGKILL") {
      if (!exited) child.kill(sig);
    },
    async stop() {
      if (!exited) child.kill("SIGKILL");
      await status;
      await drained;
    },
  };
}

/**
 * Spawns `lbkit master` on `vipHost` with every port ephemeral, plus
 * `flags` (heartbeat, dead-after, ...).
 */
export function spawnMaster(vipHost: string, flags: string[] = []): Promise<Proc> {
  const ports = ["--port", "0", "--worker-port", "0", "--slave-port", "0"];
  return spawnRole("master", ["--host", vipHost, ...ports, ...flags]);
}
