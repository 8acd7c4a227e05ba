import assert from "node:assert/strict";
import fc from "fast-check";
import { filled, sameBytes } from "../tests/bytes.ts";
import { ProtocolError } from "./errors.ts";
import { FrameDecoder, MAX_PAYLOAD } from "./frame.ts";
import {
  decodeLoadInfo,
  decodeReply,
  decodeRequest,
  DEL,
  encodeError,
  encodeLoadInfo,
  encodeReply,
  encodeRequest,
  ERR,
  ERROR,
  fromUtf8,
  GET,
  HELLO,
  HELLO_ACK,
  isReplyType,
  isRequestType,
  type LoadInfo,
  MAX_KEY,
  NIL,
  NODE,
  NODE_ADDR,
  OK,
  PING,
  PUSH_LOAD_INFO,
  readU32,
  REPLY_HEADER,
  REQUEST_HEADER,
  requestProblem,
  SET,
  utf8,
  VALUE,
  writeU32,
} from "./messages.ts";

const RUNS = 1000;
const REQUEST_TYPES = [SET, GET, DEL, PING, NODE];
const REPLY_TYPES = [OK, VALUE, NIL, NODE_ADDR, ERR];
/** The largest value a request with a key of `keyLen` bytes can carry. */
const maxValue = (keyLen: number) => MAX_PAYLOAD - REQUEST_HEADER - keyLen;
/** The largest reply body. */
const MAX_BODY = MAX_PAYLOAD - REPLY_HEADER;

// ---------------------------------------------------------------------------
// Helpers

/** Decodes exactly one frame from `bytes` through the real frame decoder. */
function oneFrame(bytes: Uint8Array): { type: number; payload: Uint8Array } {
  const frames: { type: number; payload: Uint8Array }[] = [];
  const dec = new FrameDecoder();
  dec.push(bytes, (type, payload) => {
    frames.push({ type, payload: payload.slice() });
  });
  assert.equal(frames.length, 1, "one frame");
  assert.equal(dec.pending, 0, "no leftover");
  return frames[0];
}

/** A hand-built request payload: `u32 id | u16 keyLen | key | value`. */
function requestPayload(id: number, keyLen: number, rest: Uint8Array): Uint8Array {
  const p = new Uint8Array(6 + rest.length);
  p[0] = (id >>> 24) & 0xff;
  p[1] = (id >>> 16) & 0xff;
  p[2] = (id >>> 8) & 0xff;
  p[3] = id & 0xff;
  p[4] = (keyLen >> 8) & 0xff;
  p[5] = keyLen & 0xff;
  p.set(rest, 6);
  return p;
}

function throwsProtocol(fn: () => unknown, what: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ProtocolError, what);
}

// ---------------------------------------------------------------------------
// Arbitraries

const idArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff) },
);

/**
 * Bytes of length 0..max: short random arrays (shrink-capped) for byte
 * variety, long ones from (length, seed) so they are cheap and shrink fast.
 */
function bytesArb(min: number, max: number): fc.Arbitrary<Uint8Array> {
  const short = Math.min(max, min + 64);
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.limitShrink(
        fc.uint8Array({ minLength: min, maxLength: short, size: "max" }),
        100,
      ),
    },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.integer({ min, max }), fc.integer()).map(([n, s]) => filled(n, s)),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom(min, max), fc.integer()).map(([n, s]) => filled(n, s)),
    },
  );
}

const keyArb = bytesArb(1, MAX_KEY);
/** A key and the largest-or-smaller value that still fits in one frame. */
const keyValueArb = keyArb.chain((key) =>
  bytesArb(0, maxValue(key.length)).map((value) => ({ key, value }))
);

interface Req {
  type: number;
  id: number;
  key: Uint8Array;
  value: Uint8Array;
}

/** Requests that are well formed in content, one arbitrary per type. */
const validRequestArb: fc.Arbitrary<Req> = fc.oneof(
  fc.record({ type: fc.constant(SET), id: idArb, kv: keyValueArb }).map(({ type, id, kv }) => ({
    type,
    id,
    ...kv,
  })),
  fc.record({
    type: fc.constantFrom(GET, DEL),
    id: idArb,
    key: keyArb,
    value: fc.constant(new Uint8Array(0)),
  }),
  fc.record({
    type: fc.constantFrom(PING, NODE),
    id: idArb,
    key: fc.constant(new Uint8Array(0)),
    value: fc.constant(new Uint8Array(0)),
  }),
);

