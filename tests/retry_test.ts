/**
 * A replica that answers "not ready" (resyncing) costs the client nothing:
 * the balancer sends the request to the next worker.
 */

import { equal } from "node:assert/strict";
import { Client } from "../lib/client.ts";
import { FrameReader } from "../lib/frame.ts";
import { readU32, utf8, writeU32 } from "../lib/messages.ts";
import {
  encodeJson,
  NOT_READY,
  P_ACK,
  P_DEL,
  P_SET,
  W_ERR,
  W_READY,
  W_REGISTER,
} from "../lib/wire.ts";
import { FrameWriter } from "../lib/writer.ts";
import { startCluster, waitFor } from "./helpers.ts";

Deno.test("requests refused as 'not ready' go to another worker", async () => {
  const c = await startCluster(1);
  const [host, port] = c.master.addrs.workers.split(":");
  // A fake worker that registers, says it is ready, and refuses everything.
  // It also listens, acking peer writes, so the real worker keeps it as a peer.
  const peerPort = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peers: Deno.Conn[] = [];
  const peerLoop = (async () => {
    for await (const conn of peerPort) {
      peers.push(conn);
      const w = new FrameWriter(conn);
      const r = new FrameReader(conn);
      (async () => {
        try {
          while (
            await r.read((type, payload) => {
              if (type !== P_SET && type !== P_DEL) return;
              const seq = readU32(payload, 0);
              if (seq !== 0) writeU32(w.reserve(P_ACK, 4), 0, seq);
            })
          );
        } catch {
          // closed
        }
      })();
    }
  })();
  const fake = await Deno.connect({ hostname: host, port: Number(port) });
  const writer = new FrameWriter(fake);
  const addr = `127.0.0.1:${(peerPort.addr as Deno.NetAddr).port}`;
  writer.writeRaw(encodeJson(W_REGISTER, { id: "fake", addr, ready: false }));
  writer.writeRaw(encodeJson(W_READY, {}));
  let refused = 0;
  const reader = new FrameReader(fake);
  const loop = (async () => {
    try {
      while (
        await reader.read((type, payload) => {
          if (type < 0x0201 || type > 0x0203) return;
          refused++;
          const reason = utf8(NOT_READY);
          const view = writer.reserve(W_ERR, 4 + reason.length);
          writeU32(view, 0, readU32(payload, 0));
          view.set(reason, 4);
        })
      );
    } catch {
      // closed
    }
  })();
  const client = await Client.connect(c.master.addrs.clients);
  try {
    await waitFor(() => c.master.balancer.workers === 2, 3000, "fake worker in the ring");
    for (let i = 0; i < 200; i++) await client.set(`r${i}`, `v${i}`);
    for (let i = 0; i < 200; i++) {
      equal(new TextDecoder().decode((await client.get(`r${i}`))!), `v${i}`);
    }
    equal(refused >= 100, true, `the fake worker was tried (${refused} refusals)`);
  } finally {
    client.close();
    await client.done;
    fake.close();
    await loop;
    peerPort.close();
    for (const p of peers) p.close();
    await peerLoop.catch(() => {});
    await c.stop();
  }
});
