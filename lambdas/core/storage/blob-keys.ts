/**
 * The keys of the blob store (`blob-store.ts`): the only place one is spelled out. Every part of
 * a key is an id Corral made (a tenant id, a file id), never a name from a request or a path
 * from a sandbox, so a key can never leave its prefix.
 *
 * | bytes                          | key                                      |
 * |--------------------------------|------------------------------------------|
 * | a file (uploaded or an output) | `files/<tenant>/<file id>`               |
 * | an environment's package cache | `packages/<environment id>/<digest>.tar.gz` |
 */
/** What an id looks like (`ID_PATTERN` of the API's schemas): the only characters a key part may have. */
const ID = /^[A-Za-z0-9_-]{1,128}$/;

function part(name: string, value: string): string {
  if (!ID.test(value)) throw new TypeError(`blob key: ${name} is not an id`);
  return value;
}

export const blobKeys = {
  /** The bytes of a file of the Files API. */
  file: (tenant: string, fileId: string) => `files/${part('tenant', tenant)}/${part('file id', fileId)}`,
  /** The packages of one version of an environment (`digest`: a hex hash of the version and package lists). */
  packageCache: (environmentId: string, digest: string) => `packages/${part('environment id', environmentId)}/${part('digest', digest)}.tar.gz`,
} as const;
