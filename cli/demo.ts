/**
 * `lbkit demo`: a master and two workers in one process on the default
 * ports, for a first look.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import { Master } from "../lib/master.ts";
import { Worker } from "../lib/worker.ts";
import {
  type FlagTable,
  helpText,
  intFlag,
  LOG_LEVEL_FLAG,
  logLevelFlag,
  parseFlags,
  portFlag,
  runServer,
} from "./common.ts";

/** `lbkit demo` flags. */
export const DEMO_FLAGS: FlagTable = {
  port: { type: "string", default: "5059", help: "client port" },
  "worker-port": { type: "string", default: "5060", help: "worker registration port" },
  "slave-port": { type: "string", default: "5061", help: "slave port" },
  workers: { type: "string", default: "2", help: "how many workers to start" },
  "log-level": LOG_LEVEL_FLAG,
};

/** Help for `lbkit demo`. */
export const DEMO_HELP: string = helpText(
  "demo",
  "Starts a master on 127.0.0.1 and some workers in one process, prints how to\n" +
    "talk to them, and runs until Ctrl-C.",
  DEMO_FLAGS,
);

/** Runs the demo cluster until a signal. */
export async function demoCommand(argv: string[]): Promise<void> {
  const v = parseFlags("demo", DEMO_FLAGS, argv);
  if (v.help) return void console.log(DEMO_HELP);
  const level = logLevelFlag(v);
  const n = intFlag(v, "workers", 1, 64); // every flag checked before anything binds
  const master = new Master({
    hostname: "127.0.0.1",
    port: portFlag(v, "port"),
    workerPort: portFlag(v, "worker-port"),
    slavePort: portFlag(v, "slave-port"),
    logger: createLogger("master", level),
  });
  await master.start();
  const workers: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker({
      master: master.addrs.workers,
      hostname: "127.0.0.1",
      id: `demo-${i + 1}`,
      logger: createLogger(`worker demo-${i + 1}`, level),
    });
    await w.start();
    workers.push(w);
  }
  const a = master.addrs;
  console.log(`lbkit demo listening clients=${a.clients} workers=${a.workers} slaves=${a.slaves}`);
  console.log(`
Try, from another terminal:
  printf 'set a 1\\nget a\\n' | npx -y deno@2.9.6 task client
  npx -y deno@2.9.6 task client        (interactive: set k v, get k, del k, ping, node)
Another worker joins with:
  npx -y deno@2.9.6 task worker
Ctrl-C stops the demo.`);
  await runServer("demo", () => ({
    master: master.status(),
    workers: workers.map((w) => w.stats()),
  }), async () => {
    await master.stop();
    await Promise.all(workers.map((w) => w.stop()));
  });
}
