import assert from "node:assert/strict";
import fc from "fast-check";
import { Ring } from "./ring.ts";

/**
 * Reference model: an array in ring order plus the index of the pointer.
 * Mirrors the documented semantics of {@linkcode Ring}:
 * - `add` inserts just before the pointer (the pointer index shifts right by
 *   one so it stays on the same member); the first member becomes the pointer;
 * - `remove` of the member under the pointer leaves the pointer on its
 *   successor (same index, wrapping to 0 at the end); removing a member before
 *   the pointer shifts the index left by one so it stays on the same member.
 */
class Model {
  items: number[] = [];
  ptr = 0;

  add(x: number): boolean {
    if (this.items.includes(x)) return false;
    if (this.items.length === 0) {
      this.items.push(x);
      this.ptr = 0;
    } else {
      this.items.splice(this.ptr, 0, x);
      this.ptr++;
    }
    return true;
  }

  remove(x: number): boolean {
    const i = this.items.indexOf(x);
    if (i < 0) return false;
    this.items.splice(i, 1);
    if (i < this.ptr) this.ptr--;
    if (this.ptr >= this.items.length) this.ptr = 0;
    return true;
  }

  next(): number | undefined {
    if (this.items.length === 0) return undefined;
    const x = this.items[this.ptr];
    this.ptr = (this.ptr + 1) % this.items.length;
    return x;
  }

  /** Members in ring order starting at the pointer. */
  order(): number[] {
    return [...this.items.slice(this.ptr), ...this.items.slice(0, this.ptr)];
  }

  /** The member under the pointer. */
  current(): number | undefined {
    return this.items[this.ptr];
  }

  clear(): void {
    this.items = [];
    this.ptr = 0;
  }
}

type Op =
  | { kind: "add"; value: number }
  | { kind: "remove"; value: number }
  | { kind: "removeCurrent" }
  | { kind: "removeLastReturned" }
  | { kind: "next" }
  | { kind: "clear" };

const VALUES = fc.integer({ min: 0, max: 9 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("add" as const), value: VALUES }), weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant("remove" as const), value: VALUES }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant("removeCurrent" as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("removeLastReturned" as const) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("next" as const) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant("clear" as const) }), weight: 1 },
);

/** Applies `ops` to a ring, returning it (used to scramble ring order). */
function scrambled(members: number[], ops: Op[]): Ring<number> {
  const ring = new Ring(members);
  for (const op of ops) {
    if (op.kind === "add") ring.add(op.value);
    else if (op.kind === "remove") ring.remove(op.value);
    else if (op.kind === "next") ring.next();
  }
  return ring;
}

