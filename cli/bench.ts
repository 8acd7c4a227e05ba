/**
 * `lbkit bench`: load against an LB node or a worker, a cluster of its own
 * (`--cluster`), or a suite of clusters side by side (`--suite`).
 *
 * The load generator runs in this process; every cluster process is a child
 * (`deno run ... cli/main.ts ROLE`) killed on the way out, Ctrl-C included.
 *
 * @module
 */

import {
  type BenchProtocol,
  type LoadPhase,
  type LoadResult,
  type LoadSnapshot,
  runLoad,
  waitReady,
} from "../lib/bench.ts";
import { fail, type FlagTable, helpText, intFlag, parseFlags } from "./common.ts";
import { type Role, roleCommand } from "./permissions.ts";
import { parseHostPort } from "../lib/addr.ts";

/** `lbkit bench` flags. */
export const BENCH_FLAGS: FlagTable = {
  connect: {
    type: "string",
    help: "target HOST:PORT: an LB node, or a worker's addr with --protocol worker",
  },
  protocol: {
    type: "string",
    default: "client",
    help: "client = client frames to an LB node; worker = LB<->worker frames to a worker",
  },
  connections: { type: "string", default: "50", help: "TCP connections" },
  depth: {
    type: "string",
    help: "requests in flight per connection; a comma list runs each (default: 1; --suite: 1,16)",
  },
  "value-size": { type: "string", default: "64", help: "bytes per SET value" },
  keys: { type: "string", default: "10000", help: "key space; every key is SET before measuring" },
  "get-ratio": { type: "string", default: "0.5", help: "fraction of requests that are GETs" },
  duration: { type: "string", default: "5", help: "seconds measured (per run)" },
  requests: { type: "string", help: "stop after N measured replies instead of --duration" },
  warmup: { type: "string", default: "1", help: "seconds of load before measuring" },
  json: { type: "boolean", help: "print one JSON object instead of the table" },
  cluster: {
    type: "boolean",
    help: "start a master and --workers workers as child processes and bench them",
  },
  workers: { type: "string", default: "1", help: "workers for --cluster" },
  ack: { type: "string", default: "all", help: "the workers' --ack for --cluster: all | local" },
  suite: {
    type: "boolean",
    help: "run the scenarios side by side, each on fresh cluster processes",
  },
  repeat: {
    type: "string",
    default: "1",
    help: "run each measurement N times (fresh clusters, interleaved) and keep the best ops/s",
  },
  scenarios: {
    type: "string",
    help: `--suite scenarios, comma list (default: ${
      ["direct", "master-1w", "master-3w", "master-3w-ack-local", "slave"].join(",")
    })`,
  },
};

/** Help for `lbkit bench`. */
export const BENCH_HELP: string = helpText(
  "bench",
  "Load generator: --connections connections each keep --depth requests in flight,\n" +
    "a GET/SET mix over --keys keys (all SET first), --warmup seconds excluded.\n" +
    "Reports ops/s (successful replies only; ERR replies counted apart) and latency\n" +
    "percentiles from an HDR-style histogram (1 us..60 s, <1% error).\n\n" +
    "Targets: --connect HOST:PORT, --cluster (its own master + workers), or --suite:\n" +
    "  direct               worker protocol straight to one worker (the store's ceiling)\n" +
    "  master-1w            client protocol through the master, 1 worker\n" +
    "  master-3w            ... 3 workers, --ack all\n" +
    "  master-3w-ack-local  ... 3 workers, --ack local\n" +
    "  slave                through a slave (master + 1 worker), if the slave role exists\n" +
    "at depth 1 and 16, with each row's ops/s as a ratio of direct's at that depth.\n" +
    "--cluster and --suite need --allow-run (deno run --allow-net --allow-run); with\n" +
    "--allow-all the table also shows each cluster process's CPU (from /proc).",
  BENCH_FLAGS,
);

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const ALL_SCENARIOS = ["direct", "master-1w", "master-3w", "master-3w-ack-local", "slave"];
const enc = new TextEncoder();

