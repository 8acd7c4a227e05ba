/**
 * `lbkit client`: PROTOCOL.md "Client command line". Commands are sent as
 * they are read (pipelined); replies are printed in input order.
 *
 * @module
 */

import { Client, ConnectionLostError, ReplyError } from "../lib/client.ts";
import { keyString } from "../lib/store.ts";
import {
  DEL,
  ERR,
  GET,
  NIL,
  NODE,
  NODE_ADDR,
  OK,
  PING,
  SET,
  utf8,
  VALUE,
} from "../lib/messages.ts";
import { type FlagTable, helpText, intFlag, parseFlags } from "./common.ts";

/** `lbkit client` flags. */
export const CLIENT_FLAGS: FlagTable = {
  connect: { type: "string", default: "127.0.0.1:5059", help: "LB node to talk to" },
  timeout: { type: "string", default: "10000", help: "per-command reply timeout in ms" },
  window: { type: "string", default: "1024", help: "commands in flight at most" },
  reconnect: {
    type: "string",
    default: "5000",
    help: "ms to keep reconnecting after the connection is lost (0 = give up at once)",
  },
  discover: {
    type: "boolean",
    help: "ask --connect for the least loaded LB node (NODE) and use that one",
  },
};

/** Help for `lbkit client`. */
export const CLIENT_HELP: string = helpText(
  "client",
  "Reads one command per line from stdin and prints one line per command, in\n" +
    "input order:\n" +
    "  set KEY VALUE...   -> OK          (VALUE is the rest of the line)\n" +
    "  get KEY            -> value or (nil)\n" +
    "  del KEY            -> OK or (nil)\n" +
    "  ping               -> PONG\n" +
    "  node               -> host:port of the least loaded LB node\n" +
    "Blank lines and lines starting with # are skipped. Exit status: 0 all\n" +
    "succeeded, 1 some line got ERR, 2 no connection or lost with commands\n" +
    "unanswered.",
  CLIENT_FLAGS,
);

/** A parsed command line, or the reason it is not one. */
export type Command =
  | { type: number; key?: Uint8Array; value?: Uint8Array }
  | { error: string };

