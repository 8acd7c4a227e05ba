/**
 * Each role's Deno permission flags, in one place: the deno tasks, the
 * end-to-end tests and the compile step read them from here.
 *
 * @module
 */

/** The roles `cli/main.ts` runs. */
export type Role = "master" | "worker" | "client" | "slave" | "bench";

/** Network only, for every role by default. */
export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly string[]>> = {
  master: ["--allow-net"],
  worker: ["--allow-net"],
  client: ["--allow-net"],
  slave: ["--allow-net"],
  bench: ["--allow-net"],
};

/** The `deno run` argv that starts `role` from a checkout. */
export function roleCommand(role: Role, mainPath: string, flags: string[] = []): string[] {
  return ["run", ...ROLE_PERMISSIONS[role], mainPath, role, ...flags];
}
