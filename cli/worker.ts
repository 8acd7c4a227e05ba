/**
 * `lbkit worker`.
 *
 * @module
 */

import { formatHostPort } from "../lib/addr.ts";
import { createLogger } from "../lib/log.ts";
import { Worker } from "../lib/worker.ts";
import {
  fail,
  type FlagTable,
  helpText,
  intFlag,
  LOG_LEVEL_FLAG,
  logLevelFlag,
  parseFlags,
  portFlag,
  runServer,
} from "./common.ts";
import { parseHostPort } from "../lib/addr.ts";

/** `lbkit worker` flags. */
export const WORKER_FLAGS: FlagTable = {
  master: { type: "string", default: "127.0.0.1:5060", help: "the master's worker port" },
  host: { type: "string", default: "0.0.0.0", help: "interface for the worker's listener" },
  port: { type: "string", default: "0", help: "the worker's listener (LB nodes, peers)" },
  id: { type: "string", help: "unique worker id (default: generated)" },
  ack: {
    type: "string",
    default: "all",
    help: "all = OK once every live replica applied the write; local = after the local apply",
  },
  "peer-timeout": {
    type: "string",
    default: "1000",
    help: "ms a peer has to confirm a write before it is dropped",
  },
  "dead-after": {
    type: "string",
    default: "3000",
    help: "ms without a frame from the master before it is redialled",
  },
  "tombstone-ttl": { type: "string", default: "60000", help: "ms a delete's tombstone is kept" },
  "log-level": LOG_LEVEL_FLAG,
};

/** Help for `lbkit worker`. */
export const WORKER_HELP: string = helpText(
  "worker",
  "An in-memory key-value store. Registers with the master, serves SET/GET/DEL\n" +
    "from any LB node, replicates every write to its peers, and reconnects to the\n" +
    "master with backoff keeping its data.",
  WORKER_FLAGS,
);

/** Runs `lbkit worker` until a signal or `quit`. */
export async function workerCommand(argv: string[]): Promise<void> {
  const v = parseFlags("worker", WORKER_FLAGS, argv);
  if (v.help) return void console.log(WORKER_HELP);
  try {
    parseHostPort(String(v.master));
  } catch (err) {
    fail(`--master: ${(err as Error).message}`);
  }
  if (v.ack !== "all" && v.ack !== "local") fail(`--ack must be all or local, got "${v.ack}"`);
  const worker = new Worker({
    ack: v.ack,
    peerTimeout: intFlag(v, "peer-timeout", 1),
    tombstoneTtl: intFlag(v, "tombstone-ttl", 1),
    masterDeadAfter: intFlag(v, "dead-after", 1),
    master: String(v.master),
    hostname: String(v.host),
    port: portFlag(v, "port"),
    id: typeof v.id === "string" ? v.id : undefined,
    logger: createLogger("worker", logLevelFlag(v)),
  });
  await worker.start();
  console.log(
    `lbkit worker ${worker.id} listening addr=${formatHostPort(worker.addr)} master=${v.master}`,
  );
  await runServer("worker", () => worker.stats(), () => worker.stop());
}
