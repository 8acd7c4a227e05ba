// Copyright the lbkit authors. MIT license.
/**
 * The worker's cost per request with the socket cost amortised away: one
 * connection sends 2,000 pipelined requests in one write and reads the 2,000
 * replies, so what is left is the request path in JavaScript (decode, store,
 * reply). `deno task bench:codec`; profile with
 * `deno bench --allow-net --cpu-prof tests/bench/worker_bench.ts`.
 */
import { writeU32 } from "../../lib/messages.ts";
import { W_GET, W_SET } from "../../lib/wire.ts";
import { Worker } from "../../lib/worker.ts";

const KEYS = 10_000;
const BATCH = 2_000;
const VALUE = 64;

/** `BATCH` worker-protocol requests over `KEYS` keys, `getShare` of them GETs. */
function batch(getShare: number, seed: number): { bytes: Uint8Array; replies: number } {
  const frames: Uint8Array[] = [];
  let x = seed;
  for (let i = 0; i < BATCH; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const key = new TextEncoder().encode(`k${String(x % KEYS).padStart(4, "0")}`);
    const get = (x >>> 16) % 100 < getShare * 100;
    const len = 6 + key.length + (get ? 0 : VALUE);
    const f = new Uint8Array(4 + len);
    const type = get ? W_GET : W_SET;
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
  return { bytes, replies: BATCH };
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
      if (buf[start + 1] === 0x8f) throw new Error("worker answered ERR");
      start += 4 + len;
      replies++;
    }
  }
}

const worker = new Worker({ master: null, hostname: "127.0.0.1" });
await worker.start();
const conn = await Deno.connect(worker.addr);
conn.setNoDelay(true);
const buf = new Uint8Array(256 * 1024);
// Every key written once, so GETs hit.
for (let i = 0; i < KEYS / BATCH * 4; i++) await roundTrip(conn, buf, batch(0, i).bytes);
const mixed = batch(0.5, 42).bytes;
const gets = batch(1, 43).bytes;
const sets = batch(0, 44).bytes;

Deno.bench({
  name: "2,000 requests, 50% GET",
  group: "worker request path (per batch of 2,000)",
  baseline: true,
  async fn() {
    await roundTrip(conn, buf, mixed);
  },
});

Deno.bench({
  name: "2,000 GETs",
  group: "worker request path (per batch of 2,000)",
  async fn() {
    await roundTrip(conn, buf, gets);
  },
});

Deno.bench({
  name: "2,000 SETs (overwrites)",
  group: "worker request path (per batch of 2,000)",
  async fn() {
    await roundTrip(conn, buf, sets);
  },
});

// deno bench has no teardown hook: close when the process ends.
globalThis.addEventListener("unload", () => {
  conn.close();
  worker.stop();
});
