/**
 * Permissions per role: the flag sets, their narrowing, and the drop at
 * start-up (`dropPermissions`) that a compiled binary relies on.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  COMPILE_PERMISSIONS,
  isRole,
  permissionFlags,
  ROLE_KEEPS,
  ROLE_PERMISSIONS,
  roleCommand,
  ROLES,
} from "../cli/permissions.ts";
import { MAIN, startCluster } from "./helpers.ts";
import { compileArgs, isDownloadFailure } from "../scripts/compile.ts";

const PROBE = new URL("./fixtures/drop_probe.ts", import.meta.url).pathname;
const dec = new TextDecoder();
const enc = new TextEncoder();

interface ProbeResult {
  dropped: string[];
  before: Record<string, string>;
  after: Record<string, string>;
}

/** Runs the probe, by default as `deno run -A` (every permission, like the compiled binary's union). */
async function probe(role: string, perms = ["-A"], ms = 30000): Promise<ProbeResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...perms, PROBE, role],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    const out = await child.output();
    assert.equal(out.code, 0, `probe ${role} failed: ${dec.decode(out.stderr)}`);
    return JSON.parse(dec.decode(out.stdout));
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
  }
}

const DENIED = ["NotCapable", "PermissionDenied"];

Deno.test("client under -A: can read and spawn before the drop, cannot after", async () => {
  const r = await probe("client");
  // Before: the process holds the union, so both work.
  assert.equal(r.before.read, "ok", "read before the drop");
  assert.equal(r.before.run, "ok", "run before the drop");
  // After: both denied, and the network is still there.
  assert.ok(DENIED.includes(r.after.read), `read after the drop: ${r.after.read}`);
  assert.ok(DENIED.includes(r.after.run), `run after the drop: ${r.after.run}`);
  assert.ok(DENIED.includes(r.after.env), `env after the drop: ${r.after.env}`);
  assert.ok(DENIED.includes(r.after.sys), `sys after the drop: ${r.after.sys}`);
  assert.equal(r.after.net, "ok", "net is kept");
  for (const k of ["read", "write", "run", "env", "ffi", "sys"]) {
    assert.ok(r.dropped.includes(k), `client drops ${k}: ${r.dropped}`);
  }
});

Deno.test("every server role drops read and run; bench keeps run", async () => {
  const roles = ["master", "worker", "slave", "demo", "bench"] as const;
  const results = await Promise.all(roles.map((r) => probe(r)));
  for (const [i, role] of roles.entries()) {
    const r = results[i];
    assert.equal(r.after.net, "ok", `${role} keeps net`);
    if (role === "bench") {
      assert.equal(r.after.run, "ok", "bench keeps run: it spawns clusters");
    } else {
      assert.ok(DENIED.includes(r.after.read), `${role} read after the drop: ${r.after.read}`);
      assert.ok(DENIED.includes(r.after.run), `${role} run after the drop: ${r.after.run}`);
    }
  }
});

Deno.test("dropPermissions does not fail where the kinds were never granted", async () => {
  const r = await probe("client", ["--allow-net"]);
  assert.ok(DENIED.includes(r.before.read), `read was never granted: ${r.before.read}`);
  assert.ok(DENIED.includes(r.after.run), `run: ${r.after.run}`);
  assert.equal(r.after.net, "ok");
  assert.deepEqual(r.dropped, ["read", "write", "run", "env", "ffi", "sys", "import"]);
});

Deno.test("no role's permission set is -A or --allow-all, and only net (+ run for bench)", () => {
  for (const role of ROLES) {
    const sets = [
      ROLE_PERMISSIONS[role],
      permissionFlags(role),
      permissionFlags(role, ["--connect", "127.0.0.1:1"]),
      roleCommand(role, MAIN, []),
      roleCommand(role, MAIN, [], true),
    ];
    for (const set of sets) {
      for (const flag of set) {
        assert.ok(flag !== "-A" && !flag.startsWith("--allow-all"), `${role}: ${set.join(" ")}`);
        if (flag.startsWith("-") && flag !== "-A") {
          const ok = flag === "--allow-net" || flag.startsWith("--allow-net=") ||
            (role === "bench" && flag === "--allow-run");
          assert.ok(ok, `${role}: unexpected ${flag}`);
        }
      }
    }
    assert.ok(isRole(role));
    assert.ok(Array.isArray(ROLE_KEEPS[role]));
  }
  assert.ok(!isRole("help"));
  assert.deepEqual([...COMPILE_PERMISSIONS].sort(), ["--allow-net", "--allow-run"]);
});

