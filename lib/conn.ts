/**
 * Small helpers around connections shared by every role.
 *
 * @module
 */

import { ERROR } from "./messages.ts";
import type { FrameWriter } from "./writer.ts";

const encoder = new TextEncoder();

/** `host:port` of a connection's far end, for logs. */
export function remote(conn: Deno.Conn): string {
  const a = conn.remoteAddr as Deno.NetAddr;
  return `${a.hostname}:${a.port}`;
}

/** True for the errors a vanished peer or a closed socket causes. */
export function isConnGone(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted ||
    err instanceof Deno.errors.NotConnected;
}

/** Waits for a writer to flush, at most `ms`. */
export async function flushWithin(writer: FrameWriter, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    writer.flush(),
    new Promise<void>((r) => timer = setTimeout(r, ms)),
  ]);
  clearTimeout(timer);
}

/**
 * PROTOCOL.md: on a protocol error send `ERROR` with the reason; the caller
 * then closes the connection.
 */
export async function sendErrorAndClose(writer: FrameWriter, reason: string): Promise<void> {
  const b = encoder.encode(reason);
  writer.write(ERROR, b.length > 0xffff ? b.subarray(0, 0xffff) : b);
  await flushWithin(writer, 1000);
}

/** Closes a connection, ignoring "already closed". */
export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}

/** Turns Nagle off: frames are already batched per turn by the writer. */
export function noDelay(conn: Deno.Conn): void {
  try {
    (conn as Deno.TcpConn).setNoDelay?.(true);
  } catch {
    // not TCP, or already closed
  }
}
