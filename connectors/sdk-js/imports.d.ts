// Types of the host imports the SDK uses, for editors and `tsc --checkJs`
// (`npm run check` in js/). At run time componentize-js provides these
// modules from the WIT world (wit/v0.1.0).

declare module 'weft:connector/config@0.1.0' {
  /** The whole configuration as JSON text (`{}` when the tenant set nothing). */
  export function getJson(): string;
  /** One top-level key as JSON text, or `undefined`. */
  export function get(key: string): string | undefined;
}

declare module 'weft:connector/kv@0.1.0' {
  /** Throws an error whose `payload` is `{ tag: 'too-large' | 'quota-exceeded' | 'unavailable', val: string }`. */
  export function get(key: string): Uint8Array | undefined;
  export function set(key: string, value: Uint8Array): void;
  function remove(key: string): void;
  export { remove as delete };
  export function listKeys(prefix: string, limit: number): string[];
}

declare module 'weft:connector/log@0.1.0' {
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
  export function log(level: Level, message: string, fields: [string, string][]): void;
}

declare module 'wasi:http/types@0.2.12' {
  export class Fields {
    constructor();
    append(name: string, value: Uint8Array): void;
    entries(): [string, Uint8Array][];
  }
  export class OutgoingRequest {
    constructor(headers: Fields);
    setMethod(method: { tag: string; val?: string }): void;
    setScheme(scheme: { tag: string; val?: string } | undefined): void;
    setAuthority(authority: string | undefined): void;
    setPathWithQuery(path: string | undefined): void;
    body(): OutgoingBody;
  }
  export class OutgoingBody {
    write(): { blockingWriteAndFlush(bytes: Uint8Array): void };
    static finish(body: OutgoingBody, trailers: Fields | undefined): void;
  }
}

declare module 'wasi:http/outgoing-handler@0.2.12' {
  import type { OutgoingRequest } from 'wasi:http/types@0.2.12';
  /** A `future-incoming-response`; throws an error whose `payload` is the `error-code`. */
  export function handle(request: OutgoingRequest, options: undefined): any;
}
