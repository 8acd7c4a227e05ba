/**
 * Each role's Deno permissions, in one place: the deno tasks, the end-to-end
 * tests, `lbkit bench`'s child processes and the compile step read them from
 * here, and `cli/main.ts` drops at start-up what its role does not need.
 *
 * Every role needs the network alone. Where the flags name every address a
 * role will ever touch, {@linkcode permissionFlags} narrows `--allow-net`
 * to them:
 *
 * | role     | `deno run` flags                      | why not narrower                          |
 * | -------- | ------------------------------------- | ----------------------------------------- |
 * | `client` | `--allow-net=HOST:PORT` of --connect  | with `--discover`: `--allow-net`, the node |
 * |          |                                       | it is sent to is known only at run time   |
 * | `demo`   | `--allow-net=127.0.0.1`               | (everything is on loopback)               |
 * | `master` | `--allow-net`                         | a master that steps down becomes a slave  |
 * |          |                                       | and dials the workers' advertised addrs   |
 * | `slave`  | `--allow-net`                         | dials the workers the master announces    |
 * | `worker` | `--allow-net`                         | dials its peers, announced at run time    |
 * | `bench`  | `--allow-net --allow-run`             | spawns clusters on ports picked at run    |
 * |          |                                       | time                                      |
 *
 * Listeners on port 0 are no obstacle by themselves (`--allow-net=HOST`
 * allows every port of HOST); what cannot be listed in advance is the
 * addresses a role dials because another node told it to.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatHostPort, parseHostPort } from "../lib/addr.ts";
import { CLIENT_FLAGS } from "./client.ts";

/** The roles `cli/main.ts` runs. */
export type Role = "master" | "worker" | "client" | "slave" | "demo" | "bench";

/** Every role, in help order. */
export const ROLES: readonly Role[] = ["master", "slave", "worker", "client", "demo", "bench"];

/** True when `s` names a role. */
export function isRole(s: unknown): s is Role {
  return typeof s === "string" && (ROLES as readonly string[]).includes(s);
}

/**
 * The widest `deno run` flags of each role: what it may need whatever its
 * flags say. Network only, but for bench, which spawns clusters.
 */
export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly string[]>> = {
  master: ["--allow-net"],
  worker: ["--allow-net"],
  client: ["--allow-net"],
  slave: ["--allow-net"],
  demo: ["--allow-net"],
  bench: ["--allow-net", "--allow-run"],
};

/**
 * What `deno compile` grants the binary: the union of the roles' sets. The
 * binary then drops, per role, what that role does not need.
 */
export const COMPILE_PERMISSIONS: readonly string[] = [
  ...new Set(Object.values(ROLE_PERMISSIONS).flat()),
];

/**
 * The `deno run` permission flags of `role` started with `argv`: the
 * role's set, with `--allow-net` narrowed to the addresses the flags name
 * where they name every address the role will touch (see the module doc).
 * An argv the role would reject gets the wide set; the role then exits 2.
 */
export function permissionFlags(role: Role, argv: readonly string[] = []): string[] {
  const wide = [...ROLE_PERMISSIONS[role]];
  try {
    switch (role) {
      case "client": {
        const { values } = parseArgs({
          args: [...argv],
          options: { connect: { type: "string" }, discover: { type: "boolean" } },
          strict: false,
          allowPositionals: true,
        });
        if (values.discover) return wide;
        const connect = typeof values.connect === "string"
          ? values.connect
          : String(CLIENT_FLAGS.connect.default);
        // The client reconnects to this same address, never to another.
        return [`--allow-net=${formatHostPort(parseHostPort(connect))}`];
      }
      case "demo":
        // The demo binds and dials 127.0.0.1 only; a worker that joins it
        // advertises the address it reached the master on: 127.0.0.1 too.
        return ["--allow-net=127.0.0.1"];
      case "master":
      case "slave":
        // Receiver threads load their module from lib/ (from a checkout);
        // VIP hooks run commands.
        return [
          ...wide,
          ...(threadsOf(argv) > 1 ? [`--allow-read=${LIB_DIR}`] : []),
          ...(hasHooks(argv) ? ["--allow-run"] : []),
        ];
      default:
        return wide;
    }
  } catch {
    return wide;
  }
}

