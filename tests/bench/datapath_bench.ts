// Copyright the lbkit authors. MIT license.
/**
 * The data path's cost per request with the socket cost amortised away: one
 * connection sends 2,000 pipelined requests in one write and reads the 2,000
 * replies, so what is left is the request path in JavaScript (decode, store,
 * reply), straight to a worker and through a master to a worker, all in this
 * process: the difference is the balancer's own cost. `deno task bench:micro`.
 */
import { type HostPort, parseHostPort } from "../../lib/addr.ts";
import { Master } from "../../lib/master.ts";
import { GET, SET, writeU32 } from "../../lib/messages.ts";
import { WORKER_OFFSET } from "../../lib/wire.ts";
import { Worker } from "../../lib/worker.ts";

const KEYS = 10_000;
const BATCH = 2_000;
const VALUE = 64;

/**
 * `BATCH` requests over `KEYS` keys, `getShare` of them GETs; `offset` 0 for
 * the client protocol, `WORKER_OFFSET` for the worker's.
 */
function batch(getShare: number, seed: number, offset: number): Uint8Array {
  const frames: Uint8Array[] = [];
  let x = seed;
  for (let i = 0; i < BATCH; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const key = new TextEncoder().encode(`k${String(x % KEYS).padStart(4, "0")}`);
    const get = (x >>> 16) % 100 < getShare * 100;
    const len = 6 + key.length + (get ? 0 : VALUE);
    const f = new Uint8Array(4 + len);
    const type = (get ? GET : SET) + offset;
    f[0] = type >> 8;
    f[1] = type & 0xff;
    f[2] = len >> 8;
    f[3] = len & 0xff;
    writeU32(f, 4, i + 1);
    f[8] = 0;
    f[9] = key.length;
    f.set(key, 10);
    if (!get) f.fill(0x61, 10 + key.length);
    frames.push(f);
  }
  const bytes = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let off = 0;
  for (const f of frames) {
    bytes.set(f, off);
    off += f.length;
  }
  return bytes;
}

/** Sends the batch and reads until every reply (4-byte header + 4-byte id + body) came back. */
async function roundTrip(conn: Deno.Conn, buf: Uint8Array, req: Uint8Array): Promise<void> {
  await conn.write(req);
  let replies = 0;
  let start = 0;
  let end = 0;
  while (replies < BATCH) {
    if (end === buf.length) {
      buf.copyWithin(0, start, end);
      end -= start;
      start = 0;
    }
    const n = await conn.read(buf.subarray(end));
    if (n === null) throw new Error("worker closed the connection");
    end += n;
    while (end - start >= 4) {
      const len = (buf[start + 2] << 8) | buf[start + 3];
      if (end - start < 4 + len) break;
      if (buf[start + 1] === 0x8f) throw new Error("answered ERR");
      start += 4 + len;
      replies++;
    }
  }
}

async function connect(addr: HostPort): Promise<Deno.TcpConn> {
  const conn = await Deno.connect(addr);
  conn.setNoDelay(true);
  return conn;
}

const master = new Master({ hostname: "127.0.0.1", port: 0, workerPort: 0, slavePort: 0 });
await master.start();
const worker = new Worker({ master: master.addrs.workers, hostname: "127.0.0.1" });
await worker.start();
for (let i = 0; master.balancer.workers === 0; i++) {
  if (i > 500) throw new Error("the worker never joined the ring");
  await new Promise((r) => setTimeout(r, 10));
}
const direct = await connect(worker.addr);
const viaMaster = await connect(parseHostPort(master.addrs.clients));
const buf = new Uint8Array(256 * 1024);
// Every key written once, so GETs hit.
for (let i = 0; i < KEYS / BATCH * 4; i++) {
  await roundTrip(direct, buf, batch(0, i, WORKER_OFFSET));
}

for (
  const [name, share, seed] of [
    ["50% GET", 0.5, 42],
    ["GET", 1, 43],
    ["SET (overwrites)", 0, 44],
  ] as const
) {
  const toWorker = batch(share, seed, WORKER_OFFSET);
  const toMaster = batch(share, seed, 0);
  Deno.bench({
    name: `direct to the worker: ${name}`,
    group: name,
    baseline: true,
    async fn() {
      await roundTrip(direct, buf, toWorker);
    },
  });
  Deno.bench({
    name: `through the master: ${name}`,
    group: name,
    async fn() {
      await roundTrip(viaMaster, buf, toMaster);
    },
  });
}

// deno bench has no teardown hook: close when the process ends.
globalThis.addEventListener("unload", () => {
  direct.close();
  viaMaster.close();
  worker.stop();
  master.stop(0);
});
