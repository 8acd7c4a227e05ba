/**
 * The lbkit frame (PROTOCOL.md "Frame"): `u16 type | u16 len | payload`,
 * big-endian, payload at most 65535 bytes.
 *
 * Decoding is incremental and zero-copy where it can be: frames are handed to
 * a callback as subarrays of the chunk (or of the reader's reused buffer), so
 * a handler must copy what it keeps past its own return.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";

/** Bytes in a frame header. */
export const HEADER_SIZE = 4;
/** The largest payload a frame can carry. */
export const MAX_PAYLOAD = 0xffff;
/** The largest frame, header included. */
export const MAX_FRAME: number = HEADER_SIZE + MAX_PAYLOAD;
/** Highest first byte of an lbkit frame type (ranges 0x00..0x04). */
export const MAX_TYPE_HIGH_BYTE = 0x04;

/**
 * Called once per whole frame; `payload` is only valid during the call.
 * Returning `false` pauses: parsing stops after this frame and the rest
 * stays buffered (backpressure inside one read).
 */
export type FrameHandler = (type: number, payload: Uint8Array) => unknown;

/**
 * A {@linkcode FrameHandler} that gets the payload as `buf[start, end)`
 * instead of a view: the data path's handlers read fields in place, as a
 * view per frame was a third of the bytes a balancer allocated. Same rules:
 * valid during the call only; `false` pauses.
 */
export type RawFrameHandler = (
  type: number,
  buf: Uint8Array,
  start: number,
  end: number,
) => unknown;

/**
 * Encodes one frame into a single new allocation.
 *
 * @example
 * ```ts
 * import { encodeFrame } from "./frame.ts";
 * const f = encodeFrame(0x0001); // HELLO
 * ```
 */
export function encodeFrame(type: number, payload?: Uint8Array): Uint8Array {
  const len = payload?.length ?? 0;
  checkType(type);
  if (len > MAX_PAYLOAD) throw new RangeError(`payload of ${len} bytes exceeds ${MAX_PAYLOAD}`);
  const out = new Uint8Array(HEADER_SIZE + len);
  writeHeader(out, 0, type, len);
  if (payload) out.set(payload, HEADER_SIZE);
  return out;
}

/** Writes a header at `offset` of `buf`. */
export function writeHeader(buf: Uint8Array, offset: number, type: number, len: number): void {
  buf[offset] = type >>> 8;
  buf[offset + 1] = type & 0xff;
  buf[offset + 2] = len >>> 8;
  buf[offset + 3] = len & 0xff;
}

function checkType(type: number): void {
  if (!Number.isInteger(type) || type < 0 || type > 0xffff) {
    throw new RangeError(`frame type ${type} is not a u16`);
  }
}

/**
 * Parses the whole frames in `buf[start:end]`, calling `onFrame` for each,
 * and returns the offset of the first byte not consumed (the start of a split
 * frame, or `end`). Throws {@linkcode ProtocolError} on a type whose first
 * byte is past the lbkit ranges, or one `accept` refuses.
 */
export function parseFrames(
  buf: Uint8Array,
  start: number,
  end: number,
  onFrame: FrameHandler,
  accept?: (type: number) => boolean,
): number {
  return scanFrames(buf, start, end, viewing(onFrame), accept);
}

/** {@linkcode parseFrames} with a {@linkcode RawFrameHandler}: no view per frame. */
export function scanFrames(
  buf: Uint8Array,
  start: number,
  end: number,
  onFrame: RawFrameHandler,
  accept?: (type: number) => boolean,
): number {
  let pos = start;
  while (end - pos >= HEADER_SIZE) {
    const hi = buf[pos];
    if (hi > MAX_TYPE_HIGH_BYTE) {
      throw new ProtocolError(`not an lbkit frame (first byte 0x${hi.toString(16)})`);
    }
    const type = (hi << 8) | buf[pos + 1];
    if (accept !== undefined && !accept(type)) {
      throw new ProtocolError(`unknown frame type 0x${type.toString(16).padStart(4, "0")}`);
    }
    const len = (buf[pos + 2] << 8) | buf[pos + 3];
    const frameEnd = pos + HEADER_SIZE + len;
    if (frameEnd > end) break;
    const go = onFrame(type, buf, pos + HEADER_SIZE, frameEnd);
    pos = frameEnd;
    if (go === false) break;
  }
  return pos;
}

/** Adapts a handler of views to the raw form. */
function viewing(onFrame: FrameHandler): RawFrameHandler {
  return (type, buf, start, end) => onFrame(type, buf.subarray(start, end));
}

/** Options for {@linkcode FrameDecoder} and {@linkcode FrameReader}. */
export interface FrameDecoderOptions {
  /**
   * Which types this receiver accepts; others are a {@linkcode ProtocolError}.
   * @default {undefined} every type whose first byte is 0x00..0x04
   */
  accept?: (type: number) => boolean;
}

/**
 * Incremental decoder for arbitrary chunks. Frames that lie whole in a chunk
 * are passed as subarrays of it; only the leftover of a split frame is copied.
 *
 * @example
 * ```ts
 * import { FrameDecoder } from "./frame.ts";
 * const d = new FrameDecoder();
 * d.push(new Uint8Array([0, 1, 0]), () => {});
 * d.push(new Uint8Array([0]), (type) => console.log(type)); // 1
 * ```
 */
