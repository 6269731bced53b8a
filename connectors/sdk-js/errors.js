// @ts-check
/**
 * weft's error classes, as thrown values (re-exported by `index.js`).
 * @module
 */

/**
 * The WIT `error` variant.
 * @typedef {{ tag: 'transient', val: { message: string, retryAfterMs?: bigint } }
 *   | { tag: 'invalid', val: string }
 *   | { tag: 'config', val: string }} ErrorValue
 */

/**
 * An error of one of weft's classes. Thrown from an export that returns a
 * `result` (`fetch`, `on-webhook`), it becomes that result's error (the
 * component's bindings use the `payload` property); inside
 * {@link eachRecord} it becomes the error of that one record.
 */
export class WeftError extends Error {
  /** @param {ErrorValue} payload */
  constructor(payload) {
    super(payload.tag === 'transient' ? payload.val.message : payload.val);
    this.name = 'WeftError';
    /** The WIT `error` value. @type {ErrorValue} */
    this.payload = payload;
  }

  /** `'transient'`, `'invalid'` or `'config'`. */
  get kind() {
    return this.payload.tag;
  }
}

/**
 * This input can never succeed as it is: the host dead-letters the record.
 * @param {string} message
 */
export function invalid(message) {
  return new WeftError({ tag: 'invalid', val: String(message) });
}

/**
 * Temporary trouble: the host retries, after at least `retryAfterMs` when
 * given.
 * @param {string} message
 * @param {number | bigint} [retryAfterMs]
 */
export function transient(message, retryAfterMs) {
  return new WeftError({
    tag: 'transient',
    val: {
      message: String(message),
      retryAfterMs:
        retryAfterMs === undefined || retryAfterMs === null
          ? undefined
          : BigInt(Math.max(0, Math.ceil(Number(retryAfterMs)))),
    },
  });
}

/**
 * Credentials or settings are wrong: the host stops the flow and alerts.
 * @param {string} message
 */
export function configError(message) {
  return new WeftError({ tag: 'config', val: String(message) });
}

/**
 * The WIT error value for anything thrown: a {@link WeftError} keeps its
 * class; any other exception (a bug, a `TypeError` on unexpected data) is
 * `invalid`, with its name and message.
 * @param {unknown} e
 * @returns {ErrorValue}
 */
export function errorValue(e) {
  if (e instanceof WeftError) return e.payload;
  if (e instanceof Error) return { tag: 'invalid', val: `uncaught ${e.name}: ${e.message}` };
  return { tag: 'invalid', val: `uncaught exception: ${String(e)}` };
}
