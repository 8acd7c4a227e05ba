import assert from "node:assert/strict";
import { keyBytes, runLoad, waitReady } from "./bench.ts";
import { FrameReader } from "./frame.ts";
import { FrameWriter } from "./writer.ts";

const dec = new TextDecoder();

/**
 * A fake server for either protocol: a map, `SET` -> OK, `GET` -> VALUE or
 * NIL, and ERR for the keys in `errKeys`. The replies to one read are sent
 * in reverse order, so out-of-order replies are exercised.
 */
function fakeServer(errKeys: Set<string> = new Set()) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const store = new Map<string, Uint8Array>();
  let requests = 0;
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    const writer = new FrameWriter(conn);
    const reader = new FrameReader(conn);
    const held: [number, Uint8Array, Uint8Array][] = [];
    try {
      while (
        await reader.read((type, payload) => {
          requests++;
          const base = type & 0xff00; // 0x0100 client, 0x0200 worker
          const op = type & 0xff;
          const keyLen = (payload[4] << 8) | payload[5];
          const key = dec.decode(payload.subarray(6, 6 + keyLen));
          const id = payload.slice(0, 4);
          const reply = (t: number, body: Uint8Array = new Uint8Array()) => {
            held.push([base | t, id, body.slice()]);
          };
          if (errKeys.has(key)) return reply(0x8f, new TextEncoder().encode("injected"));
          if (op === 0x01) {
            store.set(key, payload.slice(6 + keyLen));
            return reply(0x81);
          }
          const v = store.get(key);
          return v === undefined ? reply(0x83) : reply(0x82, v);
        })
      ) {
        for (const [t, id, body] of held.reverse()) {
          const v = writer.reserve(t, 4 + body.length);
          v.set(id, 0);
          v.set(body, 4);
        }
        held.length = 0;
      }
    } catch {
      // closed
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  };
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const c of listener) tasks.push(serve(c));
    } catch {
      // closed
    }
  })();
  const addr = listener.addr as Deno.NetAddr;
  return {
    addr: `127.0.0.1:${addr.port}`,
    store,
    get requests() {
      return requests;
    },
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await accepting;
      await Promise.all(tasks);
    },
  };
}

Deno.test("keyBytes: fixed-width keys k0..k(n-1)", () => {
  const { bytes, width } = keyBytes(1000);
  assert.equal(width, 4);
  assert.equal(dec.decode(bytes.subarray(0, 4)), "k000");
  assert.equal(dec.decode(bytes.subarray(999 * 4, 1000 * 4)), "k999");
  assert.equal(keyBytes(1).width, 2);
});

Deno.test("runLoad: --requests counts every measured reply once; populate fills every key", async () => {
  const srv = fakeServer();
  try {
    const r = await runLoad({
      addr: srv.addr,
      connections: 3,
      depth: 8,
      keys: 500,
      valueSize: 10,
      warmup: 0,
      requests: 2000,
    });
    assert.equal(r.ops, 2000);
    assert.equal(r.errors, 0);
    assert.equal(r.misses, 0);
    assert.equal(r.populated, 500);
    assert.equal(srv.store.size, 500);
    assert.equal(r.histogram.count, 2000);
    assert.ok(r.rate > 0 && r.seconds > 0);
    assert.ok(r.histogram.percentile(50) <= r.histogram.percentile(99));
    assert.ok(r.failure === null && !r.aborted);
    assert.equal(srv.store.get("k000")!.length, 10);
  } finally {
    await srv.close();
  }
});

Deno.test("runLoad: worker protocol, ERR replies counted apart, misses without populate", async () => {
  const srv = fakeServer(new Set(["k1"]));
  try {
    const r = await runLoad({
      addr: srv.addr,
      protocol: "worker",
      connections: 2,
      depth: 4,
      keys: 10,
      getRatio: 1,
      warmup: 0,
      requests: 1000,
      populate: false,
    });
    assert.equal(r.ops + r.errors, 1000);
    assert.ok(r.errors > 0, "some requests hit the ERR key");
    assert.equal(r.misses, r.ops, "every GET misses on an empty store");
    assert.equal(r.errorReasons["injected"], r.errors);
    assert.equal(r.histogram.count, r.ops);
  } finally {
    await srv.close();
  }
});

Deno.test("runLoad: duration mode with warm-up, abort, and a server that goes away", async () => {
  const srv = fakeServer();
  try {
    const r = await runLoad({
      addr: srv.addr,
      connections: 2,
      depth: 2,
      keys: 100,
      warmup: 0.1,
      duration: 0.3,
    });
    assert.ok(r.seconds >= 0.25 && r.seconds < 1, `seconds ${r.seconds}`);
    assert.ok(r.ops > 0);

    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const a = await runLoad({ addr: srv.addr, connections: 1, duration: 30, signal: ac.signal });
    assert.equal(a.aborted, true);
  } finally {
    await srv.close();
  }
});

Deno.test("runLoad: every connection lost ends the run with a failure", async () => {
  const srv = fakeServer();
  const run = runLoad({ addr: srv.addr, connections: 2, depth: 1, keys: 10, duration: 30 });
  await new Promise((r) => setTimeout(r, 200));
  await srv.close();
  const r = await run;
  assert.match(r.failure ?? "", /every connection was lost/);
});

Deno.test("runLoad and waitReady: bad options and unreachable targets", async () => {
  await assert.rejects(runLoad({ addr: "127.0.0.1:1", connections: 1 }), /cannot connect/);
  await assert.rejects(
    runLoad({ addr: "127.0.0.1:1", depth: 0 }),
    RangeError,
  );
  await assert.rejects(
    runLoad({ addr: "127.0.0.1:1", valueSize: 70000 }),
    RangeError,
  );
  await assert.rejects(waitReady({ addr: "127.0.0.1:1", timeoutMs: 200 }), /not ready/);
  const srv = fakeServer();
  try {
    await waitReady({ addr: srv.addr, protocol: "worker", timeoutMs: 2000 });
  } finally {
    await srv.close();
  }
});
