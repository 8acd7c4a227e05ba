/**
 * Errors that callers catch by type.
 *
 * @module
 */

/**
 * A frame the receiver cannot accept: unknown type, a payload that does not
 * fit its type's layout, or a field over its limit (PROTOCOL.md "Frame").
 * The receiver answers `ERROR` and closes that one connection.
 */
export class ProtocolError extends Error {
  /** The error name, `"ProtocolError"`. */
  override name = "ProtocolError";
}