Deno.test("roleCommand keeps its shape: run, the role's wide set, main, role, flags", () => {
  assert.deepEqual(roleCommand("client", MAIN, ["--connect", "127.0.0.1:9"]), [
    "run",
    "--allow-net",
    MAIN,
    "client",
    "--connect",
    "127.0.0.1:9",
  ]);
  assert.deepEqual(roleCommand("bench", MAIN, ["--cluster"]), [
    "run",
    "--allow-net",
    "--allow-run",
    MAIN,
    "bench",
    "--cluster",
  ]);
  assert.deepEqual(roleCommand("client", MAIN, ["--connect", "127.0.0.1:9"], true), [
    "run",
    "--allow-net=127.0.0.1:9",
    MAIN,
    "client",
    "--connect",
    "127.0.0.1:9",
  ]);
});

Deno.test("permissionFlags narrows --allow-net where the flags name every address", () => {
  assert.deepEqual(permissionFlags("client", []), ["--allow-net=127.0.0.1:5059"]);
  assert.deepEqual(permissionFlags("client", ["--connect", "localhost:7000"]), [
    "--allow-net=localhost:7000",
  ]);
  assert.deepEqual(permissionFlags("client", ["--connect=[::1]:7000", "--timeout", "5"]), [
    "--allow-net=[::1]:7000",
  ]);
  assert.deepEqual(permissionFlags("client", ["--connect", ":7000"]), [
    "--allow-net=127.0.0.1:7000",
  ]);
  // --discover goes wherever the LB node says: not narrowable.
  assert.deepEqual(permissionFlags("client", ["--discover", "--connect", "h:1"]), ["--allow-net"]);
  // An address the client would reject: the wide set (the client exits 2).
  assert.deepEqual(permissionFlags("client", ["--connect", "nope"]), ["--allow-net"]);
  assert.deepEqual(permissionFlags("demo", ["--port", "0"]), ["--allow-net=127.0.0.1"]);
  // Roles that dial addresses learnt at run time keep the whole network.
  for (const role of ["master", "worker", "slave"] as const) {
    assert.deepEqual(permissionFlags(role, ["--port", "0"]), ["--allow-net"]);
  }
  assert.deepEqual(permissionFlags("bench", ["--cluster"]), ["--allow-net", "--allow-run"]);
});

/** Spawns `args` (a `deno` argv), feeds `input`, returns the output; kills it on the way out. */
async function runDeno(
  args: string[],
  input: string,
  ms = 30000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    const w = child.stdin.getWriter();
    await w.write(enc.encode(input)).catch(() => {});
    await w.close().catch(() => {});
    const out = await output;
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await output.catch(() => {});
  }
}

Deno.test("a client with the narrowed --allow-net talks to its LB node", async () => {
  const cluster = await startCluster(1);
  try {
    const addr = cluster.master.addrs.clients;
    const args = roleCommand("client", MAIN, ["--connect", addr], true);
    assert.equal(args[1], `--allow-net=${addr}`);
    const r = await runDeno(args, "set a 1\nget a\n");
    assert.equal(r.stdout, "OK\n1\n", r.stderr);
    assert.equal(r.code, 0);
  } finally {
    await cluster.stop();
  }
});

Deno.test("a demo with --allow-net=127.0.0.1 serves and replicates", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: roleCommand(
      "demo",
      MAIN,
      ["--port", "0", "--worker-port", "0", "--slave-port", "0", "--log-level", "warn"],
      true,
    ),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const status = child.status;
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), 30000);
  try {
    let buf = "";
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`demo exited before its start-up line: ${await stderr}`);
      buf += value;
    }
    const clients = /clients=(\S+)/.exec(buf)?.[1];
    assert.ok(clients, buf);
    // Two workers: writes replicate over the 127.0.0.1 mesh; reads hit both.
    const r = await runDeno(
      roleCommand("client", MAIN, ["--connect", clients], true),
      "set k v\nget k\nget k\nget k\n",
    );
    assert.equal(r.stdout, "OK\nv\nv\nv\n", r.stderr);
    assert.equal(r.code, 0);
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch {
      // exited already
    }
    await reader.cancel().catch(() => {});
    await status;
    await stderr;
  }
});

Deno.test("deno task compile: the union of the roles' permissions, and a clear download failure", () => {
  const args = compileArgs("dist/lbkit");
  assert.deepEqual(args, [
    "compile",
    "--allow-net",
    "--allow-run",
    "--include",
    "lib/receiver_thread.ts",
    "--output",
    "dist/lbkit",
    "cli/main.ts",
  ]);
  assert.ok(!args.includes("-A") && !args.some((a) => a.startsWith("--allow-all")));
  assert.deepEqual(compileArgs("dist/x.exe", "x86_64-pc-windows-msvc").slice(3, 5), [
    "--target",
    "x86_64-pc-windows-msvc",
  ]);
  // What deno 2.9.6 prints on a machine without the download.
  const offline =
    "Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip\n" +
    "error: Writing deno compile executable to temporary file 'dist/lbkit.tmp-1'\n" +
    "    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-" +
    "unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address";
  assert.ok(isDownloadFailure(offline));
  assert.ok(!isDownloadFailure("error: TS2322 [ERROR]: Type 'string' is not assignable"));
});
