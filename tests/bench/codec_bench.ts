// Copyright the lbkit authors. MIT license.
/**
 * Frame codec throughput: decode (parseFrames, FrameDecoder, FrameReader) and
 * encode (encodeFrame, FrameWriter.write, FrameWriter.reserve) with 64-byte
 * and 4 KiB payloads.
 *
 * Every bench handles {@linkcode FRAMES} frames per iteration (the number is
 * in each name), so from deno bench's time/iter:
 *
 *   frames/s = FRAMES / (time/iter in s)
 *   MB/s     = frames/s * (payload + 4 header bytes) / 1e6   (wire bytes)
 *
 * `deno bench --json tests/bench/codec_bench.ts` gives `avg` in nanoseconds.
 *
 * @module
 */

import {
  encodeFrame,
  FrameDecoder,
  FrameReader,
  parseFrames,
  type Readable,
} from "../../lib/frame.ts";
import { FrameWriter, type Writable } from "../../lib/writer.ts";

/** Frames handled per bench iteration. */
const FRAMES = 1000;
const SIZES = [64, 4096] as const;
/** A typical TCP segment payload, for the split-chunk decode. */
const MSS = 1460;

function payloadOf(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The wire bytes of FRAMES frames with `size`-byte payloads (types cycle through SET..NODE). */
function buildStream(size: number): Uint8Array {
  const frame = 4 + size;
  const out = new Uint8Array(FRAMES * frame);
  for (let i = 0; i < FRAMES; i++) {
    out.set(encodeFrame(0x0101 + (i % 5), payloadOf(size, i)), i * frame);
  }
  return out;
}

/** A consumer that touches each payload so the work cannot be skipped. */
let sink = 0;
let seen = 0;
function onFrame(type: number, payload: Uint8Array): void {
  sink = (sink + type + payload.length + payload[0]) | 0;
  seen++;
}

function expectAll(): void {
  if (seen !== FRAMES) throw new Error(`decoded ${seen} frames, expected ${FRAMES}`);
  seen = 0;
}

/** An in-memory connection that hands out `data` in chunks of `chunk` bytes. */
class MemoryConn implements Readable {
  #pos = 0;
  constructor(readonly data: Uint8Array, readonly chunk: number) {}
  read(p: Uint8Array): Promise<number | null> {
    if (this.#pos >= this.data.length) return Promise.resolve(null);
    const n = Math.min(this.chunk, p.length, this.data.length - this.#pos);
    p.set(this.data.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return Promise.resolve(n);
  }
}

/** A connection that accepts everything at once. */
class NullConn implements Writable {
  bytes = 0;
  write(p: Uint8Array): Promise<number> {
    this.bytes += p.length;
    sink = (sink + p[0]) | 0;
    return Promise.resolve(p.length);
  }
}

for (const size of SIZES) {
  const label = `${FRAMES} x ${size === 4096 ? "4KiB" : `${size}B`} frames`;
  const stream = buildStream(size);
  const payloads = Array.from({ length: 16 }, (_, i) => payloadOf(size, i));

  // ---- decode -------------------------------------------------------------
  const decodeGroup = `decode ${label}`;

  Deno.bench({
    name: `parseFrames, one buffer (${label})`,
    group: decodeGroup,
    baseline: true,
    fn() {
      parseFrames(stream, 0, stream.length, onFrame);
      expectAll();
    },
  });

  Deno.bench({
    name: `FrameDecoder.push, one chunk (${label})`,
    group: decodeGroup,
    fn() {
      new FrameDecoder().push(stream, onFrame);
      expectAll();
    },
  });

  Deno.bench({
    name: `FrameDecoder.push, ${MSS}-byte chunks (${label})`,
    group: decodeGroup,
    fn() {
      const dec = new FrameDecoder();
      for (let off = 0; off < stream.length; off += MSS) {
        dec.push(stream.subarray(off, off + MSS), onFrame);
      }
      expectAll();
    },
  });

  const reader = (chunk: number) => async () => {
    const r = new FrameReader(new MemoryConn(stream, chunk));
    while (await r.read(onFrame));
    expectAll();
  };
  Deno.bench({
    name: `FrameReader.read, 64 KiB reads (${label})`,
    group: decodeGroup,
    fn: reader(64 * 1024),
  });
  Deno.bench({
    name: `FrameReader.read, ${MSS}-byte reads (${label})`,
    group: decodeGroup,
    fn: reader(MSS),
  });

  // ---- encode -------------------------------------------------------------
  const encodeGroup = `encode ${label}`;

  Deno.bench({
    name: `encodeFrame, one allocation per frame (${label})`,
    group: encodeGroup,
    baseline: true,
    fn() {
      for (let i = 0; i < FRAMES; i++) {
        const f = encodeFrame(0x0101 + (i % 5), payloads[i & 15]);
        sink = (sink + f[4]) | 0;
      }
    },
  });

  const writerConn = new NullConn();
  const writer = new FrameWriter(writerConn);
  Deno.bench({
    name: `FrameWriter.write (copy) + flush (${label})`,
    group: encodeGroup,
    async fn() {
      for (let i = 0; i < FRAMES; i++) writer.write(0x0101 + (i % 5), payloads[i & 15]);
      await writer.flush();
    },
  });

  const reserveConn = new NullConn();
  const reserveWriter = new FrameWriter(reserveConn);
  Deno.bench({
    name: `FrameWriter.reserve + fill + flush (${label})`,
    group: encodeGroup,
    async fn() {
      for (let i = 0; i < FRAMES; i++) {
        reserveWriter.reserve(0x0101 + (i % 5), size).set(payloads[i & 15]);
      }
      await reserveWriter.flush();
    },
  });

  const pacedConn = new NullConn();
  const pacedWriter = new FrameWriter(pacedConn, { highWaterMark: 64 * 1024 });
  Deno.bench({
    name: `FrameWriter.reserve, awaiting ready at a 64 KiB mark (${label})`,
    group: encodeGroup,
    async fn() {
      for (let i = 0; i < FRAMES; i++) {
        if (pacedWriter.full) await pacedWriter.ready;
        pacedWriter.reserve(0x0101 + (i % 5), size).set(payloads[i & 15]);
      }
      await pacedWriter.flush();
    },
  });
}