export class FrameDecoder {
  #left = new Uint8Array(MAX_FRAME);
  #leftLen = 0;
  #accept: ((type: number) => boolean) | undefined;

  /** Creates a decoder; `options.accept` filters frame types. */
  constructor(options: FrameDecoderOptions = {}) {
    this.#accept = options.accept;
  }

  /** Bytes held of a split frame. */
  get pending(): number {
    return this.#leftLen;
  }

  /**
   * Feeds one chunk; calls `onFrame` for every frame it completes. After a
   * handler paused (returned `false`), the frames still held come first on
   * the next push (an empty chunk is enough).
   */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    if (this.#leftLen === 0) {
      // The common case: frames straight from the chunk, no copy.
      const rest = parseFrames(chunk, 0, chunk.length, onFrame, this.#accept);
      if (rest < chunk.length) this.#keep(chunk.subarray(rest));
      return;
    }
    // A split frame (or frames held by a pause) first: append, parse, compact.
    this.#keep(chunk);
    const left = this.#left;
    const pos = parseFrames(left, 0, this.#leftLen, onFrame, this.#accept);
    left.copyWithin(0, pos, this.#leftLen);
    this.#leftLen -= pos;
    this.#validate();
  }

  /** Appends to the held bytes, growing the buffer past one frame if a pause asks. */
  #keep(bytes: Uint8Array): void {
    const need = this.#leftLen + bytes.length;
    if (need > this.#left.length) {
      const next = new Uint8Array(Math.max(need, 2 * this.#left.length));
      next.set(this.#left.subarray(0, this.#leftLen));
      this.#left = next;
    }
    this.#left.set(bytes, this.#leftLen);
    this.#leftLen = need;
    this.#validate();
  }

  /** A held header is checked now, so garbage fails without waiting for its payload. */
  #validate(): void {
    if (this.#leftLen >= HEADER_SIZE) parseFrames(this.#left, 0, HEADER_SIZE, noop, this.#accept);
  }
}

function noop(): void {}

/** Anything with Deno.Conn's `read`. */
export interface Readable {
  /** Reads into `p`; resolves to the bytes read, or `null` at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/**
 * Reads frames from a connection into one reused buffer. Each `read()` call
 * waits for data, then hands every whole frame in it to the handler.
 */
export class FrameReader {
  #src: Readable;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #paused = false;
  #accept: ((type: number) => boolean) | undefined;

  #max: number;

  /**
   * The buffer starts at 16 KiB (a connection costs little) and doubles, up
   * to `bufferSize`, while reads fill it or a frame needs the room.
   */
  constructor(src: Readable, options: FrameDecoderOptions & { bufferSize?: number } = {}) {
    this.#src = src;
    this.#max = Math.max(options.bufferSize ?? 256 * 1024, 2 * MAX_FRAME);
    this.#buf = new Uint8Array(16 * 1024);
    this.#accept = options.accept;
  }

  /** Bytes held of a split frame. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /**
   * Reads once and delivers the frames completed. Resolves `false` at EOF.
   * Payloads passed to `onFrame` are overwritten by the next `read()`.
   * After a handler paused, the next call delivers the buffered frames
   * before reading again.
   */
  read(onFrame: FrameHandler): Promise<boolean> {
    return this.readRaw(viewing(onFrame));
  }

  /** {@linkcode read} with a {@linkcode RawFrameHandler}: no view per frame. */
  async readRaw(onFrame: RawFrameHandler): Promise<boolean> {
    if (this.#paused) {
      this.#paused = false;
      this.#parse(onFrame);
      return true;
    }
    let buf = this.#buf;
    const held = this.#end - this.#start;
    // Room for the whole split frame we hold (its header says how much).
    const need = held >= HEADER_SIZE
      ? HEADER_SIZE + ((buf[this.#start + 2] << 8) | buf[this.#start + 3])
      : HEADER_SIZE;
    if (need > buf.length || (this.#start === 0 && this.#end === buf.length)) {
      let size = buf.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(Math.min(Math.max(size, need), Math.max(this.#max, need)));
      next.set(buf.subarray(this.#start, this.#end));
      this.#buf = buf = next;
      this.#end = held;
      this.#start = 0;
    } else if (this.#start > 0 && buf.length - this.#end < Math.max(need - held, 4096)) {
      // Keep only the leftover of a split frame: move it to the front.
      buf.copyWithin(0, this.#start, this.#end);
      this.#end = held;
      this.#start = 0;
    }
    const room = buf.length - this.#end;
    const n = await this.#src.read(buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    // A read that filled the buffer: there is more; read bigger next time.
    if (n === room && buf.length < this.#max) this.#grow = true;
    this.#parse(onFrame);
    if (this.#grow && this.#start === this.#end) {
      this.#grow = false;
      this.#buf = new Uint8Array(Math.min(buf.length * 2, this.#max));
      this.#start = this.#end = 0;
    }
    return true;
  }

  #grow = false;

  #parse(onFrame: RawFrameHandler): void {
    const buf = this.#buf;
    this.#start = scanFrames(buf, this.#start, this.#end, onFrame, this.#accept);
    const left = this.#end - this.#start;
    if (left === 0) this.#start = this.#end = 0;
    else if (left >= HEADER_SIZE) {
      const len = (buf[this.#start + 2] << 8) | buf[this.#start + 3];
      // A whole frame is still buffered: the handler paused.
      this.#paused = HEADER_SIZE + len <= left;
    }
  }
}
