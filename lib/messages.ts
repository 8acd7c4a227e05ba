/**
 * Codecs for the normative messages of PROTOCOL.md: the control plane and
 * client requests/replies. Type numbers are fixed; see PROTOCOL.md.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { encodeFrame, MAX_PAYLOAD } from "./frame.ts";

/** Control plane (PROTOCOL.md "Control plane"). */
export const PUSH_LOAD_INFO = 0x0000;
/** Heartbeat. */
export const HELLO = 0x0001;
/** Heartbeat answer. */
export const HELLO_ACK = 0x0002;
/** Protocol error; the sender closes after it. */
export const ERROR = 0x00ff;

/** Client requests. */
export const SET = 0x0101;
/** Read a key. */
export const GET = 0x0102;
/** Delete a key. */
export const DEL = 0x0103;
/** Answered by the LB node itself. */
export const PING = 0x0104;
/** Ask for the least loaded LB node. */
export const NODE = 0x0105;

/** Replies. */
export const OK = 0x0181;
/** A value. */
export const VALUE = 0x0182;
/** Absent key. */
export const NIL = 0x0183;
/** `host:port` of an LB node. */
export const NODE_ADDR = 0x0184;
/** Request failed; body is the reason. */
export const ERR = 0x018f;

/** The longest key a request may carry. */
export const MAX_KEY = 1024;
/** Bytes before the key in a request payload: `u32 id | u16 keyLen`. */
export const REQUEST_HEADER = 6;
/** Bytes before the body in a reply payload: `u32 id`. */
export const REPLY_HEADER = 4;

/** True for the client request types of PROTOCOL.md. */
export function isRequestType(type: number): boolean {
  return type >= SET && type <= NODE;
}

/** True for the reply types of PROTOCOL.md. */
export function isReplyType(type: number): boolean {
  return type === OK || type === VALUE || type === NIL || type === NODE_ADDR || type === ERR;
}

/** A decoded client request. `key` and `value` are views into the payload. */
export interface Request {
  /** The request frame type. */
  type: number;
  /** The client's request id, echoed in the reply. */
  id: number;
  /** The key bytes. */
  key: Uint8Array;
  /** The value bytes (empty when the type carries none). */
  value: Uint8Array;
}

/** A decoded reply. `body` is a view into the payload. */
export interface Reply {
  /** The reply frame type. */
  type: number;
  /** The id of the request answered. */
  id: number;
  /** The reply body after the id. */
  body: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads the big-endian u32 at `off`. */
export function readU32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) >>> 0) + ((b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]);
}

/** Writes `v` as a big-endian u32 at `off`. */
export function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

/**
 * Decodes a request payload. Throws {@linkcode ProtocolError} when the payload
 * does not fit the layout (too short, keyLen past the end). Content limits
 * (empty or long key) are left to {@linkcode requestProblem}: they earn `ERR`,
 * not a closed connection.
 */
export function decodeRequest(type: number, payload: Uint8Array): Request {
  if (payload.length < REQUEST_HEADER) {
    throw new ProtocolError(`request payload of ${payload.length} bytes is shorter than 6`);
  }
  const keyLen = (payload[4] << 8) | payload[5];
  if (REQUEST_HEADER + keyLen > payload.length) {
    throw new ProtocolError(`keyLen ${keyLen} runs past the payload`);
  }
  return {
    type,
    id: readU32(payload, 0),
    key: payload.subarray(REQUEST_HEADER, REQUEST_HEADER + keyLen),
    value: payload.subarray(REQUEST_HEADER + keyLen),
  };
}

/**
 * What is wrong with a well-framed request's content, or `undefined` when
 * nothing is. The reason is the `ERR` body sent back.
 */
export function requestProblem(type: number, keyLen: number, valueLen: number): string | undefined {
  switch (type) {
    case SET:
    case GET:
    case DEL:
      if (keyLen === 0) return "empty key";
      if (keyLen > MAX_KEY) return "key too long";
      if (type !== SET && valueLen > 0) return "unexpected value";
      return undefined;
    case PING:
    case NODE:
      if (keyLen !== 0 || valueLen !== 0) return "unexpected key or value";
      return undefined;
    default:
      return "unknown request";
  }
}

