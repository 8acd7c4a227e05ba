import assert from "node:assert/strict";
import fc from "fast-check";
import { compareVersion } from "./hlc.ts";
import { type Entry, keyString, Store } from "./store.ts";

const enc = new TextEncoder();
const EMPTY_DIGEST = "0000000000000000";

interface W {
  key: Uint8Array;
  value: Uint8Array | null;
  ver: number;
  node: number;
}

function applyW(s: Store, w: W): boolean {
  return s.apply(w.key, w.value, w.ver, w.node);
}

/** Everything a store holds, tombstones included, in a comparable form. */
function contents(s: Store): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of s.entries()) {
    m.set(
      keyString(e.key),
      `${e.ver}/${e.node}/${e.value === null ? "<tomb>" : [...e.value].join(",")}`,
    );
  }
  return m;
}

/** Fisher-Yates driven by the random numbers fast-check gives. */
function permute<T>(xs: T[], rnd: number[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = (rnd[i % Math.max(1, rnd.length)] ?? 0) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// A small key pool so writes collide: short keys, binary bytes, a key over 16
// bytes (keyString's other path), keys that differ only in their last byte.
const KEYS: Uint8Array[] = [
  enc.encode("a"),
  enc.encode("b"),
  enc.encode("key-with-more-than-16-bytes-000"),
  enc.encode("key-with-more-than-16-bytes-001"),
  new Uint8Array([0, 255, 128]),
  new Uint8Array([0, 255, 129]),
  enc.encode("é"),
];

const writeArb: fc.Arbitrary<W> = fc.record({
  key: fc.constantFrom(...KEYS),
  value: fc.option(fc.uint8Array({ maxLength: 6 }), { freq: 4 }),
  ver: fc.integer({ min: 1, max: 40 }),
  node: fc.integer({ min: 0, max: 3 }),
});

// One version per write, as in a real cluster: (ver, node) never repeats.
const writesArb = fc.uniqueArray(writeArb, {
  minLength: 1,
  maxLength: 60,
  selector: (w) => `${w.ver}/${w.node}`,
});

Deno.test("Store", async (t) => {
  await t.step("empty store: digest zero, nothing held", () => {
    const s = new Store();
    assert.equal(s.digest, EMPTY_DIGEST);
    assert.equal(s.size, 0);
    assert.equal(s.tombstones, 0);
    assert.equal(s.get(enc.encode("a")), undefined);
  });

  await t.step(
    "property: any permutation (with duplicates) of a set of writes gives the same digest and contents (1000 runs)",
    () => {
      fc.assert(
        fc.property(
          writesArb,
          fc.array(fc.nat(), { minLength: 1, maxLength: 120 }),
          fc.array(fc.nat(), { minLength: 1, maxLength: 120 }),
          fc.array(fc.nat({ max: 59 }), { maxLength: 30 }),
          (writes, r1, r2, dupIdx) => {
            // The model: per key the write with the highest (ver, node).
            const winners = new Map<string, W>();
            for (const w of writes) {
              const k = keyString(w.key);
              const cur = winners.get(k);
              if (cur === undefined || compareVersion(w.ver, w.node, cur.ver, cur.node) > 0) {
                winners.set(k, w);
              }
            }
            const ref = new Store();
            for (const w of winners.values()) assert.ok(applyW(ref, w));

            const a = new Store();
            for (const w of permute(writes, r1)) applyW(a, w);
            // The second order also sees some writes twice (replication and
            // export can both deliver one).
            const dups = dupIdx.filter((i) => i < writes.length).map((i) => writes[i]);
            const b = new Store();
            for (const w of permute([...writes, ...dups], r2)) applyW(b, w);

            for (const s of [a, b]) {
              assert.equal(s.digest, ref.digest);
              assert.equal(s.size, ref.size);
              assert.equal(s.tombstones, ref.tombstones);
              assert.deepEqual(contents(s), contents(ref));
              for (const w of winners.values()) {
                assert.deepEqual(s.get(w.key), w.value ?? undefined);
              }
            }
            const live = [...winners.values()].filter((w) => w.value !== null).length;
            assert.equal(ref.size, live);
            assert.equal(ref.tombstones, winners.size - live);
          },
        ),
        { numRuns: 1000 },
      );
    },
  );

  await t.step("property: the digest tells contents apart (1000 runs)", () => {
    fc.assert(
      fc.property(writesArb, writesArb, (x, y) => {
        const a = new Store();
        const b = new Store();
        for (const w of x) applyW(a, w);
        for (const w of y) applyW(b, w);
        const liveA = [...a.entries()].filter((e) => e.value !== null).map(
          (e) => `${keyString(e.key)}/${e.ver}/${e.node}`,
        ).sort();
        const liveB = [...b.entries()].filter((e) => e.value !== null).map(
          (e) => `${keyString(e.key)}/${e.ver}/${e.node}`,
        ).sort();
        // Same live (key, version) set <=> same digest (64-bit hash: no
        // collision expected over 1000 small cases).
        assert.equal(a.digest === b.digest, liveA.join("|") === liveB.join("|"));
      }),
      { numRuns: 1000 },
    );
  });

  await t.step("a tombstone beats an older write, a newer write beats the tombstone", () => {
    const s = new Store();
    const k = enc.encode("k");
    assert.ok(applyW(s, { key: k, value: enc.encode("v1"), ver: 10, node: 1 }));
    const withV1 = s.digest;
    assert.ok(applyW(s, { key: k, value: null, ver: 20, node: 1 }));
    assert.equal(s.get(enc.encode("k")), undefined);
    assert.equal(s.size, 0);
    assert.equal(s.tombstones, 1);
    assert.equal(s.digest, EMPTY_DIGEST);
    // An older write arriving late (crossed in the mesh) is refused.
    assert.equal(applyW(s, { key: k, value: enc.encode("old"), ver: 15, node: 9 }), false);
    assert.equal(s.get(enc.encode("k")), undefined);
    assert.equal(s.entry(enc.encode("k"))?.value, null);
    // Same version, lower node: refused too; higher node: wins.
    assert.equal(applyW(s, { key: k, value: enc.encode("tie-low"), ver: 20, node: 0 }), false);
    assert.equal(s.get(enc.encode("k")), undefined);
    assert.ok(applyW(s, { key: k, value: enc.encode("v3"), ver: 30, node: 1 }));
    assert.deepEqual(s.get(enc.encode("k")), enc.encode("v3"));
    assert.equal(s.size, 1);
    assert.equal(s.tombstones, 0);
    assert.notEqual(s.digest, withV1);
    assert.notEqual(s.digest, EMPTY_DIGEST);
  });

  await t.step("purgeTombstones removes only tombstones older than the cut", () => {
    const s = new Store();
    for (let i = 0; i < 10; i++) {
      applyW(s, { key: enc.encode(`k${i}`), value: enc.encode(`v${i}`), ver: 100 + i, node: 1 });
    }
    // Delete k0..k5 at versions 200..205.
    for (let i = 0; i < 6; i++) {
      applyW(s, { key: enc.encode(`k${i}`), value: null, ver: 200 + i, node: 1 });
    }
    const digest = s.digest;
    assert.equal(s.size, 4);
    assert.equal(s.tombstones, 6);
    assert.equal(s.purgeTombstones(203), 3); // k0, k1, k2
    assert.equal(s.tombstones, 3);
    assert.equal(s.size, 4);
    assert.equal(s.digest, digest, "tombstones are not part of the digest");
    assert.equal(s.entry(enc.encode("k0")), undefined);
    assert.equal(s.entry(enc.encode("k2")), undefined);
    assert.equal(s.entry(enc.encode("k3"))?.value, null, "a younger tombstone stays");
    for (let i = 6; i < 10; i++) assert.deepEqual(s.get(enc.encode(`k${i}`)), enc.encode(`v${i}`));
    assert.equal(s.purgeTombstones(203), 0, "idempotent");
    assert.equal(s.purgeTombstones(1_000), 3);
    assert.equal(s.tombstones, 0);
    assert.equal([...s.entries()].length, 4);
    // A purged key can be written again and is counted again.
    assert.ok(applyW(s, { key: enc.encode("k0"), value: enc.encode("again"), ver: 300, node: 1 }));
    assert.equal(s.size, 5);
  });

  await t.step("keeps its own copies of keys and values, through overwrites of any size", () => {
    const s = new Store();
    const src = new Uint8Array(300);
    const key = new Uint8Array(1);
    let ver = 0;
    // Grow, shrink within and past the held buffer, empty, delete, rewrite.
    for (const n of [5, 16, 17, 300, 3, 0, 64, 200, 64, -1, 10]) {
      if (n < 0) {
        assert.ok(s.apply(enc.encode("k"), null, ++ver, 1));
        assert.equal(s.get(key), undefined);
        continue;
      }
      src.fill(n & 0xff);
      key[0] = 0x6b; // "k"
      assert.ok(s.apply(key, src.subarray(0, n), ++ver, 1));
      // The caller reuses its buffers (a read buffer does).
      src.fill(0xee);
      key[0] = 0x21;
      assert.equal(s.entry(key), undefined);
      assert.deepEqual(s.get(enc.encode("k")), new Uint8Array(n).fill(n & 0xff), `length ${n}`);
    }
    assert.equal(s.size, 1);
  });

  await t.step("entries() lists tombstones (what an export streams)", () => {
    const s = new Store();
    applyW(s, { key: enc.encode("x"), value: enc.encode("1"), ver: 1, node: 1 });
    applyW(s, { key: enc.encode("y"), value: null, ver: 2, node: 1 });
    const es: Entry[] = [...s.entries()];
    assert.equal(es.length, 2);
    assert.deepEqual(es.map((e) => e.value === null).sort(), [false, true]);
  });

  await t.step(
    "property: thousands of keys (growth, probe runs, purges) read back as a Map model holds them (100 runs)",
    () => {
      // Keys that share prefixes and lengths, and binary ones, over more keys
      // than the initial table holds, so it rehashes and probe runs form.
      const opArb = fc.oneof(
        { weight: 20, arbitrary: fc.tuple(fc.constant("w"), fc.nat({ max: 2999 }), fc.boolean()) },
        { weight: 1, arbitrary: fc.tuple(fc.constant("p"), fc.nat({ max: 2999 }), fc.boolean()) },
      );
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1500, maxLength: 4000, size: "max" }), (ops) => {
          const s = new Store();
          const model = new Map<string, { value: Uint8Array | null; ver: number }>();
          let ver = 0;
          for (const [op, n, del] of ops) {
            if (op === "p") {
              // Purge tombstones older than a version somewhere in the past.
              const cut = Math.floor(ver * (n / 3000));
              let purged = 0;
              for (const [k, e] of model) {
                if (e.value === null && e.ver < cut) {
                  model.delete(k);
                  purged++;
                }
              }
              assert.equal(s.purgeTombstones(cut), purged);
              continue;
            }
            const key = n % 7 === 0 ? new Uint8Array([n & 0xff, n >> 8, 0]) : enc.encode(`k${n}`);
            const value = del ? null : enc.encode(`v${n}/${ver}`);
            if (n % 2 === 0) assert.ok(s.apply(key.slice(), value, ++ver, 1));
            else {
              // As a request lays them out: key then value, inside a bigger buffer.
              const at = n % 13;
              const req = new Uint8Array(at + key.length + (value?.length ?? 0) + 5).fill(0xcc);
              req.set(key, at);
              if (value !== null) req.set(value, at + key.length);
              const keyEnd = at + key.length;
              const valueEnd = value === null ? -1 : keyEnd + value.length;
              assert.ok(s.writeAt(req, at, keyEnd, valueEnd, ++ver, 1) !== undefined);
            }
            model.set(keyString(key), { value, ver });
          }
          const live = [...model.values()].filter((e) => e.value !== null).length;
          assert.equal(s.size, live);
          assert.equal(s.tombstones, model.size - live);
          assert.equal([...s.entries()].length, model.size);
          for (const [k, e] of model) {
            const key = Uint8Array.from(k, (c) => c.charCodeAt(0));
            assert.equal(s.entry(key)?.ver, e.ver);
            assert.deepEqual(s.get(key), e.value ?? undefined);
            const padded = new Uint8Array(key.length + 7).fill(0xcc);
            padded.set(key, 3);
            assert.deepEqual(s.getAt(padded, 3, 3 + key.length), e.value ?? undefined);
          }
          // Keys never written are not found, however their hash lands.
          for (let n = 3000; n < 3100; n++) assert.equal(s.entry(enc.encode(`k${n}`)), undefined);
        }),
        { numRuns: 100 },
      );
    },
  );

  await t.step("keyString maps distinct byte strings to distinct strings", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }),
        (a, b) => {
          const same = a.length === b.length && a.every((x, i) => x === b[i]);
          assert.equal(keyString(a) === keyString(b), same);
          assert.equal(keyString(a).length, a.length);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
