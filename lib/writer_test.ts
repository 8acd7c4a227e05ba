import assert from "node:assert/strict";
import fc from "fast-check";
import { concat, filled, sameBytes } from "../tests/bytes.ts";
import { encodeFrame, FrameReader, MAX_PAYLOAD } from "./frame.ts";
import { FrameWriter, type Writable } from "./writer.ts";

const RUNS = 1000;

// ---------------------------------------------------------------------------
// Helpers

/** Lets every queued microtask and the writer's continuations run. */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Whether `p` settles within a few microtask turns (no timers involved). */
async function settlesSoon(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => {
    done = true;
  });
  for (let i = 0; i < 20; i++) await Promise.resolve();
  return done;
}

interface Call {
  /** Bytes offered to this write call. */
  offered: number;
  /** Bytes the call reported written. */
  accepted: Uint8Array;
  /** Stream offset at which this call starts. */
  at: number;
  /** `queuedBytes` of the writer when the call was made. */
  queuedAtCall: number;
}

/**
 * A fake connection. Records every write call; optionally accepts at most
 * `maxPerWrite` bytes per call (partial writes), holds each write until the
 * test calls `release()` (`gated`), or fails.
 */
class Sink implements Writable {
  calls: Call[] = [];
  maxPerWrite = Infinity;
  gated = false;
  /** Reject the next write with this error. */
  failNext: unknown = undefined;
  /** Throw synchronously from the next write. */
  throwNext: unknown = undefined;
  writer: FrameWriter | undefined;
  #held: Array<{ go: () => void; fail: (err: unknown) => void }> = [];
  #written = 0;

  write(p: Uint8Array): Promise<number> {
    if (this.throwNext !== undefined) {
      const err = this.throwNext;
      this.throwNext = undefined;
      throw err;
    }
    if (this.failNext !== undefined) {
      const err = this.failNext;
      this.failNext = undefined;
      return Promise.reject(err);
    }
    assert.ok(p.length > 0, "empty write");
    const n = Math.min(p.length, this.maxPerWrite);
    const atCall = p.slice(0, n);
    const call: Call = {
      offered: p.length,
      accepted: atCall,
      at: this.#written,
      queuedAtCall: this.writer?.queuedBytes ?? -1,
    };
    this.#written += n;
    const finish = () => {
      // The writer must not touch a buffer while it is being written.
      sameBytes(p.subarray(0, n), atCall, "in-flight buffer changed");
      this.calls.push(call);
    };
    if (!this.gated) {
      finish();
      return Promise.resolve(n);
    }
    return new Promise((resolve, reject) => {
      this.#held.push({
        go: () => {
          finish();
          resolve(n);
        },
        fail: reject,
      });
    });
  }

  /** Write calls waiting for `release()`. */
  get held(): number {
    return this.#held.length;
  }

  release(): void {
    const h = this.#held.shift();
    assert.ok(h, "nothing to release");
    h.go();
  }

  reject(err: unknown): void {
    const h = this.#held.shift();
    assert.ok(h, "nothing to reject");
    h.fail(err);
  }

  get bytes(): Uint8Array {
    return concat(this.calls.map((c) => c.accepted));
  }
}

function newWriter(sink: Sink, options: ConstructorParameters<typeof FrameWriter>[1] = {}) {
  const w = new FrameWriter(sink, options);
  sink.writer = w;
  return w;
}

// ---------------------------------------------------------------------------
// Tests

