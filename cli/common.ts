/**
 * What every subcommand shares: flag tables that make both the parser and
 * the help text, `fail()`, the operator console and signal handling.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isLogLevel, type LogLevel } from "../lib/log.ts";

/** Exit status for a usage error. */
export const EXIT_USAGE = 2;

/** Thrown by {@linkcode fail}; main prints it and exits. */
export class CliError extends Error {
  override name = "CliError";
  code: number;
  constructor(message: string, code = EXIT_USAGE) {
    super(message);
    this.code = code;
  }
}

/** Prints `lbkit: message` and exits non-zero (through main). */
export function fail(message: string, code = EXIT_USAGE): never {
  throw new CliError(message, code);
}

/** One flag: its type, default, and the line of help it gets. */
export interface FlagSpec {
  type: "string" | "boolean";
  default?: string;
  help: string;
  short?: string;
}

/** A subcommand's flags, `--help` included by {@linkcode parseFlags}. */
export type FlagTable = Record<string, FlagSpec>;

/** Parses argv against a table; unknown flags and stray arguments fail. */
export function parseFlags(
  role: string,
  table: FlagTable,
  argv: string[],
): Record<string, string | boolean | undefined> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, spec] of Object.entries(table)) {
    options[name] = spec.short ? { type: spec.type, short: spec.short } : { type: spec.type };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (err) {
    fail(`${role}: ${(err as Error).message}\nRun 'lbkit ${role} --help' for the flags.`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  for (const [name, spec] of Object.entries(table)) {
    if (values[name] === undefined && spec.default !== undefined) values[name] = spec.default;
  }
  return values;
}

/** The help text of a subcommand, generated from its flag table. */
export function helpText(role: string, summary: string, table: FlagTable): string {
  const rows = Object.entries(table).map(([name, s]) => {
    const flag = `--${name}${s.type === "string" ? " VALUE" : ""}`;
    // Every flag shows its default; a help line may spell it out itself.
    const def = s.default !== undefined
      ? ` (default: ${s.default})`
      : /\(default: /.test(s.help)
      ? ""
      : s.type === "boolean"
      ? " (default: off)"
      : " (default: none)";
    return `  ${flag.padEnd(24)} ${s.help}${def}`;
  });
  rows.push(`  ${"--help, -h".padEnd(24)} show this help`);
  return `Usage: lbkit ${role} [flags]\n\n${summary}\n\nFlags:\n${rows.join("\n")}\n`;
}

/** A flag as a non-negative integer, or a clear failure. */
export function intFlag(
  values: Record<string, unknown>,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const raw = values[name];
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    fail(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

/** A port flag (0 = ephemeral). */
export function portFlag(values: Record<string, unknown>, name: string): number {
  return intFlag(values, name, 0, 65535);
}

/** The `--log-level` flag. */
export function logLevelFlag(values: Record<string, unknown>): LogLevel {
  const v = String(values["log-level"]);
  if (!isLogLevel(v)) fail(`--log-level must be debug, info, warn, error or silent, got "${v}"`);
  return v;
}

/** The shared `--log-level` flag spec. */
export const LOG_LEVEL_FLAG: FlagSpec = {
  type: "string",
  default: "info",
  help: "debug | info | warn | error | silent",
};

/**
 * Runs a server role until SIGINT/SIGTERM or the operator's `quit`, then
 * calls `stop` and resolves. With a terminal on stdin, reads operator
 * commands (`status`, `help`, `quit`); EOF on a stdin that is not a terminal
 * never stops the server.
 */
export async function runServer(
  name: string,
  status: () => unknown,
  stop: () => Promise<void>,
): Promise<void> {
  const { promise: stopped, resolve: requestStop } = Promise.withResolvers<string>();
  const onSignal = (sig: string) => () => requestStop(sig);
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  if (Deno.stdin.isTerminal()) console.log(`${name}: type 'help' for operator commands`);
  const console_ = Deno.stdin.isTerminal() ? operatorConsole(name, status, requestStop) : null;
  const why = await stopped;
  console.error(`${name}: ${why}, shutting down`);
  for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  await stop();
  if (console_ !== null) Deno.exit(0); // a pending stdin read would keep us alive
}

async function operatorConsole(
  name: string,
  status: () => unknown,
  quit: (why: string) => void,
): Promise<void> {
  const dec = new TextDecoder();
  const buf = new Uint8Array(4096);
  let line = "";
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null) return; // EOF on a terminal: keep serving
    line += dec.decode(buf.subarray(0, n));
    let nl;
    while ((nl = line.indexOf("\n")) >= 0) {
      const cmd = line.slice(0, nl).trim();
      line = line.slice(nl + 1);
      if (cmd === "status") console.log(JSON.stringify(status(), null, 2));
      else if (cmd === "help") console.log("commands: status, help, quit");
      else if (cmd === "quit") return quit("quit");
      else if (cmd !== "") console.log(`${name}: unknown command '${cmd}' (try help)`);
    }
  }
}

/** Flags every LB node (master, slave) shares: queueing, threads, VIP hooks. */
export const BALANCER_FLAGS: FlagTable = {
  "queue-size": { type: "string", default: "4096", help: "request/response queue capacity" },
  timeout: { type: "string", default: "5000", help: "request deadline in ms" },
  threads: {
    type: "string",
    default: "1",
    help: "receiver threads on the client port (Web Workers with reusePort; see README)",
  },
  "node-host": {
    type: "string",
    help:
      "this node's own address (not the VIP): a master also listens for slaves there, so a new master on another host can tell it the higher term",
  },
  "vip-up": {
    type: "string",
    help:
      "shell command run before taking the VIP (needs --allow-run; env LBKIT_EVENT, LBKIT_VIP_HOST, LBKIT_TERM)",
  },
  "vip-down": {
    type: "string",
    help: "shell command run after giving the VIP up (needs --allow-run)",
  },
};

/** The `--vip-up` / `--vip-down` values, where given. */
export function hookFlags(
  v: Record<string, unknown>,
): { vipUp?: string; vipDown?: string; nodeHost?: string } {
  return {
    nodeHost: typeof v["node-host"] === "string" ? v["node-host"] : undefined,
    vipUp: typeof v["vip-up"] === "string" ? v["vip-up"] : undefined,
    vipDown: typeof v["vip-down"] === "string" ? v["vip-down"] : undefined,
  };
}
