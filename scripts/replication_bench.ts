// Replication benchmark: SET throughput/latency with 1,2,3,5 workers, ack all/local,
// master + workers as subprocesses; then the time to receive a 100,000-key export.
// Run: deno run --allow-net --allow-run --allow-read --allow-env scripts/replication_bench.ts
import { roleCommand } from "../cli/permissions.ts";
import { Master } from "../lib/master.ts";
import { FrameReader } from "../lib/frame.ts";
import { FrameWriter } from "../lib/writer.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const SET = 0x0101;
const ERR = 0x018f;
const enc = new TextEncoder();

interface P {
  child: Deno.ChildProcess;
  line: string;
  addrs: Record<string, string>;
  stderr: string[];
  waitErr(re: RegExp, ms: number): Promise<void>;
  stop(): Promise<void>;
}

async function spawn(role: "master" | "worker", flags: string[]): Promise<P> {
  const child = new Deno.Command(Deno.execPath(), {
    args: roleCommand(role, MAIN, flags),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr: string[] = [];
  const errDone = (async () => {
    let buf = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        stderr.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${role} exited: ${stderr.join("\n")}`);
    buf += value;
  }
  const outDone = (async () => {
    while (!(await reader.read()).done);
  })();
  const line = buf.slice(0, buf.indexOf("\n"));
  const addrs: Record<string, string> = {};
  for (const m of line.matchAll(/(\S+)=(\S+)/g)) addrs[m[1]] = m[2];
  return {
    child,
    line,
    addrs,
    stderr,
    async waitErr(re, ms) {
      const until = Date.now() + ms;
      while (!stderr.some((l) => re.test(l))) {
        if (Date.now() > until) throw new Error(`timeout waiting for ${re}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await errDone.catch(() => {});
      await outDone.catch(() => {});
    },
  };
}

function pct(xs: Float64Array, n: number, p: number): number {
  const s = xs.slice(0, n).sort();
  return s[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))];
}

