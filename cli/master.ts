/**
 * `lbkit master`.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import { Master } from "../lib/master.ts";
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

/** `lbkit master` flags. */
export const MASTER_FLAGS: FlagTable = {
  host: { type: "string", default: "0.0.0.0", help: "interface for every listener" },
  port: { type: "string", default: "5059", help: "client port (0 = any free port)" },
  "worker-port": { type: "string", default: "5060", help: "worker registration port" },
  "slave-port": { type: "string", default: "5061", help: "slave (LB tier) port" },
  "queue-size": { type: "string", default: "4096", help: "request/response queue capacity" },
  timeout: { type: "string", default: "5000", help: "request deadline in ms" },
  "log-level": LOG_LEVEL_FLAG,
};

/** Help for `lbkit master`. */
export const MASTER_HELP: string = helpText(
  "master",
  "The front door: takes client requests, queues them, hands them round-robin to\n" +
    "the registered workers and routes each reply back. Workers register on\n" +
    "--worker-port. Prints one line with the bound addresses when ready.",
  MASTER_FLAGS,
);

/** Runs `lbkit master` until a signal or `quit`. */
export async function masterCommand(argv: string[]): Promise<void> {
  const v = parseFlags("master", MASTER_FLAGS, argv);
  if (v.help) return void console.log(MASTER_HELP);
  const master = new Master({
    hostname: String(v.host),
    port: portFlag(v, "port"),
    workerPort: portFlag(v, "worker-port"),
    slavePort: portFlag(v, "slave-port"),
    queueSize: intFlag(v, "queue-size", 1),
    timeout: intFlag(v, "timeout", 1),
    logger: createLogger("master", logLevelFlag(v)),
  });
  await master.start();
  const a = master.addrs;
  console.log(
    `lbkit master listening clients=${a.clients} workers=${a.workers} slaves=${a.slaves}`,
  );
  await runServer("master", () => master.status(), () => master.stop());
}
