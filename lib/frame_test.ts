import assert from "node:assert/strict";
import fc from "fast-check";
import { concat, filled, sameBytes } from "../tests/bytes.ts";
import { ProtocolError } from "./errors.ts";
import {
  encodeFrame,
  FrameDecoder,
  type FrameHandler,
  FrameReader,
  HEADER_SIZE,
  MAX_FRAME,
  MAX_PAYLOAD,
  parseFrames,
  type Readable,
  writeHeader,
} from "./frame.ts";

const RUNS = 1000;

interface Frame {
  type: number;
  payload: Uint8Array;
}

// ---------------------------------------------------------------------------
// Helpers

/** Hand-built encoding, independent of encodeFrame. */
function rawFrame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  out[0] = (type >> 8) & 0xff;
  out[1] = type & 0xff;
  out[2] = (payload.length >> 8) & 0xff;
  out[3] = payload.length & 0xff;
  out.set(payload, 4);
  return out;
}

/** Offsets at which each frame ends, with a leading 0. */
function boundaries(frames: readonly Frame[]): number[] {
  const out = [0];
  let off = 0;
  for (const f of frames) {
    off += HEADER_SIZE + f.payload.length;
    out.push(off);
  }
  return out;
}

/** Whole frames, and bytes of a split frame, in the first `pos` bytes. */
function progressAt(bounds: readonly number[], pos: number): { whole: number; left: number } {
  let i = 0;
  while (i + 1 < bounds.length && bounds[i + 1] <= pos) i++;
  return { whole: i, left: pos - bounds[i] };
}

/** Sorted cut points in [0, len] from scaled integers. */
function cutPoints(scaled: readonly number[], len: number): number[] {
  return scaled.map((x) => Math.floor((x * len) / 1_000_000)).sort((a, b) => a - b);
}

/** Chunks of `bytes` between consecutive cut points (empty chunks included). */
function chunksAt(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

function collector(out: Frame[]) {
  // Payloads are only valid during the callback: copy them.
  return (type: number, payload: Uint8Array) => {
    out.push({ type, payload: payload.slice() });
  };
}

/** A fake connection that hands out `data` in chunks of the given sizes (cycled). */
class ChunkedSource implements Readable {
  pos = 0;
  reads = 0;
  #i = 0;
  constructor(readonly data: Uint8Array, readonly sizes: readonly number[]) {}
  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    // A real socket answers an empty buffer with 0 forever: a livelock.
    if (p.length === 0) return Promise.reject(new Error("read into an empty buffer"));
    if (this.pos >= this.data.length) return Promise.resolve(null);
    const want = this.sizes.length === 0 ? 1 : this.sizes[this.#i++ % this.sizes.length];
    const n = Math.min(want, p.length, this.data.length - this.pos);
    p.set(this.data.subarray(this.pos, this.pos + n));
    this.pos += n;
    return Promise.resolve(n);
  }
}

/**
 * Reference model: parse the whole stream at once. `error` is true when a
 * header that is reached has a first byte past 0x04 or a type `accept` refuses.
 */
function reference(bytes: Uint8Array, accept?: (t: number) => boolean) {
  const frames: Frame[] = [];
  let pos = 0;
  while (bytes.length - pos >= 4) {
    const type = bytes[pos] * 256 + bytes[pos + 1];
    if (bytes[pos] > 4 || (accept && !accept(type))) return { frames, error: true, left: 0 };
    const len = bytes[pos + 2] * 256 + bytes[pos + 3];
    if (pos + 4 + len > bytes.length) break;
    frames.push({ type, payload: bytes.slice(pos + 4, pos + 4 + len) });
    pos += 4 + len;
  }
  return { frames, error: false, left: bytes.length - pos };
}

function sameFrames(actual: readonly Frame[], expected: readonly Frame[]): void {
  assert.equal(actual.length, expected.length, "frame count");
  for (let i = 0; i < expected.length; i++) {
    assert.equal(actual[i].type, expected[i].type, `type of frame ${i}`);
    sameBytes(actual[i].payload, expected[i].payload, `payload of frame ${i}`);
  }
}

/** Reads to EOF, failing (not hanging) if the reader stops making progress. */
async function drain(reader: FrameReader, src: ChunkedSource, onFrame: FrameHandler) {
  while (await reader.read(onFrame)) {
    assert.ok(src.reads <= src.data.length + 1, "reader makes no progress");
  }
}

// ---------------------------------------------------------------------------
// Arbitraries

const typeArb = fc.integer({ min: 0x0000, max: 0x04ff });

/**
 * Payloads are built from (length, seed): the decoder never looks inside a
 * payload, and shrinking a length converges in a few dozen steps where
 * shrinking hundreds of random bytes one by one takes minutes.
 */
function payloadOf(len: fc.Arbitrary<number>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(len, fc.integer()).map(([n, seed]) => filled(n, seed));
}

const smallLenArb = fc.integer({ min: 0, max: 300 });
const bigLenArb = fc.oneof(
  fc.integer({ min: 0, max: MAX_PAYLOAD }),
  fc.constantFrom(MAX_PAYLOAD, MAX_PAYLOAD - 1, 0, 1),
);
const payloadArb = payloadOf(
  fc.oneof({ weight: 30, arbitrary: smallLenArb }, { weight: 1, arbitrary: bigLenArb }),
);

const frameArb: fc.Arbitrary<Frame> = fc.record({ type: typeArb, payload: payloadArb });
const framesArb = fc.array(frameArb, { maxLength: 20, size: "max" });
const smallFramesArb = fc.array(
  fc.record({ type: typeArb, payload: payloadOf(smallLenArb) }),
  { maxLength: 12, size: "max" },
);
const cutsArb = fc.array(fc.integer({ min: 0, max: 1_000_000 }), { maxLength: 40, size: "max" });
const chunkSizesArb = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 16 }) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 2000 }) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 * MAX_FRAME }) },
  ),
  { minLength: 1, maxLength: 20, size: "max" },
);
/** Arbitrary bytes, with shrinking capped so a failure reports in seconds. */
const junkArb = (maxLength: number) =>
  fc.limitShrink(fc.uint8Array({ maxLength, size: "max" }), 200);

