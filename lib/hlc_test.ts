import assert from "node:assert/strict";
import fc from "fast-check";
import { compareVersion, Hlc, TICKS_PER_MS } from "./hlc.ts";

Deno.test("Hlc", async (t) => {
  await t.step("tick follows the wall clock when it moves forward", () => {
    let now = 1_000;
    const c = new Hlc({ now: () => now });
    assert.equal(c.tick(), 1_000 * TICKS_PER_MS);
    now = 1_005;
    assert.equal(c.tick(), 1_005 * TICKS_PER_MS);
    assert.equal(c.last, 1_005 * TICKS_PER_MS);
  });

  await t.step("same millisecond or a clock going back: the counter moves on", () => {
    let now = 2_000;
    const c = new Hlc({ now: () => now });
    const a = c.tick();
    const b = c.tick();
    assert.equal(b, a + 1);
    now = 1_000; // wall clock stepped back
    const d = c.tick();
    assert.equal(d, b + 1);
    // More than TICKS_PER_MS ticks in one millisecond still never repeat.
    now = 2_000;
    let prev = c.tick();
    for (let i = 0; i < 3 * TICKS_PER_MS; i++) {
      const v = c.tick();
      assert.ok(v > prev);
      prev = v;
    }
  });

  await t.step("observe moves the clock past a remote version", () => {
    const c = new Hlc({ now: () => 10 });
    const remote = 99_000 * TICKS_PER_MS + 7; // a peer far ahead
    c.observe(remote);
    assert.equal(c.last, remote);
    assert.ok(c.tick() > remote);
    // An older remote version does not move it back.
    const last = c.last;
    c.observe(5);
    assert.equal(c.last, last);
    assert.ok(c.tick() > last);
  });

  await t.step("property: strictly monotonic, always past everything observed (1000 runs)", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("tick" as const), now: fc.integer({ min: 0, max: 5_000 }) }),
      fc.record({
        kind: fc.constant("observe" as const),
        ver: fc.integer({ min: 0, max: 6_000 * TICKS_PER_MS }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 200 }), (ops) => {
        let now = 0;
        const c = new Hlc({ now: () => now });
        let highest = 0; // highest version issued or observed so far
        for (const o of ops) {
          if (o.kind === "tick") {
            now = o.now;
            const v = c.tick();
            assert.ok(v > highest, `tick ${v} not past ${highest}`);
            assert.ok(v >= now * TICKS_PER_MS, "tick behind the wall clock");
            highest = v;
          } else {
            c.observe(o.ver);
            highest = Math.max(highest, o.ver);
            assert.equal(c.last, highest);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  await t.step("real clock: 100,000 ticks strictly increasing, exact integers", () => {
    const c = new Hlc();
    let prev = 0;
    for (let i = 0; i < 100_000; i++) {
      const v = c.tick();
      assert.ok(v > prev);
      prev = v;
    }
    assert.ok(Number.isSafeInteger(prev));
  });
});

Deno.test("compareVersion: version first, node number breaks ties", () => {
  assert.ok(compareVersion(2, 0, 1, 99) > 0);
  assert.ok(compareVersion(1, 99, 2, 0) < 0);
  assert.ok(compareVersion(5, 2, 5, 1) > 0);
  assert.ok(compareVersion(5, 1, 5, 2) < 0);
  assert.equal(compareVersion(5, 3, 5, 3), 0);
  // Large node numbers (u32) and versions near today's clock stay exact.
  const v = Date.now() * TICKS_PER_MS;
  assert.ok(compareVersion(v + 1, 0, v, 0xffffffff) > 0);
  assert.ok(compareVersion(v, 0xffffffff, v, 0xfffffffe) > 0);
});
