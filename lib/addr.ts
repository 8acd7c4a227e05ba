/**
 * `host:port` parsing and formatting.
 *
 * @module
 */

/** A TCP address. */
export interface HostPort {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port number. */
  port: number;
}

/**
 * Parses `host:port` (IPv6 as `[::1]:5059`). Throws `TypeError` with a
 * message naming the input when it is not one.
 */
export function parseHostPort(s: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new TypeError(`"${s}" is not host:port`);
  const hostname = m[1] ?? m[2];
  return { hostname: hostname === "" ? "127.0.0.1" : hostname, port };
}

/** Formats an address as `host:port`. */
export function formatHostPort(a: HostPort): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/** The address a listener is bound to. */
export function listenerAddr(l: Deno.Listener): HostPort {
  const a = l.addr as Deno.NetAddr;
  return { hostname: a.hostname, port: a.port };
}