/** Streams mixing valid frames, random junk and bad headers. */
const dirtyStreamArb = fc
  .array(
    fc.oneof(
      { weight: 6, arbitrary: frameArb.map((f) => rawFrame(f.type, f.payload)) },
      { weight: 2, arbitrary: junkArb(40) },
      {
        weight: 1,
        arbitrary: fc
          .tuple(
            fc.integer({ min: 0x05, max: 0xff }),
            fc.uint8Array({ minLength: 3, maxLength: 3 }),
          )
          .map(([hi, rest]) => concat([new Uint8Array([hi]), rest])),
      },
    ),
    { maxLength: 12, size: "max" },
  )
  .map(concat);

// ---------------------------------------------------------------------------
// Tests

Deno.test("encodeFrame", async (t) => {
  await t.step("matches the normative layout (big-endian u16 type, u16 len)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), payloadArb, (type, payload) => {
        sameBytes(encodeFrame(type, payload), rawFrame(type, payload), "frame");
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("no payload gives a bare header", () => {
    assert.deepStrictEqual(encodeFrame(0x0001), new Uint8Array([0, 1, 0, 0]));
    assert.deepStrictEqual(encodeFrame(0x00ff, new Uint8Array()), new Uint8Array([0, 0xff, 0, 0]));
  });

  await t.step("accepts a 65535-byte payload and rejects 65536 with RangeError", () => {
    const max = encodeFrame(0x0102, filled(MAX_PAYLOAD, 7));
    assert.equal(max.length, MAX_FRAME);
    assert.deepStrictEqual([...max.subarray(0, 4)], [0x01, 0x02, 0xff, 0xff]);
    assert.throws(() => encodeFrame(0x0102, new Uint8Array(MAX_PAYLOAD + 1)), RangeError);
    assert.throws(() => encodeFrame(0x0102, new Uint8Array(200_000)), RangeError);
  });

  await t.step("rejects a type that is not a u16 with RangeError", () => {
    for (const bad of [-1, 0x10000, 1.5, NaN, Infinity]) {
      assert.throws(() => encodeFrame(bad), RangeError, String(bad));
    }
  });

  await t.step("writeHeader writes at an offset", () => {
    const b = new Uint8Array(10).fill(0xee);
    writeHeader(b, 3, 0x0481, 0x1234);
    assert.deepStrictEqual([...b], [0xee, 0xee, 0xee, 0x04, 0x81, 0x12, 0x34, 0xee, 0xee, 0xee]);
  });
});

Deno.test("parseFrames", async (t) => {
  await t.step("parses a window and returns the offset of the split frame", () => {
    fc.assert(
      fc.property(
        smallFramesArb,
        fc.uint8Array({ maxLength: 8, size: "max" }),
        fc.integer({ min: 0, max: 1_000_000 }),
        (frames, prefix, cutScaled) => {
          const stream = concat(frames.map((f) => rawFrame(f.type, f.payload)));
          const end = Math.floor((cutScaled * stream.length) / 1_000_000);
          const buf = concat([prefix, stream, new Uint8Array([0xff, 0xff])]);
          const got: Frame[] = [];
          const rest = parseFrames(buf, prefix.length, prefix.length + end, collector(got));
          const p = progressAt(boundaries(frames), end);
          sameFrames(got, frames.slice(0, p.whole));
          assert.equal(rest, prefix.length + end - p.left);
        },
      ),
      { numRuns: RUNS },
    );
  });

  await t.step("frames whole in the buffer are zero-copy views of it", () => {
    const buf = concat([
      encodeFrame(1, new Uint8Array([1, 2])),
      encodeFrame(2, new Uint8Array([3])),
    ]);
    const views: Uint8Array[] = [];
    parseFrames(buf, 0, buf.length, (_t, p) => views.push(p));
    assert.equal(views.length, 2);
    for (const v of views) assert.equal(v.buffer, buf.buffer);
    assert.equal(views[0].byteOffset, 4);
    assert.equal(views[1].byteOffset, 10);
  });
});

Deno.test("FrameDecoder: any split decodes to the same frames", async (t) => {
  await t.step("random cut points (frames up to 65535 bytes)", () => {
    fc.assert(
      fc.property(framesArb, cutsArb, (frames, cutsScaled) => {
        const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
        const bounds = boundaries(frames);
        const cuts = cutPoints(cutsScaled, stream.length);
        const dec = new FrameDecoder();
        const got: Frame[] = [];
        const onFrame = collector(got);
        let pos = 0;
        for (const chunk of chunksAt(stream, cuts)) {
          dec.push(chunk, onFrame);
          pos += chunk.length;
          // Every frame is delivered as soon as its last byte arrives, and
          // `pending` is exactly the split frame's bytes.
          const p = progressAt(bounds, pos);
          assert.equal(got.length, p.whole);
          assert.equal(dec.pending, p.left);
        }
        sameFrames(got, frames);
        assert.equal(dec.pending, 0);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("one byte at a time", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            type: typeArb,
            payload: payloadOf(
              fc.oneof({ weight: 40, arbitrary: smallLenArb }, { weight: 1, arbitrary: bigLenArb }),
            ),
          }),
          { maxLength: 10, size: "max" },
        ),
        (frames) => {
          const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
          const bounds = boundaries(frames);
          const dec = new FrameDecoder();
          const got: Frame[] = [];
          const onFrame = collector(got);
          let b = 1;
          for (let i = 0; i < stream.length; i++) {
            dec.push(stream.subarray(i, i + 1), onFrame);
            if (i + 1 === bounds[b]) {
              assert.equal(got.length, b);
              assert.equal(dec.pending, 0);
              b++;
            } else {
              assert.equal(dec.pending, i + 1 - bounds[b - 1]);
            }
          }
          sameFrames(got, frames);
        },
      ),
      { numRuns: RUNS },
    );
  });

  await t.step("empty chunks are harmless anywhere", () => {
    const f = encodeFrame(0x0101, new Uint8Array([9, 8, 7]));
    const dec = new FrameDecoder();
    const got: Frame[] = [];
    const onFrame = collector(got);
    for (let i = 0; i <= f.length; i++) {
      dec.push(new Uint8Array(0), onFrame);
      if (i < f.length) dec.push(f.subarray(i, i + 1), onFrame);
    }
    sameFrames(got, [{ type: 0x0101, payload: new Uint8Array([9, 8, 7]) }]);
  });

  await t.step("pending reports the leftover of a split frame", () => {
    const dec = new FrameDecoder();
    const got: Frame[] = [];
    const onFrame = collector(got);
    assert.equal(dec.pending, 0);
    const f = encodeFrame(0x0102, new Uint8Array(10).fill(5));
    dec.push(f.subarray(0, 2), onFrame); // half a header
    assert.equal(dec.pending, 2);
    dec.push(f.subarray(2, 7), onFrame); // header + 3 payload bytes
    assert.equal(dec.pending, 7);
    dec.push(concat([f.subarray(7), f, f.subarray(0, 5)]), onFrame);
    assert.equal(got.length, 2);
    assert.equal(dec.pending, 5);
    dec.push(f.subarray(5), onFrame);
    assert.equal(got.length, 3);
    assert.equal(dec.pending, 0);
  });
});

