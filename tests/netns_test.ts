/**
 * Failover across hosts: every node in its own network namespace on one
 * bridge, the VIP a real address moved by the `--vip-up`/`--vip-down` hooks
 * (`ip addr`, and a neighbour-cache flush in place of gratuitous ARP).
 * Needs root and iproute2; skipped cleanly elsewhere.
 */

import { equal, ok } from "node:assert/strict";
import { permissionFlags, type Role } from "../cli/permissions.ts";
import { MAIN } from "./helpers.ts";

const NET = "10.77.0";
const VIP = `${NET}.100`;
const NODES: Record<string, number> = { m: 2, s1: 3, s2: 4, w1: 5, w2: 6, w3: 7, c: 9 };
const ns = (n: string) => `lbk-${n}`;
const HEARTBEAT = 100;
const DEAD_AFTER = 300;
const FIXTURE = new URL("./fixtures/netns_client.ts", import.meta.url).pathname;

async function sh(cmd: string): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" })
    .output();
  return { code: r.code, out: new TextDecoder().decode(r.stdout) };
}

async function available(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  try {
    if ((await sh("id -u")).out.trim() !== "0") return false;
    const probe = await sh("ip netns add lbk-probe && ip netns del lbk-probe");
    return probe.code === 0;
  } catch {
    return false;
  }
}

const ALL = ["br", ...Object.keys(NODES)];

async function teardown(): Promise<void> {
  await sh(ALL.map((n) => `ip netns del ${ns(n)} 2>/dev/null`).join("; ") + "; true");
}

async function setup(): Promise<void> {
  await teardown();
  const cmds = [
    `ip netns add ${ns("br")}`,
    `ip -n ${ns("br")} link add br0 type bridge`,
    `ip -n ${ns("br")} link set br0 up`,
  ];
  for (const [n, i] of Object.entries(NODES)) {
    cmds.push(
      `ip netns add ${ns(n)}`,
      `ip link add v-${n} netns ${ns("br")} type veth peer name eth0 netns ${ns(n)}`,
      `ip -n ${ns("br")} link set v-${n} master br0 up`,
      `ip -n ${ns(n)} addr add ${NET}.${i}/24 dev eth0`,
      `ip -n ${ns(n)} link set eth0 up`,
      `ip -n ${ns(n)} link set lo up`,
    );
  }
  const r = await sh(cmds.join(" && "));
  equal(r.code, 0, "network namespaces set up");
}

// No arping on these machines: the hook does what a gratuitous ARP does, it
// points every host's neighbour entry for the VIP at the new holder's MAC.
// (A paused holder's kernel still answers ARP, so a flush would be a race.)
const GARP = Object.keys(NODES).map((n) =>
  `ip -n ${ns(n)} neigh replace ${VIP} lladdr $mac dev eth0 nud reachable`
).join("; ");
const VIP_UP =
  `ip addr add ${VIP}/24 dev eth0; mac=$(cat /sys/class/net/eth0/address); (${GARP}) >/dev/null 2>&1 & true`;
const VIP_DOWN = `ip addr del ${VIP}/24 dev eth0 2>/dev/null; true`;

interface NsProc {
  child: Deno.ChildProcess;
  lines: string[];
  done: Promise<void>;
  kill(sig?: Deno.Signal): void;
}

/** Runs `cmd` inside a namespace, collecting stdout lines. */
function inNs(n: string, cmd: string[], stdin: "piped" | "null" = "null"): NsProc {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns(n), ...cmd],
    stdin,
    stdout: "piped",
    stderr: Deno.env.get("LBKIT_TEST_STDERR") ? "inherit" : "null",
  }).spawn();
  const lines: string[] = [];
  let exited = false;
  const done = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
    await child.status;
    exited = true;
  })();
  return {
    child,
    lines,
    done,
    kill(sig: Deno.Signal = "SIGKILL") {
      if (!exited) {
        try {
          child.kill(sig);
        } catch {
          // already gone
        }
      }
    },
  };
}

/** The client fixture (tests/fixtures/netns_client.ts) in the client's namespace. */
function client(mode: string, ms?: string, stdin: "piped" | "null" = "null"): NsProc {
  const args = [Deno.execPath(), "run", "--allow-net", FIXTURE, mode, `${VIP}:5059`];
  return inNs("c", ms === undefined ? args : [...args, ms], stdin);
}

