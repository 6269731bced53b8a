// @ts-check
/**
 * Test mapper in JavaScript: passes every record through unchanged, except
 * that a record whose JSON body has `"explode": true` makes `map` throw an
 * exception that nothing catches (no SDK), so the component traps: the host
 * must find that record by splitting the batch and dead-letter it alone.
 */

export const metadata = {
  describe() {
    return {
      name: 'throwing-mapper',
      version: '0.1.0',
      description: 'Test mapper that throws on a record whose body has "explode": true',
      streams: [],
      configSchema: JSON.stringify({ type: 'object' }),
      outboundHosts: [],
    };
  },
};

export const mapper = {
  /** @param {{ key: string, kind: string, version: bigint, op: string, body: string }[]} records */
  map(records) {
    return records.map((record) => {
      const body = JSON.parse(record.body);
      if (body && body.explode === true) {
        throw new TypeError(`throwing-mapper: record ${record.key} asked to explode`);
      }
      return { tag: 'ok', val: [record] };
    });
  },
};