Deno.test("FrameReader over a chunked fake connection", async (t) => {
  await t.step("random chunk sizes decode to the same frames; false at EOF", async () => {
    await fc.assert(
      fc.asyncProperty(
        framesArb,
        chunkSizesArb,
        fc.boolean(),
        async (frames, sizes, smallBuffer) => {
          const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
          const bounds = boundaries(frames);
          const src = new ChunkedSource(stream, sizes);
          // bufferSize 0 clamps to 2 * MAX_FRAME, which forces compaction often.
          const reader = new FrameReader(src, smallBuffer ? { bufferSize: 0 } : {});
          const got: Frame[] = [];
          const onFrame = collector(got);
          while (await reader.read(onFrame)) {
            const p = progressAt(bounds, src.pos);
            assert.equal(got.length, p.whole);
            assert.equal(reader.pending, p.left);
            assert.ok(src.reads <= stream.length + 1, "no progress");
          }
          sameFrames(got, frames);
          assert.equal(reader.pending, 0);
          // EOF is sticky.
          assert.equal(await reader.read(onFrame), false);
        },
      ),
      { numRuns: RUNS },
    );
  });

  await t.step("readRaw: the same frames as ranges of the reader's buffer, any split", async () => {
    await fc.assert(
      fc.asyncProperty(framesArb, chunkSizesArb, async (frames, sizes) => {
        const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
        const src = new ChunkedSource(stream, sizes);
        const reader = new FrameReader(src, { bufferSize: 0 });
        const got: Frame[] = [];
        let pauses = 0;
        // Pause now and then: the held frames come first on the next call.
        const onFrame = (type: number, buf: Uint8Array, start: number, end: number) => {
          assert.ok(start >= 4 && start <= end && end <= buf.length);
          got.push({ type, payload: buf.slice(start, end) });
          return got.length % 5 === 0 ? (pauses++, false) : undefined;
        };
        while (await reader.readRaw(onFrame)) assert.ok(src.reads <= stream.length + pauses + 1);
        sameFrames(got, frames);
        assert.equal(reader.pending, 0);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("one byte per read", async () => {
    await fc.assert(
      fc.asyncProperty(smallFramesArb, async (frames) => {
        const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
        const src = new ChunkedSource(stream, [1]);
        const reader = new FrameReader(src);
        const got: Frame[] = [];
        await drain(reader, src, collector(got));
        sameFrames(got, frames);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("a truncated stream leaves the split frame pending at EOF", async () => {
    const f = encodeFrame(0x0103, new Uint8Array(100));
    const stream = concat([f, f.subarray(0, 50)]);
    const src = new ChunkedSource(stream, [7]);
    const reader = new FrameReader(src);
    const got: Frame[] = [];
    await drain(reader, src, collector(got));
    assert.equal(got.length, 1);
    assert.equal(reader.pending, 50);
  });

  await t.step("many max-size frames through the smallest buffer", async () => {
    const frames: Frame[] = [];
    for (let i = 0; i < 9; i++) {
      frames.push({ type: 0x0300 + i, payload: filled(MAX_PAYLOAD, i + 1) });
    }
    const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
    for (const size of [1000, MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1, 2 * MAX_FRAME]) {
      const src = new ChunkedSource(stream, [size]);
      const reader = new FrameReader(src, { bufferSize: 1 });
      const got: Frame[] = [];
      await drain(reader, src, collector(got));
      sameFrames(got, frames);
    }
  });
});

Deno.test("garbage input only ever raises ProtocolError", async (t) => {
  function decodeChunks(
    chunks: readonly Uint8Array[],
    accept?: (t: number) => boolean,
  ): { frames: Frame[]; error: unknown } {
    const dec = new FrameDecoder({ accept });
    const frames: Frame[] = [];
    const onFrame = collector(frames);
    try {
      for (const c of chunks) dec.push(c, onFrame);
    } catch (err) {
      return { frames, error: err };
    }
    return { frames, error: undefined };
  }

  await t.step("FrameDecoder on mixed valid/junk streams agrees with a whole-buffer model", () => {
    fc.assert(
      fc.property(dirtyStreamArb, cutsArb, (bytes, cutsScaled) => {
        const want = reference(bytes);
        const got = decodeChunks(chunksAt(bytes, cutPoints(cutsScaled, bytes.length)));
        if (got.error !== undefined) {
          assert.ok(got.error instanceof ProtocolError, String(got.error));
        }
        assert.equal(got.error !== undefined, want.error);
        sameFrames(got.frames, want.frames);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("FrameDecoder on uniformly random bytes", () => {
    fc.assert(
      fc.property(junkArb(2000), cutsArb, (bytes, cutsScaled) => {
        const want = reference(bytes);
        const got = decodeChunks(chunksAt(bytes, cutPoints(cutsScaled, bytes.length)));
        if (got.error !== undefined) {
          assert.ok(got.error instanceof ProtocolError, String(got.error));
        }
        assert.equal(got.error !== undefined, want.error);
        sameFrames(got.frames, want.frames);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("FrameReader on junk: terminates, and throws only ProtocolError", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(dirtyStreamArb, junkArb(2000)),
        chunkSizesArb,
        async (bytes, sizes) => {
          const want = reference(bytes);
          const src = new ChunkedSource(bytes, sizes);
          const reader = new FrameReader(src);
          const got: Frame[] = [];
          const onFrame = collector(got);
          let error: unknown;
          try {
            while (await reader.read(onFrame)) {
              assert.ok(src.reads <= bytes.length + 1, "reader does not make progress");
            }
          } catch (err) {
            error = err;
          }
          if (error !== undefined) assert.ok(error instanceof ProtocolError, String(error));
          assert.equal(error !== undefined, want.error);
          sameFrames(got, want.frames);
          if (!want.error) assert.equal(reader.pending, want.left);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

Deno.test("frames that can never be lbkit frames", async (t) => {
  await t.step("first byte 0x2A ('*', RESP) is a ProtocolError", async () => {
    const resp = new TextEncoder().encode("*1\r\n$4\r\nPING\r\n");
    assert.throws(() => parseFrames(resp, 0, resp.length, () => {}), ProtocolError);
    assert.throws(() => new FrameDecoder().push(resp, () => {}), ProtocolError);
    assert.throws(() => new FrameDecoder().push(resp, () => {}), /0x2a/);
    const reader = new FrameReader(new ChunkedSource(resp, [100]));
    await assert.rejects(reader.read(() => {}), ProtocolError);
  });

  await t.step("every first byte 0x05..0xFF is a ProtocolError, 0x00..0x04 is not", () => {
    for (let hi = 0; hi <= 0xff; hi++) {
      const bytes = new Uint8Array([hi, 0x01, 0, 0]);
      if (hi <= 4) {
        const got: Frame[] = [];
        new FrameDecoder().push(bytes, collector(got));
        assert.equal(got.length, 1);
        assert.equal(got[0].type, (hi << 8) | 1);
      } else {
        assert.throws(() => parseFrames(bytes, 0, 4, () => {}), ProtocolError, `0x${hi}`);
        assert.throws(() => new FrameDecoder().push(bytes, () => {}), ProtocolError);
      }
    }
  });

  await t.step("the bad header fails as soon as it is whole, before any payload", () => {
    fc.assert(
      fc.property(
        smallFramesArb,
        fc.integer({ min: 0x05, max: 0xff }),
        fc.integer({ min: 0, max: 0xff }),
        fc.integer({ min: 0, max: 0xffff }),
        (good, hi, lo, len) => {
          const prefix = concat(good.map((f) => rawFrame(f.type, f.payload)));
          const bad = new Uint8Array([hi, lo, len >> 8, len & 0xff]);
          const stream = concat([prefix, bad]);
          const dec = new FrameDecoder();
          const got: Frame[] = [];
          const onFrame = collector(got);
          for (let i = 0; i < stream.length - 1; i++) dec.push(stream.subarray(i, i + 1), onFrame);
          sameFrames(got, good);
          assert.throws(() => dec.push(stream.subarray(stream.length - 1), onFrame), ProtocolError);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

Deno.test("the accept option", async (t) => {
  await t.step("unaccepted types are a ProtocolError after the frames before them", () => {
    fc.assert(
      fc.property(
        framesArb,
        fc.uniqueArray(typeArb, { maxLength: 8, size: "max" }),
        cutsArb,
        (frames, allowedExtra, cutsScaled) => {
          // Accept a random subset of the frames' types plus some others.
          const allowed = new Set(allowedExtra);
          frames.forEach((f, i) => {
            if (i % 3 !== 2) allowed.add(f.type);
          });
          const accept = (type: number) => allowed.has(type);
          const firstBad = frames.findIndex((f) => !allowed.has(f.type));
          const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
          const dec = new FrameDecoder({ accept });
          const got: Frame[] = [];
          const onFrame = collector(got);
          let error: unknown;
          try {
            for (const c of chunksAt(stream, cutPoints(cutsScaled, stream.length))) {
              dec.push(c, onFrame);
            }
          } catch (err) {
            error = err;
          }
          if (firstBad === -1) {
            assert.equal(error, undefined);
            sameFrames(got, frames);
          } else {
            assert.ok(error instanceof ProtocolError, String(error));
            assert.match(error.message, /unknown frame type/);
            sameFrames(got, frames.slice(0, firstBad));
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  await t.step("parseFrames and FrameReader honour accept too", async () => {
    const accept = (type: number) => type === 0x0001;
    const stream = concat([encodeFrame(0x0001), encodeFrame(0x0002)]);
    const got: Frame[] = [];
    assert.throws(() => parseFrames(stream, 0, stream.length, collector(got), accept), {
      name: "ProtocolError",
      message: "unknown frame type 0x0002",
    });
    assert.equal(got.length, 1);
    const reader = new FrameReader(new ChunkedSource(stream, [100]), { accept });
    await assert.rejects(reader.read(() => {}), ProtocolError);
  });

  await t.step("an unaccepted type fails before its payload arrives", () => {
    const dec = new FrameDecoder({ accept: (type) => type !== 0x0104 });
    const f = encodeFrame(0x0104, new Uint8Array(1000));
    dec.push(f.subarray(0, 3), () => {});
    assert.throws(() => dec.push(f.subarray(3, 4), () => {}), ProtocolError);
  });
});

Deno.test("pausing: a handler that returns false", async (t) => {
  await t.step("parseFrames stops right after the frame that paused", () => {
    fc.assert(
      fc.property(smallFramesArb, fc.nat(), (frames, at) => {
        const stream = concat(frames.map((f) => rawFrame(f.type, f.payload)));
        const bounds = boundaries(frames);
        const stopAt = frames.length === 0 ? -1 : at % frames.length;
        const got: Frame[] = [];
        const rest = parseFrames(stream, 0, stream.length, (type, payload) => {
          got.push({ type, payload: payload.slice() });
          return got.length - 1 === stopAt ? false : undefined;
        });
        sameFrames(got, frames.slice(0, stopAt + 1 || frames.length));
        assert.equal(rest, stopAt === -1 ? stream.length : bounds[stopAt + 1]);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("only `false` pauses; other return values do not", () => {
    const stream = concat([encodeFrame(1), encodeFrame(2), encodeFrame(3), encodeFrame(4)]);
    const returns: unknown[] = [0, null, "", undefined];
    let i = 0;
    assert.equal(parseFrames(stream, 0, stream.length, () => returns[i++]), stream.length);
    assert.equal(i, 4);
  });

  await t.step(
    "FrameReader delivers every frame once, buffered ones before reading again",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          framesArb,
          chunkSizesArb,
          fc.array(fc.boolean(), { minLength: 1, maxLength: 10, size: "max" }),
          async (frames, sizes, pausePattern) => {
            const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
            const bounds = boundaries(frames);
            const src = new ChunkedSource(stream, sizes);
            const reader = new FrameReader(src);
            const got: Frame[] = [];
            let lastPaused = false;
            const onFrame = (type: number, payload: Uint8Array) => {
              got.push({ type, payload: payload.slice() });
              lastPaused = pausePattern[got.length % pausePattern.length];
              return lastPaused ? false : undefined;
            };
            for (;;) {
              const readsBefore = src.reads;
              const gotBefore = got.length;
              const backlog = progressAt(bounds, src.pos).whole > gotBefore;
              if (!(await reader.read(onFrame))) break;
              assert.ok(src.reads <= stream.length + frames.length + 1, "no progress");
              if (backlog) {
                // Frames left buffered by a pause come first, without touching the source.
                assert.equal(src.reads, readsBefore, "read the source while frames were buffered");
                assert.ok(got.length > gotBefore, "a paused reader delivered nothing");
              }
              const p = progressAt(bounds, src.pos);
              if (got.length < p.whole) assert.ok(lastPaused, "frames held back without a pause");
              else assert.equal(reader.pending, p.left);
            }
            sameFrames(got, frames);
            assert.equal(reader.pending, 0);
          },
        ),
        { numRuns: RUNS },
      );
    },
  );

  await t.step("a handler that always pauses gets exactly one frame per read", async () => {
    const frames = [1, 2, 3, 4, 5].map((type) => ({ type, payload: filled(type * 10, type) }));
    const stream = concat(frames.map((f) => encodeFrame(f.type, f.payload)));
    const src = new ChunkedSource(stream, [stream.length]);
    const reader = new FrameReader(src);
    const got: Frame[] = [];
    const seen: number[] = [];
    while (
      await reader.read((type, payload) => {
        got.push({ type, payload: payload.slice() });
        return false;
      })
    ) {
      seen.push(got.length);
    }
    sameFrames(got, frames);
    assert.deepStrictEqual(seen, [1, 2, 3, 4, 5]);
    assert.equal(src.reads, 2); // one read for all the bytes, one for EOF
  });

  await t.step({
    name: "FrameDecoder: a pausing handler loses no frames",
    fn: () => {
      const frames = [1, 2, 3, 4].map((type) => ({ type, payload: filled(3, type) }));
      const dec = new FrameDecoder();
      const got: Frame[] = [];
      dec.push(concat(frames.map((f) => encodeFrame(f.type, f.payload))), (type, payload) => {
        got.push({ type, payload: payload.slice() });
        return type === 1 ? false : undefined;
      });
      dec.push(new Uint8Array(0), collector(got));
      sameFrames(got, frames);
      const big = concat([
        encodeFrame(1),
        encodeFrame(2, filled(60000, 1)),
        encodeFrame(3, filled(60000, 2)),
      ]);
      new FrameDecoder().push(big, (type) => type !== 1);
    },
  });
});