Deno.test("coalescing", async (t) => {
  await t.step("frames written in one synchronous turn go out in ONE write call", async () => {
    const sink = new Sink();
    const w = newWriter(sink);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) {
      const payload = filled(i * 7, i);
      w.write(0x0101 + (i % 5), payload);
      frames.push(encodeFrame(0x0101 + (i % 5), payload));
    }
    assert.equal(sink.calls.length, 0, "nothing is written synchronously");
    assert.equal(w.buffered, concat(frames).length);
    await w.flush();
    assert.equal(sink.calls.length, 1);
    sameBytes(sink.bytes, concat(frames), "stream");
    assert.equal(w.buffered, 0);
  });

  await t.step("a burst past the initial buffer (and past 1 MiB) is still one call", async () => {
    const sink = new Sink();
    const w = newWriter(sink);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      const payload = filled(MAX_PAYLOAD - i, i + 1);
      w.write(0x0300, payload);
      frames.push(encodeFrame(0x0300, payload));
    }
    await w.flush();
    assert.equal(sink.calls.length, 1);
    sameBytes(sink.bytes, concat(frames), "stream");
    // And the writer keeps working after dropping the big buffer.
    w.write(0x0001);
    w.write(0x0002, new Uint8Array([7]));
    await w.flush();
    assert.equal(sink.calls.length, 2);
    sameBytes(
      sink.calls[1].accepted,
      concat([encodeFrame(1), encodeFrame(2, new Uint8Array([7]))]),
      "2nd",
    );
  });

  await t.step(
    "frames queued while a write is in flight go out together in the next call",
    async () => {
      const sink = new Sink();
      sink.gated = true;
      const w = newWriter(sink);
      const a = encodeFrame(0x0101, new Uint8Array([1]));
      const b = encodeFrame(0x0102, new Uint8Array([2, 2]));
      const c = encodeFrame(0x0103, new Uint8Array([3, 3, 3]));
      const d = encodeFrame(0x0104);
      w.writeRaw(a);
      await tick();
      assert.equal(sink.held, 1, "A is in flight");
      // B, C and D arrive in different turns while A is in flight.
      w.writeRaw(b);
      await tick();
      w.writeRaw(c);
      await tick();
      w.writeRaw(d);
      await tick();
      assert.equal(sink.held, 1, "no second write while the first is in flight");
      assert.equal(w.buffered, a.length + b.length + c.length + d.length);
      sink.release();
      await tick();
      assert.equal(sink.held, 1, "B+C+D in flight");
      sink.release();
      await w.flush();
      assert.deepStrictEqual(sink.calls.map((x) => x.offered), [
        a.length,
        b.length + c.length + d.length,
      ]);
      sameBytes(sink.bytes, concat([a, b, c, d]), "stream");
    },
  );

  await t.step("writeRaw and write interleave in order", async () => {
    const sink = new Sink();
    const w = newWriter(sink);
    const raw = concat([encodeFrame(1), encodeFrame(2, new Uint8Array([9, 9]))]);
    w.write(0x0101, new Uint8Array([1]));
    w.writeRaw(raw);
    w.write(0x0102);
    await w.flush();
    sameBytes(
      sink.bytes,
      concat([encodeFrame(0x0101, new Uint8Array([1])), raw, encodeFrame(0x0102)]),
      "stream",
    );
  });
});

