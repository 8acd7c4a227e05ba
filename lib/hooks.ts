/**
 * VIP hooks: operator commands run when a node takes the VIP (`--vip-up`)
 * or gives it up (`--vip-down`), to move a real address on a real network
 * (for instance `ip addr add 10.0.0.100/24 dev eth0`). On one host the VIP
 * is a loopback address and no hook is needed.
 *
 * @module
 */

import type { Logger } from "./log.ts";

/** What a hook is told, as environment variables `LBKIT_*`. */
export interface HookEvent {
  /** `up` on promotion (before binding), `down` on stepping down (after releasing). */
  event: "up" | "down";
  /** The VIP's host. */
  host: string;
  /** The term being taken or given up to. */
  term: number;
}

/**
 * Runs `command` through the shell with `LBKIT_EVENT`, `LBKIT_VIP_HOST` and
 * `LBKIT_TERM` set; waits at most `timeoutMs`. Resolves true when it exited
 * 0. Needs `--allow-run`, which the roles ask for only when a hook is given.
 */
export async function runHook(
  command: string,
  e: HookEvent,
  options: { logger: Logger; timeoutMs?: number },
): Promise<boolean> {
  const shell = Deno.build.os === "windows" ? ["cmd", "/c"] : ["sh", "-c"];
  try {
    const child = new Deno.Command(shell[0], {
      args: [shell[1], command],
      env: { LBKIT_EVENT: e.event, LBKIT_VIP_HOST: e.host, LBKIT_TERM: String(e.term) },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
      signal: AbortSignal.timeout(options.timeoutMs ?? 10000),
    }).spawn();
    const status = await child.status;
    if (!status.success) {
      options.logger.warn(`vip-${e.event} hook exited ${status.code}: ${command}`);
    } else options.logger.info(`vip-${e.event} hook ran: ${command}`);
    return status.success;
  } catch (err) {
    options.logger.error(`vip-${e.event} hook failed: ${(err as Error).message}`);
    return false;
  }
}