/** Any request the codec can carry, content rules aside (empty keys, values on GET, ...). */
const anyRequestArb: fc.Arbitrary<Req> = fc.record({
  type: fc.constantFrom(...REQUEST_TYPES),
  id: idArb,
  kv: bytesArb(0, MAX_KEY).chain((key) =>
    bytesArb(0, maxValue(key.length)).map((value) => ({ key, value }))
  ),
}).map(({ type, id, kv }) => ({ type, id, ...kv }));

/** Strings that survive UTF-8 (no lone surrogates) and do not start with a BOM (see below). */
const textArb = (maxLength: number) =>
  fc.string({ unit: "binary", maxLength, size: "max" }).filter((s) => !s.startsWith("\uFEFF"));

const hostPortArb = fc
  .tuple(
    fc.oneof(
      fc.ipV4(),
      fc.domain(),
      fc.constantFrom("localhost", "127.0.0.1", "[::1]", "::1"),
    ),
    fc.integer({ min: 0, max: 65535 }),
  )
  .map(([h, p]) => `${h}:${p}`);

const replyArb = fc.oneof(
  fc.record({
    type: fc.constantFrom(OK, NIL),
    id: idArb,
    body: fc.constant(new Uint8Array(0)),
  }),
  fc.record({ type: fc.constant(VALUE), id: idArb, body: bytesArb(0, MAX_BODY) }),
  fc.record({ type: fc.constant(NODE_ADDR), id: idArb, body: hostPortArb.map(utf8) }),
  fc.record({ type: fc.constant(ERR), id: idArb, body: textArb(200).map(utf8) }),
);

const REQUIRED = ["node", "addr", "connections", "inflight", "rps"];

const loadInfoArb: fc.Arbitrary<LoadInfo> = fc
  .record({
    node: fc.string({ minLength: 1, maxLength: 40, unit: "binary" }),
    addr: hostPortArb,
    connections: fc.nat(),
    inflight: fc.nat(),
    rps: fc.oneof(
      fc.double({ min: 0, max: 1e9, noNaN: true }),
      fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }),
    ),
    extra: fc.dictionary(
      fc.string({ maxLength: 12 }).filter((k) => !REQUIRED.includes(k)),
      fc.jsonValue({ maxDepth: 2 }),
      { maxKeys: 5 },
    ),
  })
  .map(({ extra, ...req }) => ({ ...extra, ...req }));

// ---------------------------------------------------------------------------
// Tests

Deno.test("type numbers are the normative ones", () => {
  assert.deepStrictEqual(
    [PUSH_LOAD_INFO, HELLO, HELLO_ACK, ERROR],
    [0x0000, 0x0001, 0x0002, 0x00ff],
  );
  assert.deepStrictEqual(REQUEST_TYPES, [0x0101, 0x0102, 0x0103, 0x0104, 0x0105]);
  assert.deepStrictEqual(REPLY_TYPES, [0x0181, 0x0182, 0x0183, 0x0184, 0x018f]);
  for (let t = 0; t <= 0xffff; t++) {
    assert.equal(isRequestType(t), REQUEST_TYPES.includes(t), `isRequestType(0x${t.toString(16)})`);
    assert.equal(isReplyType(t), REPLY_TYPES.includes(t), `isReplyType(0x${t.toString(16)})`);
  }
});

