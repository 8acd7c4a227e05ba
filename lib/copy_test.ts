import assert from "node:assert/strict";
import { copyBytes } from "./copy.ts";

Deno.test("copyBytes copies the range to the offset, both sides of the loop limit", () => {
  for (const n of [0, 1, 127, 128, 129, 300]) {
    const src = Uint8Array.from({ length: n + 10 }, (_, i) => (i * 7 + 1) & 0xff);
    const dst = new Uint8Array(n + 20).fill(0xee);
    copyBytes(dst, 6, src, 3, 3 + n);
    assert.deepEqual(dst.subarray(6, 6 + n), src.subarray(3, 3 + n), `length ${n}`);
    assert.ok(dst.subarray(0, 6).every((b) => b === 0xee), `bytes before, length ${n}`);
    assert.ok(dst.subarray(6 + n).every((b) => b === 0xee), `bytes after, length ${n}`);
  }
});