Deno.test("random schedules: the byte stream is the concatenation of the frames", async () => {
  type Op =
    | { kind: "write" | "reserve"; type: number; len: number; seed: number }
    | { kind: "raw"; len: number; seed: number }
    | { kind: "reply"; type: number; id: number; len: number; seed: number }
    | { kind: "yield"; n: number }
    | { kind: "release"; n: number };
  const lenArb = fc.oneof(
    { weight: 10, arbitrary: fc.integer({ min: 0, max: 300 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: MAX_PAYLOAD }) },
  );
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constantFrom("write" as const, "reserve" as const),
        type: fc.integer({ min: 0, max: 0x04ff }),
        len: lenArb,
        seed: fc.integer(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("raw" as const), len: lenArb, seed: fc.integer() }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("reply" as const),
        type: fc.integer({ min: 0, max: 0xffff }),
        id: fc.nat({ max: 0xffffffff }),
        len: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 300 })),
        seed: fc.integer(),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("yield" as const),
        n: fc.integer({ min: 1, max: 6 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("release" as const),
        n: fc.integer({ min: 1, max: 3 }),
      }),
    },
  );

  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { maxLength: 40, size: "max" }),
      fc.boolean(),
      fc.oneof(fc.constant(Infinity), fc.integer({ min: 1, max: 5000 })),
      async (ops, gated, maxPerWrite) => {
        const sink = new Sink();
        sink.gated = gated;
        sink.maxPerWrite = maxPerWrite;
        let errors = 0;
        const w = newWriter(sink, { onError: () => errors++ });
        const expected: Uint8Array[] = [];
        let queued = 0;
        const check = () => {
          assert.equal(w.queuedBytes, queued, "queuedBytes");
          assert.equal(w.buffered, w.queuedBytes - w.writtenBytes, "buffered");
        };
        for (const op of ops) {
          switch (op.kind) {
            case "write": {
              const payload = filled(op.len, op.seed);
              w.write(op.type, payload);
              expected.push(encodeFrame(op.type, payload));
              queued += 4 + op.len;
              break;
            }
            case "reserve": {
              const payload = filled(op.len, op.seed);
              const view = w.reserve(op.type, op.len);
              assert.equal(view.length, op.len);
              view.set(payload);
              expected.push(encodeFrame(op.type, payload));
              queued += 4 + op.len;
              break;
            }
            case "reply": {
              // len -1: no body at all.
              const body = op.len < 0 ? undefined : filled(op.len, op.seed);
              if (body === undefined || op.seed % 2 === 0) w.writeReply(op.type, op.id, body);
              else {
                // The body inside a bigger buffer, as a read buffer holds it.
                const at = Math.abs(op.seed % 7);
                const src = new Uint8Array(at + body.length + 3).fill(0xcc);
                src.set(body, at);
                w.writeReplyAt(op.type, op.id, src, at, at + body.length);
              }
              const payload = new Uint8Array(4 + (body?.length ?? 0));
              new DataView(payload.buffer).setUint32(0, op.id);
              if (body !== undefined) payload.set(body, 4);
              expected.push(encodeFrame(op.type, payload));
              queued += 8 + (body?.length ?? 0);
              break;
            }
            case "raw": {
              const frame = encodeFrame(0x0400, filled(op.len, op.seed));
              if (op.seed % 2 === 0) w.writeRaw(frame);
              else {
                // The frame at the front of a bigger buffer, with its length.
                const room = new Uint8Array(frame.length + (op.seed & 7)).fill(0xcc);
                room.set(frame);
                w.writeRaw(room, frame.length);
              }
              expected.push(frame);
              queued += frame.length;
              break;
            }
            case "yield":
              for (let i = 0; i < op.n; i++) await Promise.resolve();
              break;
            case "release":
              for (let i = 0; i < op.n && sink.held > 0; i++) sink.release();
              break;
          }
          check();
        }
        // Drain: from here on the sink accepts at once.
        sink.gated = false;
        while (sink.held > 0) sink.release();
        let flushed = false;
        w.flush().then(() => {
          flushed = true;
        });
        const bound = 10 * (Math.ceil(queued / Math.min(maxPerWrite, 1 << 30)) + 10);
        for (let spins = 0; !flushed; spins++) {
          assert.ok(spins < bound, "flush never resolved");
          await Promise.resolve();
        }
        check();
        assert.equal(errors, 0);
        assert.equal(w.buffered, 0);
        assert.equal(w.writtenBytes, queued);
        sameBytes(sink.bytes, concat(expected), "stream");
        // Coalescing: a write that starts a batch ships everything queued so far.
        if (maxPerWrite === Infinity) {
          for (const c of sink.calls) {
            assert.equal(c.at + c.offered, c.queuedAtCall, "a write held bytes back");
          }
        }
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("partial writes", async (t) => {
  await t.step("a short write is continued from where it stopped", async () => {
    for (const k of [1, 3, 7, 4096]) {
      const sink = new Sink();
      sink.maxPerWrite = k;
      const w = newWriter(sink);
      const frames = [0, 1, 5, 300, 10_000].map((n, i) => encodeFrame(0x0102, filled(n, i + 1)));
      for (const f of frames) w.writeRaw(f);
      await w.flush();
      const total = concat(frames).length;
      sameBytes(sink.bytes, concat(frames), `k=${k}`);
      assert.equal(sink.calls.length, Math.ceil(total / k));
      // Each call is offered the rest of the batch.
      sink.calls.forEach((c, i) => assert.equal(c.offered, total - i * k));
    }
  });

  await t.step("frames queued during a partial batch follow it in one call", async () => {
    const sink = new Sink();
    sink.gated = true;
    sink.maxPerWrite = 10;
    const w = newWriter(sink);
    const a = encodeFrame(0x0101, filled(26, 1)); // 30 bytes: three calls of 10
    const b = encodeFrame(0x0102, filled(6, 2));
    const c = encodeFrame(0x0103, filled(1, 3));
    w.writeRaw(a);
    await tick();
    sink.release();
    w.writeRaw(b);
    await tick();
    sink.release();
    w.writeRaw(c);
    await tick();
    sink.release();
    await tick();
    sink.release();
    await tick();
    sink.release();
    await w.flush();
    assert.deepStrictEqual(sink.calls.map((x) => x.offered), [30, 20, 10, 15, 5]);
    sameBytes(sink.bytes, concat([a, b, c]), "stream");
  });
});

Deno.test("backpressure: ready and full", async (t) => {
  await t.step("ready resolves at once under the high-water mark", async () => {
    const sink = new Sink();
    sink.gated = true;
    const w = newWriter(sink, { highWaterMark: 100 });
    assert.equal(await settlesSoon(w.ready), true, "empty writer");
    w.write(0x0101, new Uint8Array(96)); // exactly 100 bytes: not over the mark
    assert.equal(w.buffered, 100);
    assert.equal(w.full, false);
    assert.equal(await settlesSoon(w.ready), true, "at the mark");
    sink.release();
    await w.flush();
  });

  await t.step("ready waits while over the mark and resolves once drained", async () => {
    const sink = new Sink();
    sink.gated = true;
    const w = newWriter(sink, { highWaterMark: 100 });
    w.write(0x0101, new Uint8Array(56)); // 60
    w.write(0x0102, new Uint8Array(56)); // 120 > 100
    assert.equal(w.full, true);
    const ready = w.ready;
    assert.equal(await settlesSoon(ready), false, "over the mark");
    assert.equal(sink.held, 1);
    sink.release();
    assert.equal(await settlesSoon(ready), true, "drained");
    assert.equal(w.full, false);
    assert.equal(w.buffered, 0);
  });

  await t.step("ready resolves when the queue falls to the mark, before it is empty", async () => {
    const sink = new Sink();
    sink.gated = true;
    const w = newWriter(sink, { highWaterMark: 100 });
    w.write(0x0101, new Uint8Array(76)); // batch 1: 80 bytes
    await tick();
    assert.equal(sink.held, 1);
    w.write(0x0102, new Uint8Array(56)); // 60 queued behind: 140 buffered
    const waiters = [w.ready, w.ready, w.ready];
    assert.equal(await settlesSoon(Promise.all(waiters)), false);
    sink.release(); // batch 1 done: 60 buffered <= 100
    assert.equal(await settlesSoon(Promise.all(waiters)), true, "every waiter woken");
    assert.equal(w.buffered, 60);
    assert.equal(sink.held, 1, "batch 2 in flight");
    sink.release();
    await w.flush();
    assert.equal(w.buffered, 0);
  });

  await t.step(
    "a writer producing as fast as ready allows never exceeds mark + one frame",
    async () => {
      const sink = new Sink();
      sink.maxPerWrite = 1000;
      const hwm = 4096;
      const w = newWriter(sink, { highWaterMark: hwm });
      let max = 0;
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 500; i++) {
        await w.ready;
        const payload = filled(i % 300, i);
        w.write(0x0103, payload);
        frames.push(encodeFrame(0x0103, payload));
        max = Math.max(max, w.buffered);
      }
      await w.flush();
      assert.ok(max <= hwm + 4 + 300, `buffered reached ${max}`);
      sameBytes(sink.bytes, concat(frames), "stream");
    },
  );
});

