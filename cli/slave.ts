/**
 * `lbkit slave`.
 *
 * @module
 */

import { parseHostPort } from "../lib/addr.ts";
import { createLogger } from "../lib/log.ts";
import { Slave } from "../lib/slave.ts";
import {
  BALANCER_FLAGS,
  fail,
  type FlagTable,
  helpText,
  hookFlags,
  intFlag,
  LOG_LEVEL_FLAG,
  logLevelFlag,
  parseFlags,
  portFlag,
  runServer,
} from "./common.ts";

/** `lbkit slave` flags. */
export const SLAVE_FLAGS: FlagTable = {
  master: { type: "string", default: "127.0.0.1:5061", help: "the master's slave port" },
  host: { type: "string", default: "0.0.0.0", help: "interface for the client listener" },
  port: { type: "string", default: "5069", help: "client port (0 = any free port)" },
  id: { type: "string", help: "unique slave id (default: generated)" },
  heartbeat: { type: "string", default: "1000", help: "HELLO interval in ms" },
  "dead-after": {
    type: "string",
    help: "ms without a frame before the master is DOWN (default: 3 x heartbeat)",
  },
  "load-interval": { type: "string", default: "1000", help: "PUSH_LOAD_INFO interval in ms" },
  ...BALANCER_FLAGS,
  "log-level": LOG_LEVEL_FLAG,
};

/** Help for `lbkit slave`. */
export const SLAVE_HELP: string = helpText(
  "slave",
  "A balancer in the master's tier: heart-beats with the master (HELLO/HELLO_ACK),\n" +
    "pushes its load (PUSH_LOAD_INFO), learns the workers from the master and\n" +
    "balances its own clients over them.",
  SLAVE_FLAGS,
);

/** Runs `lbkit slave` until a signal or `quit`. */
export async function slaveCommand(argv: string[]): Promise<void> {
  const v = parseFlags("slave", SLAVE_FLAGS, argv);
  if (v.help) return void console.log(SLAVE_HELP);
  try {
    parseHostPort(String(v.master));
  } catch (err) {
    fail(`--master: ${(err as Error).message}`);
  }
  const heartbeat = intFlag(v, "heartbeat", 1);
  const slave = new Slave({
    master: String(v.master),
    hostname: String(v.host),
    port: portFlag(v, "port"),
    id: typeof v.id === "string" ? v.id : undefined,
    heartbeat,
    deadAfter: v["dead-after"] === undefined ? 3 * heartbeat : intFlag(v, "dead-after", 1),
    loadInterval: intFlag(v, "load-interval", 1),
    queueSize: intFlag(v, "queue-size", 1),
    timeout: intFlag(v, "timeout", 1),
    threads: intFlag(v, "threads", 1, 64),
    threadLogLevel: logLevelFlag(v),
    logger: createLogger("slave", logLevelFlag(v)),
    ...hookFlags(v),
  });
  await slave.start();
  console.log(`lbkit slave ${slave.id} listening clients=${slave.addr} master=${v.master}`);
  await runServer("slave", () => slave.status(), () => slave.stop());
}
