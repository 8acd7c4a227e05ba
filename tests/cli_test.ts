/**
 * The command line as a user meets it: `deno run --allow-net cli/main.ts ...`
 * for help, version and usage errors (exit 2, a clear message on stderr).
 *
 * @module
 */

import assert from "node:assert/strict";
import { MASTER_FLAGS } from "../cli/master.ts";
import { WORKER_FLAGS } from "../cli/worker.ts";
import { SLAVE_FLAGS } from "../cli/slave.ts";
import { CLIENT_FLAGS } from "../cli/client.ts";
import { DEMO_FLAGS } from "../cli/demo.ts";
import { BENCH_FLAGS } from "../cli/bench.ts";
import type { FlagTable } from "../cli/common.ts";
import { VERSION } from "../lib/version.ts";
import { MAIN } from "./helpers.ts";

const TABLES: Record<string, FlagTable> = {
  master: MASTER_FLAGS,
  worker: WORKER_FLAGS,
  slave: SLAVE_FLAGS,
  client: CLIENT_FLAGS,
  demo: DEMO_FLAGS,
  bench: BENCH_FLAGS,
};
const ROLES = Object.keys(TABLES);
const dec = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `deno run --allow-net cli/main.ts ...args` with stdin closed. Every case
 * here should exit at once; one that starts serving by mistake is killed
 * after `ms` and fails its exit-code check.
 */
async function lbkit(args: string[], ms = 20000): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    const out = await child.output();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
  }
}

Deno.test("lbkit --help: usage, every role, version, no environment variables", async () => {
  for (const flag of ["--help", "-h", "help"]) {
    const r = await lbkit([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^lbkit 0\.1\.0: /);
    assert.match(r.stdout, /Usage: lbkit ROLE \[flags\]/);
    for (const role of ROLES) assert.match(r.stdout, new RegExp(`^  ${role} +\\S`, "m"), role);
    assert.match(r.stdout, /lbkit --version/);
    assert.match(r.stdout, /lbkit help ROLE \| lbkit ROLE --help/);
    assert.match(r.stdout, /^Environment: none/m);
  }
});

Deno.test("lbkit with no role: usage on stderr, exit 2", async () => {
  const r = await lbkit([]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /Usage: lbkit ROLE/);
});

Deno.test("lbkit --version prints `lbkit 0.1.0`", async () => {
  const cfg = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(VERSION, cfg.version, "lib/version.ts and deno.json agree");
  for (const flag of ["--version", "-V", "version"]) {
    const r = await lbkit([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "lbkit 0.1.0\n");
    assert.equal(r.stderr, "");
  }
});

Deno.test("lbkit help ROLE and lbkit ROLE --help: the same text, every flag with its default", async () => {
  const runs = await Promise.all(
    ROLES.flatMap((role) => [lbkit(["help", role]), lbkit([role, "--help"]), lbkit([role, "-h"])]),
  );
  for (const [i, role] of ROLES.entries()) {
    const [viaHelp, viaFlag, viaShort] = runs.slice(3 * i, 3 * i + 3);
    for (const r of [viaHelp, viaFlag, viaShort]) {
      assert.equal(r.code, 0, `${role}: ${r.stderr}`);
      assert.equal(r.stderr, "", role);
    }
    assert.equal(viaFlag.stdout, viaHelp.stdout, `${role}: help ROLE = ROLE --help`);
    assert.equal(viaShort.stdout, viaHelp.stdout, `${role}: ROLE -h = ROLE --help`);
    const text = viaHelp.stdout;
    assert.match(text, new RegExp(`^Usage: lbkit ${role} \\[flags\\]`));
    const lines = text.split("\n");
    for (const [name, spec] of Object.entries(TABLES[role])) {
      const line = lines.find((l) => l.startsWith(`  --${name} `));
      assert.ok(line !== undefined, `${role}: --${name} is listed`);
      assert.match(line, /\(default: [^)]+\)/, `${role}: --${name} shows its default`);
      if (spec.default !== undefined) {
        assert.ok(line.includes(`(default: ${spec.default})`), `${role}: ${line}`);
      }
    }
    assert.ok(lines.some((l) => l.startsWith("  --help, -h")), `${role}: --help listed`);
  }
});

Deno.test("lbkit help of an unknown topic and an unknown role: exit 2, message on stderr", async () => {
  const [topic, role] = await Promise.all([lbkit(["help", "nope"]), lbkit(["nope"])]);
  assert.equal(topic.code, 2);
  assert.equal(topic.stdout, "");
  assert.match(topic.stderr, /^lbkit: no help for 'nope'/);
  assert.equal(role.code, 2);
  assert.equal(role.stdout, "");
  assert.match(role.stderr, /^lbkit: unknown role 'nope'/);
  assert.match(role.stderr, /Usage: lbkit ROLE/);
});

Deno.test("an unknown flag, a missing value, a stray argument: exit 2 and a clear message", async () => {
  const cases: [string[], RegExp][] = ROLES.map((
    role,
  ) => [[role, "--nope"], new RegExp(`^lbkit: ${role}: Unknown option '--nope'`)]);
  cases.push(
    [["master", "--port"], /^lbkit: master: Option '--port <value>' argument missing/],
    [["worker", "stray"], /^lbkit: worker: Unexpected argument 'stray'/],
    [["client", "--discover=yes"], /^lbkit: client: Option '--discover' does not take/],
  );
  const runs = await Promise.all(cases.map(([args]) => lbkit(args)));
  for (const [i, [args, re]] of cases.entries()) {
    const r = runs[i];
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, ${r.stderr}`);
    assert.equal(r.stdout, "", args.join(" "));
    assert.match(r.stderr, re, args.join(" "));
    assert.match(r.stderr, new RegExp(`Run 'lbkit ${args[0]} --help' for the flags`));
  }
});

Deno.test("a bad flag value: exit 2 and a message naming the flag, before anything binds", async () => {
  const cases: [string[], RegExp][] = [
    [["master", "--port", "abc"], /--port must be an integer from 0 to 65535, got "abc"/],
    [["master", "--worker-port", "70000"], /--worker-port must be an integer/],
    [["master", "--log-level", "loud"], /--log-level must be debug, info/],
    [["slave", "--port", "abc"], /--port must be an integer/],
    [["slave", "--master", "nohostport"], /--master: "nohostport" is not host:port/],
    [["worker", "--port=-1"], /--port must be an integer from 0 to 65535, got "-1"/],
    [["worker", "--ack", "some"], /--ack must be all or local, got "some"/],
    [["client", "--timeout", "soon"], /--timeout must be an integer/],
    [["demo", "--workers", "many"], /--workers must be an integer from 1 to 64, got "many"/],
  ];
  const runs = await Promise.all(cases.map(([args]) => lbkit(args)));
  for (const [i, [args, re]] of cases.entries()) {
    const r = runs[i];
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, ${r.stderr}`);
    assert.equal(r.stdout, "", `${args.join(" ")} printed no start-up line`);
    assert.match(r.stderr, /^lbkit: /m, args.join(" "));
    assert.match(r.stderr, re, args.join(" "));
    // Nothing started: no log line from a role that came up first.
    assert.doesNotMatch(r.stderr, /UP_LISTENING|listening/, args.join(" "));
  }
});