Deno.test("write failures", async (t) => {
  const failing = [
    { name: "a rejected write", arm: (s: Sink, e: unknown) => (s.failNext = e) },
    { name: "a write that throws synchronously", arm: (s: Sink, e: unknown) => (s.throwNext = e) },
  ];
  for (const { name, arm } of failing) {
    await t.step(`${name} sets failed, calls onError once, later writes are dropped`, async () => {
      const sink = new Sink();
      const errors: unknown[] = [];
      const w = newWriter(sink, { highWaterMark: 10, onError: (e) => errors.push(e) });
      const boom = new Error("peer gone");
      arm(sink, boom);
      w.write(0x0101, new Uint8Array(50));
      assert.equal(w.failed, false);
      await w.flush();
      assert.equal(w.failed, true);
      assert.deepStrictEqual(errors, [boom]);
      // Later frames are accepted and discarded, without throwing or writing.
      for (let i = 0; i < 100; i++) {
        w.write(0x0102, new Uint8Array(1000));
        w.reserve(0x0103, 10).fill(1);
        w.writeRaw(encodeFrame(1));
      }
      await tick();
      await w.flush();
      assert.equal(sink.calls.length, 0);
      assert.equal(errors.length, 1);
      assert.equal(w.full, false);
      assert.equal(await settlesSoon(w.ready), true);
    });
  }

  await t.step("a failure with frames queued behind it wakes flush and ready waiters", async () => {
    const sink = new Sink();
    sink.gated = true;
    const errors: unknown[] = [];
    const w = newWriter(sink, { highWaterMark: 10, onError: (e) => errors.push(e) });
    w.write(0x0101, new Uint8Array(20));
    await tick();
    w.write(0x0102, new Uint8Array(20)); // queued behind the in-flight write
    const flushed = w.flush();
    const ready = w.ready;
    assert.equal(await settlesSoon(flushed), false);
    assert.equal(await settlesSoon(ready), false);
    sink.reject(new Error("reset"));
    assert.equal(await settlesSoon(Promise.all([flushed, ready])), true);
    assert.equal(w.failed, true);
    assert.equal(errors.length, 1);
    assert.equal(sink.held, 0, "the queued frame is not written");
    assert.equal(sink.calls.length, 0);
  });

  await t.step("a failure after a partial write", async () => {
    const sink = new Sink();
    sink.gated = true;
    sink.maxPerWrite = 5;
    const errors: unknown[] = [];
    const w = newWriter(sink, { onError: (e) => errors.push(e) });
    const f = encodeFrame(0x0101, filled(20, 1));
    w.writeRaw(f);
    await tick();
    sink.release();
    await tick();
    sink.reject(new Error("broken pipe"));
    await w.flush();
    assert.equal(w.failed, true);
    assert.equal(errors.length, 1);
    sameBytes(sink.bytes, f.subarray(0, 5), "the part written before the failure");
    assert.equal(w.writtenBytes, 5);
  });
});

