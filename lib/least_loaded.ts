/**
 * PROTOCOL.md "least loaded": the lowest `connections`, then the lowest
 * `inflight`, then the lowest `addr` as a string.
 *
 * @module
 */

/** One LB node's load. */
export interface NodeLoad {
  /** The node's client `host:port`. */
  addr: string;
  /** Client connections open on the node. */
  connections: number;
  /** Requests accepted and not yet answered. */
  inflight: number;
}

/** Orders two nodes, least loaded first. */
export function compareLoad(a: NodeLoad, b: NodeLoad): number {
  if (a.connections !== b.connections) return a.connections - b.connections;
  if (a.inflight !== b.inflight) return a.inflight - b.inflight;
  return a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0;
}

/** The least loaded of `nodes`, or `undefined` when there is none. */
export function leastLoaded<T extends NodeLoad>(nodes: Iterable<T>): T | undefined {
  let best: T | undefined;
  for (const n of nodes) if (best === undefined || compareLoad(n, best) < 0) best = n;
  return best;
}