/** Encodes a whole request frame in one allocation. */
export function encodeRequest(
  type: number,
  id: number,
  key: Uint8Array = EMPTY,
  value: Uint8Array = EMPTY,
): Uint8Array {
  if (!isRequestType(type)) throw new RangeError(`0x${type.toString(16)} is not a request type`);
  if (key.length > MAX_KEY) throw new RangeError(`key of ${key.length} bytes exceeds ${MAX_KEY}`);
  const len = REQUEST_HEADER + key.length + value.length;
  if (len > MAX_PAYLOAD) throw new RangeError(`request of ${len} bytes exceeds ${MAX_PAYLOAD}`);
  const out = new Uint8Array(4 + len);
  out[0] = type >>> 8;
  out[1] = type & 0xff;
  out[2] = len >>> 8;
  out[3] = len & 0xff;
  writeU32(out, 4, id >>> 0);
  out[8] = key.length >>> 8;
  out[9] = key.length & 0xff;
  out.set(key, 10);
  out.set(value, 10 + key.length);
  return out;
}

/** Decodes a reply payload; throws {@linkcode ProtocolError} if shorter than 4. */
export function decodeReply(type: number, payload: Uint8Array): Reply {
  if (payload.length < REPLY_HEADER) {
    throw new ProtocolError(`reply payload of ${payload.length} bytes is shorter than 4`);
  }
  if ((type === OK || type === NIL) && payload.length !== REPLY_HEADER) {
    throw new ProtocolError(`reply 0x${type.toString(16)} carries no body`);
  }
  return { type, id: readU32(payload, 0), body: payload.subarray(REPLY_HEADER) };
}

/** Encodes a whole reply frame in one allocation. */
export function encodeReply(type: number, id: number, body: Uint8Array = EMPTY): Uint8Array {
  if (!isReplyType(type)) throw new RangeError(`0x${type.toString(16)} is not a reply type`);
  const len = REPLY_HEADER + body.length;
  if (len > MAX_PAYLOAD) throw new RangeError(`reply of ${len} bytes exceeds ${MAX_PAYLOAD}`);
  const out = new Uint8Array(4 + len);
  out[0] = type >>> 8;
  out[1] = type & 0xff;
  out[2] = len >>> 8;
  out[3] = len & 0xff;
  writeU32(out, 4, id >>> 0);
  out.set(body, 8);
  return out;
}

/** UTF-8 encode. */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** UTF-8 decode. */
export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b);
}

/** PROTOCOL.md `PUSH_LOAD_INFO` required fields; unknown fields are kept. */
export interface LoadInfo {
  /** Name of the LB node. */
  node: string;
  /** The node's client `host:port`. */
  addr: string;
  /** Client connections open on the node. */
  connections: number;
  /** Requests accepted and not yet answered. */
  inflight: number;
  /** Requests answered per second, recent. */
  rps: number;
  /** Any further fields, kept as received. */
  [extra: string]: unknown;
}

/** Encodes a `PUSH_LOAD_INFO` frame. */
export function encodeLoadInfo(info: LoadInfo): Uint8Array {
  return encodeFrame(PUSH_LOAD_INFO, utf8(JSON.stringify(info)));
}

/**
 * Decodes and validates a `PUSH_LOAD_INFO` payload. Throws
 * {@linkcode ProtocolError} when it is not a JSON object with the required
 * fields of the right types.
 */
export function decodeLoadInfo(payload: Uint8Array): LoadInfo {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(payload));
  } catch {
    throw new ProtocolError("PUSH_LOAD_INFO is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ProtocolError("PUSH_LOAD_INFO is not a JSON object");
  }
  const o = v as Record<string, unknown>;
  if (typeof o.node !== "string" || o.node === "") {
    throw new ProtocolError("PUSH_LOAD_INFO.node must be a non-empty string");
  }
  if (typeof o.addr !== "string" || !/^.+:\d{1,5}$/.test(o.addr)) {
    throw new ProtocolError("PUSH_LOAD_INFO.addr must be host:port");
  }
  for (const f of ["connections", "inflight", "rps"] as const) {
    const n = o[f];
    if (typeof n !== "number" || !Number.isFinite(n) || n < 0) {
      throw new ProtocolError(`PUSH_LOAD_INFO.${f} must be a non-negative number`);
    }
  }
  return o as LoadInfo;
}

/** Encodes an `ERROR` frame with a UTF-8 reason (cut to fit a frame). */
export function encodeError(reason: string): Uint8Array {
  const b = utf8(reason);
  return encodeFrame(ERROR, b.length > MAX_PAYLOAD ? b.subarray(0, MAX_PAYLOAD) : b);
}
