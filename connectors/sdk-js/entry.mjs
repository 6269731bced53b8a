// @ts-check
/**
 * For build scripts (node), never imported by a connector: the entry module
 * a build gives componentize-js instead of the connector's own module.
 *
 * It re-exports the connector and wraps each function of its world's
 * exports so that an exception escaping one carries its class in its
 * message. When a guest aborts on an exception, SpiderMonkey prints the
 * message and the stack, not the class: without this, the host's trap text
 * said `x is not a function` where `TypeError: x is not a function` says
 * what went wrong. The exception object itself (and its stack) is kept.
 */

/** The interfaces each world of weft's WIT exports, by their JS names. */
const EXPORTS = {
  'source-connector': ['metadata', 'source'],
  'mapper-connector': ['metadata', 'mapper'],
  'destination-connector': ['metadata', 'destination'],
};

/**
 * The entry module's text.
 * @param {string} world the connector's world (`mapper-connector`, ...)
 * @param {string} main the connector's module, relative to the entry (`./index.js`)
 * @returns {string}
 */
export function entryModule(world, main) {
  const names = EXPORTS[/** @type {keyof typeof EXPORTS} */ (world)];
  if (!names) throw new Error(`unknown weft world ${JSON.stringify(world)}`);
  const spec = JSON.stringify(main);
  return `// Written by the build (weft's sdk-js/entry.mjs): the connector ${spec},
// with the class of an exception that escapes it named in its message.
export * from ${spec};
import * as connector from ${spec};

function named(e) {
  if (e instanceof Error && typeof e.name === 'string' && e.name && !String(e.message).startsWith(e.name)) {
    try {
      e.message = e.name + ': ' + e.message;
    } catch {}
  }
  return e;
}

function withClassNames(exports) {
  if (!exports || typeof exports !== 'object') return exports;
  const out = {};
  for (const [key, value] of Object.entries(exports)) {
    out[key] = typeof value !== 'function' ? value : function (...args) {
      try {
        return value.apply(exports, args);
      } catch (e) {
        throw named(e);
      }
    };
  }
  return out;
}

${names.map((n) => `export const ${n} = withClassNames(connector.${n});`).join('\n')}
`;
}