/** One row of the result table (and of the JSON). */
export interface BenchRow {
  /** Scenario name (or the target address for --connect). */
  name: string;
  /** Frames spoken. */
  protocol: BenchProtocol;
  /** Connections. */
  connections: number;
  /** Requests in flight per connection. */
  depth: number;
  /** Successful replies per second. */
  ops: number;
  /** Median latency, microseconds. */
  p50_us: number;
  /** 99th percentile latency, microseconds. */
  p99_us: number;
  /** 99.9th percentile latency, microseconds. */
  p999_us: number;
  /** Largest latency, microseconds. */
  max_us: number;
  /** Mean latency, microseconds. */
  mean_us: number;
  /** `ops` over `direct`'s at the same depth; null without a direct row. */
  ratio: number | null;
  /** Successful replies measured. */
  requests: number;
  /** `ERR` replies measured (not in `ops`). */
  errors: number;
  /** GETs answered NIL (the key was missing). */
  misses: number;
  /** Length of the measured window. */
  seconds: number;
  /** This process's CPU over the window, % of one core. */
  bench_cpu: number;
  /**
   * Each cluster process's CPU over the window (% of one core); null unless
   * /proc is readable (Deno requires --allow-all for that).
   */
  cluster_cpu: Record<string, number> | null;
  /**
   * CPU used by every other process on the machine over the window (% of
   * one core): other load that skews the figures. Null unless /proc is
   * readable.
   */
  other_cpu: number | null;
  /** `ERR` reasons and their counts. */
  error_reasons: Record<string, number>;
  /** ops/s of every run with --repeat, in run order; the row is the best one. */
  runs: number[];
}

/** How a scenario's cluster is made and where the load goes. */
interface Scenario {
  name: string;
  workers: number;
  ack: "all" | "local";
  /** Where the load goes. */
  target: "worker" | "master" | "slave";
}

function scenario(name: string): Scenario {
  switch (name) {
    case "direct":
      return { name, workers: 1, ack: "all", target: "worker" };
    case "master-1w":
      return { name, workers: 1, ack: "all", target: "master" };
    case "master-3w":
      return { name, workers: 3, ack: "all", target: "master" };
    case "master-3w-ack-local":
      return { name, workers: 3, ack: "local", target: "master" };
    case "slave":
      return { name, workers: 1, ack: "all", target: "slave" };
    default:
      return fail(`--scenarios: unknown scenario "${name}" (known: ${ALL_SCENARIOS.join(", ")})`);
  }
}

/** A float flag within [min, max]. */
function numFlag(v: Record<string, unknown>, name: string, min: number, max = Infinity): number {
  const raw = v[name];
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    fail(
      `--${name} must be a number from ${min}${max < Infinity ? ` to ${max}` : ""}, got "${raw}"`,
    );
  }
  return n;
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/** A spawned cluster process. */
interface Child {
  role: Role;
  label: string;
  proc: Deno.ChildProcess;
  exited: boolean;
  status: Promise<Deno.CommandStatus>;
  /** stdout and stderr read to the end. */
  drained: Promise<void>;
  /** `key=value` pairs of the start-up line. */
  addrs: Record<string, string>;
}

/** Every child alive, for the finally blocks and a second Ctrl-C. */
const live = new Set<Child>();

/**
 * Spawns `cli/main.ts ROLE flags` and resolves once it printed its
 * `... listening ...` line. The child is in `live` and in `registry` from
 * the start, so whoever stops `registry` stops it even if it never started.
 */