Deno.test("u32 ids", async (t) => {
  await t.step("writeU32/readU32 round-trip every u32, big-endian", () => {
    fc.assert(
      fc.property(idArb, fc.nat({ max: 8 }), (id, off) => {
        const b = new Uint8Array(off + 4 + 3).fill(0xaa);
        writeU32(b, off, id);
        assert.equal(readU32(b, off), id);
        assert.equal(b[off], id >>> 24);
        assert.equal(b[off + 3], id & 0xff);
        assert.equal(b[off - 1] ?? 0xaa, 0xaa);
        assert.equal(b[off + 4], 0xaa);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("0xFFFFFFFF and 0x80000000 read back as positive numbers", () => {
    const b = new Uint8Array(4);
    writeU32(b, 0, 0xffffffff);
    assert.deepStrictEqual([...b], [0xff, 0xff, 0xff, 0xff]);
    assert.equal(readU32(b, 0), 4294967295);
    writeU32(b, 0, 0x80000000);
    assert.equal(readU32(b, 0), 2147483648);
    for (const type of REQUEST_TYPES) {
      const f = oneFrame(encodeRequest(type, 0xffffffff));
      assert.equal(decodeRequest(f.type, f.payload).id, 0xffffffff);
    }
    for (const type of REPLY_TYPES) {
      const f = oneFrame(encodeReply(type, 0xffffffff));
      assert.equal(decodeReply(f.type, f.payload).id, 0xffffffff);
    }
  });
});

Deno.test("requests", async (t) => {
  await t.step("decode(encode(r)) = r for every request type (codec level)", () => {
    fc.assert(
      fc.property(anyRequestArb, (r) => {
        const bytes = encodeRequest(r.type, r.id, r.key, r.value);
        assert.equal(bytes.length, 4 + REQUEST_HEADER + r.key.length + r.value.length);
        const f = oneFrame(bytes);
        assert.equal(f.type, r.type);
        const d = decodeRequest(f.type, f.payload);
        assert.equal(d.type, r.type);
        assert.equal(d.id, r.id);
        sameBytes(d.key, r.key, "key");
        sameBytes(d.value, r.value, "value");
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("well-formed requests round-trip and have no problem", () => {
    fc.assert(
      fc.property(validRequestArb, (r) => {
        const f = oneFrame(encodeRequest(r.type, r.id, r.key, r.value));
        const d = decodeRequest(f.type, f.payload);
        assert.equal(d.id, r.id);
        sameBytes(d.key, r.key, "key");
        sameBytes(d.value, r.value, "value");
        assert.equal(requestProblem(d.type, d.key.length, d.value.length), undefined);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("key and value are zero-copy views of the payload", () => {
    const payload = requestPayload(7, 3, new Uint8Array([1, 2, 3, 4, 5]));
    const d = decodeRequest(SET, payload);
    assert.equal(d.key.buffer, payload.buffer);
    assert.equal(d.value.buffer, payload.buffer);
    assert.deepStrictEqual([...d.key], [1, 2, 3]);
    assert.deepStrictEqual([...d.value], [4, 5]);
  });

  await t.step("PING and NODE encode with keyLen 0", () => {
    for (const type of [PING, NODE]) {
      const b = encodeRequest(type, 42);
      assert.deepStrictEqual([...b], [type >> 8, type & 0xff, 0, 6, 0, 0, 0, 42, 0, 0]);
    }
  });

  await t.step("key limit: 1024 bytes accepted, 1025 rejected", () => {
    const k1024 = filled(MAX_KEY, 1);
    const k1025 = filled(MAX_KEY + 1, 1);
    for (const type of [SET, GET, DEL]) {
      const d = decodeRequest(type, oneFrame(encodeRequest(type, 1, k1024)).payload);
      sameBytes(d.key, k1024, "key");
      assert.equal(requestProblem(type, MAX_KEY, 0), undefined);
      assert.throws(() => encodeRequest(type, 1, k1025), RangeError);
      assert.equal(requestProblem(type, MAX_KEY + 1, 0), "key too long");
      // A well-framed request with a 1025-byte key decodes (it earns ERR, not a
      // closed connection) and requestProblem names the problem.
      const d2 = decodeRequest(type, requestPayload(9, MAX_KEY + 1, k1025));
      assert.equal(d2.key.length, MAX_KEY + 1);
      assert.equal(requestProblem(type, d2.key.length, d2.value.length), "key too long");
    }
  });

  await t.step("payload limit: 65535 accepted, 65536 rejected with RangeError", () => {
    for (const keyLen of [0, 1, 100, MAX_KEY]) {
      const key = filled(keyLen, 3);
      const ok = encodeRequest(SET, 5, key, filled(maxValue(keyLen), 4));
      assert.equal(ok.length, 4 + MAX_PAYLOAD);
      assert.deepStrictEqual([...ok.subarray(2, 4)], [0xff, 0xff]);
      const d = decodeRequest(SET, oneFrame(ok).payload);
      assert.equal(d.value.length, maxValue(keyLen));
      assert.throws(
        () => encodeRequest(SET, 5, key, new Uint8Array(maxValue(keyLen) + 1)),
        RangeError,
      );
    }
  });

  await t.step("not a request type → RangeError on encode", () => {
    for (const type of [0x0100, 0x0106, OK, ERROR, HELLO, 0x0201]) {
      assert.throws(() => encodeRequest(type, 1, utf8("k")), RangeError);
    }
  });

  await t.step("payload shorter than 6 → ProtocolError", () => {
    for (let n = 0; n < REQUEST_HEADER; n++) {
      for (const type of REQUEST_TYPES) {
        throwsProtocol(() => decodeRequest(type, new Uint8Array(n)), `${n} bytes`);
      }
    }
    assert.equal(decodeRequest(PING, new Uint8Array(6)).key.length, 0);
  });

  await t.step("keyLen past the end → ProtocolError; within → decodes", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...REQUEST_TYPES),
        idArb,
        fc.integer({ min: 0, max: 0xffff }),
        bytesArb(0, 2000),
        (type, id, keyLen, rest) => {
          const payload = requestPayload(id, keyLen, rest);
          if (keyLen > rest.length) {
            throwsProtocol(() => decodeRequest(type, payload), `keyLen ${keyLen} > ${rest.length}`);
          } else {
            const d = decodeRequest(type, payload);
            assert.equal(d.id, id);
            assert.equal(d.key.length, keyLen);
            assert.equal(d.value.length, rest.length - keyLen);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

Deno.test("requestProblem", async (t) => {
  await t.step("named cases", () => {
    assert.equal(requestProblem(SET, 0, 0), "empty key");
    assert.equal(requestProblem(SET, 0, 10), "empty key");
    assert.equal(requestProblem(GET, 0, 0), "empty key");
    assert.equal(requestProblem(DEL, 0, 0), "empty key");
    assert.equal(requestProblem(SET, 1, 0), undefined);
    assert.equal(requestProblem(SET, MAX_KEY, maxValue(MAX_KEY)), undefined);
    assert.equal(requestProblem(SET, MAX_KEY + 1, 0), "key too long");
    assert.equal(requestProblem(GET, MAX_KEY + 1, 0), "key too long");
    assert.equal(requestProblem(GET, 3, 1), "unexpected value");
    assert.equal(requestProblem(DEL, 3, 1), "unexpected value");
    assert.equal(requestProblem(PING, 0, 0), undefined);
    assert.equal(requestProblem(NODE, 0, 0), undefined);
    assert.equal(requestProblem(PING, 1, 0), "unexpected key or value");
    assert.equal(requestProblem(NODE, 0, 1), "unexpected key or value");
    assert.equal(requestProblem(0x0106, 1, 0), "unknown request");
    assert.equal(requestProblem(OK, 1, 0), "unknown request");
  });

  await t.step("matches the rules of PROTOCOL.md for every length", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...REQUEST_TYPES),
        fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(0, 1, 1023, 1024, 1025)),
        fc.oneof(fc.integer({ min: 0, max: MAX_PAYLOAD }), fc.constant(0)),
        (type, keyLen, valueLen) => {
          let want: string | undefined;
          if (type === PING || type === NODE) {
            want = keyLen !== 0 || valueLen !== 0 ? "unexpected key or value" : undefined;
          } else if (keyLen === 0) want = "empty key";
          else if (keyLen > MAX_KEY) want = "key too long";
          else if (type !== SET && valueLen > 0) want = "unexpected value";
          assert.equal(requestProblem(type, keyLen, valueLen), want);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

Deno.test("replies", async (t) => {
  await t.step("decode(encode(r)) = r for OK/VALUE/NIL/NODE_ADDR/ERR", () => {
    fc.assert(
      fc.property(replyArb, (r) => {
        const bytes = encodeReply(r.type, r.id, r.body);
        assert.equal(bytes.length, 4 + REPLY_HEADER + r.body.length);
        const f = oneFrame(bytes);
        assert.equal(f.type, r.type);
        const d = decodeReply(f.type, f.payload);
        assert.equal(d.type, r.type);
        assert.equal(d.id, r.id);
        sameBytes(d.body, r.body, "body");
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("text bodies (NODE_ADDR, ERR) survive UTF-8", () => {
    fc.assert(
      fc.property(fc.oneof(hostPortArb, textArb(300)), idArb, (text, id) => {
        for (const type of [NODE_ADDR, ERR]) {
          const d = decodeReply(type, oneFrame(encodeReply(type, id, utf8(text))).payload);
          assert.equal(fromUtf8(d.body), text);
        }
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("body limit: 65531 accepted, 65532 rejected with RangeError", () => {
    const ok = encodeReply(VALUE, 1, filled(MAX_BODY, 5));
    assert.equal(ok.length, 4 + MAX_PAYLOAD);
    assert.equal(decodeReply(VALUE, oneFrame(ok).payload).body.length, MAX_BODY);
    assert.throws(() => encodeReply(VALUE, 1, new Uint8Array(MAX_BODY + 1)), RangeError);
    assert.throws(() => encodeReply(ERR, 1, new Uint8Array(MAX_PAYLOAD)), RangeError);
  });

  await t.step("not a reply type → RangeError on encode", () => {
    for (const type of [SET, 0x0180, 0x0185, 0x018e, ERROR]) {
      assert.throws(() => encodeReply(type, 1), RangeError);
    }
  });

  await t.step("reply shorter than 4 → ProtocolError", () => {
    for (let n = 0; n < REPLY_HEADER; n++) {
      for (const type of REPLY_TYPES) {
        throwsProtocol(() => decodeReply(type, new Uint8Array(n)), `${n} bytes`);
      }
    }
  });

  await t.step("OK and NIL with a body → ProtocolError; the others accept any body", () => {
    fc.assert(
      fc.property(idArb, bytesArb(1, 300), (id, body) => {
        const payload = new Uint8Array(4 + body.length);
        writeU32(payload, 0, id);
        payload.set(body, 4);
        throwsProtocol(() => decodeReply(OK, payload), "OK with body");
        throwsProtocol(() => decodeReply(NIL, payload), "NIL with body");
        for (const type of [VALUE, NODE_ADDR, ERR]) {
          assert.equal(decodeReply(type, payload).body.length, body.length);
        }
      }),
      { numRuns: RUNS },
    );
    // Exactly 4 bytes is fine for all of them, including an empty VALUE.
    for (const type of REPLY_TYPES) {
      assert.equal(decodeReply(type, new Uint8Array(4)).body.length, 0);
    }
  });
});

Deno.test("PUSH_LOAD_INFO", async (t) => {
  const valid = {
    node: "slave-a",
    addr: "127.0.0.1:5069",
    connections: 3,
    inflight: 0,
    rps: 120.5,
  };
  const payloadOf = (v: unknown) => utf8(typeof v === "string" ? v : JSON.stringify(v));

  await t.step("the example of PROTOCOL.md decodes", () => {
    const f = oneFrame(encodeLoadInfo(valid));
    assert.equal(f.type, PUSH_LOAD_INFO);
    assert.deepStrictEqual(decodeLoadInfo(f.payload), valid);
  });

  await t.step("decode(encode(info)) = info, unknown fields preserved", () => {
    fc.assert(
      fc.property(loadInfoArb, (info) => {
        const f = oneFrame(encodeLoadInfo(info));
        assert.equal(f.type, PUSH_LOAD_INFO);
        const got = decodeLoadInfo(f.payload);
        assert.deepStrictEqual(got, JSON.parse(JSON.stringify(info)));
        for (const k of REQUIRED) assert.equal(got[k], info[k]);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("field order and whitespace do not matter", () => {
    const text =
      ' \n{ "rps" : 0, "inflight": 2,"x":[1],"connections":1,\t"addr":"h:1","node":"n"} ';
    assert.deepStrictEqual(decodeLoadInfo(utf8(text)), {
      rps: 0,
      inflight: 2,
      x: [1],
      connections: 1,
      addr: "h:1",
      node: "n",
    });
  });

  await t.step("not JSON → ProtocolError", () => {
    for (const text of ["", "{", "nope", '{"node":"a",}', "{'node':'a'}", "NaN"]) {
      throwsProtocol(() => decodeLoadInfo(utf8(text)), JSON.stringify(text));
    }
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 50 }), (s) => {
        let isJson = true;
        try {
          JSON.parse(s);
        } catch {
          isJson = false;
        }
        fc.pre(!isJson);
        throwsProtocol(() => decodeLoadInfo(utf8(s)), JSON.stringify(s));
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("not an object → ProtocolError", () => {
    for (
      const v of ["[]", "[1,2]", "1", "null", '"s"', "true", "false", `[${JSON.stringify(valid)}]`]
    ) {
      throwsProtocol(() => decodeLoadInfo(utf8(v)), v);
    }
  });

  await t.step("each required field missing → ProtocolError", () => {
    for (const k of REQUIRED) {
      const o: Record<string, unknown> = { ...valid };
      delete o[k];
      throwsProtocol(() => decodeLoadInfo(payloadOf(o)), `without ${k}`);
    }
  });

  await t.step("each required field wrongly typed → ProtocolError (named cases)", () => {
    const bad: Record<string, unknown[]> = {
      node: [1, null, true, [], {}, ""],
      addr: [5069, null, [], {}, "", "127.0.0.1", "host:", ":5069", "host:port", "host:123456"],
      connections: ["3", null, true, [], {}, -1, "1e999"],
      inflight: ["0", null, false, [1], {}, -0.5],
      rps: ["120.5", null, true, [], {}, -1],
    };
    for (const [k, values] of Object.entries(bad)) {
      for (const v of values) {
        throwsProtocol(
          () => decodeLoadInfo(payloadOf({ ...valid, [k]: v })),
          `${k} = ${JSON.stringify(v)}`,
        );
      }
    }
    // Infinity cannot be written as JSON, but 1e999 parses to it.
    for (const k of ["connections", "inflight", "rps"]) {
      const text = JSON.stringify({ ...valid, [k]: 0 }).replace(`"${k}":0`, `"${k}":1e999`);
      throwsProtocol(() => decodeLoadInfo(utf8(text)), `${k} = 1e999`);
    }
  });

  await t.step("each required field wrongly typed → ProtocolError (property)", () => {
    const notString = fc.jsonValue().filter((v) => typeof v !== "string");
    const notNumber = fc.jsonValue().filter((v) => typeof v !== "number");
    fc.assert(
      fc.property(
        loadInfoArb,
        fc.constantFrom(...REQUIRED),
        notString,
        notNumber,
        (info, field, s, n) => {
          const wrong = field === "node" || field === "addr" ? s : n;
          const o: Record<string, unknown> = { ...info, [field]: wrong };
          throwsProtocol(() => decodeLoadInfo(payloadOf(o)), `${field} = ${JSON.stringify(wrong)}`);
        },
      ),
      { numRuns: RUNS },
    );
  });

  await t.step("an info too big for one frame → RangeError on encode", () => {
    assert.throws(() => encodeLoadInfo({ ...valid, pad: "x".repeat(MAX_PAYLOAD) }), RangeError);
  });
});

Deno.test("ERROR", async (t) => {
  await t.step("encodeError(reason) is an ERROR frame whose payload is the UTF-8 reason", () => {
    fc.assert(
      fc.property(textArb(500), (reason) => {
        const f = oneFrame(encodeError(reason));
        assert.equal(f.type, ERROR);
        sameBytes(f.payload, utf8(reason), "payload");
        assert.equal(fromUtf8(f.payload), reason);
      }),
      { numRuns: RUNS },
    );
  });

  await t.step("a reason longer than a frame is cut to 65535 bytes", () => {
    const reason = "x".repeat(MAX_PAYLOAD + 100);
    const f = oneFrame(encodeError(reason));
    assert.equal(f.payload.length, MAX_PAYLOAD);
    assert.equal(fromUtf8(f.payload), reason.slice(0, MAX_PAYLOAD));
    assert.equal(oneFrame(encodeError("y".repeat(MAX_PAYLOAD))).payload.length, MAX_PAYLOAD);
  });

  // KNOWN ISSUE (reported, not fixed): fromUtf8 uses `new TextDecoder()`,
  // which strips a leading U+FEFF, so a reason or NODE_ADDR/ERR body that
  // starts with a BOM does not round-trip. Fix: `new TextDecoder("utf-8",
  // { ignoreBOM: true })` (note decodeLoadInfo would then reject a
  // BOM-prefixed JSON payload, which it accepts today).
  await t.step({
    name: "a reason starting with U+FEFF round-trips (known issue)",
    ignore: true,
    fn: () => {
      assert.equal(fromUtf8(oneFrame(encodeError("\uFEFFx")).payload), "\uFEFFx");
    },
  });
});