function counts<T>(xs: Iterable<T>): Map<T, number> {
  const m = new Map<T, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

Deno.test("Ring", async (t) => {
  await t.step("basic add/remove/has/next/size/clear", () => {
    const ring = new Ring<string>();
    assert.equal(ring.size, 0);
    assert.equal(ring.next(), undefined);
    assert.deepEqual([...ring], []);

    assert.equal(ring.add("a"), true);
    assert.equal(ring.add("a"), false);
    assert.equal(ring.add("b"), true);
    assert.equal(ring.add("c"), true);
    assert.equal(ring.size, 3);
    assert.equal(ring.has("b"), true);
    assert.equal(ring.has("z"), false);
    assert.deepEqual([...ring], ["a", "b", "c"]);
    assert.deepEqual([ring.next(), ring.next(), ring.next(), ring.next()], ["a", "b", "c", "a"]);

    // Pointer is on "b": "d" goes just before it, i.e. last in this rotation.
    assert.equal(ring.add("d"), true);
    assert.deepEqual([...ring], ["b", "c", "a", "d"]);
    // Iterating does not move the pointer.
    assert.equal(ring.next(), "b");

    assert.equal(ring.remove("a"), true);
    assert.equal(ring.remove("a"), false);
    assert.equal(ring.has("a"), false);
    assert.equal(ring.size, 3);
    assert.deepEqual([...ring], ["c", "d", "b"]);

    // Removing the member under the pointer moves it to the successor.
    assert.equal(ring.remove("c"), true);
    assert.equal(ring.next(), "d");
    assert.equal(ring.next(), "b");
    assert.equal(ring.next(), "d");

    ring.remove("d");
    ring.remove("b");
    assert.equal(ring.size, 0);
    assert.equal(ring.next(), undefined);
    assert.deepEqual([...ring], []);

    // Usable again after being emptied, and after clear().
    ring.add("x");
    assert.deepEqual([ring.next(), ring.next()], ["x", "x"]);
    ring.add("y");
    ring.clear();
    assert.equal(ring.size, 0);
    assert.equal(ring.has("x"), false);
    assert.equal(ring.next(), undefined);
    ring.add("z");
    assert.deepEqual([...ring], ["z"]);

    // Constructor skips duplicates and starts at the first item.
    assert.deepEqual([...new Ring([3, 1, 3, 2])], [3, 1, 2]);
  });

  await t.step("model-based: random add/remove/next sequences match an array model", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        const ring = new Ring<number>();
        const model = new Model();
        let lastReturned: number | undefined;
        for (const op of ops) {
          switch (op.kind) {
            case "add":
              assert.equal(ring.add(op.value), model.add(op.value));
              break;
            case "remove":
              assert.equal(ring.remove(op.value), model.remove(op.value));
              break;
            case "removeCurrent": {
              const cur = model.current();
              if (cur !== undefined) {
                assert.equal(ring.remove(cur), model.remove(cur));
              }
              break;
            }
            case "removeLastReturned":
              if (lastReturned !== undefined) {
                assert.equal(ring.remove(lastReturned), model.remove(lastReturned));
              }
              break;
            case "next": {
              const got = ring.next();
              assert.equal(got, model.next());
              if (got !== undefined) lastReturned = got;
              break;
            }
            case "clear":
              ring.clear();
              model.clear();
              break;
          }
          assert.equal(ring.size, model.items.length);
          assert.deepEqual([...ring], model.order());
          for (let v = 0; v <= 9; v++) assert.equal(ring.has(v), model.items.includes(v));
        }
      }),
      { numRuns: 2000 },
    );
  });

  await t.step("fairness: n consecutive next() calls return each member once", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 49 }), { minLength: 1, maxLength: 30 }),
        fc.array(opArb, { maxLength: 60 }),
        fc.integer({ min: 1, max: 4 }),
        (members, scramble, rounds) => {
          const ring = scrambled(members, scramble);
          fc.pre(ring.size > 0);
          const membership = [...ring].sort((a, b) => a - b);
          const n = ring.size;
          for (let r = 0; r < rounds; r++) {
            const window: number[] = [];
            for (let i = 0; i < n; i++) window.push(ring.next()!);
            assert.deepEqual([...window].sort((a, b) => a - b), membership);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  await t.step("removing the current member while rotating", () => {
    // The member under the pointer: next() goes to its successor.
    const ring = new Ring([0, 1, 2, 3, 4]);
    assert.equal(ring.next(), 0); // pointer on 1
    assert.equal(ring.remove(1), true);
    assert.equal(ring.next(), 2);
    // The member just returned: nothing is skipped.
    assert.equal(ring.remove(2), true);
    assert.equal(ring.next(), 3);
    assert.equal(ring.next(), 4);
    assert.equal(ring.next(), 0);
    assert.equal(ring.next(), 3);

    // Draining by removing each member as it is returned visits all, in order.
    const drain = new Ring(["a", "b", "c", "d"]);
    drain.next(); // start mid-ring: pointer on "b"
    const got: string[] = [];
    for (let x = drain.next(); x !== undefined; x = drain.next()) {
      got.push(x);
      drain.remove(x);
    }
    assert.deepEqual(got, ["b", "c", "d", "a"]);

    // Random rotation with removals of the current member and re-adds: a
    // removed member is never returned, and every member that stays gets its
    // turn within one lap of the current size.
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 19 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.constantFrom("next", "removeReturned", "removeCurrent", "readd"), {
          maxLength: 100,
        }),
        (members, steps) => {
          const ring = new Ring(members);
          const removed: number[] = [];
          let last: number | undefined;
          for (const step of steps) {
            if (step === "next") {
              const x = ring.next();
              if (x !== undefined) {
                assert.equal(ring.has(x), true);
                assert.equal(removed.includes(x), false);
                last = x;
              }
            } else if (step === "removeReturned") {
              if (last !== undefined && ring.remove(last)) removed.push(last);
            } else if (step === "removeCurrent") {
              const cur = ring[Symbol.iterator]().next();
              if (!cur.done) {
                assert.equal(ring.remove(cur.value), true);
                removed.push(cur.value);
              }
            } else {
              const back = removed.shift();
              if (back !== undefined) assert.equal(ring.add(back), true);
            }
            const lap = Array.from({ length: ring.size }, () => ring.next());
            assert.deepEqual([...lap].sort(), [...ring].sort());
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  await t.step("iterating while removing the current item", () => {
    const ring = new Ring([1, 2, 3, 4, 5]);
    ring.next(); // pointer on 2
    const seen: number[] = [];
    for (const x of ring) {
      seen.push(x);
      ring.remove(x);
    }
    assert.deepEqual(seen, [2, 3, 4, 5, 1]);
    assert.equal(ring.size, 0);

    // Removing the current item and the one after it.
    const r2 = new Ring([1, 2, 3, 4, 5, 6]);
    const seen2: number[] = [];
    for (const x of r2) {
      seen2.push(x);
      r2.remove(x);
      r2.remove(x + 1);
    }
    assert.deepEqual(seen2, [1, 3, 5]);

    // The start node removed and a new member added before the rest is
    // reached: the untouched member is still visited.
    const r3 = new Ring(["a", "b"]);
    const seen3: string[] = [];
    for (const x of r3) {
      seen3.push(x);
      if (x === "a") {
        r3.remove("a");
        r3.add("c");
      }
    }
    assert.equal(seen3.includes("b"), true);
    assert.deepEqual(seen3.slice(0, 2), ["a", "b"]);

    // clear() during iteration ends it.
    const r4 = new Ring([1, 2, 3]);
    const seen4: number[] = [];
    for (const x of r4) {
      seen4.push(x);
      r4.clear();
      r4.add(9);
    }
    assert.deepEqual(seen4, [1]);

    // Random mutations during iteration: members present throughout are
    // yielded exactly once, nothing is yielded while not a member, and the
    // iteration ends.
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { maxLength: 10 }),
        fc.array(fc.array(opArb, { maxLength: 3 }), { maxLength: 30 }),
        (members, perStep) => {
          const ring = new Ring(members);
          const alwaysPresent = new Set(ring);
          const it = ring[Symbol.iterator]();
          const yielded: number[] = [];
          let lastYielded: number | undefined;
          for (let step = 0;; step++) {
            assert.ok(step < 100, "iteration did not end");
            const r = it.next();
            if (r.done) break;
            assert.equal(ring.has(r.value), true);
            yielded.push(r.value);
            lastYielded = r.value;
            for (const op of perStep[step] ?? []) {
              if (op.kind === "add") ring.add(op.value);
              else if (op.kind === "remove") {
                if (ring.remove(op.value)) alwaysPresent.delete(op.value);
              } else if (op.kind === "removeLastReturned" && lastYielded !== undefined) {
                if (ring.remove(lastYielded)) alwaysPresent.delete(lastYielded);
              } else if (op.kind === "next") ring.next();
              else if (op.kind === "clear") {
                ring.clear();
                alwaysPresent.clear();
              }
            }
          }
          const c = counts(yielded);
          for (const x of alwaysPresent) assert.equal(c.get(x), 1, `member ${x}`);
        },
      ),
      { numRuns: 1000 },
    );
  });

  await t.step("3 members over 3000 next() calls: each exactly 1000 times", () => {
    const ring = new Ring(["w1", "w2", "w3"]);
    const c = counts(Array.from({ length: 3000 }, () => ring.next()));
    assert.deepEqual(c, new Map([["w1", 1000], ["w2", 1000], ["w3", 1000]]));
  });
});
