/**
 * `lbkit master`.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import { Master } from "../lib/master.ts";
import { Slave } from "../lib/slave.ts";
import { formatHostPort } from "../lib/addr.ts";
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

/** `lbkit master` flags. */
export const MASTER_FLAGS: FlagTable = {
  host: { type: "string", default: "0.0.0.0", help: "interface for every listener" },
  port: { type: "string", default: "5059", help: "client port (0 = any free port)" },
  "worker-port": { type: "string", default: "5060", help: "worker registration port" },
  "slave-port": { type: "string", default: "5061", help: "slave (LB tier) port" },
  id: {
    type: "string",
    help: "id in the LB tier, used if it steps down to slave (default: generated)",
  },
  heartbeat: { type: "string", default: "1000", help: "HELLO interval with the slaves in ms" },
  "dead-after": {
    type: "string",
    help: "ms without a frame before a slave is DOWN (default: 3 x heartbeat)",
  },
  term: { type: "string", default: "1", help: "cluster term to start with" },
  ...BALANCER_FLAGS,
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
  const heartbeat = intFlag(v, "heartbeat", 1);
  const deadAfter = v["dead-after"] === undefined ? 3 * heartbeat : intFlag(v, "dead-after", 1);
  const logger = createLogger("master", logLevelFlag(v));
  const id = typeof v.id === "string" ? v.id : `m-${crypto.randomUUID().slice(0, 6)}`;
  // The node serving now: the master, or the slave it became on stepping down.
  let node: { status(): unknown; stop(): Promise<void> };
  const master = new Master({
    hostname: String(v.host),
    port: portFlag(v, "port"),
    workerPort: portFlag(v, "worker-port"),
    slavePort: portFlag(v, "slave-port"),
    queueSize: intFlag(v, "queue-size", 1),
    timeout: intFlag(v, "timeout", 1),
    heartbeat,
    deadAfter,
    term: intFlag(v, "term", 1),
    threads: intFlag(v, "threads", 1, 64),
    threadLogLevel: logLevelFlag(v),
    logger,
    ...hookFlags(v),
    onStepDown: (term) => {
      // A higher term holds the cluster: rejoin it as a slave on a free port.
      const vip = master.vip;
      const slave = new Slave({
        master: formatHostPort({ hostname: vip.host, port: vip.slavePort }),
        hostname: vip.host,
        port: 0,
        id,
        heartbeat,
        deadAfter,
        queueSize: intFlag(v, "queue-size", 1),
        timeout: intFlag(v, "timeout", 1),
        logger: createLogger("slave", logLevelFlag(v)),
        ...hookFlags(v),
      });
      node = slave;
      slave.start().then(() =>
        console.log(
          `lbkit master stepped down (term ${term}); slave ${id} listening clients=${slave.addr}`,
        )
      );
    },
  });
  node = master;
  try {
    await master.start();
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      fail(
        `cannot bind the VIP ${v.host} (ports ${v.port}/${v["worker-port"]}/${v["slave-port"]}): ` +
          `held by another process, a master already serves it (${err.message})`,
        1,
      );
    }
    throw err;
  }
  const a = master.addrs;
  console.log(
    `lbkit master listening clients=${a.clients} workers=${a.workers} slaves=${a.slaves}`,
  );
  await runServer("master", () => node.status(), () => node.stop());
}