async function spawnChild(
  role: Role,
  label: string,
  flags: string[],
  registry: Child[],
  signal: AbortSignal,
  ms = 20000,
): Promise<Child> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: roleCommand(role, MAIN, flags),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const startup = Promise.withResolvers<string>();
  startup.promise.catch(() => {}); // may settle after we stopped waiting
  let tail = "";
  const stderrDone = (async () => {
    try {
      for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
        tail = (tail + chunk).slice(-2000);
      }
    } catch {
      // closed
    }
  })();
  const stdoutDone = (async () => {
    let buf = "";
    let found = false;
    try {
      for await (const chunk of proc.stdout.pipeThrough(new TextDecoderStream())) {
        if (found) continue; // keep draining so the pipe never fills
        buf += chunk;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (/ listening( |$)/.test(line)) {
            found = true;
            startup.resolve(line);
            break;
          }
        }
      }
    } catch {
      // closed
    }
    if (!found) {
      await stderrDone;
      startup.reject(
        new Error(`${label} exited before its start-up line${tail ? `:\n${tail.trimEnd()}` : ""}`),
      );
    }
  })();
  const child: Child = {
    role,
    label,
    proc,
    exited: false,
    status: proc.status,
    drained: Promise.all([stdoutDone, stderrDone]).then(() => {}),
    addrs: {},
  };
  child.status = proc.status.then((s) => {
    child.exited = true;
    return s;
  });
  live.add(child);
  registry.push(child);
  const line = await raceTimeout(startup.promise, ms, signal, `${label} start-up line`);
  for (const m of line.matchAll(/(\S+)=(\S+)/g)) child.addrs[m[1]] = m[2];
  return child;
}

/** `p`, or a rejection after `ms` or on abort; the timer is always cleared. */
async function raceTimeout<T>(
  p: Promise<T>,
  ms: number,
  signal: AbortSignal,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
          ms,
        );
        onAbort = () => reject(new Error("interrupted"));
        if (signal.aborted) onAbort();
        signal.addEventListener("abort", onAbort);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}

/** Waits `ms`, or rejects at once on abort. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error("interrupted"));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; waits for the exits and the pipes. */
async function stopChildren(children: Child[], graceMs = 2000): Promise<void> {
  await Promise.all(children.map(async (c) => {
    if (!c.exited) {
      try {
        c.proc.kill("SIGTERM");
      } catch {
        // gone already
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([c.status, new Promise<void>((r) => timer = setTimeout(r, graceMs))]);
      clearTimeout(timer);
      if (!c.exited) {
        try {
          c.proc.kill("SIGKILL");
        } catch {
          // gone already
        }
      }
    }
    await c.status;
    await c.drained;
    live.delete(c);
  }));
}

/** Kills every live child at once (a second Ctrl-C). */
function killAllNow(): void {
  for (const c of live) {
    try {
      if (!c.exited) c.proc.kill("SIGKILL");
    } catch {
      // gone already
    }
  }
}

/** user+system CPU ms of a process, or null when /proc is not readable. */
function procCpuMs(pid: number): number | null {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}

/** Busy CPU ms of the whole machine (all cores), or null when /proc is not readable. */
function machineBusyMs(): number | null {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = f;
    return ((user + nice + system + irq + softirq + steal) * 1000) / 100;
  } catch {
    return null;
  }
}

/** Deno lets a process read another's /proc entries only with --allow-all. */
function canReadProc(): boolean {
  try {
    return Deno.permissions.querySync({ name: "read", path: "/proc" }).state === "granted" &&
      procCpuMs(Deno.pid) !== null;
  } catch {
    return false;
  }
}

