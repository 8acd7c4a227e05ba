/**
 * lbkit's own frames (PROTOCOL.md's "yours" ranges), documented in
 * docs/PROTOCOL-INTERNAL.md.
 *
 * LB node <-> worker (0x02xx): requests and replies keep the client layout
 * (`u32 id | u16 keyLen | key | value`, `u32 id | body`) with the type moved up
 * by 0x0100 and the LB's own id in place of the client's, so forwarding is one
 * copy and an id rewrite. Registration and membership are JSON.
 *
 * @module
 */

import { encodeFrame } from "./frame.ts";
import { utf8 } from "./messages.ts";

/** Offset from a client request/reply type to its LB<->worker twin. */
export const WORKER_OFFSET = 0x0100;

/** LB -> worker: SET. */
export const W_SET = 0x0201;
/** LB -> worker: GET. */
export const W_GET = 0x0202;
/** LB -> worker: DEL. */
export const W_DEL = 0x0203;
/** Worker -> LB: OK. */
export const W_OK = 0x0281;
/** Worker -> LB: VALUE. */
export const W_VALUE = 0x0282;
/** Worker -> LB: NIL. */
export const W_NIL = 0x0283;
/** Worker -> LB: ERR. */
export const W_ERR = 0x028f;

/** Worker -> master: `{"id","addr"}` JSON; first frame on a worker link. */
export const W_REGISTER = 0x0210;
/** Master -> worker: `{"peers":[{id,addr}],"exportFrom"?:id}` JSON. */
export const W_WELCOME = 0x0211;
/** Worker -> master: status JSON (keys, digest, inflight, ready). */
export const W_STATUS = 0x0212;
/** Master -> worker: a peer joined `{id, addr, exportTo?: boolean}`. */
export const W_PEER_UP = 0x0213;
/** Master -> worker: a peer left `{id}`. */
export const W_PEER_DOWN = 0x0214;
/** Worker -> master: the full export was applied; ready for traffic. */
export const W_READY = 0x0215;
/** LB -> worker: first frame of a slave's data connection, `{node}` JSON. */
export const W_LB_HELLO = 0x0216;

/** True for a worker-bound request type. */
export function isWorkerRequest(type: number): boolean {
  return type >= W_SET && type <= W_DEL;
}

/** True for a worker reply type. */
export function isWorkerReply(type: number): boolean {
  return type === W_OK || type === W_VALUE || type === W_NIL || type === W_ERR;
}

/** Encodes a frame whose payload is JSON. */
export function encodeJson(type: number, value: unknown): Uint8Array {
  return encodeFrame(type, utf8(JSON.stringify(value)));
}

/** Worker -> master: a peer did not confirm in time `{id}`; drop it. */
export const W_PEER_FAILED = 0x0217;
/** Master -> worker: stream a full export to `{id, addr}`. */
export const W_EXPORT = 0x0218;

/** Worker -> worker: first frame of a peer link, `{id}` JSON. */
export const P_HELLO = 0x0300;
/**
 * Worker -> worker: a write. `u32 seq | f64 ver | u32 node | u16 keyLen |
 * key | value`; seq 0 wants no ack (export, forwarding).
 */
export const P_SET = 0x0301;
/** Worker -> worker: a delete (tombstone), same layout without value. */
export const P_DEL = 0x0302;
/** Worker -> worker: `u32 seq` applied. */
export const P_ACK = 0x0303;
/** Worker -> worker: the full export is complete `{count}`. */
export const P_EXPORT_DONE = 0x0304;

/** Bytes before the key in a P_SET/P_DEL payload. */
export const P_HEADER = 18;

/** Slave -> master: "I am an lbkit slave: send me membership and the table." */
export const T_SUBSCRIBE = 0x0400;
/** Master -> slave: `{term, workers:[{id,addr}]}`, the ready workers. */
export const T_MEMBERS = 0x0401;
/** Master -> slave: `{nodes:[{node,addr,connections,inflight,rps}]}` load table. */
export const T_TABLE = 0x0402;
/**
 * Promoted slave -> whoever holds the VIP: `{term, id}`. A master whose term
 * is lower steps down and releases the VIP.
 */
export const T_CLAIM = 0x0403;

/** The `W_ERR` reason of a replica that is resyncing: the LB tries another. */
export const NOT_READY = "not ready";
const NOT_READY_BYTES = new TextEncoder().encode(NOT_READY);

/** True for a `W_ERR` payload (`u32 id | reason`) saying {@linkcode NOT_READY}. */
export function isNotReady(payload: Uint8Array): boolean {
  if (payload.length !== 4 + NOT_READY_BYTES.length) return false;
  for (let i = 0; i < NOT_READY_BYTES.length; i++) {
    if (payload[4 + i] !== NOT_READY_BYTES[i]) return false;
  }
  return true;
}
