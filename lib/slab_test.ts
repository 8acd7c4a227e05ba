import { deepEqual, equal, notEqual } from "node:assert/strict";
import { Slab } from "./slab.ts";

Deno.test("Slab", async (t) => {
  await t.step("views do not overlap and keep their contents", () => {
    const s = new Slab(64);
    const views = [];
    for (let i = 0; i < 40; i++) {
      const v = s.alloc(10);
      v.fill(i);
      views.push(v);
    }
    for (const [i, v] of views.entries()) deepEqual([...v], new Array(10).fill(i));
  });
  await t.step("a request larger than a chunk gets its own", () => {
    const s = new Slab(16);
    const big = s.alloc(100);
    equal(big.length, 100);
    const next = s.alloc(4);
    notEqual(next.buffer, big.buffer);
  });
  await t.step("copy", () => {
    const s = new Slab(8);
    deepEqual([...s.copy(new Uint8Array([1, 2, 3]))], [1, 2, 3]);
  });
});
