import { equal } from "node:assert/strict";
import fc from "fast-check";
import { compareLoad, leastLoaded, type NodeLoad } from "./least_loaded.ts";

Deno.test("leastLoaded", async (t) => {
  const n = (addr: string, connections: number, inflight = 0): NodeLoad => ({
    addr,
    connections,
    inflight,
  });
  await t.step("empty: undefined", () => equal(leastLoaded([]), undefined));
  await t.step("fewest connections wins", () => {
    equal(leastLoaded([n("b:1", 3), n("a:1", 5), n("c:1", 2)])!.addr, "c:1");
  });
  await t.step("tie on connections: fewest inflight", () => {
    equal(leastLoaded([n("a:1", 2, 9), n("b:1", 2, 1), n("c:1", 3, 0)])!.addr, "b:1");
  });
  await t.step("tie on both: lowest addr as a string", () => {
    equal(leastLoaded([n("127.0.0.1:9", 1, 1), n("127.0.0.1:10", 1, 1)])!.addr, "127.0.0.1:10");
  });
  await t.step("property: the answer is the minimum of a full sort, in any order", () => {
    const node = fc.record({
      addr: fc.string({ minLength: 1, maxLength: 6 }),
      connections: fc.nat(5),
      inflight: fc.nat(5),
    });
    fc.assert(
      fc.property(fc.array(node, { minLength: 1, maxLength: 12 }), (nodes) => {
        const sorted = [...nodes].sort(compareLoad);
        const best = leastLoaded(nodes)!;
        equal(compareLoad(best, sorted[0]), 0);
        equal(compareLoad(leastLoaded([...nodes].reverse())!, best), 0);
      }),
      { numRuns: 1000 },
    );
  });
});
