/**
 * The one entry point: `deno run --allow-net cli/main.ts ROLE [flags]`.
 *
 * @module
 */

import { CliError, EXIT_USAGE } from "./common.ts";
import { MASTER_HELP, masterCommand } from "./master.ts";
import { WORKER_HELP, workerCommand } from "./worker.ts";
import { CLIENT_HELP, clientCommand } from "./client.ts";
import { DEMO_HELP, demoCommand } from "./demo.ts";
import { BENCH_HELP, benchCommand } from "./bench.ts";
import { SLAVE_HELP, slaveCommand } from "./slave.ts";
import { VERSION } from "../lib/version.ts";
import { dropPermissions, isRole } from "./permissions.ts";

const USAGE = `lbkit ${VERSION}: a load-balanced, replicated key-value cluster

Usage: lbkit ROLE [flags]

Roles:
  master    the front door: clients, worker ring, membership
  slave     another balancer in the tier; pushes its load to the master
  worker    an in-memory key-value store
  client    pipe commands on stdin (set k v, get k, del k, ping, node)
  demo      a master and two workers in one process, default ports
  bench     load generator and latency histogram; --suite compares setups

  lbkit help ROLE | lbkit ROLE --help   flags of a role
  lbkit --version                       print the version

Environment: none (every setting is a flag).
`;

const HELP: Record<string, string> = {
  master: MASTER_HELP,
  worker: WORKER_HELP,
  client: CLIENT_HELP,
  demo: DEMO_HELP,
  slave: SLAVE_HELP,
  bench: BENCH_HELP,
};

/** Runs the CLI; resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const [role, ...rest] = argv;
  try {
    switch (role) {
      case "master":
        await masterCommand(rest);
        return 0;
      case "worker":
        await workerCommand(rest);
        return 0;
      case "client":
        return await clientCommand(rest);
      case "slave":
        await slaveCommand(rest);
        return 0;
      case "demo":
        await demoCommand(rest);
        return 0;
      case "bench":
        return await benchCommand(rest);
      case "help":
      case "--help":
      case "-h":
      case undefined: {
        const topic = role === "help" ? rest[0] : undefined;
        if (topic !== undefined && !(topic in HELP)) {
          console.error(`lbkit: no help for '${topic}'\n\n${USAGE}`);
          return EXIT_USAGE;
        }
        if (role === undefined) {
          console.error(USAGE); // no role: a usage error
          return EXIT_USAGE;
        }
        console.log(topic !== undefined ? HELP[topic] : USAGE);
        return 0;
      }
      case "--version":
      case "-V":
      case "version":
        console.log(`lbkit ${VERSION}`);
        return 0;
      default:
        console.error(`lbkit: unknown role '${role}'\n\n${USAGE}`);
        return EXIT_USAGE;
    }
  } catch (err) {
    if (err instanceof CliError) {
      console.error(`lbkit: ${err.message}`);
      return err.code;
    }
    if (err instanceof Deno.errors.AddrInUse) {
      console.error(`lbkit ${role}: address already in use: ${err.message}`);
      return 1;
    }
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      console.error(`lbkit ${role}: missing permission: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (import.meta.main) {
  // A compiled binary holds every role's permissions; keep only this role's.
  if (isRole(Deno.args[0])) dropPermissions(Deno.args[0], Deno.args.slice(1));
  Deno.exit(await main(Deno.args));
}