Deno.test("flush", async (t) => {
  await t.step("resolves at once when nothing is queued", async () => {
    const w = newWriter(new Sink());
    assert.equal(await settlesSoon(w.flush()), true);
  });

  await t.step("resolves only after everything queued has been written", async () => {
    const sink = new Sink();
    sink.gated = true;
    sink.maxPerWrite = 50;
    const w = newWriter(sink);
    const frames = [10, 60, 0, 200].map((n, i) => encodeFrame(0x0101, filled(n, i + 1)));
    w.writeRaw(frames[0]);
    w.writeRaw(frames[1]);
    const f1 = w.flush();
    await tick();
    w.writeRaw(frames[2]);
    w.writeRaw(frames[3]);
    const f2 = w.flush();
    const total = concat(frames).length;
    let releases = 0;
    while (sink.held > 0 || !(await settlesSoon(f2))) {
      assert.equal(await settlesSoon(f1), w.writtenBytes === total, "f1 early");
      if (sink.held > 0) {
        sink.release();
        releases++;
      }
      await tick();
    }
    assert.equal(w.writtenBytes, total);
    assert.equal(releases, Math.ceil(74 / 50) + Math.ceil((total - 74) / 50));
    sameBytes(sink.bytes, concat(frames), "stream");
  });
});