/** Parses one input line (PROTOCOL.md). `null` for a line to skip. */
export function parseCommand(line: string): Command | null {
  const trimmed = line.trimStart();
  if (trimmed === "" || trimmed.startsWith("#")) return null;
  const sp = trimmed.indexOf(" ");
  const verb = (sp < 0 ? trimmed : trimmed.slice(0, sp)).toLowerCase();
  const after = sp < 0 ? "" : trimmed.slice(sp + 1).replace(/^ +/, "");
  const keyEnd = after.indexOf(" ");
  const key = after === "" ? undefined : keyEnd < 0 ? after : after.slice(0, keyEnd);
  // The value is the rest of the line after the key and one space.
  const rest = keyEnd < 0 ? undefined : after.slice(keyEnd + 1);
  switch (verb) {
    case "set":
      if (key === undefined || rest === undefined) return { error: "usage: set KEY VALUE" };
      return { type: SET, key: utf8(key), value: utf8(rest) };
    case "get":
    case "del":
      if (key === undefined || (rest !== undefined && rest.trim() !== "")) {
        return { error: `usage: ${verb} KEY` };
      }
      return { type: verb === "get" ? GET : DEL, key: utf8(key) };
    case "ping":
    case "node":
      if (key !== undefined) return { error: `usage: ${verb}` };
      return { type: verb === "ping" ? PING : NODE };
    default:
      return { error: `unknown command '${verb}'` };
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Formats a reply as PROTOCOL.md's output line (without the newline). */
export function formatReply(type: number, body: Uint8Array, request: number): Uint8Array {
  switch (type) {
    case OK:
      return enc.encode(request === PING ? "PONG" : "OK");
    case VALUE:
      return body;
    case NIL:
      return enc.encode("(nil)");
    case NODE_ADDR:
      return body;
    case ERR:
      return enc.encode(`ERR ${dec.decode(body)}`);
    default:
      return enc.encode(`ERR unexpected reply 0x${type.toString(16)}`);
  }
}

/** Runs `lbkit client`; resolves with the exit status. */
export async function clientCommand(argv: string[]): Promise<number> {
  const v = parseFlags("client", CLIENT_FLAGS, argv);
  if (v.help) {
    console.log(CLIENT_HELP);
    return 0;
  }
  const timeout = intFlag(v, "timeout", 0);
  const window = intFlag(v, "window", 1);
  const reconnect = intFlag(v, "reconnect", 0);
  const interactive = Deno.stdin.isTerminal();
  let client: Client;
  try {
    client = v.discover
      ? await Client.discover(String(v.connect), { timeout, reconnect })
      : await Client.connect(String(v.connect), { timeout, reconnect });
  } catch (err) {
    console.error(`lbkit client: cannot connect to ${v.connect}: ${(err as Error).message}`);
    return 2;
  }
  const out = new OrderedOutput();
  let sawErr = false;
  let lost = false;
  const run = (line: string): Promise<void> | null => {
    const cmd = parseCommand(line);
    if (cmd === null) return null;
    const slot = out.reserve();
    if ("error" in cmd) {
      sawErr = true;
      out.fill(slot, enc.encode(`ERR ${cmd.error}`));
      return null;
    }
    // Pipelined across keys, but a command waits for an earlier write to
    // the same key: `set a 1` then `get a` reads 1 whichever worker serves it.
    const k = cmd.key === undefined ? "" : keyString(cmd.key);
    const before = cmd.key === undefined ? undefined : lastWrite.get(k);
    const send = () => client.request(cmd.type, cmd.key, cmd.value);
    const sent = before === undefined ? send() : before.then(send);
    const done = sent.then(
      (r) => {
        if (r.type === ERR) sawErr = true;
        out.fill(slot, formatReply(r.type, r.body, cmd.type));
      },
      (err) => {
        if (err instanceof ConnectionLostError) lost = true;
        else sawErr = true;
        const reason = err instanceof ReplyError ? err.message : (err as Error).message;
        out.fill(slot, enc.encode(`ERR ${reason}`));
      },
    );
    if (cmd.type === SET || cmd.type === DEL) {
      lastWrite.set(k, done);
      done.then(() => {
        if (lastWrite.get(k) === done) lastWrite.delete(k);
      });
    }
    return done;
  };
  const lastWrite = new Map<string, Promise<void>>();
  const inflight = new Set<Promise<void>>();
  const prompt = () => interactive && Deno.stdout.writeSync(enc.encode("lbkit> "));
  prompt();
  for await (const line of readLines(Deno.stdin.readable)) {
    if (lost) break;
    const p = run(line);
    if (p !== null) {
      inflight.add(p);
      p.finally(() => inflight.delete(p));
      if (interactive) await p;
      else if (inflight.size >= window) await Promise.race(inflight);
    }
    if (interactive) {
      await out.flush();
      prompt();
    }
  }
  await Promise.all(inflight);
  await out.flush();
  client.close();
  await client.done;
  if (lost) {
    console.error("lbkit client: connection lost with commands unanswered");
    return 2;
  }
  return sawErr ? 1 : 0;
}

/** Lines of a byte stream, `\n` or `\r\n` terminated; the last may lack one. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const d = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += d.decode(chunk, { stream: true });
    let start = 0;
    let nl;
    while ((nl = buf.indexOf("\n", start)) >= 0) {
      const end = nl > start && buf.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      yield buf.slice(start, end);
      start = nl + 1;
    }
    buf = buf.slice(start);
  }
  buf += d.decode();
  if (buf !== "") yield buf.endsWith("\r") ? buf.slice(0, -1) : buf;
}

/** Lines printed in reservation order, however the replies arrive. */
class OrderedOutput {
  #slots: (Uint8Array | null)[] = [];
  #head = 0;
  #chunks: Uint8Array[] = [];
  #bytes = 0;

  reserve(): number {
    this.#slots.push(null);
    return this.#head + this.#slots.length - 1;
  }

  fill(slot: number, line: Uint8Array): void {
    this.#slots[slot - this.#head] = line;
    let i = 0;
    while (i < this.#slots.length && this.#slots[i] !== null) {
      this.#push(this.#slots[i]!);
      i++;
    }
    if (i > 0) {
      this.#slots.splice(0, i);
      this.#head += i;
    }
    if (this.#bytes > 64 * 1024) this.#write();
  }

  #push(line: Uint8Array): void {
    this.#chunks.push(line, NEWLINE);
    this.#bytes += line.length + 1;
  }

  #write(): void {
    if (this.#bytes === 0) return;
    const all = new Uint8Array(this.#bytes);
    let off = 0;
    for (const c of this.#chunks) {
      all.set(c, off);
      off += c.length;
    }
    this.#chunks = [];
    this.#bytes = 0;
    for (let o = 0; o < all.length;) o += Deno.stdout.writeSync(all.subarray(o));
  }

  flush(): Promise<void> {
    this.#write();
    return Promise.resolve();
  }
}

const NEWLINE = new Uint8Array([10]);