/** True when this checkout's cli/main.ts knows the `slave` role. */
async function hasSlaveRole(): Promise<boolean> {
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: roleCommand("slave", MAIN, ["--help"]),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return out.code === 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------

/** A started cluster: its children and the address the load goes to. */
interface StartedCluster {
  children: Child[];
  target: string;
  protocol: BenchProtocol;
}

/**
 * Starts a master, `sc.workers` workers and (for the slave target) a slave,
 * then waits until a SET through the target succeeds. Children are pushed to
 * `children` as they start so the caller can stop them whatever happens.
 */
async function startCluster(
  sc: Scenario,
  children: Child[],
  signal: AbortSignal,
): Promise<StartedCluster> {
  const quiet = ["--log-level", "warn"];
  const master = await spawnChild(
    "master",
    "master",
    [
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--worker-port",
      "0",
      "--slave-port",
      "0",
      ...quiet,
    ],
    children,
    signal,
  );
  const { clients, workers, slaves } = master.addrs;
  if (!clients || !workers || !slaves) {
    throw new Error(`unexpected master line: ${JSON.stringify(master.addrs)}`);
  }
  const started = await Promise.all(
    Array.from({ length: sc.workers }, (_, i) =>
      spawnChild(
        "worker",
        `worker ${i + 1}`,
        [
          "--master",
          workers,
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--id",
          `bench-w${i + 1}`,
          "--ack",
          sc.ack,
          ...quiet,
        ],
        children,
        signal,
      )),
  );
  let target = clients;
  let protocol: BenchProtocol = "client";
  if (sc.target === "worker") {
    target = started[0].addrs.addr;
    protocol = "worker";
    if (!target) throw new Error("the worker printed no addr=");
  } else if (sc.target === "slave") {
    const slave = await spawnChild(
      "slave",
      "slave",
      ["--master", slaves, "--port", "0"],
      children,
      signal,
    );
    target = slave.addrs.clients ?? slave.addrs.addr;
    if (!target) throw new Error("the slave printed no clients= address");
    const t = parseHostPort(target);
    if (t.hostname === "0.0.0.0" || t.hostname === "::") target = `127.0.0.1:${t.port}`;
  }
  // Through an LB node this needs a worker in the ring (registered, ready).
  await waitReady({ addr: target, protocol, timeoutMs: 15000, signal });
  if (sc.target !== "worker") {
    // A SET succeeding needs only the first worker in the ring: give the
    // others (and a slave's view of them) a moment before the load starts.
    await sleep(500, signal);
  }
  return { children, target, protocol };
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

/** The load settings shared by every run of one invocation. */
interface LoadSettings {
  connections: number;
  valueSize: number;
  keys: number;
  getRatio: number;
  duration: number;
  requests: number | undefined;
  warmup: number;
}

/** A progress line on stderr while a run goes, only on a terminal. */
function progress(label: string): {
  attach(snapshot: () => LoadSnapshot): void;
  stop(): void;
} {
  if (!Deno.stderr.isTerminal()) return { attach() {}, stop() {} };
  let timer: ReturnType<typeof setInterval> | undefined;
  let lastReplies = 0;
  let lastAt = performance.now();
  const write = (s: string) => {
    try {
      Deno.stderr.writeSync(enc.encode(s));
    } catch {
      // stderr gone
    }
  };
  return {
    attach(snapshot) {
      timer = setInterval(() => {
        const s = snapshot();
        const now = performance.now();
        const rate = ((s.replies - lastReplies) * 1000) / Math.max(1, now - lastAt);
        lastReplies = s.replies;
        lastAt = now;
        let what: string;
        if (s.phase === "populate") what = `populate ${s.populated} keys`;
        else if (s.phase === "measure") {
          what = `measure ${s.seconds.toFixed(1)}s  ${fmtInt(rate)} ops/s now  ` +
            `${fmtInt(s.seconds > 0 ? s.ops / s.seconds : 0)} ops/s avg  ${s.errors} errors`;
        } else if (s.phase === "warmup") what = `warm-up  ${fmtInt(rate)} ops/s`;
        else what = s.phase;
        write(`\r\x1b[K${label}: ${what}`);
      }, 250);
    },
    stop() {
      clearInterval(timer);
      if (timer !== undefined) write("\r\x1b[K");
    },
  };
}

/** Runs the load once and makes a row of it. */
async function measure(
  name: string,
  addr: string,
  protocol: BenchProtocol,
  depth: number,
  s: LoadSettings,
  children: Child[],
  signal: AbortSignal,
): Promise<BenchRow> {
  const cpu = canReadProc();
  let cpuStart: (number | null)[] = [];
  let cpuEnd: (number | null)[] = [];
  let busyStart: number | null = null;
  let busyEnd: number | null = null;
  let windowStart = 0;
  let windowEnd = 0;
  const onPhase = (phase: LoadPhase) => {
    if (!cpu) return;
    if (phase === "measure") {
      windowStart = performance.now();
      cpuStart = children.map((c) => procCpuMs(c.proc.pid));
      busyStart = machineBusyMs();
    } else if (phase === "drain" && windowStart > 0 && windowEnd === 0) {
      windowEnd = performance.now();
      cpuEnd = children.map((c) => procCpuMs(c.proc.pid));
      busyEnd = machineBusyMs();
    }
  };
  const p = progress(`${name} depth ${depth}`);
  let r: LoadResult;
  try {
    r = await runLoad({
      addr,
      protocol,
      connections: s.connections,
      depth,
      valueSize: s.valueSize,
      keys: s.keys,
      getRatio: s.getRatio,
      duration: s.duration,
      requests: s.requests,
      warmup: s.warmup,
      signal,
      onPhase,
    }, (snap) => p.attach(snap));
  } finally {
    p.stop();
  }
  if (r.aborted) throw new Error("interrupted");
  if (r.failure !== null) throw new Error(r.failure);
  if (r.populateErrors > 0) {
    console.error(`lbkit bench: ${name}: ${r.populateErrors} of the populating SETs failed`);
  }
  let clusterCpu: Record<string, number> | null = null;
  if (cpu && windowEnd > windowStart) {
    const ms = windowEnd - windowStart;
    const byLabel: Record<string, number> = {};
    children.forEach((c, i) => {
      const a = cpuStart[i];
      const b = cpuEnd[i];
      if (a === null || b === null || a === undefined || b === undefined) return;
      byLabel[c.label] = Math.round(((b - a) / ms) * 1000) / 10;
    });
    if (Object.keys(byLabel).length > 0) clusterCpu = byLabel;
  }
  let otherCpu: number | null = null;
  if (busyStart !== null && busyEnd !== null && windowEnd > windowStart) {
    const busy = ((busyEnd - busyStart) / (windowEnd - windowStart)) * 100;
    const ours = r.cpu + Object.values(clusterCpu ?? {}).reduce((a, b) => a + b, 0);
    // /proc/stat ticks are 10 ms: small negatives are rounding.
    otherCpu = Math.max(0, Math.round(busy - ours));
  }
  const h = r.histogram;
  return {
    name,
    protocol,
    connections: s.connections,
    depth,
    ops: Math.round(r.rate),
    p50_us: h.percentile(50),
    p99_us: h.percentile(99),
    p999_us: h.percentile(99.9),
    max_us: h.max,
    mean_us: Math.round(h.mean),
    ratio: null,
    requests: r.ops,
    errors: r.errors,
    misses: r.misses,
    seconds: Math.round(r.seconds * 1000) / 1000,
    bench_cpu: Math.round(r.cpu * 10) / 10,
    cluster_cpu: clusterCpu,
    other_cpu: otherCpu,
    error_reasons: r.errorReasons,
    runs: [Math.round(r.rate)],
  };
}

/** Starts the scenario's cluster, measures, and stops the cluster whatever happens. */
async function runScenario(
  sc: Scenario,
  depth: number,
  s: LoadSettings,
  signal: AbortSignal,
): Promise<BenchRow> {
  const children: Child[] = [];
  try {
    const c = await startCluster(sc, children, signal);
    return await measure(sc.name, c.target, c.protocol, depth, s, children, signal);
  } finally {
    await stopChildren(children);
  }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

function fmtInt(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Ratio of each row's ops to `direct`'s at the same depth. */
function addRatios(rows: BenchRow[]): void {
  for (const r of rows) {
    const d = rows.find((x) => x.name === "direct" && x.depth === r.depth);
    r.ratio = d !== undefined && d.ops > 0 ? Math.round((r.ops / d.ops) * 1000) / 1000 : null;
  }
}

function cpuCell(c: Record<string, number> | null): string {
  if (c === null) return "-";
  const byRole = new Map<string, number[]>();
  for (const [label, v] of Object.entries(c)) {
    const role = label.split(" ")[0];
    byRole.set(role, [...(byRole.get(role) ?? []), Math.round(v)]);
  }
  return [...byRole].map(([role, vs]) => `${role[0]}${vs.join("+")}`).join(" ");
}

/** The result table. */
export function formatTable(rows: BenchRow[]): string {
  const head = [
    "name",
    "depth",
    "ops/s",
    "p50 us",
    "p99 us",
    "p99.9 us",
    "max us",
    "ratio",
    "errors",
    "cpu% bench",
    "cpu% cluster",
    "cpu% other",
  ];
  const body = rows.map((r) => [
    r.name,
    String(r.depth),
    fmtInt(r.ops),
    fmtInt(r.p50_us),
    fmtInt(r.p99_us),
    fmtInt(r.p999_us),
    fmtInt(r.max_us),
    r.ratio === null ? "-" : r.ratio.toFixed(2),
    String(r.errors),
    r.bench_cpu.toFixed(0),
    cpuCell(r.cluster_cpu),
    r.other_cpu === null ? "-" : String(r.other_cpu),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const left = (i: number) => i === 0 || head[i] === "cpu% cluster";
  const line = (cells: string[]) =>
    cells.map((c, i) => left(i) ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ")
      .trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

// ---------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------

/** Runs `lbkit bench`; resolves with the exit status. */
export async function benchCommand(argv: string[]): Promise<number> {
  const v = parseFlags("bench", BENCH_FLAGS, argv);
  if (v.help) {
    console.log(BENCH_HELP);
    return 0;
  }
  const suite = v.suite === true;
  const cluster = v.cluster === true;
  const connect = typeof v.connect === "string" ? v.connect : undefined;
  if ([suite, cluster, connect !== undefined].filter(Boolean).length !== 1) {
    fail("bench: give exactly one of --connect HOST:PORT, --cluster or --suite");
  }
  if (connect !== undefined) {
    try {
      parseHostPort(connect);
    } catch (err) {
      fail(`--connect: ${(err as Error).message}`);
    }
  }
  const protocol = String(v.protocol);
  if (protocol !== "client" && protocol !== "worker") {
    fail(`--protocol must be client or worker, got "${protocol}"`);
  }
  if (v.ack !== "all" && v.ack !== "local") fail(`--ack must be all or local, got "${v.ack}"`);
  const depthRaw = typeof v.depth === "string" ? v.depth : suite ? "1,16" : "1";
  const depths = depthRaw.split(",").map((d) => intFlag({ depth: d.trim() }, "depth", 1, 65536));
  const settings: LoadSettings = {
    connections: intFlag(v, "connections", 1, 10000),
    valueSize: intFlag(v, "value-size", 0, 60000),
    keys: intFlag(v, "keys", 1, 10_000_000),
    getRatio: numFlag(v, "get-ratio", 0, 1),
    duration: numFlag(v, "duration", 0.001),
    requests: v.requests === undefined ? undefined : intFlag(v, "requests", 1),
    warmup: numFlag(v, "warmup", 0),
  };
  const workers = intFlag(v, "workers", 1, 64);
  const repeat = intFlag(v, "repeat", 1, 100);
  let scenarios: Scenario[] = [];
  if (suite) {
    const names = typeof v.scenarios === "string"
      ? v.scenarios.split(",").map((s) => s.trim()).filter((s) => s !== "")
      : ALL_SCENARIOS;
    scenarios = names.map(scenario);
  } else if (v.scenarios !== undefined) fail("--scenarios goes with --suite");
  const json = v.json === true;
  if ((suite || cluster) && Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    fail(
      `bench: --${suite ? "suite" : "cluster"} starts cluster processes and needs --allow-run:\n` +
        "  deno run --allow-net --allow-run cli/main.ts bench ...",
    );
  }

  // Ctrl-C / SIGTERM: end the run, stop the children, exit 130. A second one
  // kills the children at once and exits.
  const ac = new AbortController();
  const onSignal = () => {
    if (ac.signal.aborted) {
      killAllNow();
      Deno.exit(130);
    }
    ac.abort();
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);

  const rows: BenchRow[] = [];
  const notes: string[] = [];
  let failed = false;
  const note = (s: string) => {
    notes.push(s);
    if (!json) console.error(`lbkit bench: ${s}`);
  };
  try {
    // Every measurement, `repeat` times, interleaved so a burst of outside
    // load does not hit every run of one row.
    const jobs: { key: string; label: string; run: () => Promise<BenchRow> }[] = [];
    if (connect !== undefined) {
      try {
        await waitReady({ addr: connect, protocol, timeoutMs: 5000, signal: ac.signal });
      } catch (err) {
        if (ac.signal.aborted) throw err;
        fail(`cannot bench ${connect}: ${(err as Error).message}`, 1);
      }
      for (const depth of depths) {
        jobs.push({
          key: String(depth),
          label: `depth ${depth}`,
          run: () => measure(connect, connect, protocol, depth, settings, [], ac.signal),
        });
      }
    } else {
      if (cluster) {
        const name = protocol === "worker"
          ? "direct"
          : `master-${workers}w${v.ack === "local" ? "-ack-local" : ""}`;
        scenarios = [{
          name,
          workers,
          ack: v.ack,
          target: protocol === "worker" ? "worker" : "master",
        }];
      }
      if (scenarios.some((s) => s.target === "slave") && !(await hasSlaveRole())) {
        scenarios = scenarios.filter((s) => s.target !== "slave");
        note("skipped slave: cli/main.ts has no slave role yet");
      }
      for (const depth of depths) {
        for (const sc of scenarios) {
          jobs.push({
            key: `${depth}/${sc.name}`,
            label: `${sc.name} depth ${depth}`,
            run: () => runScenario(sc, depth, settings, ac.signal),
          });
        }
      }
    }
    const results = new Map<string, BenchRow[]>();
    for (let i = 0; i < repeat && !ac.signal.aborted; i++) {
      for (const job of jobs) {
        if (ac.signal.aborted) break;
        try {
          const row = await job.run();
          results.set(job.key, [...(results.get(job.key) ?? []), row]);
        } catch (err) {
          if (ac.signal.aborted) break;
          failed = true;
          note(
            `${job.label}${repeat > 1 ? ` run ${i + 1}` : ""} failed: ${(err as Error).message}`,
          );
        }
      }
    }
    for (const job of jobs) {
      const runs = results.get(job.key);
      if (runs === undefined) continue;
      const best = runs.reduce((a, b) => (b.ops > a.ops ? b : a));
      rows.push({ ...best, runs: runs.map((r) => r.ops) });
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    await stopChildren([...live]);
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
  if (ac.signal.aborted) {
    console.error("lbkit bench: interrupted");
    return 130;
  }
  addRatios(rows);
  if (json) {
    console.log(JSON.stringify({ scenarios: rows, notes }));
  } else {
    const s = settings;
    console.log(
      `lbkit bench: ${s.connections} connections, ${s.valueSize}-byte values, ${s.keys} keys, ` +
        `${Math.round(s.getRatio * 100)}% GET, ` +
        (s.requests !== undefined ? `${s.requests} requests` : `${s.duration} s`) +
        ` measured after ${s.warmup} s warm-up` +
        (repeat > 1 ? `; best of ${repeat} runs` : "") + "\n",
    );
    console.log(formatTable(rows));
    for (const r of rows) {
      if (r.errors > 0 || r.misses > 0) {
        console.log(
          `${r.name} depth ${r.depth}: ${r.errors} errors, ${r.misses} misses ` +
            JSON.stringify(r.error_reasons),
        );
      }
    }
    if (repeat > 1) {
      console.log("\nops/s of every run (the table shows the best):");
      for (const r of rows) {
        console.log(`  ${r.name} depth ${r.depth}: ${r.runs.map(fmtInt).join(" / ")}`);
      }
    }
    for (const n of notes) console.log(`note: ${n}`);
  }
  return failed ? 1 : 0;
}