Deno.test("reserve", async (t) => {
  await t.step("returns the payload view to fill", async () => {
    const sink = new Sink();
    const w = newWriter(sink);
    const v = w.reserve(0x0182, 8);
    assert.equal(v.length, 8);
    v.set([0, 0, 0, 7, 104, 105, 33, 10]);
    const empty = w.reserve(0x0181, 0);
    assert.equal(empty.length, 0);
    const max = w.reserve(0x0102, MAX_PAYLOAD);
    assert.equal(max.length, MAX_PAYLOAD);
    max.fill(0x5a);
    await w.flush();
    sameBytes(
      sink.bytes,
      concat([
        encodeFrame(0x0182, new Uint8Array([0, 0, 0, 7, 104, 105, 33, 10])),
        encodeFrame(0x0181),
        encodeFrame(0x0102, new Uint8Array(MAX_PAYLOAD).fill(0x5a)),
      ]),
      "stream",
    );
  });

  await t.step("a payload over 65535 bytes is a RangeError and queues nothing", async () => {
    const sink = new Sink();
    const w = newWriter(sink);
    assert.throws(() => w.reserve(0x0101, MAX_PAYLOAD + 1), RangeError);
    assert.throws(() => w.write(0x0101, new Uint8Array(MAX_PAYLOAD + 1)), RangeError);
    // writeReply's payload is the 4-byte id plus the body.
    assert.throws(() => w.writeReply(0x0181, 1, new Uint8Array(MAX_PAYLOAD - 3)), RangeError);
    assert.throws(() => w.writeReply(0x10000, 1), RangeError);
    assert.throws(() => w.writeReply(-1, 1), RangeError);
    assert.throws(() => w.writeRaw(new Uint8Array(8), 9), RangeError);
    assert.throws(() => w.writeRaw(new Uint8Array(8), -1), RangeError);
    assert.throws(() => w.writeReplyAt(0x0182, 1, new Uint8Array(8), 4, 9), RangeError);
    assert.throws(() => w.writeReplyAt(0x0182, 1, new Uint8Array(8), 5, 4), RangeError);
    assert.throws(() => w.writeReplyAt(0x0182, 1, new Uint8Array(8), -1, 4), RangeError);
    assert.equal(w.buffered, 0);
    assert.equal(w.queuedBytes, 0);
    await w.flush();
    assert.equal(sink.calls.length, 0);
  });

  // KNOWN ISSUE (reported, not fixed): the view reserve() returns points into
  // the writer's current buffer; a later reserve()/write() that grows the
  // buffer copies it *before* the caller fills the first view, so bytes
  // written through the stale view are lost (zeros go out). The doc comment
  // says "fill in synchronously (before the next await)"; in practice it must
  // be filled before the next call on the writer. Every caller in the tree
  // fills at once, so nothing is broken today.
  await t.step({
    name: "a view filled after a later reserve that grows the buffer (known issue)",
    ignore: true,
    fn: async () => {
      const sink = new Sink();
      const w = newWriter(sink);
      const a = w.reserve(0x0101, 4);
      const b = w.reserve(0x0102, 20_000); // past the 16 KiB initial buffer
      a.set([1, 2, 3, 4]);
      b.fill(9);
      await w.flush();
      sameBytes(
        sink.bytes,
        concat([encodeFrame(0x0101, new Uint8Array([1, 2, 3, 4])), encodeFrame(0x0102, b)]),
        "stream",
      );
    },
  });
});

Deno.test("FrameWriter -> TCP loopback -> FrameReader: 10,000 frames", async () => {
  const N = 10_000;
  const frames: { type: number; payload: Uint8Array }[] = [];
  for (let i = 0; i < N; i++) {
    const len = i % 1000 === 999 ? MAX_PAYLOAD : (i * 7919) % 1500;
    frames.push({ type: 0x0100 + (i % 0x400), payload: filled(len, i + 1) });
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let client: Deno.TcpConn | undefined;
  let server: Deno.TcpConn | undefined;
  let reading: Promise<{ type: number; payload: Uint8Array }[]> | undefined;
  try {
    const accepted = listener.accept();
    client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    server = await accepted;
    const reader = new FrameReader(server);
    reading = (async () => {
      const got: { type: number; payload: Uint8Array }[] = [];
      while (
        await reader.read((type, payload) => {
          got.push({ type, payload: payload.slice() });
        })
      );
      return got;
    })();
    const errors: unknown[] = [];
    const w = new FrameWriter(client, {
      highWaterMark: 256 * 1024,
      onError: (e) => errors.push(e),
    });
    for (let i = 0; i < N; i++) {
      const f = frames[i];
      if (i % 2 === 0) w.write(f.type, f.payload);
      else w.reserve(f.type, f.payload.length).set(f.payload);
      if (w.full) await w.ready;
    }
    await w.flush();
    assert.deepStrictEqual(errors, []);
    assert.equal(w.buffered, 0);
    client.closeWrite();
    const got = await reading;
    assert.equal(got.length, N);
    for (let i = 0; i < N; i++) {
      assert.equal(got[i].type, frames[i].type, `type of frame ${i}`);
      sameBytes(got[i].payload, frames[i].payload, `payload of frame ${i}`);
    }
    assert.equal(reader.pending, 0);
  } finally {
    client?.close();
    server?.close();
    listener.close();
    await reading?.catch(() => {});
  }
});
