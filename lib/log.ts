/**
 * Leveled logging to standard error, one line per event.
 *
 * @module
 */

/** Log levels, most verbose first. */
export const LEVELS = ["debug", "info", "warn", "error", "silent"] as const;
/** A log level name. */
export type LogLevel = typeof LEVELS[number];

/** Where roles log. */
export interface Logger {
  /** Logs a debug message. */
  debug(msg: string): void;
  /** Logs an informational message. */
  info(msg: string): void;
  /** Logs a warning. */
  warn(msg: string): void;
  /** Logs an error. */
  error(msg: string): void;
}

/** True for a known level name. */
export function isLogLevel(s: string): s is LogLevel {
  return (LEVELS as readonly string[]).includes(s);
}

/** A logger that prefixes `[level] name:` and drops what is below `level`. */
export function createLogger(name: string, level: LogLevel = "info"): Logger {
  const min = LEVELS.indexOf(level);
  const enc = new TextEncoder();
  const at = (l: LogLevel) => (msg: string) => {
    if (LEVELS.indexOf(l) < min) return;
    const line = `${new Date().toISOString()} ${l.padEnd(5)} ${name}: ${msg}\n`;
    try {
      Deno.stderr.writeSync(enc.encode(line));
    } catch {
      // stderr gone: nothing better to do.
    }
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** A logger that drops everything (tests, embedders). */
export const silentLogger: Logger = createLogger("", "silent");
