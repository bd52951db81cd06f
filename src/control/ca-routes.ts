/**
 * GET /v1/ca.pem: the CA certificates that sign the lease hosts' certificates, for clients that
 * connect with sslmode=verify-full (src/tls/host-tls.ts says which file the control host's is):
 * one PEM bundle of the control host's CA and the `ca_pem` of every registered host with TLS, so
 * a client that saves it once (the CLI, pglease/testing: src/tls/client-ca.ts) verifies a lease on
 * any host without knowing which host it is on. libpq and node-postgres both read every
 * certificate of an sslrootcert file. Public, like any CA certificate: it holds no secret, and a
 * client needs it before it holds any token. 404 (PGLEASE_TLS_OFF) when pglease has no CA file
 * for any host: TLS off, or hosts verified with public CAs.
 */
import type { FastifyInstance } from 'fastify';
import type { ServiceContext } from '../service-context.js';
import { ControlError } from './errors.js';
import { ErrorSchema } from './schemas.js';

/** Each certificate of a PEM text, normalised (a bundle names a CA once however often it is registered). */
function certificatesOf(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((match) => match[0].replace(/\r\n/g, '\n'));
}

/**
 * How long one read of the registry's CAs answers GET /v1/ca.pem: the route is public, so without
 * it every request (a flood's too) was a statement on the control database; with it, at most one a
 * second, and a host registered on another replica is in the bundle within a second (on this one,
 * at once: its own registry changes end the read's use).
 */
const HOST_CA_READ_MS = 1000;

export async function caRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  let hostCaRead: { at: number; changes: number; pems: Promise<string[]> } | undefined;
  const registeredHostCas = (): Promise<string[]> => {
    const now = Date.now();
    const changes = context.fleet.registryChanges;
    if (hostCaRead === undefined || now - hostCaRead.at >= HOST_CA_READ_MS || hostCaRead.changes !== changes) {
      const pems = context.fleet.registry.list().then((entries) => entries.flatMap((entry) => (entry.url !== null && entry.tls !== 'disable' && entry.ca_pem ? [entry.ca_pem] : [])));
      const read = { at: now, changes, pems };
      // a failed read is not kept: the next request reads again
      pems.catch(() => {
        if (hostCaRead === read) hostCaRead = undefined;
      });
      hostCaRead = read;
    }
    return hostCaRead.pems;
  };
  app.get(
    '/v1/ca.pem',
    {
      schema: {
        summary: "The CA certificates of the lease hosts' TLS (a PEM bundle)",
        description: 'Save it and connect with sslmode=verify-full&sslrootcert=<file>; docs/tls.md. One bundle for every host: the control host first, then each registered host with a CA of its own.',
        tags: ['tls'],
        produces: ['application/x-pem-file'],
        response: { 200: { type: 'string' }, 404: ErrorSchema },
      },
    },
    async (_request, reply) => {
      const tls = context.host.tls;
      // the registry is read only once there is another host (one statement on the control database)
      const hostPems = context.fleet.spread ? await registeredHostCas() : [];
      const send = (pem: string) => reply.type('application/x-pem-file').header('content-disposition', 'inline; filename="pglease-ca.pem"').send(pem);
      // the control host's file as it is, when it is the only CA
      if (hostPems.length === 0 && tls?.caPem !== undefined) return send(tls.caPem);
      const bundle = [...new Set([tls?.caPem, ...hostPems].flatMap((pem) => (pem ? certificatesOf(pem) : [])))];
      if (bundle.length === 0) {
        const message = tls
          ? 'pglease verifies its hosts without a CA file of its own (public CAs): clients use their system trust store'
          : 'No lease host uses TLS with a CA of its own (start the embedded Postgres with PGLEASE_PG_TLS=on or require, give sslmode in DATABASE_URL, or register a host with ca_pem)';
        throw new ControlError('PGLEASE_TLS_OFF', message);
      }
      return send(bundle.join('\n') + '\n');
    },
  );
}