function role(n: string, r: Role, flags: string[]): NsProc {
  return inNs(n, [Deno.execPath(), "run", ...permissionFlags(r, flags), MAIN, r, ...flags]);
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const tier = ["--heartbeat", String(HEARTBEAT), "--dead-after", String(DEAD_AFTER)];
const hooks = ["--vip-up", VIP_UP, "--vip-down", VIP_DOWN];

function slave(n: string): NsProc {
  return role(n, "slave", [
    "--master",
    `${VIP}:5061`,
    "--host",
    `${NET}.${NODES[n]}`,
    "--node-host",
    `${NET}.${NODES[n]}`,
    "--port",
    "5069",
    "--id",
    n,
    "--load-interval",
    String(HEARTBEAT),
    ...tier,
    ...hooks,
  ]);
}

/** Acks and unknown outcomes from the writer's output. */
function outcomes(lines: string[]): { acks: number[]; allowed: Record<string, string[]> } {
  const acks: number[] = [];
  const allowed: Record<string, string[]> = {};
  for (const l of lines) {
    const o = JSON.parse(l);
    if (o.ok !== undefined) {
      acks.push(o.t);
      allowed[o.ok] = [o.v];
    } else if (o.err !== undefined && allowed[o.err] !== undefined) {
      allowed[o.err].push(o.v);
    }
  }
  return { acks, allowed };
}

async function verify(allowed: Record<string, string[]>): Promise<number> {
  const v = client("verify", undefined, "piped");
  const w = v.child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(allowed)));
  await w.close();
  await v.done;
  const r = JSON.parse(v.lines.at(-1) ?? "{}");
  equal((r.bad ?? ["no answer"]).length, 0, `lost acknowledged writes: ${r.bad}`);
  return r.checked;
}

Deno.test({
  name: "failover across network namespaces: crash, then hang, the VIP moved by hooks",
  ignore: !(await available()),
  fn: async (t) => {
    const procs: NsProc[] = [];
    try {
      await setup();
      procs.push(
        role("m", "master", ["--host", VIP, "--node-host", `${NET}.2`, ...tier, ...hooks]),
      );
      await until(() => procs[0].lines.length > 0, 10000, "master start-up line");
      for (const w of ["w1", "w2", "w3"]) {
        procs.push(role(w, "worker", [
          "--master",
          `${VIP}:5060`,
          "--host",
          `${NET}.${NODES[w]}`,
          "--dead-after",
          "600",
        ]));
      }
      const s1 = slave("s1");
      const s2 = slave("s2");
      procs.push(s1, s2);
      await until(() => s1.lines.length > 0 && s2.lines.length > 0, 10000, "slaves up");
      await new Promise((r) => setTimeout(r, 1500));

      await t.step("crash: SIGKILL the master", async () => {
        const writer = client("write", "4000");
        procs.push(writer);
        await until(() => writer.lines.length > 20, 5000, "writes before the kill");
        const killedAt = Date.now();
        procs[0].kill("SIGKILL");
        await writer.done;
        const { acks, allowed } = outcomes(writer.lines);
        const first = acks.find((a) => a > killedAt);
        ok(first !== undefined, "writes resumed");
        console.log(
          `crash across hosts: first acknowledged write ${first! - killedAt} ms after SIGKILL`,
        );
        ok(first! - killedAt <= 1000, `first ack ${first! - killedAt} ms after the kill`);
        console.log(`verified ${await verify(allowed)} keys`);
      });

      await t.step("hang: SIGSTOP the new master (s1), SIGCONT later: it steps down", async () => {
        const writer = client("write", "5000");
        procs.push(writer);
        await until(() => writer.lines.length > 20, 5000, "writes before the stop");
        const stoppedAt = Date.now();
        s1.kill("SIGSTOP");
        const probe = client("probe", "2000");
        procs.push(probe);
        await until(
          () => outcomes(writer.lines).acks.some((a) => a > stoppedAt + 50),
          4000,
          "writes served by s2",
        );
        const first = outcomes(writer.lines).acks.find((a) => a > stoppedAt + 50)!;
        await probe.done;
        const pong = probe.lines.map((l) => JSON.parse(l).pong as number).find((t) =>
          t > stoppedAt
        );
        ok(pong !== undefined, "the VIP answered again");
        console.log(
          `hang across hosts: the VIP answers a new connection ${pong! - stoppedAt} ms after ` +
            `SIGSTOP; the writer's first ack ${
              first - stoppedAt
            } ms (its own 300 ms timeout first)`,
        );
        ok(
          pong! - stoppedAt <= DEAD_AFTER + HEARTBEAT + 150,
          "VIP served within dead-after + 1 interval",
        );
        await new Promise((r) =>
          setTimeout(r, Math.max(0, 3 * DEAD_AFTER - (Date.now() - stoppedAt)))
        );
        s1.kill("SIGCONT");
        // s1 learns the higher term at its own address and gives the VIP up.
        const end = Date.now() + 3000;
        let held = true;
        while (held && Date.now() < end) {
          held = (await sh(`ip -n ${ns("s1")} addr show dev eth0`)).out.includes(VIP);
          if (held) await new Promise((r) => setTimeout(r, 50));
        }
        ok(!held, "the old master released the VIP after SIGCONT");
        await writer.done;
        const { allowed } = outcomes(writer.lines);
        console.log(`verified ${await verify(allowed)} keys`);
      });
    } finally {
      for (const p of procs) p.kill("SIGCONT");
      for (const p of procs) p.kill("SIGKILL");
      await Promise.allSettled(procs.map((p) => p.done));
      await teardown();
    }
  },
});
