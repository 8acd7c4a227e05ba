import assert from "node:assert/strict";
import fc from "fast-check";
import { PendingTable } from "./pending.ts";

interface Item {
  lbId: number;
  deadline: number;
}

type Op =
  | { kind: "new"; n: number } // hand out n ids, dispatch them (set)
  | { kind: "answer"; pick: number } // a reply: get + delete
  | { kind: "retry"; pick: number } // set again under the same id
  | { kind: "late"; n: number } // ids handed out now, dispatched after later ones
  | { kind: "tick"; ms: number; sweep: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("new" as const), n: fc.nat({ max: 40 }) }),
  },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("answer" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("retry" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("late" as const), n: fc.nat({ max: 5 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("tick" as const),
      ms: fc.nat({ max: 30 }),
      sweep: fc.boolean(),
    }),
  },
);

Deno.test("PendingTable", async (t) => {
  await t.step(
    "property: agrees with a Map model, sweeps in id order, across the 2^32 wrap (500 runs)",
    () => {
      fc.assert(
        fc.property(
          fc.array(opArb, { maxLength: 300, size: "max" }),
          fc.constantFrom(1, 0xffffff00, 0xfffffff0),
          (ops, firstId) => {
            const table = new PendingTable<Item>();
            const model = new Map<number, Item>();
            const queued: Item[] = []; // handed out, not yet dispatched
            let next: number = firstId;
            let clock = 0;
            const TIMEOUT = 50;
            const issue = (): Item => {
              const it = { lbId: next, deadline: clock + TIMEOUT };
              next = (next + 1) >>> 0 || 1;
              return it;
            };
            const live = () => [...model.values()];
            for (const op of ops) {
              switch (op.kind) {
                case "new":
                  for (let i = 0; i < op.n; i++) {
                    const it = issue();
                    table.set(it);
                    model.set(it.lbId, it);
                  }
                  break;
                case "late":
                  // Dispatch what waited in the queue, then queue new ones.
                  for (const it of queued.splice(0)) {
                    table.set(it);
                    model.set(it.lbId, it);
                  }
                  for (let i = 0; i < op.n; i++) queued.push(issue());
                  break;
                case "answer": {
                  const xs = live();
                  if (xs.length === 0) break;
                  const it = xs[op.pick % xs.length];
                  assert.equal(table.get(it.lbId), it);
                  assert.ok(table.delete(it));
                  assert.ok(!table.delete(it), "a second delete finds nothing");
                  model.delete(it.lbId);
                  break;
                }
                case "retry": {
                  const xs = live();
                  if (xs.length === 0) break;
                  table.set(xs[op.pick % xs.length]);
                  break;
                }
                case "tick": {
                  clock += op.ms;
                  if (!op.sweep) break;
                  const expired: Item[] = [];
                  table.expire(clock, (it) => {
                    expired.push(it);
                    table.delete(it);
                    model.delete(it.lbId);
                  });
                  const want = [...expired, ...live()].filter((it) => it.deadline <= clock);
                  assert.equal(expired.length, want.length, "every expired item, no other");
                  for (const it of live()) assert.ok(it.deadline > clock);
                  break;
                }
              }
              assert.equal(table.size, model.size);
            }
            for (const [id, it] of model) assert.equal(table.get(id), it);
            assert.equal([...table.values()].length, model.size);
            // Ids never handed out, or answered, are not found.
            assert.equal(table.get(next), undefined);
          },
        ),
        { numRuns: 500 },
      );
    },
  );

  await t.step("a window wider than the table grows it; a stale id is not found", () => {
    const table = new PendingTable<Item>();
    const old = { lbId: 5, deadline: 0 };
    table.set(old);
    // 5000 later ids while id 5 stays in flight: slots collide, the table grows.
    const items = Array.from({ length: 5000 }, (_, i) => ({ lbId: 6 + i, deadline: 1 }));
    for (const it of items) table.set(it);
    assert.equal(table.size, 5001);
    assert.equal(table.get(5), old);
    for (const it of items) assert.equal(table.get(it.lbId), it);
    assert.equal(table.get(5 + 8192), undefined);
    const seen: number[] = [];
    table.expire(0, (it) => {
      seen.push(it.lbId);
      table.delete(it);
    });
    assert.deepEqual(seen, [5]);
  });

  await t.step("expire refuses a callback that does not delete", () => {
    const table = new PendingTable<Item>();
    table.set({ lbId: 1, deadline: 0 });
    assert.throws(() => table.expire(10, () => {}), TypeError);
  });
});