/**
 * The argv for `new Deno.Command(Deno.execPath(), { args })` that starts
 * `role` with `flags`: `run PERMISSIONS mainPath role flags` from a
 * checkout, with the role's wide set ({@linkcode ROLE_PERMISSIONS}) or,
 * with `narrow`, {@linkcode permissionFlags}. Inside a compiled binary
 * (`Deno.build.standalone`) `Deno.execPath()` is the binary itself, so the
 * argv is just `role flags` and the child drops to its role's permissions
 * at start-up.
 */
export function roleCommand(
  role: Role,
  mainPath: string,
  flags: string[] = [],
  narrow = false,
): string[] {
  if (Deno.build.standalone) return [role, ...flags];
  const perms = narrow ? permissionFlags(role, flags) : ROLE_PERMISSIONS[role];
  return ["run", ...perms, mainPath, role, ...flags];
}

/** Where the receiver thread module lives, for `--allow-read`. */
export const LIB_DIR: string = new URL("../lib/", import.meta.url).pathname;

/** The `--threads` value in an argv (1 when absent or not a number). */
export function threadsOf(argv: readonly string[]): number {
  const { values } = parseArgs({
    args: [...argv],
    options: { threads: { type: "string" } },
    strict: false,
    allowPositionals: true,
  });
  const n = Number(values.threads);
  return Number.isInteger(n) && n > 1 ? n : 1;
}

/** True when an argv gives `--vip-up` or `--vip-down`. */
export function hasHooks(argv: readonly string[]): boolean {
  return argv.some((a) => /^--vip-(up|down)(=|$)/.test(a));
}

/** The permission kinds {@linkcode dropPermissions} may revoke. */
export const DROPPABLE_KINDS = ["read", "write", "run", "env", "ffi", "sys", "import"] as const;

/** A permission kind that can be dropped. */
export type DroppableKind = typeof DROPPABLE_KINDS[number];

/**
 * The kinds each role keeps at start-up, beside `net` (never revoked: every
 * role needs it, and a narrowed `--allow-net` is already as narrow as the
 * flags allow).
 *
 * - `env`: no role reads an environment variable, so every role drops it.
 * - `bench` keeps everything it was given: it holds `run`, and a child
 *   process is outside Deno's sandbox, so revoking read/write/env would
 *   protect nothing; and its CPU column reads other processes' `/proc`
 *   entries, which Deno allows only while `--allow-all` is intact. A
 *   compiled binary holds only net and run, so there bench has just those.
 */
export const ROLE_KEEPS: Readonly<Record<Role, readonly DroppableKind[]>> = {
  master: [],
  worker: [],
  client: [],
  slave: [],
  demo: [],
  bench: DROPPABLE_KINDS,
};

/**
 * Revokes, for this whole process, the permission kinds `role` does not
 * need (`Deno.permissions.revokeSync`), so that a binary compiled with the
 * union of the roles' permissions runs each role with only its own. A kind
 * never granted is revoked all the same, harmlessly; a kind this runtime
 * does not know is skipped. Returns the kinds revoked.
 *
 * After a revoke the state is `"prompt"`: a compiled binary never prompts
 * and a process without a terminal cannot, so a use fails at once with
 * `Deno.errors.NotCapable`; an interactive `deno run` (without
 * `--no-prompt`) would ask the operator first.
 */
export function dropPermissions(role: Role, argv: readonly string[] = []): DroppableKind[] {
  const dropped: DroppableKind[] = [];
  // A master or slave with receiver threads reads their module when it spawns them.
  const tier = role === "master" || role === "slave";
  const keeps: readonly DroppableKind[] = [
    ...ROLE_KEEPS[role],
    ...(tier && threadsOf(argv) > 1 ? ["read" as const] : []),
    ...(tier && hasHooks(argv) ? ["run" as const] : []),
  ];
  for (const name of DROPPABLE_KINDS) {
    if (keeps.includes(name)) continue;
    try {
      // "import" is not in Deno.PermissionName's type, but revokes alike.
      Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
      dropped.push(name);
    } catch {
      // a kind this runtime does not have
    }
  }
  return dropped;
}
