/**
 * `deno task compile [--target TRIPLE] [--output PATH]`: builds the lbkit
 * binary from `cli/main.ts` with the union of the roles' permissions
 * (`COMPILE_PERMISSIONS`: net, and run for bench); at start-up the binary
 * drops what its role does not need (`dropPermissions`).
 *
 * `deno compile` downloads its runtime (denort) from dl.deno.land the first
 * time per Deno version and target. Where that download cannot be reached,
 * this says so and exits 1; the release workflow builds the binaries.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { COMPILE_PERMISSIONS } from "../cli/permissions.ts";

const ROOT = new URL("..", import.meta.url);

const UNREACHABLE = "deno compile needs to download denort from dl.deno.land, which this " +
  "machine cannot reach; the release workflow builds the binaries " +
  "(.github/workflows/release.yml). A denort binary at hand can be used with DENORT_BIN=PATH.";

/** True when `deno compile`'s output says the runtime download failed. */
export function isDownloadFailure(stderr: string): boolean {
  return /dl\.deno\.land|denort/i.test(stderr) &&
    /error sending request|dns error|failed to lookup|connect|timed out|network|download/i.test(
      stderr,
    );
}

/** Modules loaded at run time (receiver threads) that the binary must embed. */
export const COMPILE_INCLUDE: readonly string[] = ["lib/receiver_thread.ts"];

/** The `deno compile` argv for a target (or this platform) and an output path. */
export function compileArgs(output: string, target?: string): string[] {
  return [
    "compile",
    ...COMPILE_PERMISSIONS,
    ...(target ? ["--target", target] : []),
    // Web Worker entry points are not found by static analysis.
    ...COMPILE_INCLUDE.flatMap((f) => ["--include", f]),
    "--output",
    output,
    "cli/main.ts",
  ];
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: { target: { type: "string" }, output: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(
      `compile: ${
        (err as Error).message
      }\nusage: deno task compile [--target TRIPLE] [--output PATH]`,
    );
    return 2;
  }
  const args = compileArgs(values.output ?? "dist/lbkit", values.target);
  console.error(`$ deno ${args.join(" ")}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  // Pass deno's messages through as they come, and keep them to explain a failure.
  let stderr = "";
  const dec = new TextDecoder();
  for await (const chunk of child.stderr) {
    stderr += dec.decode(chunk, { stream: true });
    await Deno.stderr.write(chunk);
  }
  const { code } = await child.status;
  if (code === 0) return 0;
  if (isDownloadFailure(stderr)) console.error(`\ncompile: ${UNREACHABLE}`);
  else console.error(`\ncompile: deno compile failed (exit ${code})`);
  return code || 1;
}

if (import.meta.main) Deno.exit(await main());
