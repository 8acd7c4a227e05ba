/**
 * lbkit: a load-balanced, replicated, in-memory key-value cluster.
 *
 * The roles start in-process:
 *
 * ```ts ignore
 * import { Client, Master, Worker } from "./mod.ts";
 * const master = new Master({ port: 0, workerPort: 0, slavePort: 0 });
 * await master.start();
 * const worker = new Worker({ master: master.addrs.workers });
 * await worker.start();
 * const client = await Client.connect(master.addrs.clients);
 * await client.set("a", "1");
 * ```
 *
 * The building blocks (frame codec, blocking queue, ring) are exported too.
 *
 * @module
 */

export * from "./lib/errors.ts";
export * from "./lib/frame.ts";
export * from "./lib/writer.ts";
export * from "./lib/messages.ts";
export * from "./lib/queue.ts";
export * from "./lib/ring.ts";
export * from "./lib/store.ts";
export * from "./lib/hlc.ts";
export {
  Balancer,
  type BalancerOptions,
  type BalancerStats,
  type ControlHandler,
  WorkerLink,
} from "./lib/balancer.ts";
export { type HostPort } from "./lib/addr.ts";
export { type MasterState, type SlaveState } from "./lib/tier_state.ts";
export { SlaveHub, type SlaveRow } from "./lib/slave_hub.ts";
export { type ThreadStats } from "./lib/receivers.ts";
export { Master, type MasterAddrs, type MasterOptions } from "./lib/master.ts";
export { Worker, type WorkerOptions, type WorkerStats } from "./lib/worker.ts";
export { Slave, type SlaveOptions } from "./lib/slave.ts";
export { type Vip } from "./lib/master.ts";
export { leastLoaded, type NodeLoad } from "./lib/least_loaded.ts";
export { Histogram } from "./lib/histogram.ts";
export {
  type Bytes,
  Client,
  type ClientOptions,
  type ClientReply,
  ConnectionLostError,
  ReplyError,
} from "./lib/client.ts";
export { createLogger, LEVELS, type Logger, type LogLevel } from "./lib/log.ts";
export { VERSION } from "./lib/version.ts";
