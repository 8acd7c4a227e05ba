/**
 * End-to-end: `lbkit bench --cluster` as a subprocess, with the bench role's
 * own permission set, starting (and stopping) its own master and worker.
 *
 * @module
 */

import assert from "node:assert/strict";
import { roleCommand } from "../cli/permissions.ts";
import { MAIN } from "./helpers.ts";

Deno.test("lbkit bench --cluster --json: one JSON object, ops > 0, p50 <= p99", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: roleCommand("bench", MAIN, [
      "--cluster",
      "--workers",
      "1",
      "--duration",
      "1",
      "--warmup",
      "0",
      "--connections",
      "4",
      "--depth",
      "4",
      "--keys",
      "1000",
      "--json",
    ]),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Bounded: SIGTERM (the bench then stops its cluster) at 20 s, SIGKILL at 25 s.
  let done = false;
  const term = setTimeout(() => !done && child.kill("SIGTERM"), 20_000);
  const kill = setTimeout(() => !done && child.kill("SIGKILL"), 25_000);
  let out: Deno.CommandOutput;
  try {
    out = await child.output();
  } finally {
    done = true;
    clearTimeout(term);
    clearTimeout(kill);
  }
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `exit ${out.code}\nstdout: ${stdout}\nstderr: ${stderr}`);
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1, `one line of JSON, got:\n${stdout}`);
  const result = JSON.parse(lines[0]);
  assert.ok(Array.isArray(result.scenarios));
  assert.equal(result.scenarios.length, 1);
  const row = result.scenarios[0];
  assert.equal(row.name, "master-1w");
  assert.equal(row.depth, 4);
  assert.equal(row.connections, 4);
  assert.ok(row.ops > 0, `ops ${row.ops}`);
  assert.ok(row.p50_us > 0 && row.p50_us <= row.p99_us, `p50 ${row.p50_us} p99 ${row.p99_us}`);
  assert.ok(row.p99_us <= row.p999_us && row.p999_us <= row.max_us);
  assert.equal(row.errors, 0);
  assert.equal(row.misses, 0);
});
