import assert from "node:assert/strict";
import { Histogram } from "./histogram.ts";

/** Nearest-rank percentile of an ascending array. */
function exact(sorted: number[], p: number): number {
  if (p === 100) return sorted[sorted.length - 1];
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PERCENTILES = [0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100];

function checkAgainstSorted(values: number[], tolerance: number): void {
  const h = new Histogram();
  for (const v of values) h.record(v);
  const sorted = values.map((v) => Math.max(1, Math.round(v))).sort((a, b) => a - b);
  assert.equal(h.count, values.length);
  assert.equal(h.min, sorted[0]);
  assert.equal(h.max, sorted[sorted.length - 1]);
  for (const p of PERCENTILES) {
    const want = exact(sorted, p);
    const got = h.percentile(p);
    const err = Math.abs(got - want) / want;
    assert.ok(
      err <= tolerance,
      `p${p}: got ${got}, want ${want} (error ${(err * 100).toFixed(2)}%)`,
    );
  }
}

Deno.test("histogram: values below 256 are exact", () => {
  const h = new Histogram();
  const sorted: number[] = [];
  for (let v = 1; v < 256; v++) {
    h.record(v);
    sorted.push(v);
  }
  for (let p = 0; p <= 100; p += 0.5) assert.equal(h.percentile(p), exact(sorted, p));
});

Deno.test("histogram: percentiles within 1% of a sorted array, log-uniform 1 us..60 s", () => {
  const r = rng(1);
  const values: number[] = [];
  for (let i = 0; i < 100_000; i++) values.push(Math.exp(r() * Math.log(60_000_000)));
  checkAgainstSorted(values, 0.01);
});

Deno.test("histogram: percentiles within 1% for a latency-like distribution", () => {
  const r = rng(2);
  const values: number[] = [];
  for (let i = 0; i < 200_000; i++) {
    // A body around 300 us with an exponential tail and rare stalls.
    let v = 200 + 100 * r() - 150 * Math.log(1 - r());
    if (r() < 0.001) v += 50_000 * r();
    values.push(v);
  }
  checkAgainstSorted(values, 0.01);
});

Deno.test("histogram: every bucket's midpoint is within 0.4% of its values", () => {
  const h = new Histogram({ highest: 1 << 20 });
  for (let v = 1; v <= 1 << 20; v += 7) {
    h.reset();
    h.record(1);
    h.record(v);
    h.record(1 << 20);
    const got = h.percentile(50);
    assert.ok(Math.abs(got - v) / v <= 0.004, `v=${v} got ${got}`);
  }
});

Deno.test("histogram: merge equals recording everything in one", () => {
  const r = rng(3);
  const all = new Histogram();
  const parts = [new Histogram(), new Histogram(), new Histogram()];
  for (let i = 0; i < 30_000; i++) {
    const v = 1 + r() * 10_000;
    all.record(v);
    parts[i % 3].record(v);
  }
  const merged = new Histogram();
  for (const p of parts) merged.merge(p);
  assert.equal(merged.count, all.count);
  assert.equal(merged.min, all.min);
  assert.equal(merged.max, all.max);
  assert.ok(Math.abs(merged.mean - all.mean) < 1e-6);
  for (const p of PERCENTILES) assert.equal(merged.percentile(p), all.percentile(p));
  assert.throws(() => merged.merge(new Histogram({ precisionBits: 8 })), RangeError);
});

Deno.test("histogram: clamps below 1 and above highest, keeps the exact max", () => {
  const h = new Histogram({ highest: 1000 });
  h.record(0);
  h.record(-5);
  h.record(0.2);
  h.record(5000);
  assert.equal(h.count, 4);
  assert.equal(h.min, 1);
  assert.equal(h.max, 5000);
  assert.equal(h.percentile(50), 1);
  assert.equal(h.percentile(100), 5000);
  assert.ok(h.percentile(99) <= 5000 && h.percentile(99) >= 990);
});

Deno.test("histogram: empty, counts with n, and bad input", () => {
  const h = new Histogram();
  assert.equal(h.percentile(50), 0);
  assert.equal(h.min, 0);
  assert.equal(h.max, 0);
  assert.equal(h.mean, 0);
  h.record(100, 99);
  h.record(10_000, 1);
  assert.equal(h.count, 100);
  assert.equal(h.percentile(99), 100);
  assert.equal(h.percentile(99.5), 10_000);
  assert.throws(() => h.percentile(101), RangeError);
  assert.throws(() => new Histogram({ precisionBits: 0 }), RangeError);
  // 1 us..60 s at 1% needs a few thousand buckets, not millions.
  assert.ok(new Histogram().buckets < 4096);
});
