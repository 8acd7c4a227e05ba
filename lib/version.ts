/**
 * The lbkit version, shown by `lbkit --version`.
 *
 * @module
 */

/** The version of this build. */
export const VERSION = "0.1.0";
