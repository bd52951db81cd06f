/**
 * GET /v1/ca.pem: the CA certificate that signs the lease host's certificate, for clients that
 * connect with sslmode=verify-full (src/tls/host-tls.ts says which file it is). Public, like any
 * CA certificate: it holds no secret, and a client needs it before it holds any token. 404
 * (PGLEASE_TLS_OFF) when pglease has no CA file for the host: TLS off, or a host verified with
 * public CAs.
 */
import type { FastifyInstance } from 'fastify';
import type { ServiceContext } from '../service-context.js';
import { ControlError } from './errors.js';
import { ErrorSchema } from './schemas.js';

export async function caRoutes(app: FastifyInstance, context: ServiceContext): Promise<void> {
  app.get(
    '/v1/ca.pem',
    {
      schema: {
        summary: "The CA certificate of the lease host's TLS (PEM)",
        description: 'Save it and connect with sslmode=verify-full&sslrootcert=<file>; docs/tls.md.',
        tags: ['tls'],
        produces: ['application/x-pem-file'],
        response: { 200: { type: 'string' }, 404: ErrorSchema },
      },
    },
    async (_request, reply) => {
      const tls = context.host.tls;
      if (tls?.caPem === undefined) {
        const message = tls
          ? 'pglease verifies this host without a CA file of its own (public CAs): clients use their system trust store'
          : 'The lease host does not use TLS (start the embedded Postgres with PGLEASE_PG_TLS=on or require, or give sslmode in DATABASE_URL)';
        throw new ControlError('PGLEASE_TLS_OFF', message);
      }
      return reply.type('application/x-pem-file').header('content-disposition', 'inline; filename="pglease-ca.pem"').send(tls.caPem);
    },
  );
}