/** conns x depth SETs in flight for warmup + seconds; figures over the measured window. */
async function load(addr: string, conns: number, depth: number, seconds: number, warmupMs = 500) {
  const [host, port] = [
    addr.slice(0, addr.lastIndexOf(":")),
    Number(addr.slice(addr.lastIndexOf(":") + 1)),
  ];
  const lat = new Float64Array(4_000_000);
  let n = 0;
  let errors = 0;
  const value = enc.encode("x".repeat(64));
  const t0 = performance.now();
  const m0 = t0 + warmupMs;
  const m1 = m0 + seconds * 1000;
  let stopping = false;
  const runConn = async (ci: number) => {
    const conn = await Deno.connect({ hostname: host, port });
    conn.setNoDelay(true);
    const w = new FrameWriter(conn);
    const r = new FrameReader(conn);
    const sentAt = new Float64Array(depth);
    let outstanding = 0;
    let seq = ci * 7919;
    const send = (slot: number) => {
      seq = (seq * 1103515245 + 12345) >>> 0;
      const key = enc.encode(`k${seq % 10000}`);
      const v = w.reserve(SET, 6 + key.length + value.length);
      v[0] = slot >>> 24;
      v[1] = (slot >>> 16) & 0xff;
      v[2] = (slot >>> 8) & 0xff;
      v[3] = slot & 0xff;
      v[4] = 0;
      v[5] = key.length;
      v.set(key, 6);
      v.set(value, 6 + key.length);
      sentAt[slot] = performance.now();
      outstanding++;
    };
    for (let s = 0; s < depth; s++) send(s);
    try {
      while (outstanding > 0) {
        const more = await r.read((type, p) => {
          const slot = (p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
          const now = performance.now();
          outstanding--;
          if (type === ERR) errors++;
          if (now >= m0 && now < m1 && n < lat.length) lat[n++] = now - sentAt[slot];
          if (now >= m1) stopping = true;
          if (!stopping) send(slot);
        });
        if (!more) break;
      }
    } finally {
      conn.close();
    }
  };
  await Promise.all(Array.from({ length: conns }, (_, i) => runConn(i)));
  return { ops: n / seconds, p50: pct(lat, n, 50), p99: pct(lat, n, 99), errors };
}

async function cluster(workers: number, ack: string) {
  const master = await spawn("master", [
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--worker-port",
    "0",
    "--slave-port",
    "0",
    "--log-level",
    "info",
  ]);
  const ws: P[] = [];
  for (let i = 0; i < workers; i++) {
    ws.push(
      await spawn("worker", [
        "--master",
        master.addrs.workers,
        "--host",
        "127.0.0.1",
        "--ack",
        ack,
        "--log-level",
        "warn",
      ]),
    );
    await master.waitErr(new RegExp(`in the ring \\(${i + 1}\\)`), 10000);
  }
  return {
    master,
    ws,
    async stop() {
      for (const p of [master, ...ws]) await p.stop();
    },
  };
}

const rows: string[] = [];
const warnings: string[] = [];
for (const ack of ["all", "local"]) {
  for (const n of [1, 2, 3, 5]) {
    const c = await cluster(n, ack);
    try {
      const r = await load(c.master.addrs.clients, 50, 16, 3);
      rows.push(
        `| ${n} | ${ack} | ${Math.round(r.ops).toLocaleString("en")} | ${r.p50.toFixed(2)} | ${
          r.p99.toFixed(2)
        } | ${r.errors} |`,
      );
      console.error(rows.at(-1));
      for (const p of c.ws) warnings.push(...p.stderr.filter((l) => /warn|error/.test(l)));
    } finally {
      await c.stop();
    }
  }
}
console.log("| workers | ack | SET ops/s | p50 ms | p99 ms | ERR |\n|---|---|---|---|---|---|");
console.log(rows.join("\n"));
console.log(
  `worker warnings during the load runs: ${warnings.length}${
    warnings.length ? "\n" + warnings.slice(0, 10).join("\n") : ""
  }`,
);

// ---- Export of 100,000 keys ------------------------------------------------
async function preload(addr: string, keys: number) {
  const [host, port] = [
    addr.slice(0, addr.lastIndexOf(":")),
    Number(addr.slice(addr.lastIndexOf(":") + 1)),
  ];
  const conn = await Deno.connect({ hostname: host, port });
  const w = new FrameWriter(conn);
  const r = new FrameReader(conn);
  const value = enc.encode("v".repeat(64));
  let sent = 0;
  let got = 0;
  let errs = 0;
  const send = () => {
    const key = enc.encode(`key-${String(sent).padStart(8, "0")}`);
    const v = w.reserve(SET, 6 + key.length + value.length);
    new DataView(v.buffer, v.byteOffset).setUint32(0, sent);
    v[4] = 0;
    v[5] = key.length;
    v.set(key, 6);
    v.set(value, 6 + key.length);
    sent++;
  };
  for (let i = 0; i < 512 && sent < keys; i++) send();
  while (got < keys) {
    if (
      !await r.read((t) => {
        got++;
        if (t === ERR) errs++;
        if (sent < keys) send();
      })
    ) break;
  }
  conn.close();
  if (errs > 0 || got < keys) throw new Error(`preload: ${got} replies, ${errs} errors`);
}

async function joinTime(keys: number): Promise<{ spawnToRing: number; registerToReady: number }> {
  let registeredAt = 0;
  const master = new Master({
    hostname: "127.0.0.1",
    port: 0,
    workerPort: 0,
    slavePort: 0,
    logger: {
      debug() {},
      warn() {},
      error() {},
      info(msg: string) {
        if (/^worker j-new registered/.test(msg)) registeredAt = performance.now();
      },
    },
  });
  await master.start();
  const procs: P[] = [];
  try {
    procs.push(
      await spawn("worker", [
        "--master",
        master.addrs.workers,
        "--host",
        "127.0.0.1",
        "--id",
        "j-src",
        "--log-level",
        "warn",
      ]),
    );
    while (master.balancer.workers < 1) await new Promise((r) => setTimeout(r, 5));
    if (keys > 0) await preload(master.addrs.clients, keys);
    const t0 = performance.now();
    procs.push(
      await spawn("worker", [
        "--master",
        master.addrs.workers,
        "--host",
        "127.0.0.1",
        "--id",
        "j-new",
        "--log-level",
        "warn",
      ]),
    );
    while (master.balancer.workers < 2) {
      if (performance.now() - t0 > 30000) throw new Error("join timed out");
      await new Promise((r) => setTimeout(r, 1));
    }
    const t1 = performance.now();
    const st = master.status().workers;
    void st;
    return { spawnToRing: t1 - t0, registerToReady: t1 - registeredAt };
  } finally {
    await master.stop(0);
    for (const p of procs) await p.stop();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base: { spawnToRing: number; registerToReady: number }[] = [];
const full: { spawnToRing: number; registerToReady: number }[] = [];
for (let i = 0; i < 3; i++) {
  base.push(await joinTime(0));
  full.push(await joinTime(100_000));
}
const f = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
console.log(
  `\nempty export join: spawn->ring ${f(base.map((b) => b.spawnToRing))} ms; W_REGISTER->ready ${
    f(base.map((b) => b.registerToReady))
  } ms`,
);
console.log(
  `100,000-key join:  spawn->ring ${f(full.map((b) => b.spawnToRing))} ms; W_REGISTER->ready ${
    f(full.map((b) => b.registerToReady))
  } ms`,
);
console.log(
  `median: spawn->ring minus baseline = ${
    (median(full.map((b) => b.spawnToRing)) - median(base.map((b) => b.spawnToRing))).toFixed(0)
  } ms; ` +
    `W_REGISTER->ready 100k = ${median(full.map((b) => b.registerToReady)).toFixed(0)} ms (empty: ${
      median(base.map((b) => b.registerToReady)).toFixed(0)
    } ms)`,
);
